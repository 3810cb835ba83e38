"""Ops: featsr_d2's compiled kernels with torchvision / torch.nn.functional fallbacks, and the
MATLAB-compatible bicubic resize."""

from featsr_d2.core.layers.compiled import build_info, has_compiled_ops
from featsr_d2.core.layers.dilated_conv_maxpool import (
    DilatedConvMaxPool2d,
    dilated_conv_maxpool2d,
    dilated_conv_maxpool2d_reference,
    dilated_conv_maxpool2d_tiled,
    is_frozen_batch_norm,
    norm_to_affine,
)
from featsr_d2.core.layers.imresize import imresize, imresize_np
from featsr_d2.core.layers.roi_align import (
    ROIAlign,
    multilevel_roi_align,
    multimap_roi_align,
    roi_align,
)

__all__ = [
    "DilatedConvMaxPool2d",
    "ROIAlign",
    "build_info",
    "dilated_conv_maxpool2d",
    "dilated_conv_maxpool2d_reference",
    "dilated_conv_maxpool2d_tiled",
    "has_compiled_ops",
    "imresize",
    "imresize_np",
    "is_frozen_batch_norm",
    "multilevel_roi_align",
    "multimap_roi_align",
    "norm_to_affine",
    "roi_align",
]
