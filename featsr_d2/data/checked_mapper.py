"""Images that the mapper cannot use: a body that does not decode (a truncated or corrupt JPEG
whose header reads), a path that is not a regular file (a FIFO would block the loader forever), an
EXIF orientation that the dataset's size ignores.

Loading a dataset reads image headers only (fast); the body is decoded by the mapper, in the
training loop. :class:`CheckedMapper` wraps a mapper so that such an image is named: under the
policy ``"error"`` it raises :class:`UnreadableImageError` with the file, the cause and the fix;
under ``"skip"`` the sample is dropped (the mapper returns None, which the resumable loader skips
at that position, so a resumed run skips it at the same place) and counted in a warning. Only
regular files reach the mapper (:func:`featsr_d2.core.image_files.require_regular_file`). The
TT100K loader gives sizes with the EXIF orientation applied, as Detectron2 decodes the image; a
dataset of another loader that gives the stored image's size gets Detectron2's
``SizeMismatchError``, which is turned into one naming the EXIF orientation.

A mapper that fails on an image that decodes for another reason is not the image's fault: its
exception passes through unchanged.
"""

import logging
from collections.abc import Callable
from typing import Any

from detectron2.data.detection_utils import SizeMismatchError
from PIL import Image

from featsr_d2.core.image_files import (
    NotARegularFileError,
    UnreadableImageError,
    exif_orientation,
    image_decodes,
    open_regular_file,
    oriented_image_size,
    require_regular_file,
)
from featsr_d2.core.tt100k import ON_BAD_RECORD_CHOICES

__all__ = ["CheckedMapper", "UnreadableImageError"]

logger = logging.getLogger(__name__)


def _exif_cause(path: str, dataset_dict: dict) -> str | None:
    """Why the decoded size differs from the dataset's, when the EXIF orientation explains it."""
    try:
        with open_regular_file(path) as f, Image.open(f) as im:
            stored, orientation = im.size, exif_orientation(im)
        decoded = oriented_image_size(path)
    except Exception:
        return None
    given = (dataset_dict.get("width"), dataset_dict.get("height"))
    if decoded == stored or given != stored:
        return None
    return (
        f"its EXIF orientation ({orientation}) turns the stored {stored[0]}x{stored[1]} image "
        f"into {decoded[0]}x{decoded[1]} as Detectron2 decodes it, but the dataset gives "
        f"{given[0]}x{given[1]}, the stored size (and, likely, boxes in the stored image). Save "
        "the image without the EXIF orientation (rotated: PIL.ImageOps.exif_transpose), or give "
        "the displayed size and boxes"
    )


class CheckedMapper:
    """``mapper`` with undecodable images named (``"error"``) or skipped and counted (``"skip"``).

    Picklable (DataLoader workers), provided ``mapper`` is."""

    def __init__(self, mapper: Callable[[dict], Any], policy: str = "error"):
        if policy not in ON_BAD_RECORD_CHOICES:
            raise ValueError(f"policy must be one of {ON_BAD_RECORD_CHOICES}, got {policy!r}")
        self.mapper = mapper
        self.policy = policy
        self.skipped = 0  # in this process

    def __call__(self, dataset_dict: dict) -> Any:
        file_name = dataset_dict.get("file_name")
        try:
            if file_name:
                require_regular_file(file_name)  # before anything opens it
            return self.mapper(dataset_dict)
        except Exception as e:
            cause = self._cause(file_name, dataset_dict, e)
            if cause is None:
                raise
            if self.policy == "error":
                raise UnreadableImageError(
                    f"{file_name}: {cause}. Fix the image, or set DATASETS.TT100K.ON_BAD_RECORD "
                    "skip to skip such images with a count."
                ) from e
            self.skipped += 1
            logger.warning(
                "Skipped %s: %s. %d image(s) skipped so far in this process.",
                file_name,
                cause,
                self.skipped,
            )
            return None

    @staticmethod
    def _cause(file_name: str | None, dataset_dict: dict, e: Exception) -> str | None:
        """What is wrong with the image file, when the image explains ``e``; else None."""
        if not file_name:
            return None
        if isinstance(e, NotARegularFileError):
            return "it " + str(e).removeprefix(f"{file_name} ")
        if not image_decodes(file_name):
            return (
                f"the image cannot be decoded ({type(e).__name__}: {e}); its header reads, so the "
                "file is probably truncated or corrupt"
            )
        if isinstance(e, SizeMismatchError):
            return _exif_cause(file_name, dataset_dict)
        return None
