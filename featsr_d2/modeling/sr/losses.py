"""The reconstruction loss a config names (``MODEL.SR.LOSS``), shared by SR training
(:mod:`featsr_d2.engine.sr_trainer`) and TDSR's L_rec
(:mod:`featsr_d2.modeling.meta_arch.task_driven_sr`).
"""

from __future__ import annotations

import torch.nn.functional as F

from featsr_d2.core.sr.losses import charbonnier_loss

__all__ = ["build_sr_loss"]


def build_sr_loss(cfg):
    """The loss of ``cfg.MODEL.SR.LOSS`` as ``loss(output, target) -> scalar``: "L1", "MSE"
    (TDSR's eq. 1) or "Charbonnier" (epsilon ``MODEL.SR.CHARBONNIER_EPS``)."""
    name = cfg.MODEL.SR.LOSS.lower()
    if name == "l1":
        return F.l1_loss
    if name == "mse":
        return F.mse_loss
    if name == "charbonnier":
        eps = float(cfg.MODEL.SR.CHARBONNIER_EPS)
        return lambda x, y: charbonnier_loss(x, y, eps)
    raise ValueError(f"MODEL.SR.LOSS must be L1, MSE or Charbonnier, got {cfg.MODEL.SR.LOSS!r}")
