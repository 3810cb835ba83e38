from featsr_d2.modeling.roi_heads.featsr_box_branch import FeatSRBoxBranch
from featsr_d2.modeling.roi_heads.featsr_roi_heads import FeatSRRes5ROIHeads
from featsr_d2.modeling.roi_heads.mobilenet_v2_res5_roi_heads import FeatSRMobileNetV2Res5ROIHeads
from featsr_d2.modeling.roi_heads.sr_feature_discriminator import (
    SRFeatureDiscriminator,
    content_loss,
    discriminator_loss,
    generator_adversarial_loss,
)
from featsr_d2.modeling.roi_heads.sr_feature_generator import SRFeatureGenerator

__all__ = [
    "FeatSRBoxBranch",
    "FeatSRMobileNetV2Res5ROIHeads",
    "FeatSRRes5ROIHeads",
    "SRFeatureDiscriminator",
    "SRFeatureGenerator",
    "content_loss",
    "discriminator_loss",
    "generator_adversarial_loss",
]
