"""Where the SR target extractor of a Detectron2 FeatSR backbone puts its targets: the pair geometry
(:func:`featsr_d2.core.receptive_field.pair_geometry`) of every map its heads pool from, measured
on a linearized copy of the backbone (:func:`featsr_d2.core.receptive_field.linearized`)."""

import functools
from collections.abc import Sequence

from torch import nn

from featsr_d2.core.receptive_field import PairGeometry, linearized, pair_geometry

__all__ = ["extractor_geometry"]


def extractor_geometry(
    backbone: nn.Module, features: Sequence[str], *, aligned: bool = True, axis: int = 0
) -> dict[str, PairGeometry]:
    """:func:`pair_geometry` of a FeatSR backbone's maps ``features`` (e.g. the FeatSR heads' base
    levels and sub layers), its SR target extractor's placement ``aligned``, on a linearized copy.

    Maps of an FPN's pyramid are measured in blocks of one cell of the coarsest bottom-up map (the
    top-down path's nearest-neighbour upsampling), bottom-up maps (the sub layers) and single-map
    backbones unit by unit."""
    results = {}
    with linearized(backbone) as lin:
        bottom = getattr(lin, "bottom_up", None)
        groups: dict[int, tuple[nn.Module, dict[str, tuple[int, int]]]] = {}
        for f in features:
            if bottom is None or f not in lin._out_features:
                net, block = (lin if bottom is None else bottom), 1
            else:
                coarsest = bottom.output_shape()[lin.in_features[-1]].stride
                net, block = lin, coarsest // lin.output_shape()[f].stride
            groups.setdefault(id(net), (net, {}))[1][f] = (net.output_shape()[f].stride, block)
        divisibility = max(getattr(lin, "size_divisibility", 0), 1)
        width = 2 * max(divisibility, 32)  # the 0.5x image keeps the divisibility
        for net, units in groups.values():
            extract = functools.partial(net.extract_targets, aligned=aligned)
            results.update(
                pair_geometry(net, extract, units, axis=axis, width=width, start=4 * width)
            )
    return {f: results[f] for f in features}
