"""The "JPEG removal then bicubic" baseline of CAJNN's Table I (its two-stage CAR + SR rows), built
from what exists offline: OpenCV's non-local-means denoising (``fastNlMeansDenoisingColored``, a
classical artifact remover; the paper's ARCNN / DnCNN weights are not available here) applied to
the JPEG-compressed LR image, then MATLAB-bicubic upscaling.

Unlike the blind networks, it is told the JPEG quality of its input: the evaluation sets it
(:meth:`DeblockBicubic.set_jpeg_quality`) and the filter strength ``h`` for each quality is
chosen beforehand on the training photographs
(:func:`featsr_d2.evaluation.sr_metrics.tune_deblock_strengths`), an advantage CAJNN does not
have. No config builds it: it has no parameters to train and no place in a TDSR chain.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np
import torch
from torch import nn

from featsr_d2.core.layers.imresize import imresize
from featsr_d2.utils.image import round_to_uint8

__all__ = ["DeblockBicubic", "nlm_deblock"]


def nlm_deblock(image: np.ndarray, strength: float) -> np.ndarray:
    """OpenCV's coloured non-local means on an RGB uint8 image (h = hColor = ``strength``, 7 px
    patches, 21 px search window); ``strength`` 0 returns a copy."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image, got {image.dtype} {image.shape}")
    if strength <= 0:
        return image.copy()
    return cv2.fastNlMeansDenoisingColored(image, None, float(strength), float(strength), 7, 21)


class DeblockBicubic(nn.Module):
    """Non-local-means deblocking at a per-quality strength, then MATLAB bicubic; RGB [0, 1]
    (N, 3, h, w) in, (N, 3, s*h, s*w) out, like the SR networks."""

    def __init__(self, scale: int, strengths: Mapping[int, float]):
        """
        Args:
            scale: the upscaling factor.
            strengths: JPEG quality (0: none) -> NLM strength h.
        """
        super().__init__()
        if scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.scale = int(scale)
        self.strengths = {int(q): float(h) for q, h in strengths.items()}
        self.quality: int | None = None

    def set_jpeg_quality(self, quality: int) -> None:
        """The JPEG quality of the next inputs (0: uncompressed)."""
        if int(quality) not in self.strengths:
            raise ValueError(f"no deblocking strength for quality {quality}: {self.strengths}")
        self.quality = int(quality)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quality is None:
            raise RuntimeError("DeblockBicubic needs set_jpeg_quality() before it runs")
        h = self.strengths[self.quality]
        out = []
        for image in x:
            rgb = round_to_uint8(image.detach().cpu().permute(1, 2, 0).numpy() * 255.0)
            clean = torch.from_numpy(nlm_deblock(rgb, h)).permute(2, 0, 1).to(x)
            out.append(imresize(clean / 255.0, float(self.scale)))
        return torch.stack(out)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, strengths={self.strengths}"
