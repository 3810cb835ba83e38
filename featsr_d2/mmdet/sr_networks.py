"""The core's image SR networks in MMDetection's ``MODELS`` registry, and the image conventions
between MMDetection's pipelines and the SR networks.

Registered names: ``DBPN`` (D-DBPN, TDSR's network), ``CAJNN`` and ``RRDBNet`` (named after their
papers' networks) and ``FeatSRBicubic`` (MATLAB bicubic upscaling, no parameters), built from the
same keyword arguments as the classes of :mod:`featsr_d2.core.sr` (``dict(type="DBPN", scale=4,
feat=256, base_filter=64, num_stages=7)``, ``residual``, ``self_ensemble``, ...). They take RGB
images in [0, 1] and return them upscaled.

MMDetection's ``LoadImageFromFile`` gives images in BGR order, 0..255; its data pre-processors
convert them to RGB when configured with ``bgr_to_rgb=True``. :func:`lr_to_rgb` turns such
images into the SR networks' RGB [0, 1], and :func:`rgb_to_loader_order` turns an SR output back
into the pipeline's order and range, so that a detector's own data pre-processor (mean, std,
channel conversion, padding) handles it as it handles a loaded image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmdet.registry import MODELS

from featsr_d2.core.sr import CAJNN, DBPN, Bicubic, RRDBNet

__all__ = ["lr_to_rgb", "rgb_to_loader_order"]

# Registration of the core's networks (their classes live in the core, which imports no framework).
MODELS.register_module(name="DBPN", module=DBPN)
MODELS.register_module(name="CAJNN", module=CAJNN)
MODELS.register_module(name="RRDBNet", module=RRDBNet)
MODELS.register_module(name="FeatSRBicubic", module=Bicubic)


def lr_to_rgb(images: Sequence[torch.Tensor], bgr_to_rgb: bool) -> list[torch.Tensor]:
    """(3, h, w) images of a pipeline (0..255, BGR when ``bgr_to_rgb``) as RGB float in [0, 1].

    Raises:
        ValueError: an image is not (3, h, w) or has no pixel.
    """
    out = []
    for k, image in enumerate(images):
        if image.dim() != 3 or image.shape[0] != 3 or image.shape[1] == 0 or image.shape[2] == 0:
            raise ValueError(
                f"image {k} of the batch has shape {tuple(image.shape)}: the SR network takes "
                "colour images of shape (3, h, w) with at least one pixel"
            )
        x = image.float().div(255.0)
        out.append(x.flip(0) if bgr_to_rgb else x)
    return out


def rgb_to_loader_order(image: torch.Tensor, bgr_to_rgb: bool) -> torch.Tensor:
    """An RGB float (3, H, W) image in [0, 1] in the pipeline's order and range (0..255, BGR when
    ``bgr_to_rgb``); not clamped or rounded, so gradients flow."""
    x = image * 255.0
    return x.flip(0) if bgr_to_rgb else x
