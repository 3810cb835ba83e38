"""FeatSR's meta-architecture: Faster R-CNN (or Mask R-CNN) whose training step also makes the
0.5x images and the SR target extractor's features for the FeatSR ROI heads (Noh et al., ICCV
2019, section 4.3).

At inference it is :class:`GeneralizedRCNN`: the only extra cost is in the ROI heads (the generator
and small predictor on small proposals). In the paper's stages 2 and 3 (``MODEL.FEATSR.STAGE``) the
backbone and the RPN are frozen: no gradients, eval mode, and the RPN's own losses are not
computed into the objective; the heads freeze their own parts of the phase
(:meth:`frozen_modules`).

The 0.5x image is :func:`featsr_d2.core.featsr.half_resolution` of the normalized batch, padded to
the backbone's size divisibility. Stage 3 needs neither it nor the SR targets.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList, Instances
from torch import nn

from featsr_d2.core.featsr import half_resolution
from featsr_d2.utils.image import input_name, require_nonempty_images

__all__ = ["FeatSRRCNN", "FrozenOutputs"]


@dataclass
class FrozenOutputs:
    """What the frozen trunk (backbone and RPN) of stages 2 and 3 gives the FeatSR heads for a
    batch (:meth:`FeatSRRCNN.frozen_outputs`)."""

    images: ImageList
    features: dict[str, torch.Tensor]
    proposals: list[Instances]
    lr_features: dict[str, torch.Tensor] | None = None  # the backbone on the 0.5x images
    sr_targets: dict[str, torch.Tensor] | None = None  # the extractor as configured
    # the extractor with a given placement (aligned True / False)
    extra_sr_targets: dict[bool, dict[str, torch.Tensor]] = field(default_factory=dict)


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

    @torch.no_grad()
    def frozen_outputs(
        self,
        batched_inputs,
        *,
        lr_features: bool | None = None,
        sr_targets: bool | None = None,
        target_placements: Sequence[bool] = (),
    ) -> FrozenOutputs:
        """What the frozen backbone and RPN give the heads for ``batched_inputs``: the padded
        batch, the backbone's features, the RPN's proposals and, when asked (by default: when the
        heads' training needs them), the features of the 0.5x images and the SR target
        extractor's maps. ``target_placements`` adds the extractor's maps with those pooling
        placements (``aligned`` True / False, for the study's comparison) in
        ``extra_sr_targets``. :meth:`forward` and the study's feature cache both read the trunk
        through this method."""
        if lr_features is None:
            lr_features = self.roi_heads.needs_lr_features
        if sr_targets is None:
            sr_targets = self.roi_heads.needs_sr_targets
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        # The RPN is frozen (eval mode, see train): it computes no losses and needs no ground truth.
        proposals, _ = self.proposal_generator(images, features, None)
        out = FrozenOutputs(images, features, proposals)
        if lr_features:
            half = half_resolution(images.tensor, self.backbone.size_divisibility)
            out.lr_features = self.backbone(half)
        if sr_targets:
            out.sr_targets = self.backbone.extract_targets(images.tensor)
        for aligned in target_placements:
            out.extra_sr_targets[aligned] = self.backbone.extract_targets(
                images.tensor, aligned=aligned
            )
        return out

    def forward(self, batched_inputs):
        if not self.training:
            return self.inference(batched_inputs)
        trunk = self.frozen_outputs(batched_inputs)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        _, losses = self.roi_heads(
            trunk.images,
            trunk.features,
            trunk.proposals,
            gt_instances,
            lr_features=trunk.lr_features,
            sr_targets=trunk.sr_targets,
        )
        return losses
