"""Layout of a synthetic Tsinghua-Tencent 100K image: which signs go where, at what size, under
which homography (no pixels involved).

Sign sizes follow TT100K's mix of small, medium and large objects; signs get a random perspective,
rotation and sideways squash, and barely overlap each other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from featsr_d2.core.synthetic.signs import TEMPLATE_SIZE, SignModel, sign_model
from featsr_d2.core.tt100k_categories import SIZE_BINS

__all__ = [
    "SignPlacement",
    "max_long_side",
    "sample_layout",
    "sample_long_side",
    "translation",
]

# Share of signs by the long side of their box: TT100K's test set has about 42% small (< 32 px),
# 50% medium (32-96 px) and 8% large (>= 96 px) objects.
SIZE_MIX = {"small": 0.42, "medium": 0.50, "large": 0.08}
MIN_LONG_SIDE = 8.0  # smallest sign, px
MAX_LONG_SIDE = 200.0  # largest sign, px (also capped at 0.45 * image size)
EMPTY_IMAGE_PROB = 0.05  # share of images without any sign
SIGNS_PER_IMAGE = (2, 8)  # inclusive range of signs per non-empty image
MAX_IOU = 0.1  # a placement overlapping an earlier sign more than this is rejected
MAX_COVER = 0.2  # ... or covering more than this share of the smaller box
PLACEMENT_TRIES = 25


@dataclass(frozen=True)
class SignPlacement:
    """Where and how one sign goes into an image.

    Attributes:
        category: TT100K category name.
        homography: (3, 3) map from template pixel coordinates to image pixel coordinates (both with
            pixel centres at integers, as OpenCV).
        box: (x0, y0, x1, y1) of the warped sign silhouette in continuous image coordinates
            (pixel i spans [i, i + 1]), as Detectron2's XYXY_ABS.
        pole: whether a post is drawn below the sign.
    """

    category: str
    homography: np.ndarray
    box: tuple[float, float, float, float]
    pole: bool

    @property
    def long_side(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


def max_long_side(image_size: int) -> float:
    """The largest sign long side used for `image_size` images."""
    return min(MAX_LONG_SIDE, 0.45 * image_size)


def sample_long_side(rng: np.random.Generator, image_size: int) -> float:
    """A target long side (px) from TT100K's size mix.

    Small signs are uniform in [8, 32), medium log-uniform in [32, 96), large uniform in
    [96, :func:`max_long_side`]. Below about 214 px images cannot hold large signs: those become the
    largest that fits (so the large share moves to medium), and likewise for medium in tiny images.
    """
    hi = max_long_side(image_size)
    lo_s, hi_s = SIZE_BINS["small"]
    lo_m, hi_m = SIZE_BINS["medium"]
    lo_l = SIZE_BINS["large"][0]
    u = rng.random()
    if u < SIZE_MIX["small"]:
        side = rng.uniform(max(MIN_LONG_SIDE, lo_s), hi_s)
    elif u < SIZE_MIX["small"] + SIZE_MIX["medium"]:
        side = math.exp(rng.uniform(math.log(lo_m), math.log(hi_m)))
    else:
        side = rng.uniform(lo_l, max(lo_l, hi))
    return float(min(side, hi))


def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def _sign_geometry(
    rng: np.random.Generator, model: SignModel, long_side: float
) -> tuple[np.ndarray, float, float]:
    """A homography from template pixels that puts the silhouette's box at the origin with the given
    long side, with a small random perspective, rotation and sideways squash; and the box size."""
    t = float(TEMPLATE_SIZE)
    src = np.array([[0, 0], [t, 0], [t, t], [0, t]], np.float32)
    jitter = np.clip(rng.normal(0.0, 0.03 * t, size=(4, 2)), -0.08 * t, 0.08 * t)
    persp = cv2.getPerspectiveTransform(src, (src + jitter).astype(np.float32))
    theta = math.radians(float(np.clip(rng.normal(0.0, 4.0), -10.0, 10.0)))
    squash = rng.uniform(0.75, 1.0) if rng.random() < 0.4 else 1.0
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c * squash, -s, 0.0], [s * squash, c, 0.0], [0.0, 0.0, 1.0]])
    h0 = translation(t / 2, t / 2) @ rot @ translation(-t / 2, -t / 2) @ persp
    pts = cv2.perspectiveTransform(model.contour, h0).reshape(-1, 2)
    # Box of the silhouette in continuous coordinates: pixel centres +- 0.5.
    x0, y0 = pts.min(axis=0) - 0.5
    x1, y1 = pts.max(axis=0) + 0.5
    k = long_side / max(x1 - x0, y1 - y0)
    h = np.diag([k, k, 1.0]) @ translation(-x0, -y0) @ h0
    # Continuous [0, w] maps to pixel centres [-0.5, w - 0.5].
    h = translation(-0.5, -0.5) @ h
    return h, float((x1 - x0) * k), float((y1 - y0) * k)


def _overlaps(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two boxes overlap more than allowed: IoU above MAX_IOU, or more than MAX_COVER of the
    smaller box covered (a small sign hidden behind a large one has a low IoU)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return False
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter) > MAX_IOU or inter / min(area_a, area_b) > MAX_COVER


def sample_layout(
    rng: np.random.Generator, image_size: int, categories: Sequence[str]
) -> list[SignPlacement]:
    """The signs of one image: none with probability EMPTY_IMAGE_PROB, else 2 to 8 signs of
    uniformly drawn categories and TT100K-like sizes, inside the image, overlapping each other by
    IoU <= 0.1 and covering at most 20% of each other's box (a sign finding no place is dropped)."""
    if rng.random() < EMPTY_IMAGE_PROB:
        return []
    placements: list[SignPlacement] = []
    for _ in range(int(rng.integers(SIGNS_PER_IMAGE[0], SIGNS_PER_IMAGE[1] + 1))):
        category = categories[int(rng.integers(len(categories)))]
        side = sample_long_side(rng, image_size)
        h, w, hgt = _sign_geometry(rng, sign_model(category), side)
        pole = bool(rng.random() < 0.5)
        for _ in range(PLACEMENT_TRIES):
            x = rng.uniform(0.0, image_size - w)
            y = rng.uniform(0.0, image_size - hgt)
            box = (x, y, x + w, y + hgt)
            if not any(_overlaps(box, p.box) for p in placements):
                placements.append(SignPlacement(category, translation(x, y) @ h, box, pole))
                break
    return placements
