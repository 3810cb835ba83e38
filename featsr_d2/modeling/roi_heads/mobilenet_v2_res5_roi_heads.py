"""Detectron2's C4 ROI heads on MobileNetV2 (``FeatSRMobileNetV2Res5ROIHeads``): the FeatSR paper's
layout (Faster R-CNN ResNet-50 C4, section 5) with the ImageNet MobileNetV2 that exists offline.

As in :class:`~detectron2.modeling.roi_heads.Res5ROIHeads` on ResNet, the backbone ends at the
stride-16 stage (``MODEL.MNV2.OUT_FEATURES: ["stage4"]``), which the RPN and the heads read, and
the later stage runs once per RoI: RoIAlign 14x14 at 1/16 (``POOLER_RESOLUTION`` 14), MobileNetV2's
``stage5`` as ``res5`` (its first block has stride 2: 7x7, 320 channels at width 1.0), the mean
over the 7x7, then Detectron2's ``FastRCNNOutputLayers``. ``res5`` is built from ``MODEL.MNV2``
(``WIDTH_MULT``, ``NORM``) by the backbone's own stage builder
(:func:`~featsr_d2.modeling.backbone.mobilenet_v2.make_stage`), so torchvision's stage5 weights
load into it (``featsr://imagenet/mobilenet_v2_c4``). Like Detectron2's ``res5``, it is not frozen
by ``FREEZE_AT`` (a frozen norm, "FrozenBN", stays frozen).

FeatSR's C4 heads (``FeatSRRes5ROIHeads``) build their ``res5``, and its replica in the small
predictor, through these heads when ``MODEL.FEATSR.RES5_HEADS`` names them, which
:func:`featsr_d2.enable_featsr` does.
"""

from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads
from torch import nn

from featsr_d2.modeling.backbone.mobilenet_v2 import make_stage

__all__ = ["FeatSRMobileNetV2Res5ROIHeads"]


@ROI_HEADS_REGISTRY.register()
class FeatSRMobileNetV2Res5ROIHeads(Res5ROIHeads):
    """Res5ROIHeads whose ``res5`` is MobileNetV2's ``stage5`` (``MODEL.ROI_HEADS.NAME:
    "FeatSRMobileNetV2Res5ROIHeads"``, ``IN_FEATURES: ["stage4"]``)."""

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        name = ret["in_features"][0]
        expected = ret["res5"][0].in_channels
        if input_shape[name].channels != expected:
            raise ValueError(
                f"MobileNetV2's stage5 (res5) reads the {expected} channels of stage4; "
                f"MODEL.ROI_HEADS.IN_FEATURES {name!r} has {input_shape[name].channels}: "
                'set it (and the RPN\'s) to ["stage4"]'
            )
        return ret

    @classmethod
    def _build_res5_block(cls, cfg) -> tuple[nn.Sequential, int]:
        """MobileNetV2's ``stage5`` from ``MODEL.MNV2``, and its output channels (Detectron2's
        hook: :meth:`Res5ROIHeads.from_config` builds ``res5`` and the predictor's input with
        it)."""
        mnv2 = cfg.MODEL.MNV2
        blocks = make_stage("stage5", width_mult=mnv2.WIDTH_MULT, norm=mnv2.NORM)
        return nn.Sequential(*blocks), blocks[-1].out_channels
