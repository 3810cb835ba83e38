from featsr_d2.modeling.roi_heads.featsr_roi_heads import (
    FeatSRRes5ROIHeads,
    FeatSRStandardROIHeads,
)
from featsr_d2.modeling.roi_heads.mobilenet_v2_res5_roi_heads import FeatSRMobileNetV2Res5ROIHeads

__all__ = [
    "FeatSRMobileNetV2Res5ROIHeads",
    "FeatSRRes5ROIHeads",
    "FeatSRStandardROIHeads",
]
