"""The base class of the image super-resolution networks, and the convention they share.

Input convention, for every network:

- ``forward(x)`` takes a float tensor of shape (N, 3, h, w): **RGB, values in [0, 1]**, no mean
  subtraction or other normalization (networks that want one do it inside);
- it returns a float tensor of shape (N, 3, scale * h, scale * w) in the same convention, not
  clamped (clamp and quantize to 8 bits before measuring PSNR/SSIM, as the SR papers do).

Networks subclass :class:`SRNetwork` and implement ``sr_forward``; they are built from plain
arguments (Detectron2 configs build them by name: :mod:`featsr_d2.modeling.sr.registry`). With
``self_ensemble`` the network averages the 8 flips and rotations of its input in eval mode
(:mod:`featsr_d2.core.sr.self_ensemble`); training is unaffected.

Residual mode (``residual``, the D-DBPN authors' ``--residual``): the network's output is added to a
fixed upsampling of its input, the MATLAB bicubic (:func:`imresize`) for every network except
CAJNN, which keeps the bilinear skip its paper has (eq. 5); and the network's last layer
(:meth:`SRNetwork.output_layer`) starts at zero, so that an untrained network *is* that upsampling
and training starts no worse than it.
"""

from __future__ import annotations

import torch
from torch import nn

from featsr_d2.core.layers.imresize import imresize
from featsr_d2.core.sr.self_ensemble import self_ensemble_x8

__all__ = ["SRNetwork"]


class SRNetwork(nn.Module):
    """Base of the SR networks: input checks and the optional x8 self-ensemble.

    Attributes:
        scale: the upscaling factor.
        self_ensemble: in eval mode, average the outputs of the 8 dihedral transforms of the input.
        residual: add :meth:`skip` (bicubic upsampling) to ``sr_forward``'s output; a subclass
            with parameters calls :meth:`zero_output_layer_` at the end of its ``__init__``.
    """

    #: Scales a subclass supports (None: any positive integer).
    supported_scales: tuple[int, ...] | None = None
    #: Whether ``sr_forward`` already adds its own upsampled input (then residual mode only
    #: zero-initializes the output layer).
    has_own_skip: bool = False

    def __init__(self, *, scale: int, self_ensemble: bool = False, residual: bool = False):
        super().__init__()
        if self.supported_scales is not None and scale not in self.supported_scales:
            raise ValueError(
                f"{type(self).__name__} supports scales {self.supported_scales}, got {scale}"
            )
        if scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.scale = int(scale)
        self.self_ensemble = bool(self_ensemble)
        self.residual = bool(residual)

    def output_layer(self) -> nn.Module | None:
        """The layer that makes the output image (zeroed in residual mode); None without
        parameters."""
        return None

    def zero_output_layer_(self) -> None:
        """In residual mode, set the weight and bias of :meth:`output_layer` to zero so that the
        untrained network equals its skip; a no-op otherwise. Subclasses call it last in
        ``__init__``."""
        layer = self.output_layer()
        if not self.residual or layer is None:
            return
        with torch.no_grad():
            for p in layer.parameters(recurse=False):
                p.zero_()

    def skip(self, x: torch.Tensor) -> torch.Tensor:
        """The fixed upsampling residual mode adds: MATLAB bicubic by ``scale``."""
        return imresize(x, float(self.scale))

    def _sr(self, x: torch.Tensor) -> torch.Tensor:
        out = self.sr_forward(x)
        if self.residual and not self.has_own_skip:
            out = out + self.skip(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (N, 3, h, w) RGB in [0, 1].

        Returns:
            (N, 3, scale * h, scale * w) RGB, not clamped.
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images of shape (N, 3, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"expected a float tensor in [0, 1], got {x.dtype}")
        if x.shape[0] == 0:
            n, c, h, w = x.shape
            return x.new_zeros((0, c, h * self.scale, w * self.scale))
        if self.self_ensemble and not self.training:
            return self_ensemble_x8(self._sr, x)
        return self._sr(x)

    def sr_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network itself, on a validated non-empty batch; every SR network defines it."""
        raise TypeError(f"{type(self).__name__} does not define sr_forward")

    def extra_repr(self) -> str:
        return f"scale={self.scale}, self_ensemble={self.self_ensemble}, residual={self.residual}"
