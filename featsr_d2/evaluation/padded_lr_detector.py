"""The ``LR`` row of TDSR's Tables 1 and 2: the frozen detector on the LR image placed at the
top-left of a black canvas of the detector's input size (TDSR: "padded with black to fit to the
pretrained SSD300 detector"); its detections are mapped back to HR coordinates (x s), the paper's
only sensible reading, since its ground truth is that of the HR image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from detectron2.structures import Instances
from torch import nn

from featsr_d2.utils.image import to_detector_format

__all__ = ["PaddedLRDetector"]


class PaddedLRDetector(nn.Module):
    """The ``LR`` row: a detector on the LR image pasted at the top-left of a black canvas of the
    HR input's size, its boxes scaled by ``scale`` back to the HR image's coordinates."""

    def __init__(self, detector: nn.Module, scale: int):
        super().__init__()
        fmt = getattr(detector, "input_format", None)
        if fmt not in ("RGB", "BGR"):
            raise ValueError(f"the detector's INPUT.FORMAT must be RGB or BGR, got {fmt!r}")
        self.detector = detector
        self.scale = int(scale)
        self.input_format = fmt

    def canvas(self, dataset_dict: Mapping[str, Any]) -> torch.Tensor:
        """The black (3, H, W) RGB uint8 canvas of the input's HR size holding its LR image."""
        h, w = dataset_dict["image"].shape[-2:]
        lr = dataset_dict["lr_image"]
        out = torch.zeros((3, h, w), dtype=torch.uint8)
        lh, lw = min(lr.shape[-2], h), min(lr.shape[-1], w)
        out[:, :lh, :lw] = lr[:, :lh, :lw]
        return out

    @torch.no_grad()
    def forward(self, batched_inputs: Sequence[Mapping[str, Any]]) -> list[dict]:
        if self.training:
            raise RuntimeError("PaddedLRDetector is an evaluation baseline; it does not train")
        det_inputs, sizes = [], []
        for x in batched_inputs:
            canvas = self.canvas(x)
            h, w = canvas.shape[-2:]
            height, width = x.get("height", h), x.get("width", w)
            sizes.append((height, width))
            det_inputs.append(
                {
                    "image": to_detector_format(canvas, self.input_format),
                    # The detector rescales its boxes from the canvas to this size: x s, then to
                    # the original image's size.
                    "height": height * self.scale,
                    "width": width * self.scale,
                }
            )
        outputs = self.detector(det_inputs)
        results = []
        for out, (height, width) in zip(outputs, sizes):
            inst = out["instances"]
            fixed = Instances((height, width), **inst.get_fields())
            fixed.pred_boxes.clip((height, width))
            results.append({"instances": fixed[fixed.pred_boxes.nonempty()]})
        return results
