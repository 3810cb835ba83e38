"""The reconstruction loss a config names (``MODEL.SR.LOSS``), shared by SR training
(:mod:`featsr_d2.engine.sr_trainer`) and TDSR's L_rec
(:mod:`featsr_d2.modeling.meta_arch.task_driven_sr`).
"""

from __future__ import annotations

from featsr_d2.core.sr.losses import reconstruction_loss

__all__ = ["build_sr_loss"]


def build_sr_loss(cfg):
    """The loss of ``cfg.MODEL.SR.LOSS`` as ``loss(output, target) -> scalar``: "L1", "MSE"
    (TDSR's eq. 1) or "Charbonnier" (epsilon ``MODEL.SR.CHARBONNIER_EPS``)."""
    return reconstruction_loss(
        cfg.MODEL.SR.LOSS, cfg.MODEL.SR.CHARBONNIER_EPS, setting="MODEL.SR.LOSS"
    )
