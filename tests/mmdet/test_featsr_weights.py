"""Weights of FeatSR's MMDetection model: a stage refuses weights that lack (or mis-shape) what it
freezes, through ``load_state_dict`` and mmengine's ``load_checkpoint`` alike, and will not train
without them; the stage-1 detector's checkpoint initializes the small predictor from the large one
(a FeatSR checkpoint's missing small predictor is reported instead); torchvision's ImageNet
MobileNetV2 loads into mmdet's backbone through ``featsr://imagenet/mobilenet_v2``."""

import pytest
import torch
import torchvision
from featsr_mmdet import LAYOUTS, build, data, featsr_model, load_config, stage1_state, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def _stage2(layout="R50-FPN", **head):
    cfg = tiny(load_config(LAYOUTS[layout][1]))
    cfg.model.roi_head.update(head)
    return build(cfg), cfg


def test_stage2_refuses_imagenet_weights_naming_what_it_freezes(tmp_path):
    from mmengine.runner import load_checkpoint

    from featsr_d2.mmdet.featsr_rcnn import FrozenWeightsMissing

    model, _ = _stage2()
    backbone_only = {k: v for k, v in stage1_state("R50-FPN").items() if k.startswith("backbone.")}
    with pytest.raises(FrozenWeightsMissing) as refused:
        model.load_state_dict(backbone_only, strict=False)
    message = str(refused.value)
    for prefix in ("neck.", "rpn_head.", "roi_head.bbox_head."):
        assert prefix in message
    assert "stage-1 base detector" in message and "not ImageNet weights" in message
    # mmengine's load_from goes through the same check (a torchvision-style file: no prefixes).
    path = tmp_path / "imagenet.pth"
    plain = {k[len("backbone.") :]: v for k, v in backbone_only.items()}
    torch.save({"state_dict": plain}, path)
    with pytest.raises(FrozenWeightsMissing, match="rpn_head"):
        load_checkpoint(model, str(path), map_location="cpu")
    # Nothing was loaded: the model still refuses to train.
    with pytest.raises(FrozenWeightsMissing, match="load_from"):
        model.train_step(data(), None)


def test_stage2_trains_only_once_its_frozen_weights_are_loaded():
    from featsr_d2.mmdet.featsr_rcnn import FrozenWeightsMissing

    model, _ = _stage2()
    with pytest.raises(FrozenWeightsMissing) as refused:
        model.require_frozen_weights()
    assert "init_cfg loads ImageNet weights into the backbone only" in str(refused.value)
    model.load_state_dict(stage1_state("R50-FPN"), strict=False)
    model.require_frozen_weights()  # no longer raises


def test_stage3_refuses_the_stage1_checkpoint():
    from featsr_d2.mmdet.featsr_rcnn import FrozenWeightsMissing

    cfg = tiny(load_config(LAYOUTS["R50-C4"][2]))
    model = build(cfg)
    with pytest.raises(FrozenWeightsMissing) as refused:
        model.load_state_dict(stage1_state("R50-C4"), strict=False)
    message = str(refused.value)
    assert "roi_head.featsr.generator." in message and "roi_head.featsr.discriminator." in message
    assert "FeatSR stage 2" in message


def test_weights_of_another_shape_are_refused():
    from featsr_d2.mmdet.featsr_rcnn import FrozenWeightsMissing

    model, _ = _stage2()
    other = tiny(load_config(LAYOUTS["R50-FPN"][0]))
    other.model.roi_head.bbox_head.num_classes = 10
    with pytest.raises(FrozenWeightsMissing, match=r"another shape \(roi_head.bbox_head.fc_cls"):
        model.load_state_dict(build(other).state_dict(), strict=False)


@pytest.mark.parametrize("supervision", ["identity", "detection_only"])
def test_what_a_supervision_keeps_at_its_initialization_is_not_required(supervision):
    model, _ = _stage2(supervision=supervision)
    prefixes = model.frozen_weight_prefixes()
    assert "roi_head.featsr.discriminator." not in prefixes  # unused
    assert "roi_head.featsr.generator." not in prefixes  # trained, or kept at the identity
    model.load_state_dict(stage1_state("R50-FPN"), strict=False)  # accepted


@pytest.mark.parametrize("layout", ["R50-FPN", "R50-C4"])
def test_the_stage1_checkpoint_initializes_the_small_predictor_from_the_large_one(layout):
    model, _ = featsr_model(layout, 2)
    head = model.roi_head
    pairs = [(head.bbox_head, head.featsr.small_predictor)]
    if layout == "R50-C4":
        pairs.append((head.shared_head, head.featsr.small_head))
    state = stage1_state(layout)
    for large, small in pairs:
        for (k, a), (_, b) in zip(large.state_dict().items(), small.state_dict().items()):
            assert torch.equal(a, b), k
    assert torch.equal(head.bbox_head.fc_cls.weight, state["roi_head.bbox_head.fc_cls.weight"])


def test_a_featsr_checkpoint_without_its_small_predictor_reports_it_missing():
    """From a FeatSR head's checkpoint (version 2) the small predictor is not filled in."""
    model, _ = featsr_model("R50-FPN", 2)
    with torch.no_grad():
        model.roi_head.featsr.small_predictor.fc_cls.weight.add_(1.0)
    state = model.state_dict()
    truncated = type(state)({k: v for k, v in state.items() if ".small_predictor." not in k})
    truncated._metadata = state._metadata
    fresh, _ = _stage2()
    result = fresh.load_state_dict(truncated, strict=False)
    assert result.missing_keys and all(".small_predictor." in k for k in result.missing_keys)
    # Not copied from the (loaded) large predictor: it keeps its own initialization.
    large = fresh.roi_head.bbox_head.fc_cls.weight
    assert torch.equal(large, state["roi_head.bbox_head.fc_cls.weight"])
    assert not torch.equal(fresh.roi_head.featsr.small_predictor.fc_cls.weight, large)


# ------------------------------------------------------------------------------------------------
# torchvision's MobileNetV2 for mmdet


def test_the_converter_refuses_foreign_keys():
    from featsr_d2.mmdet.mobilenet_v2_weights import convert_torchvision_mobilenet_v2_to_mmdet

    with pytest.raises(ValueError, match="layer1.0.conv1.weight"):
        convert_torchvision_mobilenet_v2_to_mmdet({"layer1.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="features.3.conv.9.weight"):
        convert_torchvision_mobilenet_v2_to_mmdet({"features.3.conv.9.weight": torch.zeros(1)})


def test_featsr_scheme_loads_the_shipped_imagenet_weights_into_mmdets_backbone():
    from mmengine.runner import CheckpointLoader

    import featsr_d2.mmdet  # noqa: F401  (registers the featsr:// scheme)
    from featsr_d2.core.mobilenet_v2_weights import find_mobilenet_v2_imagenet_weights

    with pytest.raises(ValueError, match="featsr://imagenet/mobilenet_v2"):
        CheckpointLoader.load_checkpoint("featsr://imagenet/resnet50")
    # The demo's stage-1 config loads them with its backbone's init_cfg.
    cfg = load_config(LAYOUTS["MNV2-FPN"][0])
    assert cfg.model.backbone.init_cfg.checkpoint == "featsr://imagenet/mobilenet_v2"
    model = build(cfg)
    reference = torchvision.models.mobilenet_v2(weights=None).eval()
    state = torch.load(find_mobilenet_v2_imagenet_weights(), map_location="cpu", weights_only=True)
    reference.load_state_dict(state)
    backbone = model.backbone
    backbone.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(backbone.layer7(backbone.layer6(backbone.layer5(
            backbone.layer4(backbone.layer3(backbone.layer2(backbone.layer1(backbone.conv1(x)))))
        ))), reference.features[:18](x))  # fmt: skip
