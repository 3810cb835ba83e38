"""The paper's phases as runs: each FeatSR stage refuses weights that do not hold what it freezes
(issue 12, point 3), and a changed discriminator rate is applied on resume (point 7)."""

import os

import pytest
import torch
from common import tiny_featsr_cfg
from detectron2.modeling import build_model

from featsr_d2.checkpoint import WeightsFileError
from featsr_d2.engine import FeatSRTrainer

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
