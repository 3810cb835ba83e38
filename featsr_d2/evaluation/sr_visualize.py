"""Side-by-side pictures of super-resolution results (input, bicubic, outputs, ground truth)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import cv2
import numpy as np

from featsr_d2.evaluation.visualize import write_png  # re-exported: the SR tools write with it

__all__ = ["safe_file_stem", "side_by_side", "write_png"]

_LABEL_HEIGHT = 22
_GAP = 4


def safe_file_stem(name: object) -> str:
    """A file name (without extension) made from data, such as an image id or a row label, that
    cannot leave the folder it is joined to: only letters, digits, ``-``, ``_`` and ``.``, no
    leading ``.``, at most 80 characters. When that changes the name, 8 hex digits of its SHA-1
    are appended, so distinct names stay distinct (``../../x`` -> ``_.._x-<hash>``)."""
    text = str(name)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip(".")[:80] or "_"
    if stem != text:
        stem += "-" + hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return stem


def side_by_side(panels: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """Panels (label, RGB uint8 image) in a row, each shown at the size of the largest one (smaller
    ones, like the LR input, enlarged by pixel replication so that its pixels stay visible), with
    the label above it. Returns an RGB uint8 image."""
    if not panels:
        raise ValueError("no panels")
    height = max(img.shape[0] for _, img in panels)
    width = max(img.shape[1] for _, img in panels)
    tiles = []
    for label, img in panels:
        if img.shape[:2] != (height, width):
            img = cv2.resize(img, (width, height), interpolation=cv2.INTER_NEAREST)
        tile = np.full((height + _LABEL_HEIGHT, width, 3), 255, np.uint8)
        tile[_LABEL_HEIGHT:] = img
        cv2.putText(tile, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
        tiles.append(np.full((height + _LABEL_HEIGHT, _GAP, 3), 255, np.uint8))
    return np.concatenate(tiles[:-1], axis=1)
