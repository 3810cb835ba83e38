"""The ``Bicubic`` baseline network: MATLAB-compatible bicubic upscaling
(:func:`featsr_d2.core.layers.imresize.imresize`) as an SR network without parameters.
"""

from __future__ import annotations

import torch

from featsr_d2.core.layers.imresize import imresize
from featsr_d2.core.sr.network import SRNetwork

__all__ = ["Bicubic"]


class Bicubic(SRNetwork):
    """MATLAB-compatible bicubic upscaling as a network without parameters: the baseline of every
    SR table. It is its own skip: residual mode changes nothing."""

    has_own_skip = True

    def __init__(self, *, scale: int, self_ensemble: bool = False, residual: bool = False):
        """
        Args:
            scale: upscaling factor (any positive integer).
            self_ensemble: accepted for a uniform interface; bicubic upscaling by an integer factor
                is already equivariant to flips and 90-degree rotations.
            residual: accepted for a uniform interface; bicubic upscaling plus no learned
                residual is bicubic upscaling.
        """
        super().__init__(scale=scale, self_ensemble=self_ensemble, residual=residual)

    def sr_forward(self, x: torch.Tensor) -> torch.Tensor:
        return imresize(x, float(self.scale))
