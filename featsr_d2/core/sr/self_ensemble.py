"""Geometric self-ensemble at inference (Lim et al., EDSR, 2017; "x8" in the SR papers, the
"self-ensembled" rows of CAJNN's Table I): run the network on the 8 dihedral transforms of the
input (4 rotations by 90 degrees, each with and without a horizontal flip), undo each transform on
the output and average. The result is exactly equivariant to flips and 90-degree rotations, and
costs 8 forward passes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["dihedral", "dihedral_inverse", "self_ensemble_x8"]


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Transform ``k`` in 0..7 of the (..., H, W) tensor ``x``: ``k % 4`` counter-clockwise
    quarter turns, after a horizontal flip when ``k >= 4``."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


def dihedral_inverse(y: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`dihedral` ``k``."""
    y = torch.rot90(y, -(k % 4), dims=(-2, -1))
    if k >= 4:
        y = y.flip(-1)
    return y


def self_ensemble_x8(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The mean over the 8 dihedral transforms T of ``T^-1(fn(T(x)))``; ``x`` is (N, C, H, W)."""
    out = None
    for k in range(8):
        y = dihedral_inverse(fn(dihedral(x, k)), k)
        out = y if out is None else out + y
    return out / 8.0
