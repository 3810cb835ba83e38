"""Which proposals FeatSR treats as small, on boxes as tensors (Noh et al., ICCV 2019, sections 4
and 4.2: "we discard the high-resolution features if they are too small to be used as targets, and
discard the low-resolution features if they are large enough to have no need of super-resolution").

Boxes are (N, 4) tensors (x1, y1, x2, y2) in input-image pixels, one image's at a time; a box's
size is sqrt(area) (0 for an empty box).

- :func:`small_mask`: the small/large split. A proposal whose size is below ``small_size`` (32 for
  TT100K, 96 for VOC and COCO) goes through G and the small predictor, the others through the
  large predictor;
- :func:`cap_small`: the inference cap, at most K small proposals per image, the first ones (the
  RPN lists them by objectness, highest first); the others take the large path;
- :func:`sr_pair_boxes`: the SR training pairs of a set of (1.0x) proposals, those whose 0.5x box
  is small and whose 1.0x box is at least ``target_min_size``, at most ``max_pairs`` (the first:
  a sampler lists foreground first); F^0.5 is pooled on the 0.5x image's features at the 0.5x box,
  T^1.0 on the 1.0x maps at the same box (with twice the scale).
"""

from __future__ import annotations

import torch

__all__ = ["box_size", "cap_small", "small_mask", "sr_pair_boxes"]


def box_size(boxes: torch.Tensor) -> torch.Tensor:
    """sqrt(area) of each (x1, y1, x2, y2) box; 0 for an empty or inverted one."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return area.clamp(min=0).sqrt()


def small_mask(boxes: torch.Tensor, small_size: float) -> torch.Tensor:
    """True for each box whose size is below ``small_size``."""
    return box_size(boxes) < small_size


def cap_small(mask: torch.Tensor, max_small: int) -> torch.Tensor:
    """``mask`` with only its first ``max_small`` True entries kept (a new tensor); -1 keeps them
    all, 0 none (the base detector)."""
    if max_small < 0:
        return mask
    mask = mask.clone()
    mask[mask.nonzero().flatten()[max_small:]] = False
    return mask


def sr_pair_boxes(
    boxes: torch.Tensor, small_size: float, target_min_size: float, max_pairs: int = -1
) -> torch.Tensor:
    """The 0.5x boxes of the SR pairs among ``boxes`` (1.0x): those whose 0.5x box is small
    (size / 2 < ``small_size``) and whose 1.0x box is at least ``target_min_size``, in order, the
    first ``max_pairs`` of them (-1: all)."""
    side = box_size(boxes)
    keep = ((side / 2 < small_size) & (side >= target_min_size)).nonzero()
    if max_pairs >= 0:
        keep = keep[:max_pairs]
    return boxes[keep.flatten()] * 0.5
