"""FeatSRROIPooler: Detectron2's ROIPooler on featsr_d2's RoIAlign, one call for all FPN levels.

``FeatSRROIPooler(output_size, scales, sampling_ratio, "FeatSRROIAlignV2")``, or
``FeatSRROIPooler.from_pooler(pooler)`` to convert an existing ``ROIPooler``. FeatSR's ROI heads
build it when a config's ``POOLER_TYPE`` (``MODEL.ROI_BOX_HEAD`` / ``ROI_MASK_HEAD`` /
``ROI_KEYPOINT_HEAD``) names one of :data:`FEATSR_POOLER_TYPES`.

The output equals Detectron2's ``ROIPooler`` with the matching ``ROIAlign`` / ``ROIAlignV2`` type
(bit for bit on CPU in float32 / float64), forward and backward.
"""

from __future__ import annotations

from detectron2.modeling.poolers import (
    ROIPooler,
    assign_boxes_to_levels,
    convert_boxes_to_pooler_format,
)
from detectron2.structures import Boxes
from torch import Tensor, nn

from featsr_d2.layers.roi_align import ROIAlign, multilevel_roi_align, roi_align

__all__ = ["FEATSR_POOLER_TYPES", "FeatSRROIPooler"]

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
