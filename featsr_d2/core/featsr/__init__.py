"""FeatSR's parts (Noh et al., ICCV 2019, section 4), framework-free: the SR feature generator G and
discriminator D with the losses of eqs. 4-6 and the box branch holding them beside the small
predictor; which proposals are small, the inference cap and the SR training pairs
(:mod:`~featsr_d2.core.featsr.small_proposals`); the SR target extractor's version of a
backbone's convolution and pooling layers (:mod:`~featsr_d2.core.featsr.extractor_layers`); the
supervision modes of stage 2 (:mod:`~featsr_d2.core.featsr.supervision`); the 0.5x images of the SR
pairs (:mod:`~featsr_d2.core.featsr.half_resolution`).
"""

from featsr_d2.core.featsr.extractor_layers import atrous_conv, atrous_max_pool, strided_max_pool
from featsr_d2.core.featsr.featsr_box_branch import FeatSRBoxBranch
from featsr_d2.core.featsr.half_resolution import half_resolution
from featsr_d2.core.featsr.small_proposals import box_size, cap_small, small_mask, sr_pair_boxes
from featsr_d2.core.featsr.sr_feature_discriminator import (
    SRFeatureDiscriminator,
    content_loss,
    discriminator_loss,
    generator_adversarial_loss,
)
from featsr_d2.core.featsr.sr_feature_generator import BLOCKS, SRFeatureGenerator
from featsr_d2.core.featsr.supervision import SUPERVISIONS, Supervision, supervision

__all__ = [
    "BLOCKS",
    "SUPERVISIONS",
    "FeatSRBoxBranch",
    "SRFeatureDiscriminator",
    "SRFeatureGenerator",
    "Supervision",
    "atrous_conv",
    "atrous_max_pool",
    "box_size",
    "cap_small",
    "content_loss",
    "discriminator_loss",
    "generator_adversarial_loss",
    "half_resolution",
    "small_mask",
    "sr_pair_boxes",
    "strided_max_pool",
    "supervision",
]
