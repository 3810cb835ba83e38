"""FeatSR's SR feature discriminator and losses (Noh et al., ICCV 2019, section 4.2, eqs. 4-6).

The discriminator is a three-layer MLP on the flattened RoI feature that outputs the logit of the
feature being a high-resolution target T rather than a super-resolved S. The paper gives no widths;
flattening a C4 RoI feature (1024 x 14 x 14) into a 1024-wide layer would take 205M parameters, so
the feature is first average-pooled to ``pool_size`` x ``pool_size`` (4: 16.8M parameters;
``MODEL.FEATSR.DISCRIMINATOR.POOL_SIZE`` in configs).

The losses are written with logits (numerically stable) and averaged over RoIs instead of summed,
so that their weights do not depend on the number of RoIs:

- content (eq. 4): the squared L2 distance ``||T_i - S_i||^2`` divided by the feature's size
  (C x H x W) and averaged over RoIs; the constant factor relative to the paper's sum is absorbed
  in the content weight (``MODEL.FEATSR.CONTENT_WEIGHT``) and keeps the loss on the scale of the
  detection losses;
- generator (eq. 5): mean of ``-log D(S_i)``;
- discriminator (eq. 6): mean of ``-log D(T_i) - log(1 - D(S_i))``, with S detached so that only the
  discriminator learns from it.
"""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SRFeatureDiscriminator",
    "content_loss",
    "discriminator_loss",
    "generator_adversarial_loss",
]


class SRFeatureDiscriminator(nn.Module):
    """A three-layer MLP: flattened RoI feature -> hidden -> hidden -> one logit."""

    def __init__(
        self, *, input_shape: tuple[int, int, int], hidden_dim: int = 1024, pool_size: int = 4
    ):
        """
        Args:
            input_shape: (channels, height, width) of the RoI features it judges.
            hidden_dim: width of the two hidden layers.
            pool_size: average-pool the features to this size first (0: keep their size).
        """
        super().__init__()
        self.input_shape = tuple(input_shape)
        c, h, w = self.input_shape
        if pool_size:
            h, w = min(h, pool_size), min(w, pool_size)
        self.mlp = nn.Sequential(
            nn.AdaptiveAvgPool2d((h, w)),
            nn.Flatten(),
            nn.Linear(c * h * w, hidden_dim),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden_dim, hidden_dim),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden_dim, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) RoI features -> (N,) logits."""
        if tuple(features.shape[1:]) != self.input_shape:
            raise ValueError(
                f"expected RoI features of shape (N, {self.input_shape}), "
                f"got {tuple(features.shape)}"
            )
        return self.mlp(features).squeeze(1)

    def extra_repr(self) -> str:
        return f"input_shape={self.input_shape}"


def content_loss(sr: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 4 per feature element: mean_i ||T_i - S_i||^2 / (C H W). Zero (with a graph) for no
    RoIs."""
    if sr.shape != target.shape:
        raise ValueError(f"SR features {tuple(sr.shape)} and targets {tuple(target.shape)} differ")
    if sr.shape[0] == 0:
        return sr.sum() * 0.0
    return (sr - target).pow(2).mean()


def generator_adversarial_loss(logits_sr: torch.Tensor) -> torch.Tensor:
    """Eq. 5, averaged: mean_i -log D(S_i)."""
    if logits_sr.numel() == 0:
        return logits_sr.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits_sr, torch.ones_like(logits_sr))


def discriminator_loss(logits_target: torch.Tensor, logits_sr: torch.Tensor) -> torch.Tensor:
    """Eq. 6, averaged: mean_i -log D(T_i) - log(1 - D(S_i)); pass logits of detached S."""
    if logits_target.numel() == 0:
        return logits_target.sum() * 0.0 + logits_sr.sum() * 0.0
    real = F.binary_cross_entropy_with_logits(logits_target, torch.ones_like(logits_target))
    fake = F.binary_cross_entropy_with_logits(logits_sr, torch.zeros_like(logits_sr))
    return real + fake
