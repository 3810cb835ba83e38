"""Pictures of TT100K detections: true positives green, false positives red, misses blue.

The colours are those of the FeatSR paper's Figure 7. Images are enlarged so that small signs and
their labels stay legible, and tiled into one PNG with a legend.
"""

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from featsr_d2.utils.file_io import atomic_write
from featsr_d2.utils.image import swap_rgb_bgr

# RGB colours of the three outcomes.
TP_COLOR = (0, 200, 0)
FP_COLOR = (230, 0, 0)
FN_COLOR = (0, 90, 255)


def write_png(path: str, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG, atomically, creating its folder."""
    ok, png = cv2.imencode(".png", swap_rgb_bgr(rgb))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode the picture for {path}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: f.write(png.tobytes()), binary=True)


def _draw_box(canvas: np.ndarray, box, scale: float, color, label: str) -> None:
    x0, y0, x1, y1 = (int(round(v * scale)) for v in box)
    cv2.rectangle(canvas, (x0, y0), (x1, y1), color, 2)
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    ty = y0 - 3 if y0 - th - 4 >= 0 else y1 + th + 3
    cv2.rectangle(canvas, (x0, ty - th - 2), (x0 + tw + 2, ty + 2), color, -1)
    cv2.putText(canvas, label, (x0 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)


def draw_matches(
    image: np.ndarray, matches: Mapping[str, Sequence[Mapping[str, Any]]], *, min_side: int = 512
) -> np.ndarray:
    """Draw one image's outcomes (an entry of
    :func:`~featsr_d2.core.tt100k_protocol.match_detections`) on an RGB uint8 ``image``,
    enlarged so that its short side is at least ``min_side`` pixels."""
    scale = max(1.0, min_side / min(image.shape[:2]))
    size = (int(round(image.shape[1] * scale)), int(round(image.shape[0] * scale)))
    canvas = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
    for obj in matches["gt"]:
        if not obj["matched"]:
            _draw_box(canvas, obj["bbox"], scale, FN_COLOR, obj["category"])
    for obj in matches["det"]:
        color = TP_COLOR if obj["matched"] else FP_COLOR
        _draw_box(canvas, obj["bbox"], scale, color, f"{obj['category']} {obj['score']:.2f}")
    return canvas


def _legend(width: int, title: str) -> np.ndarray:
    bar = np.full((28, width, 3), 255, np.uint8)
    x = 8
    outcomes = ((TP_COLOR, "true positive"), (FP_COLOR, "false positive"), (FN_COLOR, "miss"))
    for color, text in outcomes:
        cv2.rectangle(bar, (x, 8), (x + 14, 20), color, -1)
        cv2.putText(bar, text, (x + 20, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        x += 30 + cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0]
    cv2.putText(bar, title, (x + 10, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (60, 60, 60), 1)
    return bar


def tile(images: Sequence[np.ndarray], columns: int = 4, pad: int = 4) -> np.ndarray:
    """Tile RGB images (of any sizes) into one picture, row by row."""
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    rows = math.ceil(len(images) / columns)
    cols = min(columns, len(images))
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y : y + im.shape[0], x : x + im.shape[1]] = im
    return out


def save_matches_png(
    path: str,
    matches: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    image_files: Mapping[str, str],
    *,
    num_images: int,
    title: str = "",
) -> list[str]:
    """Draw the first ``num_images`` images of ``matches`` that hold any object, tiled into one PNG
    at ``path`` (written atomically). Returns the image ids drawn."""
    ids = [i for i, m in matches.items() if m["gt"] or m["det"]][:num_images]
    if not ids:
        return []
    drawn = []
    for img_id in ids:
        bgr = cv2.imread(image_files[img_id], cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read image {image_files[img_id]} (image id {img_id})")
        drawn.append(draw_matches(swap_rgb_bgr(bgr), matches[img_id]))
    mosaic = tile(drawn)
    picture = np.concatenate([_legend(mosaic.shape[1], title), mosaic], axis=0)
    write_png(path, picture)
    return ids
