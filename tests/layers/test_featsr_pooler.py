"""FeatSRROIPooler against Detectron2's ROIPooler (its use from a config: tests/modeling)."""

import pytest
import torch
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes

from featsr_d2.layers import FeatSRROIPooler

STRIDES = (4, 8, 16, 32)
IMAGE = (256, 320)  # (H, W)


def fpn_features(seed=0, channels=8, batch=2, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, channels, IMAGE[0] // s, IMAGE[1] // s, generator=g, dtype=dtype)
        for s in STRIDES
    ]


def random_boxes(n, seed=0):
    """n boxes from 7 to 600 px (all FPN levels), some crossing the image border."""
    g = torch.Generator().manual_seed(seed)
    size = torch.exp(torch.empty(n).uniform_(2.0, 6.4, generator=g))
    aspect = torch.exp(torch.empty(n).uniform_(-0.7, 0.7, generator=g))
    w, h = size * aspect.sqrt(), size / aspect.sqrt()
    cx = torch.rand(n, generator=g) * IMAGE[1]
    cy = torch.rand(n, generator=g) * IMAGE[0]
    return Boxes(torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1))


@pytest.mark.parametrize("pooler_type", ["ROIAlignV2", "ROIAlign"])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_equals_detectron2_roi_pooler_on_fpn(pooler_type, sampling_ratio):
    scales = [1.0 / s for s in STRIDES]
    ref_pooler = ROIPooler(7, scales, sampling_ratio, pooler_type)
    pooler = FeatSRROIPooler(7, scales, sampling_ratio, "FeatSR" + pooler_type)
    feats = fpn_features()
    boxes = [random_boxes(60, seed=1), random_boxes(45, seed=2)]
    x = [f.clone().requires_grad_() for f in feats]
    x_ref = [f.clone().requires_grad_() for f in feats]
    out = pooler(x, boxes)
    ref = ref_pooler(x_ref, boxes)
    # Boxes of every level are present.
    from detectron2.modeling.poolers import assign_boxes_to_levels

    levels = assign_boxes_to_levels(boxes, 2, 5, 224, 4)
    assert set(levels.tolist()) == {0, 1, 2, 3}
    assert out.shape == ref.shape == (105, 8, 7, 7)
    assert torch.equal(out, ref)
    grad = torch.randn_like(ref)
    out.backward(grad)
    ref.backward(grad)
    for a, b in zip(x, x_ref):
        assert torch.equal(a.grad, b.grad)


def test_single_level_and_empty_inputs():
    ref_pooler = ROIPooler((4, 4), [1.0 / 16], 0, "ROIAlignV2")
    pooler = FeatSRROIPooler.from_pooler(ref_pooler)
    assert pooler.pooler_type == "FeatSRROIAlignV2" and pooler.aligned
    feats = fpn_features()[2:3]
    boxes = [random_boxes(10), random_boxes(0)]  # the second image has no box
    assert torch.equal(pooler(feats, boxes), ref_pooler(feats, boxes))
    empty = [random_boxes(0), random_boxes(0)]
    assert pooler(feats, empty).shape == ref_pooler(feats, empty).shape == (0, 8, 4, 4)
    no_images = [f[:0] for f in feats]
    assert pooler(no_images, []).shape == (0, 8, 4, 4)
    with pytest.raises(ValueError):
        FeatSRROIPooler(7, [1.0 / 16], 0, "ROIPool")
