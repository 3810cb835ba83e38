"""Where a feature sits on the image, measured: the receptive field and position of backbone units
as the support of their input gradient in a linearized copy of the network.

The copy (:func:`linearized`) has ReLU and ReLU6 replaced by the identity, every max pooling by an
average pooling over the same windows, every weight made positive, and runs in float64: then the
gradient of a unit with respect to the input is positive exactly on the unit's receptive field (no
path through the network can cancel or be switched off), and its support's extent and midpoint are
the field's extent and centre.

:func:`pair_geometry` uses it for FeatSR's SR pairs: a target T^1.0 (the SR target extractor on the
1.0x image) and the backbone's feature F^0.5 on the 0.5x image that it supervises must have the
same relative receptive field (Noh et al. 2019, section 4.1), in extent and in position. Positions
are measured against where RoIAlign (``aligned=True``) places a unit: unit ``o`` of a map of stride
J covers ``[o J, (o + 1) J)`` of its image, whose centre is ``(o + 0.5) J``.

Part of the core (it imports torch only): each framework's walker over its backbones measures its
extractor with it (Detectron2's: :mod:`featsr_d2.evaluation.extractor_geometry`; MMDetection's:
:mod:`featsr_d2.mmdet.extractor_geometry`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FieldClipped",
    "PairGeometry",
    "SupportSpan",
    "linearized",
    "pair_geometry",
    "support_spans",
]

_ORIGINALS = {
    name: getattr(F, name) for name in ("relu", "relu_", "relu6", "hardtanh", "hardtanh_")
}
_MAX_POOL = F.max_pool2d


def _identity(x, *args, **kwargs):
    return x


def _average_over_max_windows(
    x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    if dilation not in (1, (1, 1)) or return_indices:
        raise ValueError("the linearized network knows undilated max pooling without indices")
    return F.avg_pool2d(
        x, kernel_size, stride, padding, ceil_mode=ceil_mode, count_include_pad=False
    )


@contextlib.contextmanager
def linearized(module: nn.Module):
    """A float64 copy of ``module`` (eval mode, frozen, every parameter and buffer made positive,
    activations stored on modules removed) and, while the block runs, ReLU / ReLU6 / hardtanh as
    the identity and max pooling as average pooling over the same windows, wherever the code calls
    them through ``torch.nn.functional``. Yields the copy."""
    copied = copy.deepcopy(module).double().eval().requires_grad_(False)
    with torch.no_grad():
        for tensor in [*copied.parameters(), *copied.buffers()]:
            if tensor.is_floating_point():
                tensor.abs_().add_(1e-3)  # positive: no path cancels
    for m in copied.modules():
        if getattr(m, "activation", None) is not None:
            m.activation = None
        if hasattr(m, "fused_targets"):
            m.fused_targets = False  # the fused op's max is not visible to the patches below
    patched = {name: _identity for name in _ORIGINALS}
    patched["max_pool2d"] = _average_over_max_windows
    try:
        for name, fn in patched.items():
            setattr(F, name, fn)
        yield copied
    finally:
        for name, fn in _ORIGINALS.items():
            setattr(F, name, fn)
        F.max_pool2d = _MAX_POOL


class FieldClipped(ValueError):
    """A receptive field reaches the image border: measure on a larger image."""


@dataclass(frozen=True)
class SupportSpan:
    """Along one axis: the first and last input pixel of a gradient support, and the position
    RoIAlign gives the measured units (both in that input's pixels)."""

    first: int
    last: int
    placement: float
    centroid: float  # the gradient's mean position (pixel k at k + 0.5)

    @property
    def extent(self) -> int:
        return self.last - self.first + 1

    @property
    def offset(self) -> float:
        """The support's midpoint minus RoIAlign's placement (pixel k spans [k, k + 1))."""
        return (self.first + self.last + 1) / 2 - self.placement

    @property
    def centroid_offset(self) -> float:
        """The gradient's centroid minus RoIAlign's placement."""
        return self.centroid - self.placement


def support_spans(
    fn: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    image: torch.Tensor,
    units: dict[str, tuple[int, int]],
    axis: int = 0,
) -> dict[str, SupportSpan]:
    """For each ``feature: (stride, block)`` of ``units``, the gradient support along ``axis``
    (0: rows, 1: columns) of a ``block`` x ``block`` group of units of ``fn(image)[feature]``
    (aligned to ``block``, in the middle of the map), whose units RoIAlign places at
    ``(o + 0.5) * stride``.
    A group rather than one unit where nearest-neighbour upsampling (an FPN's top-down path) makes
    single units lopsided: the group covers whole cells of the coarsest map. One forward pass for
    all features. Raises if a support reaches the image border (the field is clipped)."""
    x = image.detach().double().requires_grad_(True)
    outputs = fn(x)
    spans = {}
    for feature, (stride, block) in units.items():
        out = outputs[feature]
        h, w = out.shape[-2:]
        r0, c0 = (h // 2) // block * block, (w // 2) // block * block
        if r0 + block > h or c0 + block > w:
            raise ValueError(f"{feature}: the map ({h}x{w}) is smaller than a block of {block}")
        unit_sum = out[0, :, r0 : r0 + block, c0 : c0 + block].sum()
        (grad,) = torch.autograd.grad(unit_sum, x, retain_graph=True)
        mass = grad[0].sum(dim=0).sum(dim=1 - axis)
        line = (mass > 0).nonzero().flatten()
        first, last = int(line[0]), int(line[-1])
        if first == 0 or last == x.shape[-2 + axis] - 1:
            raise FieldClipped(
                f"{feature}: the receptive field reaches the border of the "
                f"{tuple(x.shape[-2:])} image; measure on a larger one"
            )
        centre = float(
            (mass * (torch.arange(mass.numel(), dtype=mass.dtype) + 0.5)).sum() / mass.sum()
        )
        placement = ((r0, c0)[axis] + block / 2) * stride
        spans[feature] = SupportSpan(first, last, placement, centre)
    return spans


@dataclass(frozen=True)
class PairGeometry:
    """A target map against the 0.5x map it supervises, in 1.0x-image pixels."""

    feature: str
    stride: int
    target: SupportSpan  # on the 1.0x image
    lr: SupportSpan  # on the 0.5x image
    plain: SupportSpan  # the backbone on the 1.0x image (the naive target)

    @property
    def pair_offset(self) -> float:
        """Where T^1.0 sits minus where F^0.5 sits, relative to RoIAlign's placements."""
        return self.target.offset - 2 * self.lr.offset

    @property
    def pair_centroid_offset(self) -> float:
        """:attr:`pair_offset` measured between the gradients' centroids."""
        return self.target.centroid_offset - 2 * self.lr.centroid_offset

    @property
    def naive_offset(self) -> float:
        """The same for the naive target F^1.0."""
        return self.plain.offset - 2 * self.lr.offset

    @property
    def extent_ratio(self) -> float:
        """T^1.0's extent over twice F^0.5's (1 when the relative fields are equal)."""
        return self.target.extent / (2 * self.lr.extent)


def pair_geometry(
    backbone: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    extract_targets: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    units: dict[str, tuple[int, int]],
    *,
    axis: int = 0,
    width: int = 64,
    start: int = 256,
) -> dict[str, PairGeometry]:
    """Measures maps of a backbone: ``extract_targets`` on a 1.0x image against ``backbone`` on the
    0.5x one (and on the 1.0x one), for each ``feature: (stride, block)`` of ``units`` (see
    :func:`support_spans`), along ``axis``. Call inside :func:`linearized`, with its copy's methods.

    The images are long along ``axis`` and ``width`` pixels across (with positive weights the
    support along one axis does not depend on the other's size): the 0.5x image starts ``start``
    pixels long and doubles until no field is clipped, the 1.0x image is twice as long (and
    doubles again if needed). ``width`` and ``start`` should be multiples of twice the backbone's
    size divisibility."""

    def image(long_side: int) -> torch.Tensor:
        size = (long_side, width) if axis == 0 else (width, long_side)
        return torch.zeros(1, 3, *size, dtype=torch.float64)

    half = start // 2
    while True:
        try:
            lr = support_spans(backbone, image(half), units, axis)
            break
        except FieldClipped:
            half *= 2
    full = 2 * half
    while True:
        try:
            target = support_spans(extract_targets, image(full), units, axis)
            plain = support_spans(backbone, image(full), units, axis)
            break
        except FieldClipped:
            full *= 2
    return {
        f: PairGeometry(f, stride, target[f], lr[f], plain[f]) for f, (stride, _) in units.items()
    }
