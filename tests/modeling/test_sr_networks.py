"""The SR networks: registry and config, output shapes at every scale, parameter counts, the
structure the papers fix, MATLAB bicubic, self-ensemble."""

import inspect
import os

import numpy as np
import pytest
import torch
from torch import nn

import featsr_d2.modeling.sr  # noqa: F401  (registers the SR networks)
from featsr_d2.config import add_sr_config, get_featsr_cfg
from featsr_d2.core.layers import imresize, imresize_np
from featsr_d2.core.sr import CAJNN, DBPN, Bicubic, RRDBNet
from featsr_d2.core.sr.self_ensemble import dihedral, dihedral_inverse
from featsr_d2.modeling.sr import SR_NETWORK_REGISTRY, build_sr_network

SKIMAGE_DATA = os.path.join(os.path.dirname(__import__("skimage").__file__), "data")


pytestmark = pytest.mark.usefixtures("one_thread")


def sr_cfg(**opts):
    cfg = get_featsr_cfg()
    add_sr_config(cfg)  # a no-op once add_featsr_config adds the SR keys itself
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *[x for kv in opts.items() for x in kv]])
    return cfg


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registered_names_resolve_and_are_prefixed():
    ours = sorted(n for n, _ in SR_NETWORK_REGISTRY)
    assert {"DBPN", "CAJNN", "RRDBNet", "Bicubic"} <= set(ours)
    allowed = ("DBPN", "CAJNN", "RRDB", "Bicubic", "FeatSR")
    assert all(n.startswith(allowed) for n in ours), ours


def test_add_sr_config_is_idempotent_and_every_key_has_a_comment():
    cfg = sr_cfg()
    cfg.MODEL.SR.SCALE = 8
    add_sr_config(cfg)
    assert cfg.MODEL.SR.SCALE == 8
    source, first = inspect.getsourcelines(add_sr_config)  # in featsr_d2/config.py
    lines = [line.rstrip("\n") for line in source]
    keys = 0
    for i, line in enumerate(lines):
        if line.strip().startswith("_C.") and " = " in line:
            keys += 1
            assert lines[i - 1].strip().startswith("#"), f"config.py:{first + i} has no comment"
    assert keys > 30


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_dbpn_output_shape(scale):
    model = build_sr_network(sr_cfg(**{"MODEL.SR.NAME": "DBPN", "MODEL.SR.SCALE": scale}))
    x = torch.rand(2, 3, 3, 5)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 3, 3 * scale, 5 * scale)
    assert torch.isfinite(y).all()


def _dbpn_count(scale: int, feat=256, base=64, stages=7) -> int:
    """D-DBPN's parameters counted by hand: 13 projection units of 3 (de)convolutions k x k with
    bias + 1 PReLU slope each; 1x1 reductions of 2..6 stacked inputs (twice each) with PReLU;
    feature extraction; reconstruction."""
    k = {2: 6, 4: 8, 8: 12}[scale]
    units = (2 * stages - 1) * 3 * (base * base * k * k + base + 1)
    reductions = 2 * sum(base * base * t + base + 1 for t in range(2, stages))
    features = (3 * feat * 9 + feat + 1) + (feat * base + base + 1)
    reconstruction = stages * base * 3 * 9 + 3
    return units + reductions + features + reconstruction


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_dbpn_parameter_count(scale):
    model = DBPN(scale=scale)
    assert count(model) == _dbpn_count(scale)
    if scale == 4:
        assert count(model) == 10_426_358  # the published D-DBPN's 10.4M
        assert abs(count(model) / 10.4e6 - 1) < 0.005
    conv = model.up_units[0].up1[0]
    assert (conv.kernel_size, conv.stride, conv.padding) == (
        {2: ((6, 6), (2, 2), (2, 2)), 4: ((8, 8), (4, 4), (2, 2)), 8: ((12, 12), (8, 8), (2, 2))}[
            scale
        ]
    )


def test_dbpn_dense_connections():
    model = DBPN(scale=4)
    assert len(model.up_units) == 7 and len(model.down_units) == 6
    assert [u.reduce is None for u in model.up_units] == [True, True] + [False] * 5
    assert [u.reduce[0].in_channels for u in model.up_units[2:]] == [128, 192, 256, 320, 384]
    assert [d.reduce[0].in_channels for d in model.down_units[1:]] == [128, 192, 256, 320, 384]
    assert model.reconstruction.in_channels == 7 * 64
    assert model.feat0[0].out_channels == 256 and model.feat1[0].kernel_size == (1, 1)
    assert all(isinstance(m, nn.PReLU) for m in (model.feat0[1], model.up_units[0].up1[1]))


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_cajnn_output_shape(scale):
    model = CAJNN(scale=scale, num_blocks=2)
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        assert model(x).shape == (1, 3, 6 * scale, 5 * scale)


def test_cajnn_parameter_count_and_structure():
    model = build_sr_network(sr_cfg(**{"MODEL.SR.NAME": "CAJNN"}))
    n = count(model)
    assert n == 14_847_491
    assert abs(n / 14.8e6 - 1) < 0.005  # Table I: 14.8M
    assert model.conv_first.out_channels == 64
    assert [b.dilation for b in model.aspp.branches] == [(1, 1), (3, 3), (4, 4)]
    assert model.aspp.merge.kernel_size == (1, 1) and model.aspp.merge.in_channels == 192
    assert len(model.trunk) == 20
    shuffles = [m for m in model.upsample if isinstance(m, nn.PixelShuffle)]
    assert [s.upscale_factor for s in shuffles] == [2, 2]
    assert model.enhance1.kernel_size == model.enhance2.kernel_size == (3, 3)


def test_cajnn_adds_the_bilinear_upsampled_input():
    """Eq. 5: with the residual branch silenced, the output is the bilinear upsampling."""
    model = CAJNN(scale=4, num_blocks=1)
    with torch.no_grad():
        model.enhance2.weight.zero_()
        model.enhance2.bias.zero_()
        x = torch.rand(1, 3, 7, 6)
        expected = torch.nn.functional.interpolate(x, scale_factor=4, mode="bilinear")
        assert torch.allclose(model(x), expected, atol=1e-6)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_rrdbnet_shape_and_count(scale):
    model = RRDBNet(scale=scale, num_blocks=1)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 8, 4)).shape == (1, 3, 8 * scale, 4 * scale)
    if scale == 4:
        assert count(RRDBNet(scale=4)) == 16_697_987  # Real-ESRGAN x4plus, "RRDB 16.7M"


def test_unsupported_scale_and_bad_input_raise():
    with pytest.raises(ValueError, match="scales"):
        DBPN(scale=3)
    with pytest.raises(ValueError, match="RGB"):
        Bicubic(scale=2)(torch.rand(1, 1, 4, 4))
    assert Bicubic(scale=2)(torch.rand(0, 3, 4, 5)).shape == (0, 3, 8, 10)


def test_bicubic_network_is_matlab_imresize_and_has_no_parameters():
    model = build_sr_network(sr_cfg(**{"MODEL.SR.NAME": "Bicubic", "MODEL.SR.SCALE": 3}))
    assert count(model) == 0
    x = torch.rand(2, 3, 5, 4, dtype=torch.float64)
    y = model(x)
    assert y.shape == (2, 3, 15, 12)
    ref = imresize_np(x[1].permute(1, 2, 0).numpy(), 3.0)
    assert np.allclose(y[1].permute(1, 2, 0).numpy(), ref, atol=1e-12)
    const = torch.full((1, 3, 6, 7), 0.3, dtype=torch.float64)
    assert torch.allclose(model(const), torch.full_like(model(const), 0.3), atol=1e-12)


def test_self_ensemble_transforms_invert():
    x = torch.arange(24.0).reshape(1, 2, 3, 4)
    for k in range(8):
        assert torch.equal(dihedral_inverse(dihedral(x, k), k), x)
    assert len({tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}) == 8


def test_self_ensemble_is_equivariant_and_eval_only():
    torch.manual_seed(0)
    plain = RRDBNet(scale=2, num_feat=8, num_blocks=1, growth=4).eval()
    ens = RRDBNet(scale=2, num_feat=8, num_blocks=1, growth=4, self_ensemble=True).eval()
    ens.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 8, 6)
    with torch.no_grad():
        y_plain, y_ens = plain(x), ens(x)
        assert not torch.allclose(y_plain, y_ens, atol=1e-4)  # a random net is not equivariant
        assert torch.allclose(ens(x.flip(-1)), y_ens.flip(-1), atol=1e-5)
        assert torch.allclose(
            ens(torch.rot90(x, 1, (2, 3))), torch.rot90(y_ens, 1, (2, 3)), atol=1e-5
        )
        ens.train()
        assert torch.allclose(ens(x), y_plain, atol=1e-6)  # training is unaffected
    bicubic = Bicubic(scale=4, self_ensemble=True).eval()
    x64 = torch.rand(1, 3, 5, 7, dtype=torch.float64)
    assert torch.allclose(bicubic(x64), imresize(x64, 4.0), atol=1e-12)  # already equivariant


# --- Real-ESRGAN ncnn import -------------------------------------------------------------------


def test_sr_configs_are_validated_at_set_up():
    from featsr_d2.config import get_sr_cfg
    from featsr_d2.config_validation import ConfigValueError

    with pytest.raises(ConfigValueError, match="MODEL.FEATSR.SMALL_SIZE"):
        get_sr_cfg(None, ["MODEL.FEATSR.SMALL_SIZE", "-1"])
