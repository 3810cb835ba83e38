from featsr_d2.modeling import (
    backbone,  # noqa: F401  (registers backbones)
    meta_arch,  # noqa: F401  (registers FeatSRRCNN and TaskDrivenSR)
    roi_heads,  # noqa: F401  (registers FeatSR ROI heads)
    sr,  # noqa: F401  (registers SR networks)
)
