"""Residual mode of every registered SR network (an untrained network equals its skip exactly)."""

import pytest
import torch
import torch.nn.functional as F

import featsr_d2.modeling.sr  # noqa: F401  (registers the SR networks)
from featsr_d2.config import add_sr_config, get_featsr_cfg
from featsr_d2.core.layers import imresize
from featsr_d2.modeling.sr import SR_NETWORK_REGISTRY, build_sr_network

pytestmark = pytest.mark.usefixtures("one_thread")

# Tiny widths per registered network (name -> MODEL.SR opts); every registered name must be here.
TINY = {
    "DBPN": ["MODEL.SR.DBPN.FEAT", 8, "MODEL.SR.DBPN.BASE_FILTER", 4,
             "MODEL.SR.DBPN.NUM_STAGES", 2],
    "CAJNN": ["MODEL.SR.CAJNN.NUM_FEAT", 8, "MODEL.SR.CAJNN.NUM_BLOCKS", 1,
              "MODEL.SR.CAJNN.GROWTH", 4],
    "RRDBNet": ["MODEL.SR.RRDB.NUM_FEAT", 8, "MODEL.SR.RRDB.NUM_BLOCKS", 1,
                "MODEL.SR.RRDB.GROWTH", 4],
    "Bicubic": [],
}  # fmt: skip


def sr_cfg(name: str, *opts):
    cfg = get_featsr_cfg()
    add_sr_config(cfg)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.SR.NAME", name, *TINY[name], *opts])
    return cfg


def test_every_registered_network_is_covered():
    assert sorted(n for n, _ in SR_NETWORK_REGISTRY) == sorted(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_residual_network_equals_its_skip_untrained(name):
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64)
    model = build_sr_network(sr_cfg(name, "MODEL.SR.RESIDUAL", True)).double()
    assert model.residual
    expected = (
        F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
        if name == "CAJNN"  # CAJNN keeps the paper's bilinear skip (eq. 5)
        else imresize(x, 4.0)
    )
    for mode in (model.train, model.eval):
        mode()
        out = model(x)
        assert out.shape == (2, 3, 48, 48)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    if name != "Bicubic":
        # the output layer starts at zero; without residual mode it does not
        assert all(p.abs().max() == 0 for p in model.output_layer().parameters())
        plain = build_sr_network(sr_cfg(name))
        assert not plain.residual
        assert any(p.abs().max() > 0 for p in plain.output_layer().parameters())
        assert (plain.double()(x) - expected).abs().max() > 1e-6


@pytest.mark.parametrize("name", ["DBPN", "RRDBNet", "CAJNN"])
def test_residual_network_learns_from_the_skip(name):
    """The zero last layer gets a gradient, so training moves the network off its skip."""
    model = build_sr_network(sr_cfg(name, "MODEL.SR.RESIDUAL", True))
    x = torch.rand(1, 3, 8, 8)
    loss = (model(x) - torch.rand(1, 3, 32, 32)).pow(2).mean()
    loss.backward()
    assert model.output_layer().weight.grad.abs().max() > 0


def test_residual_self_ensemble_averages_the_residual_network():
    model = build_sr_network(sr_cfg("DBPN", "MODEL.SR.RESIDUAL", True)).double().eval()
    with torch.no_grad():
        model.reconstruction.weight.normal_()
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    plain = model(x)
    model.self_ensemble = True
    ensembled = model(x)
    assert ensembled.shape == plain.shape
    assert (ensembled - plain).abs().max() > 0  # the learned part is not flip-equivariant
    torch.testing.assert_close(  # but the bicubic part is, so the mean stays near
        ensembled.mean(), plain.mean(), rtol=0, atol=0.2
    )
