"""The SR networks: registry and config, output shapes at every scale, parameter counts, the
structure the papers fix, MATLAB bicubic, self-ensemble, and the Real-ESRGAN ncnn import."""

import inspect
import math
import os
import struct

import numpy as np
import pytest
import torch
from torch import nn

import featsr_d2.modeling.sr  # noqa: F401  (registers the SR networks)
from featsr_d2.config import add_sr_config, get_featsr_cfg
from featsr_d2.data.sr_dataset import image_to_tensor, read_rgb, tensor_to_image
from featsr_d2.evaluation.sr_metrics import psnr
from featsr_d2.layers import imresize, imresize_np
from featsr_d2.modeling.sr import (
    CAJNN,
    DBPN,
    SR_NETWORK_REGISTRY,
    Bicubic,
    RRDBNet,
    build_sr_network,
)
from featsr_d2.modeling.sr.ncnn_import import (
    TAG_FLOAT16,
    TAG_FLOAT32,
    convert_realesrgan_ncnn,
    find_realesrgan_model,
    parse_ncnn_param,
)
from featsr_d2.modeling.sr.self_ensemble import dihedral, dihedral_inverse

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


def _write_ncnn_rrdbnet(model: RRDBNet, fp16: bool) -> tuple[str, bytes]:
    """An ncnn model of ``model`` written independently of the reader: Convolution lines in
    forward order with their activations, the residual Eltwise sums, Interp upsamplings; weights
    with the float16 or float32 tag, biases raw float32."""
    lines, data = [], bytearray()
    blob = iter(range(10**6))

    def conv(name, module, leaky):
        out, cin, kh, kw = module.weight.shape
        params = f"0={out} 1={kw} 11={kh} 4={kw // 2} 5=1 6={module.weight.numel()}"
        if leaky:
            params += " 9=2 -23310=1,2.000000e-01"
        lines.append(f"Convolution {name} 1 1 b{next(blob)} b{next(blob)} {params}")
        w = module.weight.detach().numpy().ravel()
        if fp16:
            data.extend(struct.pack("<I", TAG_FLOAT16))
            raw = w.astype("<f2").tobytes()
            data.extend(raw + b"\0" * (-len(raw) % 4))
        else:
            data.extend(struct.pack("<I", TAG_FLOAT32))
            data.extend(w.astype("<f4").tobytes())
        data.extend(module.bias.detach().numpy().astype("<f4").tobytes())

    def eltwise(name):
        lines.append(
            f"Eltwise {name} 2 1 b{next(blob)} b{next(blob)} b{next(blob)} 0=1 -23301=2,0.2,1.0"
        )

    lines.append("Input data 0 1 data")
    conv("conv_first", model.conv_first, False)
    for b, block in enumerate(model.body):
        for r in (1, 2, 3):
            rdb = getattr(block, f"rdb{r}")
            for c in range(1, 6):
                lines.append(
                    f"Concat cat_{b}_{r}_{c} 2 1 b{next(blob)} b{next(blob)} b{next(blob)}"
                )
                conv(f"c_{b}_{r}_{c}", getattr(rdb, f"conv{c}"), c < 5)
            eltwise(f"rdb_sum_{b}_{r}")
        eltwise(f"rrdb_sum_{b}")
    conv("conv_body", model.conv_body, False)
    lines.append(f"BinaryOp add 2 1 b{next(blob)} b{next(blob)} b{next(blob)}")
    for u in (1, 2):
        lines.append(f"Interp up{u} 1 1 b{next(blob)} b{next(blob)} 0=1 1=2.0 2=2.0")
        conv(f"conv_up{u}", getattr(model, f"conv_up{u}"), True)
    conv("conv_hr", model.conv_hr, True)
    conv("conv_last", model.conv_last, False)
    text = "\n".join(["7767517", f"{len(lines)} {next(blob)}", *lines]) + "\n"
    return text, bytes(data)


@pytest.mark.parametrize("fp16", [False, True], ids=["float32", "float16"])
def test_ncnn_reader_roundtrip(fp16):
    torch.manual_seed(0)
    model = RRDBNet(scale=4, num_feat=8, num_blocks=2, growth=4)
    text, data = _write_ncnn_rrdbnet(model, fp16)
    state, meta = convert_realesrgan_ncnn(text, data)
    assert meta == {"scale": 4, "num_feat": 8, "num_blocks": 2, "growth": 4}
    expected = model.state_dict()
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        want = value.half().float() if fp16 and key.endswith("weight") else value
        assert torch.equal(state[key], want), key
    # the layer lines parse back with their parameters
    layers = parse_ncnn_param(text)
    assert layers[1].type == "Convolution" and layers[1].params[0] == 8
    assert [ly.params[1] for ly in layers if ly.type == "Eltwise"][0] == [0.2, 1.0]


def test_ncnn_reader_rejects_corrupt_files():
    model = RRDBNet(scale=4, num_feat=8, num_blocks=1, growth=4)
    text, data = _write_ncnn_rrdbnet(model, fp16=True)
    with pytest.raises(ValueError, match="bytes left"):
        convert_realesrgan_ncnn(text, data + b"\0\0\0\0")
    with pytest.raises(ValueError, match="ends"):
        convert_realesrgan_ncnn(text, data[:-8])
    with pytest.raises(ValueError, match="7767517"):
        convert_realesrgan_ncnn("1234\n" + text.split("\n", 1)[1], data)
    with pytest.raises(ValueError, match="activation"):
        convert_realesrgan_ncnn(text.replace(" 9=2 -23310=1,2.000000e-01", "", 1), data)


def test_realesrgan_x4plus_converts_and_super_resolves_a_real_photo(tmp_path, monkeypatch):
    """The shipped weights, converted, on a real photograph (scikit-image's astronaut, a 96 px
    crop downscaled 4x): the output is consistent with its input (downscaled again it is within
    25 dB PSNR of the LR image), sharper than bicubic (Real-ESRGAN is a GAN-trained model, so its
    PSNR against the ground truth is not above bicubic's, but within a few dB) and image-like; a
    randomly initialized RRDBNet is far from consistent."""
    monkeypatch.setenv("FEATSR_CACHE", str(tmp_path))
    param_path, bin_path = find_realesrgan_model("x4plus")
    assert os.path.getsize(bin_path) == 33_424_520
    cfg = sr_cfg(**{"MODEL.SR.NAME": "RRDBNet", "MODEL.SR.WEIGHTS": "realesrgan://x4plus"})
    model = build_sr_network(cfg).eval()
    assert count(model) == 16_697_987
    converted = [f for f in os.listdir(tmp_path) if f.endswith(".pth")]
    assert len(converted) == 1  # converted once into the cache (beside its checksum file)

    hr = read_rgb(os.path.join(SKIMAGE_DATA, "astronaut.png"))[200:296, 180:276]
    lr = imresize_np(hr, 0.25)
    with torch.no_grad():
        out = model(image_to_tensor(lr))
    assert out.shape == (1, 3, 96, 96)
    assert -0.25 < out.min().item() and out.max().item() < 1.25
    sr = tensor_to_image(out[0])
    bic = imresize_np(lr, 4.0)

    def sharpness(img):
        return float(np.abs(np.diff(img.astype(np.float64), axis=1)).mean())

    consistency = psnr(imresize_np(sr, 0.25), lr)
    fidelity = psnr(sr, hr, crop_border=4)
    assert consistency > 25.0, consistency
    assert sharpness(sr) > 1.1 * sharpness(bic)
    assert fidelity > psnr(bic, hr, crop_border=4) - 4.0 and fidelity > 18.0, fidelity

    random = RRDBNet(scale=4, num_blocks=2).eval()
    with torch.no_grad():
        noise = tensor_to_image(random(image_to_tensor(lr))[0])
    assert psnr(imresize_np(noise, 0.25), lr) < 15.0
    assert not math.isclose(consistency, psnr(imresize_np(noise, 0.25), lr))


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_unreadable_sr_weights_are_named(tmp_path, content):
    from featsr_d2.modeling.sr.registry import read_sr_state_dict
    from featsr_d2.utils.pickle_weights import WeightsFileError

    path = tmp_path / "sr.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsFileError, match=r"sr\.pth: not a readable SR checkpoint"):
        read_sr_state_dict(str(path))


def test_sr_configs_are_validated_at_set_up():
    from featsr_d2.config import get_sr_cfg
    from featsr_d2.config_validation import ConfigValueError

    with pytest.raises(ConfigValueError, match="MODEL.FEATSR.SMALL_SIZE"):
        get_sr_cfg(None, ["MODEL.FEATSR.SMALL_SIZE", "-1"])
