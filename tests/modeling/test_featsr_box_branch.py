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

from featsr_d2.checkpoint import AtomicDetectionCheckpointer
from featsr_d2.core.featsr import FeatSRBoxBranch
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


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_generator_discriminator_and_small_predictor_are_one_child_of_the_heads(layout):
    """FeatSR adds one child to Detectron2's heads, the FeatSRBoxBranch built in from_config; its
    small predictor is a copy of the large one, not shared with it."""
    cfg = tiny_featsr_cfg(layout, **MASK)
    heads = build_model(cfg).roi_heads
    base_cfg = cfg.clone()
    base_cfg.MODEL.ROI_HEADS.NAME = {"C4": "Res5ROIHeads", "FPN": "StandardROIHeads"}[layout]
    base_cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    base = build_model(base_cfg).roi_heads
    base_children = [name for name, _ in base.named_children()]
    assert [name for name, _ in heads.named_children()] == [*base_children, "featsr"]
    assert isinstance(heads.featsr, FeatSRBoxBranch)
    assert [name for name, _ in heads.featsr.named_children()] == [
        "generator",
        "discriminator",
        "small_head",
        "small_predictor",
    ]
    for large, small in heads._REPLICAS.items():
        large, small = heads.get_submodule(large[:-1]), heads.get_submodule(small[:-1])
        assert type(large) is type(small)
        assert not {p.data_ptr() for p in large.parameters()} & {
            p.data_ptr() for p in small.parameters()
        }


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
    assert _has_grad(heads.featsr.small_predictor)
    assert _has_grad(heads.featsr.generator) == (stage == 2)
    assert _has_grad(heads.box_predictor) == (stage == 3)

    model.eval()
    with torch.no_grad():  # G away from the identity: the small path differs from the large
        for block in heads.featsr.generator.blocks:
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
    assert _has_grad(model.roi_heads.featsr.generator)
    detections = _detections(model.eval(), _inputs(seed=1, with_gt=False))
    assert len(detections[0]) > 0
    for instances in detections:
        assert instances.pred_keypoints.shape == (len(instances), 3, 3)


def test_training_the_mask_head_on_predicted_boxes_is_refused():
    cfg = tiny_featsr_cfg("FPN", **MASK, **{"MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES": True})
    with pytest.raises(ValueError, match="TRAIN_ON_PRED_BOXES"):
        build_model(cfg)


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
            if name.startswith(("roi_heads.featsr.generator.", "roi_heads.featsr.small")):
                p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_state_dict_of_the_heads_before_versioning_loads_with_identical_outputs(layout, head_log):
    """A state dict of the FeatSR heads before ``_version`` 2 (same parameter names, version 1)
    loads strictly into the heads with identical detections and no small-predictor fill."""
    cfg = tiny_featsr_cfg(layout)
    model = _perturbed_model(cfg, seed=0)
    state = model.state_dict()
    assert state._metadata["roi_heads"]["version"] == 3
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
        a, b = getattr(fresh.roi_heads, large), fresh.roi_heads.get_submodule(small)
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


# Prefixes (under roi_heads.) of G, D and the small predictor before state-dict version 3, and
# theirs since.
OLD_LAYOUT = {
    "generator.": "featsr.generator.",
    "discriminator.": "featsr.discriminator.",
    "small_predictor.": "featsr.small_predictor.",
}
OLD_SMALL_HEAD = {"C4": "small_res5.", "FPN": "small_box_head."}


def _old_layout(state, layout, version):
    """``state`` as the FeatSR heads of ``version`` (1 or 2) wrote it: G, D and the small
    predictor directly under the heads."""
    renames = {
        "roi_heads." + new: "roi_heads." + old
        for old, new in {**OLD_LAYOUT, OLD_SMALL_HEAD[layout]: "featsr.small_head."}.items()
    }

    def rename(key):  # a state-dict key or a module's (metadata)
        for new, old in renames.items():
            if (key + ".").startswith(new):
                return (old + (key + ".")[len(new) :])[:-1]
        return key

    old_state = type(state)((rename(k), v) for k, v in state.items())
    old_state._metadata = type(state._metadata)(
        (rename(k), dict(v)) for k, v in state._metadata.items() if k != "roi_heads.featsr"
    )
    old_state._metadata["roi_heads"]["version"] = version
    return old_state


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_state_dict_of_the_layout_before_version_3_loads_strictly_with_identical_outputs(
    layout, version, head_log, tmp_path
):
    """A state dict with G, D and the small predictor directly under the heads (versions 1 and
    2) loads strictly, also through the checkpointer that requires every weight, into the same
    weights and detections; the log names each renamed prefix once, and nothing is filled in."""
    cfg = tiny_featsr_cfg(layout)
    model = _perturbed_model(cfg, seed=0)
    state = model.state_dict()
    old = _old_layout(state, layout, version)
    old_prefixes = [f"roi_heads.{p}" for p in [*OLD_LAYOUT, OLD_SMALL_HEAD[layout]]]
    assert all(any(k.startswith(p) for k in old) for p in old_prefixes)
    assert not any(k.startswith("roi_heads.featsr.") for k in old)
    inputs = _inputs(seed=2, with_gt=False)
    expected = _detections(model, inputs)

    fresh = build_model(cfg).eval()
    fresh.load_state_dict(copy.deepcopy(old))  # strict
    assert list(fresh.state_dict()) == list(state)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key
    for ours, theirs in zip(_detections(fresh, inputs), expected):
        assert len(ours) > 0
        assert torch.equal(ours.pred_boxes.tensor, theirs.pred_boxes.tensor)
        assert torch.equal(ours.scores, theirs.scores)
    assert len(head_log) == 1
    assert all(f"{p}* to " in head_log[0] for p in old_prefixes)
    assert "initialized" not in head_log[0]

    torch.save({"model": old}, tmp_path / "old.pth")
    again = build_model(cfg).eval()
    AtomicDetectionCheckpointer(again, require_all_weights=True).load(str(tmp_path / "old.pth"))
    for key, value in again.state_dict().items():
        assert torch.equal(value, state[key]), key
