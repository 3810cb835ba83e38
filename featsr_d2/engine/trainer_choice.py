"""Which trainer a config needs, so that ``tools/train_net.py`` trains every config of the
repository: :class:`~featsr_d2.engine.tdsr_trainer.TDSRTrainer` for the ``TaskDrivenSR``
meta-architecture, :class:`~featsr_d2.engine.trainer.FeatSRTrainer` for the detectors."""

from __future__ import annotations

from featsr_d2.engine.tdsr_trainer import TDSRTrainer
from featsr_d2.engine.trainer import FeatSRTrainer

__all__ = ["build_trainer", "trainer_class"]


def trainer_class(cfg) -> type[FeatSRTrainer]:
    """The trainer class of ``cfg`` (its ``build_model``, ``test`` and constructor)."""
    if cfg.MODEL.META_ARCHITECTURE == "TaskDrivenSR":
        return TDSRTrainer
    return FeatSRTrainer


def build_trainer(cfg) -> FeatSRTrainer:
    """``trainer_class(cfg)(cfg)``."""
    return trainer_class(cfg)(cfg)
