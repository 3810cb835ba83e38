"""FeatSR's SR target extractor: the backbone's own weights and shapes, and the receptive field
of the 0.5x image on the 1.0x image (FeatSR paper, section 4.1)."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_backbone

from featsr_d2.config import get_featsr_cfg

BACKBONES = {
    # name: (config overrides, feature whose receptive field is measured). An FPN level below p5
    # mixes in the top-down path from p5, so p5 is measured (the output conv over res5/stage5).
    "R50-C4": (
        {"MODEL.BACKBONE.NAME": "FeatSRResNetBackbone", "MODEL.RESNETS.OUT_FEATURES": ["res4"]},
        "res4",
    ),
    "R18-FPN": (
        {
            "MODEL.BACKBONE.NAME": "FeatSRResNetFPNBackbone",
            "MODEL.RESNETS.DEPTH": 18,
            "MODEL.RESNETS.RES2_OUT_CHANNELS": 64,
            "MODEL.RESNETS.OUT_FEATURES": ["res2", "res3", "res4", "res5"],
            "MODEL.FPN.IN_FEATURES": ["res2", "res3", "res4", "res5"],
            "MODEL.FPN.OUT_CHANNELS": 32,
        },
        "p5",
    ),
    "MNV2-FPN": (
        {
            "MODEL.BACKBONE.NAME": "FeatSRMobileNetV2FPN",
            "MODEL.MNV2.OUT_FEATURES": ["stage2", "stage3", "stage4", "stage5"],
            "MODEL.FPN.IN_FEATURES": ["stage2", "stage3", "stage4", "stage5"],
            "MODEL.FPN.OUT_CHANNELS": 32,
        },
        "p5",
    ),
}
# Image sizes (1.0x) large enough that the extractor's receptive field is not clipped.
RF_IMAGE_SIZE = {"R50-C4": 768, "R18-FPN": 1088, "MNV2-FPN": 1280}


def build(name):
    overrides, feature = BACKBONES[name]
    cfg = get_featsr_cfg()
    for key, value in overrides.items():
        cfg.merge_from_list([key, str(value) if isinstance(value, list) else value])
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.MNV2.FREEZE_AT = 0
    torch.manual_seed(0)
    return build_backbone(cfg).eval(), feature


def receptive_field(fn, image: torch.Tensor, feature: str) -> tuple[int, int]:
    """Extent (height, width) in input pixels of the gradient support of the central output cell."""
    x = image.clone().requires_grad_(True)
    out = fn(x)[feature]
    h, w = out.shape[-2:]
    out[0, :, h // 2, w // 2].sum().backward()
    support = x.grad[0].abs().sum(0) > 0
    rows = support.any(1).nonzero().flatten()
    cols = support.any(0).nonzero().flatten()
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_same_names_channels_and_shapes(name):
    backbone, _ = build(name)
    for size in ((96, 128), (97, 131)):
        x = torch.randn(2, 3, *size)
        if getattr(backbone, "size_divisibility", 0) and size[0] % 32:
            continue  # FPNs take padded inputs
        with torch.no_grad():
            plain, targets = backbone(x), backbone.extract_targets(x)
        assert list(targets) == list(plain)
        for key in plain:
            assert targets[key].shape == plain[key].shape, (key, size)
            difference = (targets[key] - plain[key]).abs().max()
            assert difference > 1e-3 * plain[key].abs().max(), key


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_extractor_uses_the_backbones_own_weights(name):
    backbone, feature = build(name)
    params_before = [p.data_ptr() for p in backbone.parameters()]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = backbone.extract_targets(x)[feature]
        bottom_up = getattr(backbone, "bottom_up", backbone)
        first = next(p for p in bottom_up.parameters() if p.dim() == 4)
        first.mul_(1.5)  # the extractor has no weights of its own: it sees the change
        after = backbone.extract_targets(x)[feature]
    assert (after - before).abs().max() > 1e-3 * before.abs().max()
    assert [p.data_ptr() for p in backbone.parameters()] == params_before


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_receptive_field_matches_the_half_resolution_image(name):
    """RF(extractor, 1.0x) / RF(backbone, 0.5x) is 2 within 10%; the plain backbone's is not."""
    backbone, feature = build(name)
    torch.manual_seed(1)
    size = RF_IMAGE_SIZE[name]
    full = torch.randn(1, 3, size, size)
    half = F.interpolate(full, scale_factor=0.5, mode="bilinear", align_corners=False)
    rf_half = receptive_field(backbone, half, feature)
    rf_targets = receptive_field(backbone.extract_targets, full, feature)
    rf_plain = receptive_field(backbone, full, feature)
    assert max(rf_targets) < size  # not clipped by the image border
    for axis in (0, 1):
        assert rf_targets[axis] / rf_half[axis] == pytest.approx(2.0, rel=0.10), (
            rf_targets,
            rf_half,
        )
        assert abs(rf_plain[axis] / rf_half[axis] - 2.0) > 0.2 * 2.0, (rf_plain, rf_half)


def _set_fused(backbone, fused: bool) -> None:
    for module in backbone.modules():
        if hasattr(module, "fused_targets"):
            module.fused_targets = fused


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_fused_extractor_equals_unfused(name, monkeypatch):
    """MODEL.FEATSR.FUSED_EXTRACTOR (on by default) reaches the backbone, runs every strided layer
    through the fused op, and gives the unfused extractor's maps."""
    from featsr_d2.core.featsr import extractor_layers

    backbone, _ = build(name)
    flags = [m.fused_targets for m in backbone.modules() if hasattr(m, "fused_targets")]
    assert flags and all(flags)
    strided = sum(
        1 for m in backbone.modules() if isinstance(m, torch.nn.Conv2d) and max(m.stride) > 1
    )
    calls = []
    fused_op = extractor_layers.dilated_conv_maxpool2d
    monkeypatch.setattr(
        extractor_layers,
        "dilated_conv_maxpool2d",
        lambda *a, **k: calls.append(k["pool"]) or fused_op(*a, **k),
    )
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        fused = backbone.extract_targets(x)
        _set_fused(backbone, False)
        unfused = backbone.extract_targets(x)
    assert len(calls) == strided and set(calls) == {2}
    for key in unfused:
        torch.testing.assert_close(fused[key], unfused[key], rtol=1e-4, atol=1e-4)


def test_fused_extractor_switch_from_config():
    cfg = get_featsr_cfg()
    cfg.MODEL.BACKBONE.NAME = "FeatSRResNetBackbone"
    cfg.MODEL.FEATSR.FUSED_EXTRACTOR = False
    assert build_backbone(cfg).fused_targets is False
    cfg.MODEL.BACKBONE.NAME = "FeatSRMobileNetV2"
    assert build_backbone(cfg).fused_targets is False


def test_aligned_extractor_switch_from_config():
    """MODEL.FEATSR.EXTRACTOR_ALIGNED (on by default) reaches every FeatSR backbone, and
    ``extract_targets(aligned=...)`` overrides it per call; the two placements differ."""
    for name in sorted(BACKBONES):
        backbone, feature = build(name)
        bottom_up = getattr(backbone, "bottom_up", backbone)
        assert bottom_up.aligned_targets is True
        x = torch.randn(1, 3, 64, 96)
        with torch.no_grad():
            aligned = backbone.extract_targets(x)[feature]
            previous = backbone.extract_targets(x, aligned=False)[feature]
            bottom_up.aligned_targets = False
            configured = backbone.extract_targets(x)[feature]
        assert aligned.shape == previous.shape
        assert (aligned - previous).abs().max() > 1e-3 * aligned.abs().max(), name
        torch.testing.assert_close(configured, previous, rtol=0, atol=0)
    cfg = get_featsr_cfg()
    cfg.MODEL.FEATSR.EXTRACTOR_ALIGNED = False
    cfg.MODEL.BACKBONE.NAME = "FeatSRResNetBackbone"
    assert build_backbone(cfg).aligned_targets is False
    cfg.MODEL.BACKBONE.NAME = "FeatSRMobileNetV2"
    assert build_backbone(cfg).aligned_targets is False
