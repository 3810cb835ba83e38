"""The paper's phases as runs: each FeatSR stage refuses weights that do not hold what it freezes
(issue 12, point 3), a changed discriminator rate is applied on resume (point 7), and the ablation
tool runs stage 2 then stage 3 from stage 2's weights."""

import argparse
import os
import runpy

import pytest
import torch
from common import tiny_featsr_cfg
from detectron2.modeling import build_model

from featsr_d2.engine import FeatSRTrainer
from featsr_d2.engine.checkpoint import WeightsFileError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(tiny_tt100k, tmp_path, **overrides):
    train_name, _, _ = tiny_tt100k
    opts = {
        "DATASETS.TRAIN": (train_name,),
        "DATASETS.TEST": (),
        "DATALOADER.NUM_WORKERS": 0,
        "SOLVER.IMS_PER_BATCH": 1,
        "SOLVER.MAX_ITER": 1,
        "SOLVER.STEPS": (),
        "SOLVER.WARMUP_ITERS": 0,
        "OUTPUT_DIR": str(tmp_path / "run"),
    }
    opts.update(overrides)
    return tiny_featsr_cfg(**opts)


def _save(model_or_state, path) -> str:
    state = model_or_state if isinstance(model_or_state, dict) else model_or_state.state_dict()
    torch.save({"model": state}, path)
    return str(path)


@pytest.fixture
def stage1_weights(tmp_path):
    """A stage-1 checkpoint: the base detector of the tiny FeatSR architecture."""
    cfg = tiny_featsr_cfg()
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    cfg.MODEL.ROI_HEADS.NAME = "Res5ROIHeads"
    return _save(build_model(cfg), tmp_path / "stage1.pth")


def test_stage2_loads_a_stage1_detector_and_refuses_weights_without_its_frozen_parts(
    tiny_tt100k, tmp_path, stage1_weights
):
    FeatSRTrainer(_cfg(tiny_tt100k, tmp_path, **{"MODEL.WEIGHTS": stage1_weights})).resume_or_load(
        resume=False
    )
    # ImageNet-style weights: a backbone only, no RPN and no box head.
    state = torch.load(stage1_weights, weights_only=True)["model"]
    backbone_only = _save(
        {k: v for k, v in state.items() if k.startswith("backbone.")}, tmp_path / "imagenet.pth"
    )
    trainer = FeatSRTrainer(_cfg(tiny_tt100k, tmp_path, **{"MODEL.WEIGHTS": backbone_only}))
    with pytest.raises(WeightsFileError, match=r"proposal_generator.*FeatSR stage 2 freezes"):
        trainer.resume_or_load(resume=False)


def test_stage3_refuses_a_stage1_detector_and_loads_stage2_weights(
    tiny_tt100k, tmp_path, stage1_weights
):
    stage3 = {"MODEL.FEATSR.STAGE": 3}
    trainer = FeatSRTrainer(
        _cfg(tiny_tt100k, tmp_path, **stage3, **{"MODEL.WEIGHTS": stage1_weights})
    )
    with pytest.raises(WeightsFileError, match=r"roi_heads\.generator.*FeatSR stage 3"):
        trainer.resume_or_load(resume=False)
    stage2 = _save(build_model(tiny_featsr_cfg()), tmp_path / "stage2.pth")
    trainer = FeatSRTrainer(_cfg(tiny_tt100k, tmp_path, **stage3, **{"MODEL.WEIGHTS": stage2}))
    trainer.resume_or_load(resume=False)
    assert trainer.optimizer_d is None  # D is frozen in stage 3


def test_a_changed_discriminator_rate_applies_on_resume(tiny_tt100k, tmp_path, stage1_weights):
    weights = {"MODEL.WEIGHTS": stage1_weights, "SOLVER.CHECKPOINT_PERIOD": 1}
    trainer = FeatSRTrainer(_cfg(tiny_tt100k, tmp_path, **weights))
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert trainer.optimizer_d.param_groups[0]["lr"] == pytest.approx(1e-4)
    resumed = FeatSRTrainer(
        _cfg(tiny_tt100k, tmp_path, **weights, **{"MODEL.FEATSR.DISCRIMINATOR_LR": 5e-4})
    )
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 1
    assert [g["lr"] for g in resumed.optimizer_d.param_groups] == [5e-4]


def test_ablation_tool_runs_stage2_then_stage3_from_its_weights(tmp_path):
    tool = runpy.run_path(os.path.join(REPO, "tools", "featsr_ablation.py"))
    args = argparse.Namespace(seeds=[0], output=str(tmp_path), iters=20, stage3_iters=10)
    (stage2, stage3), iters = tool["run_commands"](args, "stage1.pth")
    assert iters == [20, 10]
    assert set(stage2) == set(stage3) == {(v, 0) for v in tool["VARIANTS"]}
    for key, (cmd, out) in stage3.items():
        assert out.endswith(os.path.join(f"{key[0]}_seed0", "stage3"))
        weights = cmd[cmd.index("MODEL.WEIGHTS") + 1]
        assert weights == os.path.join(stage2[key][1], "model_final.pth")
        assert cmd[cmd.index("SOLVER.MAX_ITER") + 1] == "10"
        if key[0] != "base":
            assert cmd[cmd.index("--config-file") + 1].endswith("featsr_MNV2_FPN_synth_stage3.yaml")
    featsr_cmd = stage2[("no_supervision", 0)][0]
    assert featsr_cmd[featsr_cmd.index("MODEL.FEATSR.SUPERVISION") + 1] == "none"
    assert stage2[("featsr", 0)][0][stage2[("featsr", 0)][0].index("MODEL.WEIGHTS") + 1] == (
        "stage1.pth"
    )
