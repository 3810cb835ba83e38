from featsr_d2.modeling.meta_arch.featsr_rcnn import FeatSRRCNN, half_resolution

__all__ = ["FeatSRRCNN", "half_resolution"]
