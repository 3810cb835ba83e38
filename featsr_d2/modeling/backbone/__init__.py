"""Backbones, registered in Detectron2's ``BACKBONE_REGISTRY`` when this package is imported."""

from featsr_d2.modeling.backbone import pretrained  # noqa: F401  (registers the featsr:// weights scheme)
from featsr_d2.modeling.backbone.mobilenet_v2 import (
    FeatSRMobileNetV2,
    FeatSRMobileNetV2FPN,
    MobileNetV2Backbone,
    convert_torchvision_mobilenet_v2,
)
from featsr_d2.modeling.backbone.pretrained import find_mobilenet_v2_imagenet_weights
from featsr_d2.modeling.backbone.target_extractor import (
    FeatSRFPN,
    FeatSRResNet,
    FeatSRResNetBackbone,
    FeatSRResNetFPNBackbone,
    atrous_conv,
    atrous_max_pool,
)

__all__ = [
    "FeatSRFPN",
    "FeatSRResNet",
    "FeatSRResNetBackbone",
    "FeatSRResNetFPNBackbone",
    "MobileNetV2Backbone",
    "FeatSRMobileNetV2",
    "FeatSRMobileNetV2FPN",
    "atrous_conv",
    "atrous_max_pool",
    "convert_torchvision_mobilenet_v2",
    "find_mobilenet_v2_imagenet_weights",
]
