"""Images whose header reads but whose body does not decode (a truncated or corrupt JPEG).

Loading a dataset reads image headers only (fast); the body is decoded by the mapper, in the
training loop. :class:`CheckedMapper` wraps a mapper so that such an image is named: under the
policy ``"error"`` it raises :class:`UnreadableImageError` with the file and the fix; under
``"skip"`` the sample is dropped (the mapper returns None, which the resumable loader skips at
that position, so a resumed run skips it at the same place) and counted in a warning.

A mapper that fails on an image that decodes is not the image's fault: its exception passes
through unchanged.
"""

import logging
from collections.abc import Callable
from typing import Any

from PIL import Image

from featsr_d2.data.tt100k import ON_BAD_RECORD_CHOICES

__all__ = ["CheckedMapper", "UnreadableImageError", "image_decodes"]

logger = logging.getLogger(__name__)


class UnreadableImageError(OSError):
    """An image file whose pixels cannot be decoded."""


def image_decodes(path: str) -> bool:
    """Whether PIL decodes every pixel of ``path`` (not only its header)."""
    try:
        with Image.open(path) as im:
            im.load()
    except Exception:  # PIL raises OSError, SyntaxError, ValueError, ... on a bad body
        return False
    return True


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
        try:
            return self.mapper(dataset_dict)
        except Exception as e:
            file_name = dataset_dict.get("file_name")
            if not file_name or image_decodes(file_name):
                raise
            if self.policy == "error":
                raise UnreadableImageError(
                    f"{file_name}: the image cannot be decoded ({type(e).__name__}: {e}); its "
                    "header reads, so the file is probably truncated or corrupt. Replace it, or "
                    "set DATASETS.TT100K.ON_BAD_RECORD skip to skip such images with a count."
                ) from e
            self.skipped += 1
            logger.warning(
                "Skipped %s: the image cannot be decoded (%s: %s). %d image(s) skipped so far "
                "in this process.",
                file_name,
                type(e).__name__,
                e,
                self.skipped,
            )
            return None
