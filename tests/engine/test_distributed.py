"""FeatSR stage 2 under Detectron2's ``launch`` with two CPU processes (gloo): DDP with the two
optimizers keeps the ranks identical, trains G, D and the predictors, and leaves the frozen
backbone and RPN as they were."""

import math
import os
from datetime import timedelta

import pytest
import torch
from detectron2.engine import launch
from detectron2.utils import comm
from test_training import REPO, tiny_cfg

from featsr_d2.data import register_tt100k_instances
from featsr_d2.engine import FeatSRTrainer

ITERS = 3
WORLD_SIZE = 2


def _worker(root: str, train_name: str, test_name: str, output_dir: str, supervision: str):
    register_tt100k_instances(train_name, root, "train")
    register_tt100k_instances(test_name, root, "test")
    cfg = tiny_cfg(
        os.path.join(REPO, "configs", "featsr_MNV2_FPN_synth.yaml"),
        train_name,
        test_name,
        output_dir,
        **{
            "SOLVER.MAX_ITER": ITERS,
            "SOLVER.IMS_PER_BATCH": 2 * WORLD_SIZE,
            "SEED": 0,
            "MODEL.FEATSR.SUPERVISION": supervision,
            # The final evaluation under DDP once is enough.
            "DATASETS.TEST": (test_name,) if supervision == "extractor" else (),
        },
    )
    torch.manual_seed(comm.get_rank())  # different initializations: DDP must broadcast rank 0's
    trainer = FeatSRTrainer(cfg)
    trainer.resume_or_load(resume=False)
    model = trainer.model
    assert isinstance(model, torch.nn.parallel.DistributedDataParallel)
    losses = []
    model.module.register_forward_hook(
        lambda module, args, out: (
            losses.append({k: v.item() for k, v in out.items()}) if module.training else None
        )
    )
    start = {k: v.detach().clone() for k, v in model.module.named_parameters()}
    trainer.train()
    torch.save(
        {
            "start": start,
            "end": {k: v.detach().clone() for k, v in model.module.named_parameters()},
            "trained": [k for k, v in model.module.named_parameters() if v.requires_grad],
            "losses": losses,
        },
        os.path.join(output_dir, f"rank{comm.get_rank()}.pth"),
    )


# "detection_only": no loss reaches the discriminator, which the heads freeze (no unused
# parameters in DDP). Stage 2 freezes the large predictor too.
@pytest.mark.parametrize("supervision", ["extractor", "detection_only"])
def test_featsr_stage2_ddp_two_cpu_processes(supervision, tiny_tt100k, tmp_path):
    train_name, test_name, root = tiny_tt100k
    launch(
        _worker,
        WORLD_SIZE,
        dist_url="auto",
        args=(root, train_name, test_name, str(tmp_path), supervision),
        timeout=timedelta(minutes=3),
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pth") for r in range(WORLD_SIZE)]

    for r in ranks:
        assert len(r["losses"]) == ITERS
        for step in r["losses"]:
            assert "loss_cls_small" in step
            assert ("loss_discriminator" in step) == (supervision == "extractor")
            assert all(math.isfinite(v) for v in step.values()), step
    # Each rank trained on its own images.
    assert ranks[0]["losses"] != ranks[1]["losses"]

    first, second = ranks
    for name, p in first["end"].items():
        assert torch.equal(p, second["end"][name]), f"{name} differs across ranks"
        assert torch.equal(first["start"][name], second["start"][name]), name
    trained = set(first["trained"])
    frozen = [k for k in first["start"] if k not in trained]
    assert any(k.startswith("backbone.") for k in frozen)
    assert any(k.startswith("proposal_generator.") for k in frozen)
    frozen_modules = (
        "backbone.",
        "proposal_generator.",
        "roi_heads.box_head.",
        "roi_heads.box_predictor.",
    )
    assert any(k.startswith("roi_heads.box_predictor.") for k in frozen)
    if supervision == "detection_only":
        frozen_modules += ("roi_heads.featsr.discriminator.",)
        assert any(k.startswith("roi_heads.featsr.discriminator.") for k in frozen)
    assert all(k.startswith(frozen_modules) for k in frozen), frozen
    for r in ranks:
        for name in frozen:
            assert torch.equal(r["start"][name], r["end"][name]), f"frozen {name} changed"

    def changed(prefix):
        return [
            k
            for k in trained
            if k.startswith(prefix) and not torch.equal(first["start"][k], first["end"][k])
        ]

    for module in (
        "roi_heads.featsr.generator.",
        "roi_heads.featsr.small_predictor.",
        "roi_heads.featsr.small_head.",
    ):
        assert changed(module), f"{module} did not change"
    if supervision == "extractor":
        assert changed("roi_heads.featsr.discriminator."), "the discriminator did not change"
    else:
        assert not changed("roi_heads.featsr.discriminator."), "the discriminator has no objective"

    # Both ranks' generator and data states reached rank 0's final checkpoint.
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)
    states = final["trainer"]["hooks"]["TrainingStateHook"]["ranks"]
    assert [s["data"]["next_position"] % WORLD_SIZE for s in states] == [0, 1]
    assert ("optimizer_d" in final) == (supervision == "extractor")  # none for a frozen D
