"""Reconstruction losses of the SR networks beyond PyTorch's own (L1 and MSE are
``torch.nn.functional``'s); a Detectron2 config picks one by name
(:func:`featsr_d2.modeling.sr.losses.build_sr_loss`).
"""

from __future__ import annotations

import torch

__all__ = ["charbonnier_loss"]


def charbonnier_loss(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``mean(sqrt((x - y)^2 + eps^2))``, a differentiable L1."""
    return torch.sqrt((x - y) ** 2 + eps * eps).mean()
