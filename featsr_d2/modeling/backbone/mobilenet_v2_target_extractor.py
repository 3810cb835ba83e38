"""FeatSR's SR target extractor on MobileNetV2 (:class:`FeatSRMobileNetV2Backbone`), and the
registered FeatSR MobileNetV2 backbones, plain (``FeatSRMobileNetV2``) and with Detectron2's FPN
(``FeatSRMobileNetV2FPN``).

The extractor runs the network on the 1.0x image with every convolution dilated as the
:mod:`~featsr_d2.modeling.backbone.target_extractor` does for ResNet, so that each feature has the
names and shapes of :meth:`MobileNetV2Backbone.forward`'s and the receptive field of the 0.5x
image's.
"""

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from featsr_d2.core.featsr.extractor_layers import atrous_conv
from featsr_d2.modeling.backbone.mobilenet_v2 import InvertedResidual, MobileNetV2Backbone
from featsr_d2.modeling.backbone.target_extractor import FeatSRFPN, featsr_passthrough

__all__ = ["FeatSRMobileNetV2", "FeatSRMobileNetV2Backbone", "FeatSRMobileNetV2FPN"]


def _inverted_residual_targets(
    block: InvertedResidual, x: torch.Tensor, fused: bool, aligned: bool
) -> torch.Tensor:
    """``block.forward`` as the target extractor runs it; ``fused`` runs the strided depthwise
    convolution as the fused conv + max pool op, ``aligned`` places its pooling windows."""
    out = x if block.expand is None else atrous_conv(block.expand, x)
    out = atrous_conv(block.depthwise, out, fused=fused, aligned=aligned)
    out = atrous_conv(block.project, out)
    return x + out if block.use_residual else out


class FeatSRMobileNetV2Backbone(MobileNetV2Backbone):
    """:class:`MobileNetV2Backbone` with FeatSR's SR target extractor (:meth:`extract_targets`)."""

    @configurable
    def __init__(self, *, fused_targets: bool = False, aligned_targets: bool = True, **kwargs):
        """
        Args:
            fused_targets: run :meth:`extract_targets`' strided layers with the fused dilated
                convolution + max pool op (same result, less memory).
            aligned_targets: place the extractor's pooling windows where the backbone's units sit
                on the 0.5x image (:mod:`~featsr_d2.modeling.backbone.target_extractor`); False
                is the previous placement.
            kwargs: as for :class:`MobileNetV2Backbone`.
        """
        super().__init__(**kwargs)
        self.fused_targets = fused_targets
        self.aligned_targets = aligned_targets

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        return {
            **super().from_config(cfg, input_shape),
            "fused_targets": cfg.MODEL.FEATSR.FUSED_EXTRACTOR,
            "aligned_targets": cfg.MODEL.FEATSR.EXTRACTOR_ALIGNED,
        }

    def extract_targets(
        self, x: torch.Tensor, *, aligned: bool | None = None
    ) -> dict[str, torch.Tensor]:
        """The features of :meth:`forward` as FeatSR's SR target extractor computes them on the
        1.0x image: same names and shapes, the receptive field of the 0.5x image (``aligned``:
        the pooling windows' placement; None: ``aligned_targets``)."""
        aligned = self.aligned_targets if aligned is None else aligned
        outputs = {}
        x = atrous_conv(self.stem.conv, x, fused=self.fused_targets, aligned=aligned)
        for name in self.stage_names:
            for block in getattr(self, name):
                x = _inverted_residual_targets(block, x, self.fused_targets, aligned)
            if name in self._out_features:
                outputs[name] = x
        return outputs


# Registry keys are the builders' names, prefixed FeatSR so that no other plugin collides.
@BACKBONE_REGISTRY.register()
def FeatSRMobileNetV2(cfg, input_shape: ShapeSpec) -> FeatSRMobileNetV2Backbone:
    """MobileNetV2 from ``MODEL.MNV2.*`` (``MODEL.BACKBONE.NAME: "FeatSRMobileNetV2"``)."""
    return FeatSRMobileNetV2Backbone(cfg, input_shape)


@BACKBONE_REGISTRY.register()
def FeatSRMobileNetV2FPN(cfg, input_shape: ShapeSpec) -> FeatSRFPN:
    """Detectron2's FPN on MobileNetV2 (``MODEL.BACKBONE.NAME: "FeatSRMobileNetV2FPN"``),
    with a max-pooled extra level (p6) as in Detectron2's ResNet-FPN.

    ``MODEL.FPN.IN_FEATURES`` (contiguous, ending at "stage5", e.g. ["stage2", "stage3", "stage4",
    "stage5"] for p2..p6) must all be in ``MODEL.MNV2.OUT_FEATURES``.
    """
    bottom_up = FeatSRMobileNetV2(cfg, input_shape)
    in_features = list(cfg.MODEL.FPN.IN_FEATURES)
    missing = [f for f in in_features if f not in bottom_up.output_shape()]
    if not in_features or missing:
        raise ValueError(
            f"MODEL.FPN.IN_FEATURES {in_features} must be non-empty and within "
            f"MODEL.MNV2.OUT_FEATURES {list(cfg.MODEL.MNV2.OUT_FEATURES)}"
        )
    return FeatSRFPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
        passthrough=featsr_passthrough(cfg),
    )
