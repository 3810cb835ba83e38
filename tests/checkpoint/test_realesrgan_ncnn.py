"""The Real-ESRGAN ncnn import: the reader on synthetic files (float32 and float16, corrupt ones)
and the shipped x4plus weights, converted through ``featsr://realesrgan/x4plus``, on a real
photograph."""

import math
import os
import struct

import numpy as np
import pytest
import torch
from torch import nn

from featsr_d2.checkpoint import load_initial_sr_weights
from featsr_d2.checkpoint.ncnn_format import TAG_FLOAT16, TAG_FLOAT32, parse_ncnn_param
from featsr_d2.checkpoint.realesrgan_ncnn import convert_realesrgan_ncnn, find_realesrgan_model
from featsr_d2.config import get_featsr_cfg
from featsr_d2.core.layers import imresize_np
from featsr_d2.core.sr import RRDBNet
from featsr_d2.data.sr_dataset import read_rgb
from featsr_d2.evaluation.sr_metrics import psnr
from featsr_d2.modeling.sr import build_sr_network
from featsr_d2.utils.image import rgb_to_tensor, tensor_to_rgb

SKIMAGE_DATA = os.path.join(os.path.dirname(__import__("skimage").__file__), "data")


pytestmark = pytest.mark.usefixtures("one_thread")


def sr_cfg(**opts):
    cfg = get_featsr_cfg()
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *[x for kv in opts.items() for x in kv]])
    return cfg


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


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
    cfg = sr_cfg(**{"MODEL.SR.NAME": "RRDBNet", "MODEL.SR.WEIGHTS": "featsr://realesrgan/x4plus"})
    model = build_sr_network(cfg).eval()
    load_initial_sr_weights(model, weights=cfg.MODEL.SR.WEIGHTS)
    assert count(model) == 16_697_987
    converted = [f for f in os.listdir(tmp_path) if f.endswith(".pth")]
    assert len(converted) == 1  # converted once into the cache (beside its checksum file)

    hr = read_rgb(os.path.join(SKIMAGE_DATA, "astronaut.png"))[200:296, 180:276]
    lr = imresize_np(hr, 0.25)
    with torch.no_grad():
        out = model(rgb_to_tensor(lr))
    assert out.shape == (1, 3, 96, 96)
    assert -0.25 < out.min().item() and out.max().item() < 1.25
    sr = tensor_to_rgb(out[0])
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
        noise = tensor_to_rgb(random(rgb_to_tensor(lr))[0])
    assert psnr(imresize_np(noise, 0.25), lr) < 15.0
    assert not math.isclose(consistency, psnr(imresize_np(noise, 0.25), lr))
