"""FeatSR's box branch in Detectron2's ROI heads: mask and keypoint heads beside it; checkpoints."""

import copy
import logging
import math

import pytest
import torch
from common import LAYOUTS, tiny_featsr_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, Keypoints, PolygonMasks
from detectron2.utils.events import EventStorage

from featsr_d2.layers import FeatSRROIPooler
from featsr_d2.modeling.roi_heads import featsr_roi_heads

SMALL_LOSSES = {"loss_cls_small", "loss_box_reg_small"}
SR_LOSSES = {"loss_sr_content", "loss_sr_adversarial", "loss_discriminator"}
MASK = {
    "MODEL.MASK_ON": True,
    "MODEL.ROI_MASK_HEAD.NUM_CONV": 1,
    "MODEL.ROI_MASK_HEAD.CONV_DIM": 16,
    "MODEL.FEATSR.SMALL_SIZE": 48,
}


def _inputs(seed=0, with_gt=True):
    """One 128 px image with four small and large signs (boxes and polygon masks), one without
    ground truth."""
    g = torch.Generator().manual_seed(seed)
    boxes = torch.tensor(
        [[10, 10, 30, 28], [40, 50, 100, 110], [5, 70, 15, 80], [60, 20, 80, 36]],
        dtype=torch.float32,
    )
    inputs = []
    for k in range(2):
        inst = Instances((128, 128))
        b = boxes if k == 0 else boxes[:0]
        inst.gt_boxes = Boxes(b)
        inst.gt_classes = torch.tensor([1, 3, 2, 5])[: len(b)]
        inst.gt_masks = PolygonMasks([[[x0, y0, x1, y0, x1, y1, x0, y1]] for x0, y0, x1, y1 in b])
        corners = torch.stack([b[:, :2], b[:, 2:], (b[:, :2] + b[:, 2:]) / 2], dim=1)
        inst.gt_keypoints = Keypoints(torch.cat([corners, torch.full((len(b), 3, 1), 2.0)], 2))
        image = {"image": torch.rand(3, 128, 128, generator=g) * 255, "height": 128, "width": 128}
        inputs.append(dict(image, instances=inst) if with_gt else image)
    return inputs


def _has_grad(module) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def _detections(model, inputs):
    with torch.no_grad():
        return [o["instances"] for o in model(inputs)]


@pytest.mark.parametrize("stage", [2, 3])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_featsr_on_mask_rcnn_trains_and_infers(layout, stage):
    """FeatSR's heads on a Mask R-CNN config: one training step gives the mask loss beside
    FeatSR's and every loss trains its module; inference gives masks for FeatSR's detections
    (the same boxes as without the mask head), on an image with ground truth and one without."""
    cfg = tiny_featsr_cfg(layout, **MASK, **{"MODEL.FEATSR.STAGE": stage})
    torch.manual_seed(0)
    model = build_model(cfg).train()
    heads = model.roi_heads
    with EventStorage():
        losses = model(_inputs())
    expected = SMALL_LOSSES | {"loss_mask"}
    expected |= SR_LOSSES if stage == 2 else {"loss_cls", "loss_box_reg"}
    assert set(losses) == expected
    assert all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    assert _has_grad(heads.mask_head)
    assert _has_grad(heads.small_predictor)
    assert _has_grad(heads.generator) == (stage == 2)
    assert _has_grad(heads.box_predictor) == (stage == 3)

    model.eval()
    with torch.no_grad():  # G away from the identity: the small path differs from the large
        for block in heads.generator.blocks:
            torch.nn.init.normal_(block.conv2.weight, std=0.05)
    detections = _detections(model, _inputs(seed=1, with_gt=False))
    assert len(detections[0]) > 0
    for instances in detections:
        assert instances.has("pred_masks")
        assert instances.pred_masks.shape == (len(instances), 128, 128)
    # The mask head changes no box: the same model without it detects the same boxes.
    cfg.MODEL.MASK_ON = False
    boxes_only = build_model(cfg).eval()
    result = boxes_only.load_state_dict(model.state_dict(), strict=False)
    assert not result.missing_keys
    assert result.unexpected_keys and all("mask_head" in k for k in result.unexpected_keys)
    for ours, theirs in zip(detections, _detections(boxes_only, _inputs(seed=1, with_gt=False))):
        assert torch.equal(ours.pred_boxes.tensor, theirs.pred_boxes.tensor)
        assert torch.equal(ours.scores, theirs.scores)


def test_featsr_with_a_keypoint_head_trains_and_infers():
    """The keypoint branch runs beside FeatSR's box branch (FPN, stage 2)."""
    cfg = tiny_featsr_cfg(
        "FPN",
        **{
            "MODEL.KEYPOINT_ON": True,
            "MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS": 3,
            "MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS": [16],
            "MODEL.FEATSR.SMALL_SIZE": 48,
        },
    )
    torch.manual_seed(0)
    model = build_model(cfg).train()
    with EventStorage():
        losses = model(_inputs())
    assert set(losses) == SMALL_LOSSES | SR_LOSSES | {"loss_keypoint"}
    assert all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    assert _has_grad(model.roi_heads.keypoint_head)
    assert _has_grad(model.roi_heads.generator)
    detections = _detections(model.eval(), _inputs(seed=1, with_gt=False))
    assert len(detections[0]) > 0
    for instances in detections:
        assert instances.pred_keypoints.shape == (len(instances), 3, 3)


def test_training_the_mask_head_on_predicted_boxes_is_refused():
    cfg = tiny_featsr_cfg("FPN", **MASK, **{"MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES": True})
    with pytest.raises(ValueError, match="TRAIN_ON_PRED_BOXES"):
        build_model(cfg)


def test_featsr_pooler_type_on_the_mask_head():
    """A FeatSR pooler type on ROI_MASK_HEAD gives a FeatSRROIPooler and the same masks."""
    cfg = tiny_featsr_cfg("FPN", **MASK)
    torch.manual_seed(0)
    reference = build_model(cfg).eval()
    cfg.MODEL.ROI_MASK_HEAD.POOLER_TYPE = "FeatSRROIAlignV2"
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert isinstance(model.roi_heads.mask_pooler, FeatSRROIPooler)
    assert type(model.roi_heads.box_pooler) is not FeatSRROIPooler  # ROI_BOX_HEAD: ROIAlignV2
    inputs = _inputs(seed=1, with_gt=False)
    for ours, theirs in zip(_detections(model, inputs), _detections(reference, inputs)):
        assert len(ours) > 0
        assert torch.equal(ours.pred_masks, theirs.pred_masks)


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def head_log():
    handler = _Messages()
    logger = featsr_roi_heads.logger
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def _perturbed_model(cfg, seed):
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("roi_heads.generator.", "roi_heads.small")):
                p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_state_dict_of_the_heads_before_versioning_loads_with_identical_outputs(layout, head_log):
    """A state dict of the FeatSR heads before ``_version`` 2 (same parameter names, version 1)
    loads strictly into the heads with identical detections and no small-predictor fill."""
    cfg = tiny_featsr_cfg(layout)
    model = _perturbed_model(cfg, seed=0)
    state = model.state_dict()
    assert state._metadata["roi_heads"]["version"] == 2
    old = copy.deepcopy(state)
    old._metadata["roi_heads"]["version"] = 1
    fresh = build_model(cfg).eval()
    fresh.load_state_dict(old)
    inputs = _inputs(seed=2, with_gt=False)
    for ours, theirs in zip(_detections(fresh, inputs), _detections(model, inputs)):
        assert len(ours) > 0
        assert torch.equal(ours.pred_boxes.tensor, theirs.pred_boxes.tensor)
        assert torch.equal(ours.scores, theirs.scores)
    assert head_log == []  # nothing filled in


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_small_predictor_is_filled_in_only_for_a_state_dict_without_it_before_version_2(
    layout, head_log
):
    """The stage-1 detector's state dict (a plain Detectron2 head, version 1) fills the small
    predictor in from the large one and logs it; a version-2 state dict without the small
    predictor reports it missing."""
    cfg = tiny_featsr_cfg(layout)
    model = _perturbed_model(cfg, seed=0)
    heads = model.roi_heads
    large_names = [n.rstrip(".") for n in heads._REPLICAS]
    small_names = [n.rstrip(".") for n in heads._REPLICAS.values()]
    prefixes = tuple(f"roi_heads.{n}." for n in small_names)
    stage1 = {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}
    fresh = build_model(cfg).eval()
    result = fresh.load_state_dict(stage1, strict=False)  # no metadata: a version-1 dict
    assert not result.missing_keys and not result.unexpected_keys
    for large, small in zip(large_names, small_names):
        a, b = getattr(fresh.roi_heads, large), getattr(fresh.roi_heads, small)
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), name
            assert torch.equal(x, getattr(heads, large).state_dict()[name])
    assert len(head_log) == 1
    assert all(f"roi_heads.{n}.*" in head_log[0] for n in large_names + small_names)

    head_log.clear()
    state = model.state_dict()
    current = copy.deepcopy(state)
    for key in [k for k in current if k.startswith(prefixes)]:
        del current[key]
    again = build_model(cfg).eval()
    result = again.load_state_dict(current, strict=False)
    assert sorted(result.missing_keys) == sorted(k for k in state if k.startswith(prefixes))
    assert head_log == []
