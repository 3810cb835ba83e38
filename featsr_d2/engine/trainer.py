"""The trainer behind ``tools/train_net.py``: Detectron2's DefaultTrainer with featsr_d2's
evaluators, atomic checkpoints, and FeatSR's discriminator optimizer.

For a model with a FeatSR discriminator (``roi_heads.discriminator``), the SGD optimizer of
``SOLVER`` leaves the discriminator out, and the discriminator gets its own Adam optimizer
(``MODEL.FEATSR.DISCRIMINATOR_LR``), stepped after every iteration from the same backward pass
(the ROI heads arrange that each loss reaches only its own module; see
``featsr_d2.modeling.roi_heads.featsr_roi_heads``). Both optimizers are checkpointed, so a stage-2
run resumes exactly where it stopped.
"""

import contextlib
import os

import torch
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer, HookBase
from detectron2.evaluation import COCOEvaluator
from torch.nn.parallel import DistributedDataParallel

from featsr_d2.engine.checkpoint import AtomicDetectionCheckpointer
from featsr_d2.evaluation import TT100KEvaluator


def build_featsr_evaluator(cfg, dataset_name: str, output_folder: str | None = None):
    """The official TT100K protocol for TT100K-format datasets; COCO-style AP (AP, AP50, AP75,
    AP-S/M/L) for every other registered dataset, VOC included."""
    output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    if MetadataCatalog.get(dataset_name).get("evaluator_type") == "tt100k":
        return TT100KEvaluator(
            dataset_name,
            output_folder,
            iou=cfg.TEST.TT100K.IOU,
            min_score=cfg.TEST.TT100K.MIN_SCORE,
            types=cfg.TEST.TT100K.TYPES,
            save_plots=cfg.TEST.TT100K.SAVE_PLOTS,
            num_vis_images=cfg.TEST.TT100K.NUM_VIS_IMAGES,
        )
    return COCOEvaluator(dataset_name, output_dir=output_folder)


def discriminator_of(model: torch.nn.Module) -> torch.nn.Module | None:
    """The FeatSR discriminator of ``model`` (DDP-wrapped or not), or None."""
    if isinstance(model, DistributedDataParallel):
        model = model.module
    return getattr(getattr(model, "roi_heads", None), "discriminator", None)


@contextlib.contextmanager
def _without_grad(module: torch.nn.Module):
    """Temporarily mark ``module``'s parameters as not trainable."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class DiscriminatorStep(HookBase):
    """Steps the discriminator's optimizer after each iteration's backward pass."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer

    def after_step(self):
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class FeatSRTrainer(DefaultTrainer):
    """DefaultTrainer with TT100K/COCO-style evaluation, atomic resumable checkpoints, and the
    discriminator's own optimizer for FeatSR models."""

    def build_hooks(self):
        # DefaultTrainer.__init__ creates a plain DetectionCheckpointer right before it calls this;
        # swap in the atomic one so that the periodic checkpointer and resume both use it.
        plain = self.checkpointer
        self.checkpointer = AtomicDetectionCheckpointer(
            plain.model, plain.save_dir, **plain.checkpointables
        )
        hooks = super().build_hooks()
        discriminator = discriminator_of(self.model)
        if discriminator is not None:
            self.optimizer_d = torch.optim.Adam(
                discriminator.parameters(),
                lr=self.cfg.MODEL.FEATSR.DISCRIMINATOR_LR,
                betas=(0.5, 0.999),
            )
            self.checkpointer.add_checkpointable("optimizer_d", self.optimizer_d)
            hooks.insert(0, DiscriminatorStep(self.optimizer_d))
        return hooks

    @classmethod
    def build_optimizer(cls, cfg, model):
        discriminator = discriminator_of(model)
        if discriminator is None:
            return super().build_optimizer(cfg, model)
        with _without_grad(discriminator):  # the discriminator has its own optimizer
            return super().build_optimizer(cfg, model)

    def train(self):
        """Train, then return the final evaluation's results (DefaultTrainer returns them only when
        TEST.EXPECTED_RESULTS is set)."""
        super().train()
        return getattr(self, "_last_eval_results", None)  # set by DefaultTrainer's EvalHook

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_featsr_evaluator(cfg, dataset_name, output_folder)
