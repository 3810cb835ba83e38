"""Sliced inference: what a user who wants small objects without FeatSR would try first.

As SAHI ("slicing aided hyper inference") does it: the image is upscaled, cut into overlapping tiles
that the detector sees at its own resolution, and the tiles' detections, mapped back to the image,
are merged with the detections of the whole image by class-wise non-maximum suppression. A small
object then covers ``upscale`` times more pixels of the detector's input.

:class:`SlicedDetector` wraps any Detectron2 detector that takes ``{"image", "height", "width"}``
inputs (already resized images, as the test mapper gives them) and returns ``instances``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from detectron2.layers import batched_nms
from detectron2.structures import Boxes, Instances
from torch import nn

__all__ = ["SlicedDetector", "tile_starts"]


def tile_starts(length: int, tile: int, min_overlap: float) -> list[int]:
    """Start offsets of the fewest tiles of size ``tile`` that cover ``[0, length)`` with
    neighbours overlapping by at least ``min_overlap * tile``, spread evenly (the first at 0, the
    last ending at ``length``)."""
    if tile <= 0 or not 0 <= min_overlap < 1:
        raise ValueError(f"need tile > 0 and 0 <= min_overlap < 1, got {tile}, {min_overlap}")
    if length <= tile:
        return [0]
    stride = tile * (1 - min_overlap)
    count = 1 + math.ceil((length - tile) / stride)
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


class SlicedDetector(nn.Module):
    """Runs ``detector`` on the whole image and on overlapping tiles of the image upscaled by
    ``upscale`` (bicubic), and merges every detection by class-wise NMS."""

    def __init__(
        self,
        detector: nn.Module,
        *,
        upscale: float = 2.0,
        tile_size: int = 352,
        min_overlap: float = 0.15,
        nms_threshold: float = 0.5,
        max_detections: int = 100,
        include_full_image: bool = True,
    ):
        """
        Args:
            detector: a Detectron2 model in eval mode (e.g. ``GeneralizedRCNN``).
            upscale: the factor the image is enlarged by before slicing.
            tile_size: side of the tiles on the upscaled image, in pixels; the detector sees each
                at this size (a multiple of the backbone's size divisibility avoids padding).
            min_overlap: least overlap of neighbouring tiles, as a fraction of ``tile_size``.
            nms_threshold: IoU above which the lower-scoring of two same-class boxes is dropped.
            max_detections: detections kept per image after the merge.
            include_full_image: also run the detector on the image itself (SAHI's default).
        """
        super().__init__()
        if upscale <= 0:
            raise ValueError(f"upscale must be > 0, got {upscale}")
        self.detector = detector
        self.upscale = upscale
        self.tile_size = tile_size
        self.min_overlap = min_overlap
        self.nms_threshold = nms_threshold
        self.max_detections = max_detections
        self.include_full_image = include_full_image

    def num_passes(self, height: int, width: int) -> int:
        """How many detector runs one image of this (network input) size costs."""
        h, w = round(height * self.upscale), round(width * self.upscale)
        tiles = len(tile_starts(h, self.tile_size, self.min_overlap)) * len(
            tile_starts(w, self.tile_size, self.min_overlap)
        )
        return tiles + int(self.include_full_image)

    @torch.no_grad()
    def forward(self, batched_inputs: list[dict]) -> list[dict]:
        return [{"instances": self._one(x)} for x in batched_inputs]

    def _one(self, inputs: dict) -> Instances:
        image = inputs["image"]  # (C, h, w) network input, as the test mapper resized it
        _, h, w = image.shape
        height, width = inputs.get("height", h), inputs.get("width", w)
        parts = []
        if self.include_full_image:
            (out,) = self.detector([{"image": image, "height": h, "width": w}])
            parts.append(out["instances"])
        big = F.interpolate(
            image[None].float(), scale_factor=self.upscale, mode="bicubic", align_corners=False
        )[0]
        big = big.clamp(0, 255).round().to(image.dtype) if not image.is_floating_point() else big
        bh, bw = big.shape[-2:]
        for y0 in tile_starts(bh, self.tile_size, self.min_overlap):
            for x0 in tile_starts(bw, self.tile_size, self.min_overlap):
                tile = big[:, y0 : y0 + self.tile_size, x0 : x0 + self.tile_size]
                th, tw = tile.shape[-2:]
                (out,) = self.detector([{"image": tile, "height": th, "width": tw}])
                found = out["instances"]
                boxes = found.pred_boxes.tensor.clone()
                boxes[:, 0::2] = (boxes[:, 0::2] + x0) / self.upscale
                boxes[:, 1::2] = (boxes[:, 1::2] + y0) / self.upscale
                shifted = Instances((h, w))
                shifted.pred_boxes = Boxes(boxes)
                shifted.scores = found.scores
                shifted.pred_classes = found.pred_classes
                parts.append(shifted)
        merged = Instances.cat([Instances((h, w), **p.get_fields()) for p in parts])
        keep = batched_nms(
            merged.pred_boxes.tensor, merged.scores, merged.pred_classes, self.nms_threshold
        )[: self.max_detections]
        merged = merged[keep]
        scale_x, scale_y = width / w, height / h
        boxes = merged.pred_boxes.tensor.clone()
        boxes[:, 0::2] *= scale_x
        boxes[:, 1::2] *= scale_y
        out = Instances((height, width))
        out.pred_boxes = Boxes(boxes)
        out.pred_boxes.clip((height, width))
        out.scores = merged.scores
        out.pred_classes = merged.pred_classes
        return out
