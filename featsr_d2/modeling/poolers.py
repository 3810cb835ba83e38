"""FeatSRROIPooler: Detectron2's ROIPooler on featsr_d2's RoIAlign, one call for all FPN levels.

Three ways to use it:

* Directly: ``FeatSRROIPooler(output_size, scales, sampling_ratio, "FeatSRROIAlignV2")``, or
  ``FeatSRROIPooler.from_pooler(pooler)`` to convert an existing ``ROIPooler``.
* From a config, in a standard ROI head: ``MODEL.ROI_HEADS.NAME:
  "FeatSRPoolerStandardROIHeads"`` (or ``"FeatSRPoolerRes5ROIHeads"`` for C4 models) and
  ``MODEL.ROI_BOX_HEAD.POOLER_TYPE: "FeatSRROIAlignV2"`` (also ``ROI_MASK_HEAD`` /
  ``ROI_KEYPOINT_HEAD``). Any other ROI head gets the same by inheriting
  :class:`FeatSRPoolersMixin` first, as FeatSR's own heads do (they pool base, sub and target
  maps with :func:`~featsr_d2.layers.multimap_roi_align` directly).
* On a built model: ``convert_to_featsr_poolers(model)`` swaps every ROIAlign(V2) ROIPooler.

The output equals Detectron2's ``ROIPooler`` with the matching ``ROIAlign`` / ``ROIAlignV2`` type
(bit for bit on CPU in float32 / float64), forward and backward.
"""

from __future__ import annotations

from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.poolers import (
    ROIPooler,
    assign_boxes_to_levels,
    convert_boxes_to_pooler_format,
)
from detectron2.modeling.roi_heads import Res5ROIHeads, StandardROIHeads
from detectron2.structures import Boxes
from torch import Tensor, nn

from featsr_d2.layers import ROIAlign, multilevel_roi_align, roi_align

__all__ = [
    "FEATSR_POOLER_TYPES",
    "FeatSRPoolersMixin",
    "FeatSRROIPooler",
    "FeatSRPoolerRes5ROIHeads",
    "FeatSRPoolerStandardROIHeads",
    "convert_to_featsr_poolers",
]

# FeatSR pooler type -> (aligned, the Detectron2 pooler type it reproduces)
FEATSR_POOLER_TYPES = {
    "FeatSRROIAlign": (False, "ROIAlign"),
    "FeatSRROIAlignV2": (True, "ROIAlignV2"),
}
_FROM_DETECTRON2 = {d2: featsr for featsr, (_, d2) in FEATSR_POOLER_TYPES.items()}


class FeatSRROIPooler(ROIPooler):
    """``ROIPooler`` whose RoIAlign runs on featsr_d2's kernels.

    Same arguments as Detectron2's ``ROIPooler``; ``pooler_type`` is "FeatSRROIAlign" (legacy
    alignment, like "ROIAlign") or "FeatSRROIAlignV2" (like "ROIAlignV2"). With several levels,
    each box is assigned to its level as in Detectron2 and all levels are pooled by one
    :func:`~featsr_d2.layers.multilevel_roi_align` call.
    """

    def __init__(
        self,
        output_size,
        scales,
        sampling_ratio,
        pooler_type,
        canonical_box_size=224,
        canonical_level=4,
    ):
        if pooler_type not in FEATSR_POOLER_TYPES:
            raise ValueError(
                f"Unknown FeatSR pooler type {pooler_type!r}; one of {list(FEATSR_POOLER_TYPES)}"
            )
        aligned, d2_type = FEATSR_POOLER_TYPES[pooler_type]
        # The parent validates the pyramid and sets output_size, min/max level and canonical box.
        super().__init__(
            output_size, scales, sampling_ratio, d2_type, canonical_box_size, canonical_level
        )
        self.pooler_type = pooler_type
        self.scales = [float(s) for s in scales]
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.level_poolers = nn.ModuleList(
            ROIAlign(self.output_size, s, sampling_ratio, aligned) for s in self.scales
        )

    @classmethod
    def from_pooler(cls, pooler: ROIPooler, pooler_type: str | None = None) -> FeatSRROIPooler:
        """The FeatSRROIPooler equivalent to a Detectron2 ROIPooler of type ROIAlign(V2)."""
        first = pooler.level_poolers[0]
        if pooler_type is None:
            aligned = getattr(first, "aligned", None)
            if aligned is None or not hasattr(first, "sampling_ratio"):
                raise ValueError(f"only ROIAlign / ROIAlignV2 poolers convert, got {first}")
            pooler_type = _FROM_DETECTRON2["ROIAlignV2" if aligned else "ROIAlign"]
        return cls(
            output_size=pooler.output_size,
            scales=[p.spatial_scale for p in pooler.level_poolers],
            sampling_ratio=first.sampling_ratio,
            pooler_type=pooler_type,
            canonical_box_size=pooler.canonical_box_size,
            canonical_level=pooler.canonical_level,
        )

    def forward(self, x: list[Tensor], box_lists: list[Boxes]) -> Tensor:
        """Like ``ROIPooler.forward``: x are the N-image feature maps of every level, box_lists
        the N images' Boxes in image coordinates. Returns [M, C, output_size] for M boxes."""
        if not isinstance(x, list) or not isinstance(box_lists, list):
            raise TypeError("Arguments to pooler must be lists")
        if len(x) != len(self.level_poolers):
            raise ValueError(f"expected {len(self.level_poolers)} feature maps, got {len(x)}")
        if len(box_lists) != x[0].size(0):
            raise ValueError(
                f"x[0] has batch size {x[0].size(0)} but box_lists has {len(box_lists)} entries"
            )
        if len(box_lists) == 0:
            return x[0].new_zeros((0, x[0].shape[1], *self.output_size))
        rois = convert_boxes_to_pooler_format(box_lists)
        if len(x) == 1:
            return roi_align(
                x[0], rois, self.output_size, self.scales[0], self.sampling_ratio, self.aligned
            )
        levels = assign_boxes_to_levels(
            box_lists, self.min_level, self.max_level, self.canonical_box_size, self.canonical_level
        )
        return multilevel_roi_align(
            x, rois, levels, self.output_size, self.scales, self.sampling_ratio, self.aligned
        )

    def extra_repr(self) -> str:
        return f"pooler_type={self.pooler_type}, output_size={self.output_size}"


def convert_to_featsr_poolers(module: nn.Module) -> nn.Module:
    """Replaces, in place, every ROIAlign / ROIAlignV2 ``ROIPooler`` inside ``module`` by the
    equivalent :class:`FeatSRROIPooler`; returns ``module``. Other poolers are left alone."""
    for name, child in list(module.named_children()):
        if isinstance(child, ROIPooler) and not isinstance(child, FeatSRROIPooler):
            first = child.level_poolers[0]
            if hasattr(first, "aligned") and hasattr(first, "sampling_ratio"):
                setattr(module, name, FeatSRROIPooler.from_pooler(child))
        else:
            convert_to_featsr_poolers(child)
    return module


# ROI-head arguments holding a pooler, and the config node of their pooler type.
_POOLER_NODES = {
    "box_pooler": "ROI_BOX_HEAD",
    "pooler": "ROI_BOX_HEAD",  # Res5ROIHeads
    "mask_pooler": "ROI_MASK_HEAD",
    "keypoint_pooler": "ROI_KEYPOINT_HEAD",
}


class FeatSRPoolersMixin:
    """Lets a Detectron2 ROI head accept the FeatSR pooler types in its config.

    Put it first among the bases (``class MyHeads(FeatSRPoolersMixin, StandardROIHeads)``). Its
    ``from_config`` builds the head with the matching Detectron2 type, then swaps each pooler
    whose config node (``MODEL.ROI_BOX_HEAD`` / ``ROI_MASK_HEAD`` / ``ROI_KEYPOINT_HEAD``) names
    a FeatSR type for a :class:`FeatSRROIPooler`.
    """

    @classmethod
    def from_config(cls, cfg, input_shape):
        featsr_types = {
            node: cfg.MODEL[node].POOLER_TYPE
            for node in set(_POOLER_NODES.values())
            if cfg.MODEL[node].POOLER_TYPE in FEATSR_POOLER_TYPES
        }
        if featsr_types:
            cfg = cfg.clone()
            cfg.defrost()
            for node, pooler_type in featsr_types.items():
                cfg.MODEL[node].POOLER_TYPE = FEATSR_POOLER_TYPES[pooler_type][1]
        ret = super().from_config(cfg, input_shape)
        for key, node in _POOLER_NODES.items():
            if node in featsr_types and isinstance(ret.get(key), ROIPooler):
                ret[key] = FeatSRROIPooler.from_pooler(ret[key], featsr_types[node])
        return ret


@ROI_HEADS_REGISTRY.register()
class FeatSRPoolerStandardROIHeads(FeatSRPoolersMixin, StandardROIHeads):
    """``StandardROIHeads`` that also accepts POOLER_TYPE "FeatSRROIAlign(V2)"."""


@ROI_HEADS_REGISTRY.register()
class FeatSRPoolerRes5ROIHeads(FeatSRPoolersMixin, Res5ROIHeads):
    """``Res5ROIHeads`` (C4 models) that also accepts POOLER_TYPE "FeatSRROIAlign(V2)"."""
