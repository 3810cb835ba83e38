"""Where the SR target extractor of a FeatSR MMDetection detector puts its targets: the pair
geometry (:func:`featsr_d2.core.receptive_field.pair_geometry`: offset of T^1.0 from the F^0.5 it
supervises, and their extents) of every map the heads pool from, the RoI levels and the sub layers,
measured on a linearized copy of the backbone and neck
(:func:`featsr_d2.core.receptive_field.linearized`).

Maps are named ``level<i>`` (the ``bbox_roi_extractor``'s levels, finest first) and by the sub
layers' module names (e.g. ``layer2``). The pyramid's levels are measured in blocks of one cell of
the coarsest map the FPN reads (the top-down path's nearest-neighbour upsampling makes single
units lopsided), the others unit by unit, as the Detectron2 side measures its backbones
(:mod:`featsr_d2.evaluation.extractor_geometry`).
"""

from __future__ import annotations

from torch import nn

from featsr_d2.core.receptive_field import PairGeometry, linearized, pair_geometry
from featsr_d2.mmdet.target_extractor import backbone_stages, extract_targets, stage_targets

__all__ = ["extractor_geometry"]


def _with_stage_outputs(backbone: nn.Module, names, fn):
    """``fn(x)`` and the outputs of the ``backbone`` modules ``names`` it ran, captured."""

    def run(x):
        captured = {}
        handles = [
            getattr(backbone, name).register_forward_hook(
                lambda _m, _i, out, name=name: captured.__setitem__(name, out)
            )
            for name in names
        ]
        try:
            return {**fn(x), **captured}
        finally:
            for handle in handles:
                handle.remove()

    return run


def extractor_geometry(
    detector: nn.Module, *, aligned: bool = True, axis: int = 0
) -> dict[str, PairGeometry]:
    """:func:`~featsr_d2.core.receptive_field.pair_geometry` of the maps a ``FeatSRFasterRCNN``'s
    head pools from (``level<i>`` and the sub layers), its extractor's placement ``aligned``,
    along ``axis``."""
    strides = list(detector.roi_head.bbox_roi_extractor.featmap_strides)
    levels = {f"level{i}": s for i, s in enumerate(strides)}
    stages = backbone_stages(detector.backbone)
    stride_of = {s.name: s.stride for s in stages}
    subs = {name: stride_of[name] for name in detector.sub_layers}
    trunk = nn.ModuleDict({"backbone": detector.backbone})
    blocks = dict.fromkeys(levels, 1)
    if detector.with_neck:
        trunk["neck"] = detector.neck
        outputs = [stages[i].stride for i in detector.backbone.out_indices]
        coarsest = outputs[detector.neck.backbone_end_level - 1]
        blocks = {name: max(coarsest // s, 1) for name, s in levels.items()}
    units = {name: (stride, blocks[name]) for name, stride in levels.items()}
    units.update({name: (stride, 1) for name, stride in subs.items()})
    divisibility = max(getattr(detector.data_preprocessor, "pad_size_divisor", 1), 1)
    width = 2 * max(divisibility, 32)  # the 0.5x image keeps the divisibility
    with linearized(trunk) as lin:
        backbone = lin["backbone"]
        neck = lin["neck"] if "neck" in lin else None

        def plain(x):
            outs = backbone(x)
            return dict(zip(levels, neck(outs) if neck is not None else outs))

        def targets(x):
            maps = dict(zip(levels, extract_targets(backbone, neck, x, aligned=aligned)))
            stage_maps = stage_targets(backbone, x, aligned=aligned)
            return {**maps, **{name: stage_maps[name] for name in subs}}

        plain = _with_stage_outputs(backbone, list(subs), plain)
        results = pair_geometry(plain, targets, units, axis=axis, width=width, start=4 * width)
    return {name: results[name] for name in units}
