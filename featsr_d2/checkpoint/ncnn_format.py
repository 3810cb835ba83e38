"""The ncnn model format: the layers of a ``.param`` file and the Convolution weights of its
``.bin`` file (what :mod:`featsr_d2.checkpoint.realesrgan_ncnn` converts).

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
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np

__all__ = [
    "NCNN_MAGIC",
    "TAG_FLOAT16",
    "TAG_FLOAT32",
    "TAG_INT8",
    "ConvWeights",
    "NcnnLayer",
    "parse_ncnn_param",
    "read_convolution_weights",
]

NCNN_MAGIC = 7767517
TAG_FLOAT32 = 0x00000000
TAG_FLOAT16 = 0x01306B47
TAG_INT8 = 0x000D4B38
_ARRAY_KEY_BASE = -23300
_WEIGHTLESS = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "ReLU", "Noop"}


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
