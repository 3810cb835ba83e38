"""FeatSR's own part of the box branch (Noh et al., ICCV 2019, sections 4.2-4.4): the SR feature
generator G, the discriminator D and the small predictor, one child (``featsr``) of a FeatSR ROI
head (Detectron2's: :mod:`featsr_d2.modeling.roi_heads.featsr_roi_heads`), which pools the RoI
features, routes the proposals (:mod:`featsr_d2.core.featsr.small_proposals`) and computes the
small predictor's detection losses with its framework's box predictor.

- G super-resolves the base RoI feature of a small proposal, given the sub layer's RoI feature
  pooled at the same box (:meth:`FeatSRBoxBranch.forward`);
- the small predictor (``small_head``: a replica of what stands between a RoI feature and the
  large predictor, e.g. ``res5`` (C4) or ``box_head`` (FPN), and ``small_predictor``: of the box
  predictor) classifies and regresses G's output; its losses are weighted by
  ``detection_weight``;
- D, the three-layer MLP, tells G's output on a 0.5x RoI from the target feature of the same
  object at 1.0x; the content (eq. 4), adversarial (eq. 5) and discriminator (eq. 6) losses of
  such pairs are :meth:`FeatSRBoxBranch.sr_losses`.
"""

import torch
from torch import nn
from torch.func import functional_call

from featsr_d2.core.featsr.sr_feature_discriminator import (
    SRFeatureDiscriminator,
    content_loss,
    discriminator_loss,
    generator_adversarial_loss,
)
from featsr_d2.core.featsr.sr_feature_generator import SRFeatureGenerator

__all__ = ["FeatSRBoxBranch"]


class FeatSRBoxBranch(nn.Module):
    """G, D and the small predictor of the FeatSR heads, and the losses of eqs. 4-6."""

    def __init__(
        self,
        *,
        generator: SRFeatureGenerator,
        discriminator: SRFeatureDiscriminator,
        small_head: nn.Module,
        small_predictor: nn.Module,
        content_weight: float,
        adversarial_weight: float,
        detection_weight: float,
    ):
        """
        Args:
            generator: G.
            discriminator: D.
            small_head: what stands between G's output and the small predictor (a replica of the
                large predictor's ``res5`` or ``box_head``).
            small_predictor: the small proposals' box predictor.
            content_weight, adversarial_weight: weights of eqs. 4 and 5 in G's objective.
            detection_weight: weight of the small predictor's losses.
        """
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.small_head = small_head
        self.small_predictor = small_predictor
        self.content_weight = content_weight
        self.adversarial_weight = adversarial_weight
        self.detection_weight = detection_weight

    def forward(self, base: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
        """G's super-resolved RoI features from the base and sub RoI features."""
        return self.generator(base, sub)

    def sr_losses(
        self, lr_base: torch.Tensor, lr_sub: torch.Tensor, target: torch.Tensor, *, content: bool
    ) -> dict[str, torch.Tensor]:
        """Losses of eqs. 4-6 on pairs of 0.5x RoI features (``lr_base``, ``lr_sub``) and 1.0x
        target features (``target``, a fixed target: no gradient reaches it); eq. 4 only with
        ``content``. The adversarial loss sees D through detached parameters, so it trains G
        only; the discriminator's sees G's output detached, so it trains D only."""
        sr = self.generator(lr_base, lr_sub)
        target = target.detach()
        frozen_d = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        adversarial = generator_adversarial_loss(
            functional_call(self.discriminator, frozen_d, (sr,))
        )
        losses = {
            "loss_sr_adversarial": self.adversarial_weight * adversarial,
            "loss_discriminator": discriminator_loss(
                self.discriminator(target), self.discriminator(sr.detach())
            ),
        }
        if content:
            losses["loss_sr_content"] = self.content_weight * content_loss(sr, target)
        return losses

    @torch.no_grad()
    def generator_change(self, base: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
        """``||G(x) - x|| / ||x||`` of each base RoI feature x: how far training has moved G
        from the identity it starts as."""
        change = (self.generator(base, sub) - base).flatten(1).norm(dim=1)
        return change / base.flatten(1).norm(dim=1).clamp(min=1e-12)
