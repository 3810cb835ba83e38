"""Sliced inference (the SAHI-style reference of the FeatSR study): tiles cover the upscaled image
with the asked overlap, detections map back to the image, duplicates merge by class."""

import pytest
import torch
from detectron2.structures import Boxes, Instances

from featsr_d2.evaluation.sliced_inference import SlicedDetector, tile_starts


@pytest.mark.parametrize(
    "length, tile, overlap", [(640, 352, 0.15), (640, 320, 0.2), (1000, 300, 0.1), (300, 300, 0.2)]
)
def test_tiles_cover_the_image_with_at_least_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == max(length, tile)
    for a, b in zip(starts, starts[1:]):
        assert b - a <= tile * (1 - overlap) + 1  # overlap at least asked (rounding: 1 px)
    # the fewest: one tile less would need less overlap than asked
    if len(starts) > 1:
        assert (length - tile) / (len(starts) - 2 or 1) > tile * (1 - overlap) or len(starts) == 2
    assert tile_starts(640, 352, 0.15) == [0, 288]
    with pytest.raises(ValueError):
        tile_starts(640, 0, 0.1)


class _OneBoxPerCall(torch.nn.Module):
    """A detector that finds one 'object' at the brightest pixel, class 1: 8 x 8 on the 160 px
    image, 16 x 16 on the tiles of the 2x image (the same object)."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def forward(self, batched_inputs):
        out = []
        for x in batched_inputs:
            image = x["image"].float().sum(0)
            self.sizes.append(tuple(image.shape))
            y, xx = divmod(int(image.argmax()), image.shape[1])
            inst = Instances((x["height"], x["width"]))
            r = 4.0 if image.shape[0] == 160 else 8.0
            inst.pred_boxes = Boxes(torch.tensor([[xx - r, y - r, xx + r, y + r]]))
            inst.scores = torch.tensor([0.8 if image.shape[0] == 160 else 0.9])
            inst.pred_classes = torch.tensor([1])
            out.append({"instances": inst})
        return out


def test_detections_map_back_to_the_image_and_merge():
    image = torch.zeros(3, 160, 160, dtype=torch.uint8)
    image[:, 100:104, 30:34] = 255  # one bright object around (32, 102), inside one tile
    detector = _OneBoxPerCall()
    sliced = SlicedDetector(detector, upscale=2.0, tile_size=192, min_overlap=0.2)
    (out,) = sliced([{"image": image, "height": 320, "width": 320}])
    inst = out["instances"]
    assert sliced.num_passes(160, 160) == len(detector.sizes) == 1 + 2 * 2
    assert detector.sizes[0] == (160, 160) and set(detector.sizes[1:]) == {(192, 192)}
    assert inst.image_size == (320, 320)
    # The object's box from the tile that holds it, mapped back (x2 to the 320 px original), and
    # the full image's box: they overlap, so NMS keeps the higher score (0.9, the 192 px tile).
    boxes = inst.pred_boxes.tensor
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    near = (centre - torch.tensor([64.0, 204.0])).abs().max(dim=1).values < 6
    assert near.sum() == 1
    assert inst.scores[near].item() == pytest.approx(0.9)
    assert bool((boxes >= 0).all() and (boxes <= 320).all())


def test_a_bad_upscale_is_refused():
    with pytest.raises(ValueError, match="upscale"):
        SlicedDetector(_OneBoxPerCall(), upscale=0)
