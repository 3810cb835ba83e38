"""What a dataset loader learns about an image file before decoding its pixels, and whether its
body decodes.

- Only regular files are opened: opening a FIFO blocks until some process writes to it (a loader
  that hangs forever, without a message), and a device or a socket is no image either.
  :func:`require_regular_file` raises :class:`NotARegularFileError` naming the file and its kind.
- The size is the size of the image as Detectron2's ``read_image`` returns it, that is with the
  EXIF orientation applied (a camera's portrait JPEG stored landscape with orientation 6 or 8 has
  its sides swapped): :func:`oriented_image_size`. A dataset's ``width`` / ``height`` taken from
  the raw header would not match the decoded image (Detectron2's ``SizeMismatchError``); boxes are
  therefore read in the image as displayed, as Detectron2 and annotation tools show it (OpenCV's
  ``IMREAD_COLOR``, which MMDetection's ``LoadImageFromFile`` uses, applies it too).
- :func:`image_decodes` tells whether every pixel of a file decodes (a truncated or corrupt JPEG
  whose header reads passes the loader and fails when training reads it).
"""

import os
import stat
from typing import BinaryIO

from PIL import Image

__all__ = [
    "EXIF_ORIENTATION",
    "NotARegularFileError",
    "UnreadableImageError",
    "exif_orientation",
    "image_decodes",
    "open_regular_file",
    "oriented_image_size",
    "require_regular_file",
]

# The EXIF 'Orientation' tag (Detectron2's _EXIF_ORIENT).
EXIF_ORIENTATION = 274
# Orientations whose transform swaps width and height (transpose, the 90-degree rotations).
_SWAPS_SIDES = (5, 6, 7, 8)


class NotARegularFileError(OSError):
    """An image path that names a FIFO, a folder, a device or a socket."""


class UnreadableImageError(OSError):
    """An image file that training or evaluation cannot use although its dataset loaded: its body
    does not decode, or it is not a regular file."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _refuse(path: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise NotARegularFileError(
            f"{path} is {_kind(mode)}, not an image file: only regular files are read (opening a "
            "FIFO would wait forever for a writer)"
        )


def require_regular_file(path: str) -> None:
    """Raise unless ``path`` (after symbolic links) is a regular file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        NotARegularFileError: it is a FIFO, a folder, a device or a socket.
    """
    _refuse(path, os.stat(path).st_mode)


def open_regular_file(path: str) -> BinaryIO:
    """``path`` opened for binary reading, if it is a regular file (checked on the opened file,
    without waiting: a FIFO is opened non-blocking, then refused).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        NotARegularFileError: it is a FIFO, a folder, a device or a socket.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _refuse(path, os.fstat(fd).st_mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def exif_orientation(image: Image.Image) -> int | None:
    """The EXIF orientation of an opened image (header only), or None."""
    try:
        return image.getexif().get(EXIF_ORIENTATION)
    except Exception:  # as Detectron2: a broken EXIF block is ignored
        return None


def oriented_image_size(path: str) -> tuple[int, int]:
    """(width, height) of the image in ``path`` as Detectron2's ``read_image`` decodes it (EXIF
    orientation applied), from its header only.

    Raises:
        FileNotFoundError, NotARegularFileError: see :func:`require_regular_file`.
        OSError, ValueError, PIL.Image.DecompressionBombError: the header cannot be read.
    """
    with open_regular_file(path) as f, Image.open(f) as im:  # reads the header only
        width, height = im.size
        if exif_orientation(im) in _SWAPS_SIDES:
            width, height = height, width
    return width, height


def image_decodes(path: str) -> bool:
    """Whether ``path`` is a regular file whose every pixel PIL decodes (not only its header)."""
    try:
        with open_regular_file(path) as f, Image.open(f) as im:
            im.load()
    except Exception:  # PIL raises OSError, SyntaxError, ValueError, ... on a bad body
        return False
    return True
