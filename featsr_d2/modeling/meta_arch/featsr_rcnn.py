"""FeatSR's meta-architecture: Faster R-CNN (or Mask R-CNN) whose training step also makes the
0.5x images and the SR target extractor's features for the FeatSR ROI heads (Noh et al., ICCV
2019, section 4.3).

At inference it is :class:`GeneralizedRCNN`: the only extra cost is in the ROI heads (the generator
and small predictor on small proposals). In the paper's stages 2 and 3 (``MODEL.FEATSR.STAGE``) the
backbone and the RPN are frozen: no gradients, eval mode, and the RPN's own losses are not
computed into the objective; the heads freeze their own parts of the phase
(:meth:`frozen_modules`).

The 0.5x image is the normalized, padded batch downsampled by 2 with antialiased bilinear
interpolation (the paper does not say how it downsamples), padded with zeros at the bottom and
right to the backbone's size divisibility, as Detectron2 pads the 1.0x batch: an FPN's top-down sums
then line up for every input size. Stage 3 needs neither it nor the SR targets.
"""

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from torch import nn

from featsr_d2.utils.image import input_name, require_nonempty_images

__all__ = ["FeatSRRCNN", "half_resolution"]


def half_resolution(images: torch.Tensor, size_divisibility: int = 0) -> torch.Tensor:
    """The 0.5x version of a batch of normalized images (antialiased bilinear), zero-padded at
    the bottom and right to a multiple of ``size_divisibility`` (when above 1)."""
    half = F.interpolate(
        images, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True
    )
    if size_divisibility > 1:
        h, w = half.shape[-2:]
        pad_h = -h % size_divisibility
        pad_w = -w % size_divisibility
        if pad_h or pad_w:
            half = F.pad(half, (0, pad_w, 0, pad_h))
    return half


@META_ARCH_REGISTRY.register()
class FeatSRRCNN(GeneralizedRCNN):
    """GeneralizedRCNN that feeds FeatSR's ROI heads the 0.5x features and the SR targets, with
    the backbone and RPN frozen (the paper's stages 2 and 3)."""

    @configurable
    def __init__(self, **kwargs):
        """
        Args:
            kwargs: the arguments of :class:`GeneralizedRCNN`; ``roi_heads`` are FeatSR heads.
        """
        super().__init__(**kwargs)
        if not hasattr(self.backbone, "extract_targets"):
            raise ValueError(
                f"{type(self.backbone).__name__} has no extract_targets: use a FeatSR backbone "
                "(FeatSRResNetBackbone, FeatSRResNetFPNBackbone, FeatSRMobileNetV2[FPN]); "
                "featsr_d2.enable_featsr(cfg) swaps it in"
            )
        if not hasattr(self.roi_heads, "frozen_modules"):
            raise ValueError(
                f"{type(self.roi_heads).__name__} is not a FeatSR ROI head: use "
                "FeatSRRes5ROIHeads or FeatSRStandardROIHeads (featsr_d2.enable_featsr does)"
            )
        for module in (self.backbone, self.proposal_generator):
            module.requires_grad_(False)

    def frozen_modules(self) -> list[nn.Module]:
        """What this phase does not train: the backbone, the RPN and the heads' frozen parts."""
        return [self.backbone, self.proposal_generator, *self.roi_heads.frozen_modules()]

    def frozen_weight_prefixes(self) -> list[str]:
        """State-dict key prefixes of :meth:`frozen_modules`: the weights this phase must load
        (from the previous phase), since it does not train them; not those the heads keep at
        their initialization (the ``identity`` control's G and D)."""
        at_init = {id(m) for m in self.roi_heads.modules_frozen_at_init()}
        frozen = {id(m) for m in self.frozen_modules()} - at_init
        return [f"{name}." for name, m in self.named_modules() if id(m) in frozen]

    def train(self, mode: bool = True):
        """As :meth:`nn.Module.train`, but frozen modules stay in eval mode (their normalization
        layers keep their statistics)."""
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    def preprocess_image(self, batched_inputs):
        """As :class:`GeneralizedRCNN`'s, after refusing an empty image, naming it."""
        require_nonempty_images(
            [(input_name(x, k), x["image"]) for k, x in enumerate(batched_inputs)]
        )
        return super().preprocess_image(batched_inputs)

    def forward(self, batched_inputs):
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        lr_features = sr_targets = None
        with torch.no_grad():
            features = self.backbone(images.tensor)
            proposals, _ = self.proposal_generator(images, features, gt_instances)
            if self.roi_heads.needs_lr_features:
                half = half_resolution(images.tensor, self.backbone.size_divisibility)
                lr_features = self.backbone(half)
            if self.roi_heads.needs_sr_targets:
                sr_targets = self.backbone.extract_targets(images.tensor)
        _, losses = self.roi_heads(
            images,
            features,
            proposals,
            gt_instances,
            lr_features=lr_features,
            sr_targets=sr_targets,
        )
        return losses
