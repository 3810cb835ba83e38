"""Reconstruction losses of the SR networks: L1 and MSE (``torch.nn.functional``'s) and the
Charbonnier loss, by name (:func:`reconstruction_loss`: a Detectron2 config's ``MODEL.SR.LOSS``,
:func:`featsr_d2.modeling.sr.losses.build_sr_loss`; an MMDetection TDSR config's
``reconstruction_loss``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["RECONSTRUCTION_LOSSES", "charbonnier_loss", "reconstruction_loss"]

# The names :func:`reconstruction_loss` takes (case-insensitive).
RECONSTRUCTION_LOSSES = ("L1", "MSE", "Charbonnier")


def charbonnier_loss(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``mean(sqrt((x - y)^2 + eps^2))``, a differentiable L1."""
    return torch.sqrt((x - y) ** 2 + eps * eps).mean()


def reconstruction_loss(
    name: str, charbonnier_eps: float = 1e-3, setting: str = "the reconstruction loss"
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss ``name`` as ``loss(output, target) -> scalar``: "L1", "MSE" (TDSR's eq. 1) or
    "Charbonnier" (epsilon ``charbonnier_eps``); ``setting`` is how an error names ``name``."""
    lowered = name.lower()
    if lowered == "l1":
        return F.l1_loss
    if lowered == "mse":
        return F.mse_loss
    if lowered == "charbonnier":
        eps = float(charbonnier_eps)
        return lambda x, y: charbonnier_loss(x, y, eps)
    raise ValueError(f"{setting} must be L1, MSE or Charbonnier, got {name!r}")
