"""Which checkpointer a config's model needs."""

from featsr_d2.checkpoint.detection_checkpointer import AtomicDetectionCheckpointer
from featsr_d2.checkpoint.tdsr_checkpointer import TDSRCheckpointer

__all__ = ["build_checkpointer"]


def build_checkpointer(cfg, model, save_dir: str = "", **kwargs) -> AtomicDetectionCheckpointer:
    """:class:`TDSRCheckpointer` for the ``TaskDrivenSR`` meta-architecture (it also loads the
    frozen detector's and the SR network's initial weights), else
    :class:`AtomicDetectionCheckpointer`; ``kwargs`` go to the constructor."""
    if cfg.MODEL.META_ARCHITECTURE == "TaskDrivenSR":
        return TDSRCheckpointer.from_config(cfg, model, save_dir, **kwargs)
    return AtomicDetectionCheckpointer(model, save_dir, **kwargs)
