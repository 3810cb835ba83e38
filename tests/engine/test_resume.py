"""Exact resume: N iterations straight and N/2, a crash, then N/2 more from the checkpoint in
fresh trainer objects give bit-identical parameters and optimizer states (stage 1 Faster R-CNN and
stage 2 FeatSRRCNN)."""

import os
import random

import numpy as np
import pytest
import torch
from test_training import REPO, tiny_cfg
from train_hooks import StopAfter

from featsr_d2.engine import FeatSRTrainer

N = 4  # iterations; the crash comes right after the checkpoint of iteration N/2 - 1


def _train(cfg, *, resume: bool, crash_at: int | None = None, seed: int = 0):
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    trainer = FeatSRTrainer(cfg)
    if crash_at is not None:
        trainer.register_hooks([StopAfter(crash_at)])
    trainer.resume_or_load(resume=resume)
    if crash_at is None:
        trainer.train()
    else:
        with pytest.raises(KeyboardInterrupt):
            trainer.train()
    return trainer


def _assert_equal(a, b, where: str):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize(
    "config, workers",
    [("faster_rcnn_MNV2_FPN_synth.yaml", 2), ("featsr_MNV2_FPN_synth.yaml", 0)],
    ids=["stage1", "stage2"],
)
def test_resumed_run_equals_uninterrupted_run(config, workers, tiny_tt100k, tmp_path):
    train_name, test_name, _ = tiny_tt100k

    def cfg_in(folder):
        return tiny_cfg(
            os.path.join(REPO, "configs", config),
            train_name,
            test_name,
            tmp_path / folder,
            **{
                "SOLVER.MAX_ITER": N,
                "SOLVER.CHECKPOINT_PERIOD": N // 2,
                "SOLVER.WARMUP_ITERS": 2,  # the schedule changes inside the run
                "DATALOADER.NUM_WORKERS": workers,
                "SEED": -1,  # the data seed is drawn, and must come back from the checkpoint
            },
        )

    straight = _train(cfg_in("straight"), resume=False)
    _train(cfg_in("resumed"), resume=False, crash_at=N // 2 - 1)
    # Fresh objects, other global generators: all that matters must come from the checkpoint.
    resumed = _train(cfg_in("resumed"), resume=True, seed=123)
    assert resumed.start_iter == N // 2
    assert resumed.iter == straight.iter == N

    params = dict(straight.model.named_parameters())
    resumed_params = dict(resumed.model.named_parameters())
    assert params.keys() == resumed_params.keys()
    for name, p in params.items():
        assert torch.equal(p, resumed_params[name]), name
    optimizers = ["optimizer"] + (["optimizer_d"] if "featsr" in config else [])
    for name in optimizers:
        state = getattr(straight, name).state_dict()
        assert state["state"], f"{name} has no state to compare"
        _assert_equal(state, getattr(resumed, name).state_dict(), name)
    _assert_equal(straight.scheduler.state_dict(), resumed.scheduler.state_dict(), "scheduler")
    last_loss = [t.storage.history("total_loss").values()[-1] for t in (straight, resumed)]
    assert last_loss[0] == last_loss[1]
