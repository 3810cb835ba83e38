"""FeatSRROIPooler against Detectron2's ROIPooler, and its use from a config."""

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY, build_roi_heads
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes
from torch import nn

from featsr_d2.modeling.poolers import (
    FeatSRPoolerStandardROIHeads,
    FeatSRROIPooler,
    convert_to_featsr_poolers,
)

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


def test_convert_to_featsr_poolers():
    scales = [1.0 / s for s in STRIDES]
    model = nn.Module()
    model.head = nn.Module()
    model.head.box_pooler = ROIPooler(7, scales, 0, "ROIAlign")
    model.head.other = ROIPooler(7, scales, 0, "ROIPool")  # not an ROIAlign: left alone
    convert_to_featsr_poolers(model)
    assert isinstance(model.head.box_pooler, FeatSRROIPooler)
    assert model.head.box_pooler.pooler_type == "FeatSRROIAlign"
    assert type(model.head.other) is ROIPooler


def _fpn_cfg(pooler_type):
    cfg = get_cfg()
    cfg.MODEL.ROI_HEADS.NAME = "FeatSRPoolerStandardROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 1
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = pooler_type
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0
    return cfg


def test_standard_roi_heads_from_config():
    assert ROI_HEADS_REGISTRY.get("FeatSRPoolerStandardROIHeads") is FeatSRPoolerStandardROIHeads
    assert ROI_HEADS_REGISTRY.get("FeatSRPoolerRes5ROIHeads") is not None
    shapes = {f"p{i}": ShapeSpec(channels=8, stride=s) for i, s in zip(range(2, 6), STRIDES)}
    torch.manual_seed(0)
    heads = build_roi_heads(_fpn_cfg("FeatSRROIAlignV2"), shapes)
    assert isinstance(heads, FeatSRPoolerStandardROIHeads)
    assert isinstance(heads.box_pooler, FeatSRROIPooler)
    torch.manual_seed(0)
    cfg_ref = _fpn_cfg("ROIAlignV2")
    cfg_ref.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    ref = build_roi_heads(cfg_ref, shapes)
    assert type(ref.box_pooler) is ROIPooler
    feats = fpn_features()
    boxes = [random_boxes(20, seed=3), random_boxes(7, seed=4)]
    assert torch.equal(heads.box_pooler(feats, boxes), ref.box_pooler(feats, boxes))
    # The whole box head gives the same features (same seed, same weights).
    assert torch.equal(
        heads.box_head(heads.box_pooler(feats, boxes)), ref.box_head(ref.box_pooler(feats, boxes))
    )
