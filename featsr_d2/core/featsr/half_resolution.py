"""The 0.5x images of FeatSR's SR pairs (Noh et al., ICCV 2019, section 4.2: "we first downsample
the original image at x0.5, obtain F^0.5 for i-th proposal and pair it with T^1.0").

The paper does not say how it downsamples. We downsample the normalized, padded batch by 2 with
antialiased bilinear interpolation and pad it with zeros at the bottom and right to the
backbone's size divisibility, as the frameworks pad the 1.0x batch (Detectron2's
``size_divisibility``, MMDetection's ``pad_size_divisor``): an FPN's top-down sums then line up for
every input size.
"""

import torch
import torch.nn.functional as F

__all__ = ["half_resolution"]


def half_resolution(images: torch.Tensor, size_divisibility: int = 0) -> torch.Tensor:
    """The 0.5x version of a batch of normalized images (antialiased bilinear), zero-padded at
    the bottom and right to a multiple of ``size_divisibility`` (when above 1)."""
    half = F.interpolate(
        images, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True
    )
    if size_divisibility > 1:
        h, w = half.shape[-2:]
        pad_h = -h % size_divisibility
        pad_w = -w % size_divisibility
        if pad_h or pad_w:
            half = F.pad(half, (0, pad_w, 0, pad_h))
    return half
