"""Where the SR target extractor's targets sit: every map that a shipped FeatSR config's heads pool
from (base levels and sub layers), measured as the support of the input gradient in a linearized
copy of the backbone (featsr_d2.core.receptive_field). A target T^1.0 must sit where the
F^0.5 it supervises sits (within 1 px of the 1.0x image) with twice its extent (within [0.95, 1.1]);
the previous placement of the pooling windows put it J - 1 px away (J the map's stride)."""

import glob
import os

import pytest
import torch
from detectron2.modeling import build_backbone

from featsr_d2.config import featsr_sub_features, get_featsr_cfg
from featsr_d2.evaluation.extractor_geometry import extractor_geometry

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _shipped() -> dict[str, str]:
    """One shipped FeatSR config per distinct backbone and set of maps (stage 3 and the dataset
    leaves share their stage-2 backbone): its path -> its backbone's name."""
    seen = {}
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "**", "featsr_*.yaml"),
                                 recursive=True)):  # fmt: skip
        cfg = get_featsr_cfg(path)
        m = cfg.MODEL
        key = (m.BACKBONE.NAME, m.RESNETS.dump(), m.MNV2.dump(), m.FPN.dump(), *_maps(cfg))
        seen.setdefault(key, (os.path.relpath(path, REPO), m.BACKBONE.NAME))
    return dict(seen.values())


def _maps(cfg) -> list[str]:
    return list(dict.fromkeys([*cfg.MODEL.ROI_HEADS.IN_FEATURES, *featsr_sub_features(cfg)]))


def _geometry(config: str, *, aligned: bool):
    cfg = get_featsr_cfg(os.path.join(REPO, config), ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    return extractor_geometry(build_backbone(cfg), _maps(cfg), aligned=aligned)


SHIPPED = _shipped()


def test_every_shipped_featsr_layout_is_measured():
    backbones = {"FeatSRResNetBackbone", "FeatSRResNetFPNBackbone", "FeatSRMobileNetV2FPN"}
    assert backbones <= set(SHIPPED.values()), SHIPPED


@pytest.mark.parametrize("config", sorted(SHIPPED))
def test_targets_sit_where_their_half_resolution_features_sit(config):
    geometry = _geometry(config, aligned=True)
    for feature, g in geometry.items():
        assert abs(g.pair_offset) <= 1.0, (feature, g)
        assert abs(g.pair_centroid_offset) <= 1.0, (feature, g)
        assert 0.95 <= g.extent_ratio <= 1.1, (feature, g)


def test_the_previous_placement_puts_targets_stride_minus_one_pixels_away():
    """The check above fails for the previous windows {2o, 2o + 1}: each target sits J - 1 px
    down-right of its F^0.5, twice as far as the naive target F^1.0 does."""
    c4 = next(c for c, backbone in SHIPPED.items() if backbone == "FeatSRResNetBackbone")
    geometry = _geometry(c4, aligned=False)
    assert set(geometry) == {"res4", "res3"}
    for feature, g in geometry.items():
        assert g.pair_offset == pytest.approx(g.stride - 1), (feature, g)
        assert g.naive_offset == pytest.approx((g.stride - 1) / 2), (feature, g)
        assert 0.95 <= g.extent_ratio <= 1.1, (feature, g)
