"""What ``tools/mmdet_train.py`` and ``tools/mmdet_test.py`` do beyond parsing their arguments,
as MMDetection's own ``tools/train.py`` and ``tools/test.py`` do it: read the config (a file, or
``mmdet::<path>`` for a config MMDetection ships), apply ``--cfg-options``, pick the work dir
(``--work-dir``, else the config's ``work_dir``, else ``work_dirs/<config name>``), and the
training or testing options; then build mmengine's ``Runner`` and run it with mmengine's own
checkpoints readable (:func:`featsr_d2.mmdet.checkpoints.mmengine_checkpoints_loadable`: PyTorch
>= 2.6 refuses them otherwise, and ``--resume`` would fail).
"""

from __future__ import annotations

import argparse
import os
import os.path as osp

from mmdet.evaluation import DumpDetResults
from mmdet.utils import setup_cache_size_limit_of_dynamo
from mmengine.config import Config, DictAction
from mmengine.hub import get_config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from featsr_d2.mmdet.checkpoints import mmengine_checkpoints_loadable

__all__ = ["add_runner_arguments", "load_config", "parse_runner_args", "test", "train"]


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments MMDetection's tools/train.py and tools/test.py share: ``--cfg-options``,
    ``--launcher`` and ``--local_rank``."""
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction,
        help="override config settings, key=value (lists: key='[a,b]' or key=a,b)",
    )  # fmt: skip
    parser.add_argument(
        "--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
        help="job launcher",
    )  # fmt: skip
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)


def parse_runner_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parses ``argv`` and sets ``LOCAL_RANK`` from ``--local_rank`` unless the launcher set it."""
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def load_config(
    path: str,
    *,
    cfg_options: dict | None = None,
    work_dir: str | None = None,
    launcher: str = "none",
) -> Config:
    """The config of ``path`` with the command line's options applied (see the module docstring)."""
    cfg = get_config(path) if "::" in path else Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir", None) is None:
        name = osp.splitext(osp.basename(path.split("::")[-1]))[0]
        cfg.work_dir = osp.join("./work_dirs", name)
    return cfg


def _runner(cfg: Config) -> Runner:
    setup_cache_size_limit_of_dynamo()
    return Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)


def train(
    cfg: Config, *, resume: str | None = None, amp: bool = False, auto_scale_lr: bool = False
) -> None:
    """Trains ``cfg``. ``resume``: "auto" continues from the work dir's last checkpoint (a fresh
    start when there is none), a path from that checkpoint; ``amp``: mixed precision
    (``AmpOptimWrapper``, dynamic loss scale); ``auto_scale_lr``: scale the learning rate to the
    batch size (the config's ``auto_scale_lr``)."""
    if amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    if auto_scale_lr:
        if "enable" not in cfg.get("auto_scale_lr", {}) or "base_batch_size" not in cfg.get(
            "auto_scale_lr", {}
        ):
            raise RuntimeError(
                "--auto-scale-lr needs auto_scale_lr = dict(enable=..., base_batch_size=...) in "
                "the config"
            )
        cfg.auto_scale_lr.enable = True
    if resume == "auto":
        cfg.resume = True
        cfg.load_from = None
    elif resume is not None:
        cfg.resume = True
        cfg.load_from = resume
    runner = _runner(cfg)
    with mmengine_checkpoints_loadable():
        runner.train()


def test(cfg: Config, checkpoint: str, *, out: str | None = None) -> dict:
    """Evaluates ``checkpoint`` with ``cfg``'s test data and metrics; ``out`` also dumps the
    predictions to a pickle file (``.pkl`` or ``.pickle``). Returns the metrics."""
    if out is not None and not out.endswith((".pkl", ".pickle")):
        raise ValueError(f"--out must name a .pkl or .pickle file, got {out!r}")
    cfg.load_from = checkpoint
    runner = _runner(cfg)
    if out is not None:
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=out))
    with mmengine_checkpoints_loadable():
        return runner.test()
