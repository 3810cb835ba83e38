"""MobileNetV2 backbones: shapes, freezing, norms, parameter counts."""

import math

import pytest
import torch
import torchvision
from common import MNV2_EXPECTED as EXPECTED
from common import MNV2_STAGES as STAGES
from common import mnv2_cfg as _cfg
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone
from detectron2.modeling.backbone.fpn import FPN
from torch import nn

import featsr_d2  # noqa: F401  (registers the backbones and the featsr:// scheme)
from featsr_d2.modeling.backbone import (
    FeatSRMobileNetV2,
    FeatSRMobileNetV2FPN,
    MobileNetV2Backbone,
)


def test_registered_names_resolve():
    assert BACKBONE_REGISTRY.get("FeatSRMobileNetV2") is FeatSRMobileNetV2
    assert BACKBONE_REGISTRY.get("FeatSRMobileNetV2FPN") is FeatSRMobileNetV2FPN


@pytest.mark.parametrize("size", [(64, 96), (50, 70)])
def test_stage_shapes_match_output_shape(size):
    torch.manual_seed(0)
    model = build_backbone(_cfg()).eval()
    shapes = model.output_shape()
    assert list(shapes) == STAGES
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        out = model(x)
    assert list(out) == STAGES
    for name, (channels, stride) in EXPECTED.items():
        assert shapes[name].channels == channels and shapes[name].stride == stride
        expected = (2, channels, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
        assert tuple(out[name].shape) == expected, name


def test_only_requested_features_and_needed_stages():
    model = build_backbone(_cfg(OUT_FEATURES=["stage3"]))
    assert list(model.output_shape()) == ["stage3"]
    assert not hasattr(model, "stage4") and not hasattr(model, "stage5")
    out = model(torch.randn(1, 3, 32, 32))
    assert list(out) == ["stage3"] and tuple(out["stage3"].shape) == (1, 32, 4, 4)


def test_fpn_shapes():
    torch.manual_seed(0)
    model = build_backbone(_cfg("FeatSRMobileNetV2FPN")).eval()
    assert isinstance(model, FPN) and isinstance(model.bottom_up, MobileNetV2Backbone)
    assert model.size_divisibility == 32
    shapes = model.output_shape()
    assert list(shapes) == ["p2", "p3", "p4", "p5", "p6"]
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 96))
    for level, (h, w) in zip(shapes, [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]):
        assert shapes[level].channels == 256 and shapes[level].stride == 2 ** int(level[1])
        assert tuple(out[level].shape) == (2, 256, h, w), level


def test_fpn_rejects_in_features_missing_from_backbone():
    cfg = _cfg("FeatSRMobileNetV2FPN", OUT_FEATURES=["stage5"])
    with pytest.raises(ValueError, match="IN_FEATURES"):
        build_backbone(cfg)


@pytest.mark.parametrize("freeze_at", range(6))
@pytest.mark.parametrize("norm", ["BN", "FrozenBN"])
def test_freeze_at(freeze_at, norm):
    model = build_backbone(_cfg(FREEZE_AT=freeze_at, NORM=norm))
    frozen_modules = ["stem", *STAGES][:freeze_at]
    for name, param in model.named_parameters():
        assert param.requires_grad == (name.split(".")[0] not in frozen_modules), name
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d | FrozenBatchNorm2d):
            want_frozen = norm == "FrozenBN" or name.split(".")[0] in frozen_modules
            assert isinstance(module, FrozenBatchNorm2d) == want_frozen, name
    # Whatever is frozen, the state dict keeps the same keys as a FrozenBN model's.
    reference = build_backbone(_cfg(NORM="FrozenBN")).state_dict().keys()
    keys = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert keys == set(reference)
    num_frozen_norms = sum(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    assert num_frozen_norms > 0 if (norm == "FrozenBN" or freeze_at) else num_frozen_norms == 0


def test_frozen_bn_has_no_trainable_norm_parameters():
    model = build_backbone(_cfg(NORM="FrozenBN", FREEZE_AT=0))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(".norm." not in name for name, _ in model.named_parameters())
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("norm", ["", "GN", "SyncBN", "BN"])
def test_other_norms_build_and_train(norm):
    torch.manual_seed(0)
    model = build_backbone(_cfg(NORM=norm, FREEZE_AT=0, WIDTH_MULT=0.5))
    norm_types = {
        "": (),
        "GN": (nn.GroupNorm,),
        "SyncBN": (nn.SyncBatchNorm,),
        "BN": (nn.BatchNorm2d,),
    }[norm]
    norms = [
        m for m in model.modules() if isinstance(m, nn.GroupNorm | nn.modules.batchnorm._NormBase)
    ]
    # stem 1, the unexpanded first block 2, the 16 others 3 each
    assert len(norms) == (0 if not norm else 1 + 2 + 16 * 3)
    assert all(isinstance(m, norm_types) for m in norms)
    if norm == "":
        assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))
    if norm == "SyncBN":  # needs a process group to train; its eval forward works anywhere
        model.eval()
    out = model(torch.randn(2, 3, 32, 32))
    loss = sum(o.square().mean() for o in out.values())
    if model.training:
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
    assert torch.isfinite(loss)


@pytest.mark.parametrize("bad", [{"OUT_FEATURES": ["res5"]}, {"FREEZE_AT": 6}, {"NORM": "LN2"}])
def test_bad_config_values_raise(bad):
    with pytest.raises(ValueError):
        build_backbone(_cfg(**bad))


def test_parameter_count_matches_torchvision_features():
    model = build_backbone(_cfg(NORM="BN", FREEZE_AT=0))
    tv = torchvision.models.mobilenet_v2(weights=None)
    ours = sum(p.numel() for p in model.parameters())
    assert ours == sum(p.numel() for p in tv.features[:18].parameters()) == 1_811_712
    # The left-out 1x1 conv to 1280 channels (features.18) is all that separates us from `features`.
    assert ours + sum(p.numel() for p in tv.features[18].parameters()) == sum(
        p.numel() for p in tv.features.parameters()
    )


def test_input_shape_channels_are_used():
    model = build_backbone(_cfg(), ShapeSpec(channels=1))
    assert model.stem.conv.in_channels == 1
    assert tuple(model(torch.randn(1, 1, 32, 32))["stage5"].shape) == (1, 320, 1, 1)
