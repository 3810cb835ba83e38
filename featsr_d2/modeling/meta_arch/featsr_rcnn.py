"""FeatSR's meta-architecture: Faster R-CNN whose training step also makes the 0.5x images and
the SR target extractor's features for the FeatSR ROI heads (Noh et al., ICCV 2019, section 4.3).

At inference it is :class:`GeneralizedRCNN`: the only extra cost is in the ROI heads (the generator
and small predictor on small proposals). In stage 2 (``MODEL.FEATSR.FREEZE_BASE``) the backbone and
the RPN are frozen: no gradients, and the RPN's own losses are not computed into the objective.

The 0.5x image is the normalized, padded batch downsampled by 2 with antialiased bilinear
interpolation; the paper does not say how it downsamples.
"""

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN

__all__ = ["FeatSRRCNN", "half_resolution"]


def half_resolution(images: torch.Tensor) -> torch.Tensor:
    """The 0.5x version of a batch of normalized images (antialiased bilinear)."""
    return F.interpolate(
        images, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True
    )


@META_ARCH_REGISTRY.register()
class FeatSRRCNN(GeneralizedRCNN):
    """GeneralizedRCNN that feeds FeatSR's ROI heads the 0.5x features and the SR targets."""

    @configurable
    def __init__(self, *, freeze_base: bool = True, **kwargs):
        """
        Args:
            freeze_base: freeze the backbone and the proposal generator (stage 2).
            kwargs: the arguments of :class:`GeneralizedRCNN`.
        """
        super().__init__(**kwargs)
        if not hasattr(self.backbone, "extract_targets"):
            raise ValueError(
                f"{type(self.backbone).__name__} has no extract_targets: use a FeatSR backbone "
                "(FeatSRResNetBackbone, FeatSRResNetFPNBackbone, FeatSRMobileNetV2[FPN])"
            )
        self.freeze_base = freeze_base
        if freeze_base:
            for module in (self.backbone, self.proposal_generator):
                for p in module.parameters():
                    p.requires_grad_(False)

    def train(self, mode: bool = True):
        """As :meth:`nn.Module.train`, but a frozen backbone and RPN stay in eval mode (their
        normalization layers keep their statistics)."""
        super().train(mode)
        if self.freeze_base:
            self.backbone.eval()
            self.proposal_generator.eval()
        return self

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["freeze_base"] = cfg.MODEL.FEATSR.FREEZE_BASE
        return ret

    def forward(self, batched_inputs):
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        with torch.set_grad_enabled(not self.freeze_base):
            features = self.backbone(images.tensor)
            proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
            lr_features = self.backbone(half_resolution(images.tensor))
        with torch.no_grad():
            sr_targets = self.backbone.extract_targets(images.tensor)
        _, losses = self.roi_heads(
            images,
            features,
            proposals,
            gt_instances,
            lr_features=lr_features,
            sr_targets=sr_targets,
        )
        if not self.freeze_base:
            losses.update(proposal_losses)
        return losses
