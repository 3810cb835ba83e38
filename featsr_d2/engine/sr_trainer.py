"""Training of the image super-resolution networks (``tools/train_sr.py``).

:class:`SRTrainer` is a Detectron2 ``TrainerBase`` with Detectron2's hooks: iteration timing, the
learning-rate schedule, atomic periodic checkpoints (:class:`AtomicDetectionCheckpointer`, model +
Adam + scheduler + iteration; ``resume_or_load(resume=True)`` continues from the last complete
one), and the console / ``metrics.json`` / TensorBoard writers. One hook of its own,
:class:`SRSampleHook`, super-resolves a few fixed test crops every ``TEST.SR.SAMPLE_PERIOD``
iterations: their PSNR (and bicubic's) go to the event storage, the side by sides to
``OUTPUT_DIR/samples/`` and to TensorBoard.

Data are :class:`featsr_d2.data.sr_dataset.SRPatchSampler` batches: batch ``k`` depends only on
``INPUT.SR.SEED`` and ``k``, so a resumed run trains on exactly the batches of an uninterrupted one.

Losses (``MODEL.SR.LOSS``): "L1", "MSE" (TDSR's eq. 1) or "Charbonnier"
``mean(sqrt((x - y)^2 + eps^2))``. The optimizer is Adam (``SOLVER.BASE_LR``, ``SOLVER.SR.BETAS``,
``SOLVER.WEIGHT_DECAY``). The schedule is Detectron2's ``SOLVER.LR_SCHEDULER_NAME``
("WarmupMultiStepLR" with ``SOLVER.STEPS``/``GAMMA``, as TDSR's step decay; "WarmupCosineLR"), or
"CosineRestartsLR": cosine annealing from ``BASE_LR`` to ``SOLVER.SR.MIN_LR`` restarted every
``SOLVER.SR.RESTART_PERIOD`` iterations (SGDR with T_mult 1; CAJNN's schedule). Warm-up
(``SOLVER.WARMUP_ITERS``) applies to all of them.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time

import numpy as np
import torch
from detectron2.engine import default_setup, hooks
from detectron2.engine.defaults import default_writers
from detectron2.engine.train_loop import HookBase, TrainerBase
from detectron2.solver import LRMultiplier, WarmupParamScheduler, build_lr_scheduler
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from fvcore.common.param_scheduler import ParamScheduler
from torch import nn

from featsr_d2.checkpoint import AtomicDetectionCheckpointer, load_initial_sr_weights
from featsr_d2.config import get_sr_cfg
from featsr_d2.core.degradations import degrade, mod_crop
from featsr_d2.core.layers.imresize import imresize
from featsr_d2.core.sr.losses import charbonnier_loss
from featsr_d2.data.sr_dataset import SRPatchSampler, read_rgb, resolve_sr_images
from featsr_d2.data.sr_degradation import build_sr_degradation
from featsr_d2.engine.setup import cpu_without_cuda, hold_output_folder
from featsr_d2.evaluation.sr_inference import super_resolve
from featsr_d2.evaluation.sr_metrics import psnr
from featsr_d2.evaluation.sr_visualize import side_by_side, write_png
from featsr_d2.modeling.sr.losses import build_sr_loss
from featsr_d2.modeling.sr.registry import build_sr_network
from featsr_d2.utils.image import rgb_to_tensor, tensor_to_rgb

__all__ = [
    "CosineRestartsParamScheduler",
    "SRSampleHook",
    "SRTrainer",
    "build_sr_loss",
    "build_sr_lr_scheduler",
    "build_sr_optimizer",
    "charbonnier_loss",
    "setup_sr",
]

logger = logging.getLogger(__name__)


def build_sr_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """Adam over the trainable parameters of ``model``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    return torch.optim.Adam(
        params,
        lr=cfg.SOLVER.BASE_LR,
        betas=tuple(cfg.SOLVER.SR.BETAS),
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
    )


class CosineRestartsParamScheduler(ParamScheduler):
    """Cosine annealing from 1 to ``end_value`` restarted every ``period`` of ``max_iter``
    iterations (SGDR with T_mult = 1), as a multiplier of the base learning rate."""

    def __init__(self, period: int, max_iter: int, end_value: float):
        if period < 1 or max_iter < 1:
            raise ValueError(f"period and max_iter must be positive, got {period}, {max_iter}")
        if not 0.0 <= end_value <= 1.0:
            raise ValueError(f"end_value must be in [0, 1], got {end_value}")
        self.period = period
        self.max_iter = max_iter
        self.end_value = end_value

    def __call__(self, where: float) -> float:
        iteration = round(where * self.max_iter)
        t = (iteration % self.period) / self.period
        return self.end_value + (1.0 - self.end_value) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_sr_lr_scheduler(cfg, optimizer: torch.optim.Optimizer):
    """The schedule of ``cfg.SOLVER.LR_SCHEDULER_NAME``; "CosineRestartsLR" is added here, the
    others are Detectron2's."""
    if cfg.SOLVER.LR_SCHEDULER_NAME != "CosineRestartsLR":
        return build_lr_scheduler(cfg, optimizer)
    max_iter = cfg.SOLVER.MAX_ITER
    sched = CosineRestartsParamScheduler(
        cfg.SOLVER.SR.RESTART_PERIOD, max_iter, cfg.SOLVER.SR.MIN_LR / cfg.SOLVER.BASE_LR
    )
    if cfg.SOLVER.WARMUP_ITERS > 0:
        sched = WarmupParamScheduler(
            sched,
            cfg.SOLVER.WARMUP_FACTOR,
            min(cfg.SOLVER.WARMUP_ITERS / max_iter, 1.0),
            cfg.SOLVER.WARMUP_METHOD,
            cfg.SOLVER.RESCALE_INTERVAL,
        )
    return LRMultiplier(optimizer, multiplier=sched, max_iter=max_iter)


class SRSampleHook(HookBase):
    """Every ``period`` iterations and after the last one: super-resolve fixed crops of test
    images, put their mean Y-PSNR (``sample/psnr``, and bicubic's ``sample/psnr_bicubic``) in the
    event storage and write the side by sides (input, bicubic, output, ground truth) to
    ``output_dir/samples/iter_<iteration, 7 digits>.png`` and TensorBoard."""

    def __init__(self, *, period: int, pairs: list[tuple[np.ndarray, np.ndarray]], output_dir: str):
        self.period = period
        self.pairs = pairs
        self.output_dir = output_dir

    @classmethod
    def from_config(cls, cfg) -> SRSampleHook:
        """Crops of the first ``TEST.SR.NUM_SAMPLES`` images of ``DATASETS.SR.TEST``, degraded
        by the training pipeline (seeded by the image index)."""
        scale = cfg.MODEL.SR.SCALE
        degradation = build_sr_degradation(cfg)
        pairs = []
        paths = resolve_sr_images(cfg.DATASETS.SR.TEST)[: cfg.TEST.SR.NUM_SAMPLES]
        for k, path in enumerate(paths):
            hr = read_rgb(path)
            crop = cfg.TEST.SR.SAMPLE_CROP
            if crop:
                h, w = hr.shape[:2]
                ch, cw = min(crop, h), min(crop, w)
                y, x = (h - ch) // 2, (w - cw) // 2
                hr = hr[y : y + ch, x : x + cw]
            hr = np.ascontiguousarray(mod_crop(hr, scale))
            lr = degrade(hr, degradation, k)
            pairs.append((lr, hr))
        return cls(period=cfg.TEST.SR.SAMPLE_PERIOD, pairs=pairs, output_dir=cfg.OUTPUT_DIR)

    @torch.no_grad()
    def sample(self, model: nn.Module, iteration: int) -> dict[str, float]:
        model_was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        rows, scores, bicubic_scores = [], [], []
        try:
            for lr, hr in self.pairs:
                out = super_resolve(model, lr, device)
                x = rgb_to_tensor(lr).to(device)
                bic = tensor_to_rgb(imresize(x.double(), float(model.scale))[0])
                border = model.scale
                scores.append(psnr(out, hr, crop_border=border))
                bicubic_scores.append(psnr(bic, hr, crop_border=border))
                rows.append(
                    side_by_side([("input", lr), ("bicubic", bic), ("output", out), ("GT", hr)])
                )
        finally:
            model.train(model_was_training)
        width = max(r.shape[1] for r in rows)
        grid = np.concatenate(
            [
                np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255)
                for r in rows
            ]
        )
        write_png(os.path.join(self.output_dir, "samples", f"iter_{iteration:07d}.png"), grid)
        return {
            "grid": grid,
            "sample/psnr": float(np.mean(scores)),
            "sample/psnr_bicubic": float(np.mean(bicubic_scores)),
        }

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if not self.pairs or self.period <= 0:
            return
        if next_iter % self.period == 0 or next_iter == self.trainer.max_iter:
            result = self.sample(self.trainer.model, self.trainer.iter)
            storage = self.trainer.storage
            storage.put_scalars(
                **{k: v for k, v in result.items() if k.startswith("sample/")},
                smoothing_hint=False,
            )
            storage.put_image("samples", result["grid"].transpose(2, 0, 1))
            logger.info(
                "iter %d: sample PSNR %.2f dB (bicubic %.2f dB)",
                self.trainer.iter, result["sample/psnr"], result["sample/psnr_bicubic"],
            )  # fmt: skip


class SRTrainer(TrainerBase):
    """Trains ``cfg.MODEL.SR.NAME`` on ``DATASETS.SR.TRAIN``; see the module docstring.

    Usage::

        trainer = SRTrainer(cfg)
        trainer.resume_or_load(resume=True)
        trainer.train()
    """

    def __init__(self, cfg):
        super().__init__()
        hold_output_folder(cfg)  # one run per OUTPUT_DIR
        self.cfg = cfg
        self.device = torch.device(cfg.MODEL.DEVICE)
        self.model = build_sr_network(cfg)
        self.model.train()
        self.loss_fn = build_sr_loss(cfg)
        self.optimizer = build_sr_optimizer(cfg, self.model)
        self.scheduler = build_sr_lr_scheduler(cfg, self.optimizer)
        self.sampler = SRPatchSampler(cfg)
        self.checkpointer = AtomicDetectionCheckpointer(
            self.model, cfg.OUTPUT_DIR, optimizer=self.optimizer, scheduler=self.scheduler
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.register_hooks(self.build_hooks())

    def build_hooks(self) -> list[HookBase]:
        cfg = self.cfg
        result: list[HookBase | None] = [
            hooks.IterationTimer(),
            hooks.LRScheduler(),
            hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD),
            SRSampleHook.from_config(cfg) if cfg.TEST.SR.SAMPLE_PERIOD > 0 else None,
        ]
        if comm.is_main_process():
            # Written last, so that it sees every scalar of the iteration (samples included).
            result.append(hooks.PeriodicWriter(default_writers(cfg.OUTPUT_DIR, self.max_iter), 20))
        return [h for h in result if h is not None]

    def resume_or_load(self, resume: bool = True) -> None:
        """With ``resume`` and a checkpoint in ``OUTPUT_DIR``: load model, optimizer, scheduler and
        continue after its iteration. Otherwise load the initial weights (``MODEL.SR.WEIGHTS``, else
        ``MODEL.SR.WARM_START``) and start at 0."""
        if resume and self.checkpointer.has_checkpoint():
            checkpoint = self.checkpointer.resume_or_load("", resume=True)
            self.start_iter = checkpoint.get("iteration", -1) + 1
            logger.info("Resuming SR training at iteration %d", self.start_iter)
        else:
            load_initial_sr_weights(
                self.model,
                weights=self.cfg.MODEL.SR.WEIGHTS,
                warm_start=self.cfg.MODEL.SR.WARM_START,
            )
            self.start_iter = 0

    def train(self) -> None:
        super().train(self.start_iter, self.max_iter)

    def run_step(self) -> None:
        start = time.perf_counter()
        lr, hr = self.sampler.batch(self.iter)
        lr, hr = lr.to(self.device), hr.to(self.device)
        data_time = time.perf_counter() - start
        loss = self.loss_fn(self.model(lr), hr)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at iteration {self.iter}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        name = f"loss_{self.cfg.MODEL.SR.LOSS.lower()}"
        self.storage.put_scalars(**{name: loss.item()}, total_loss=loss.item(), data_time=data_time)


def setup_sr(args: argparse.Namespace):
    """The config of an SR tool run from Detectron2's ``default_argument_parser`` arguments:
    Detectron2's defaults, featsr_d2's and the SR keys, the file, the overrides; frozen. Holds
    ``OUTPUT_DIR`` (one run per folder), then Detectron2's ``default_setup`` (output folder, config
    dump, seeds, loggers). ``MODEL.DEVICE`` falls back to cpu when it names CUDA and none is
    available."""
    cfg = cpu_without_cuda(get_sr_cfg(args.config_file, args.opts))
    cfg.freeze()
    hold_output_folder(cfg)  # before default_setup writes config.yaml and the log there
    default_setup(cfg, args)
    setup_logger(
        cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="featsr_d2", abbrev_name="featsr"
    )
    return cfg
