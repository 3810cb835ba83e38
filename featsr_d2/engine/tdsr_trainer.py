"""The trainer of TDSR configs (``MODEL.META_ARCHITECTURE: "TaskDrivenSR"``): SR-FT, SR-FT+ and
TDSR runs of :class:`featsr_d2.modeling.meta_arch.task_driven_sr.TaskDrivenSR`.

It is :class:`FeatSRTrainer` (Detectron2's loop and hooks, atomic checkpoints, resume, the TT100K /
COCO evaluators) with:

- the optimizer of TDSR section 4.1: Adam (``SOLVER.BASE_LR``, betas ``SOLVER.SR.BETAS``,
  ``SOLVER.WEIGHT_DECAY``) over the SR network's parameters only. The frozen detector has no
  trainable parameter, so it has no optimizer state; :meth:`TDSRTrainer.build_optimizer` checks it;
- the schedule: Detectron2's ``SOLVER.LR_SCHEDULER_NAME`` (the configs: divided by 10 at 2/3 of the
  run, ``SOLVER.STEPS``);
- the checkpointer: :class:`featsr_d2.checkpoint.tdsr_checkpointer.TDSRCheckpointer` (chosen by
  :func:`featsr_d2.checkpoint.build_checkpointer`), which loads the frozen detector's weights and
  the SR network's initial ones at :meth:`resume_or_load` unless the checkpoint holds them (the
  model is built without weights);
- data through :class:`featsr_d2.data.lr_mapper.LRDetectionDatasetMapper`: the detector's
  augmentations (its config's ``INPUT``) make the HR image and its boxes, the degradation pipeline
  (``INPUT.SR``) the LR input, for training and for the evaluations.
"""

from __future__ import annotations

from detectron2.data import build_detection_test_loader
from torch.nn.parallel import DistributedDataParallel

from featsr_d2.config import get_detector_cfg
from featsr_d2.data.lr_mapper import LRDetectionDatasetMapper
from featsr_d2.data.resumable_loader import build_resumable_train_loader
from featsr_d2.engine.sr_trainer import build_sr_optimizer
from featsr_d2.engine.trainer import FeatSRTrainer

__all__ = ["TDSRTrainer", "build_lr_detection_mapper"]


def build_lr_detection_mapper(cfg, is_train: bool) -> LRDetectionDatasetMapper:
    """The mapper of a TDSR config: the detector config's ``INPUT``, the TDSR config's ``INPUT.SR``
    and ``MODEL.SR.SCALE``."""
    return LRDetectionDatasetMapper(cfg, is_train, detector_cfg=get_detector_cfg(cfg))


class TDSRTrainer(FeatSRTrainer):
    """Trains the SR stage of a ``TaskDrivenSR`` model; see the module docstring."""

    @classmethod
    def build_optimizer(cls, cfg, model):
        module = model.module if isinstance(model, DistributedDataParallel) else model
        detector_params = {id(p) for p in module.detector.parameters()}
        optimizer = build_sr_optimizer(cfg, module)
        held = [p for g in optimizer.param_groups for p in g["params"] if id(p) in detector_params]
        if held:
            raise RuntimeError(f"the optimizer holds {len(held)} parameters of the frozen detector")
        return optimizer

    @classmethod
    def build_train_loader(cls, cfg):
        # The resumable stream: batches and degradations are a function of (seed, position), so a
        # resumed TDSR run continues exactly (see featsr_d2.engine.trainer).
        return build_resumable_train_loader(cfg, mapper=build_lr_detection_mapper(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(
            cfg, dataset_name, mapper=build_lr_detection_mapper(cfg, False)
        )
