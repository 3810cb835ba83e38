"""Backbones, registered in Detectron2's ``BACKBONE_REGISTRY`` when this package is imported."""

from featsr_d2.modeling.backbone.mobilenet_v2 import MobileNetV2Backbone
from featsr_d2.modeling.backbone.mobilenet_v2_target_extractor import (
    FeatSRMobileNetV2,
    FeatSRMobileNetV2Backbone,
    FeatSRMobileNetV2FPN,
)
from featsr_d2.modeling.backbone.target_extractor import (
    FeatSRFPN,
    FeatSRResNet,
    FeatSRResNetBackbone,
    FeatSRResNetFPNBackbone,
)

__all__ = [
    "FeatSRFPN",
    "FeatSRResNet",
    "FeatSRResNetBackbone",
    "FeatSRResNetFPNBackbone",
    "MobileNetV2Backbone",
    "FeatSRMobileNetV2",
    "FeatSRMobileNetV2Backbone",
    "FeatSRMobileNetV2FPN",
]
