"""Composition of one synthetic Tsinghua-Tencent 100K image.

An image is a background (photograph or procedural scene) with clutter, on which the signs of a
:func:`~featsr_d2.core.synthetic.layout.sample_layout` are pasted with a lighting change and blur
(and sometimes a post); the whole image then gets a gamma change, noise and, when written, JPEG
compression of a random quality.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from featsr_d2.core.synthetic.backgrounds import BackgroundSampler, add_clutter, default_backgrounds
from featsr_d2.core.synthetic.layout import SignPlacement, sample_layout, translation
from featsr_d2.core.synthetic.signs import TEMPLATE_SIZE, sign_model

__all__ = ["compose_image"]

JPEG_QUALITY = (55, 95)  # inclusive range


def _sign_appearance(rng: np.random.Generator, premult: np.ndarray) -> np.ndarray:
    """Fading, tint, brightness and contrast on a premultiplied float RGBA template in [0, 1]."""
    alpha = premult[..., 3:4]
    rgb = premult[..., :3] / np.maximum(alpha, 1e-4)
    if rng.random() < 0.3:  # sun-bleached
        f = rng.uniform(0.05, 0.35)
        rgb = rgb * (1 - f) + f * np.array([0.92, 0.92, 0.88], np.float32)
    rgb = rgb * rng.uniform(0.96, 1.04, size=3).astype(np.float32)
    rgb = (rgb - 0.5) * rng.uniform(0.75, 1.1) + 0.5
    rgb = rgb * rng.uniform(0.5, 1.25)
    out = np.empty_like(premult)
    out[..., :3] = np.clip(rgb, 0.0, 1.0) * alpha
    out[..., 3:4] = alpha
    return out


def _coverage_edges(profile: np.ndarray, thresh: float = 0.02) -> tuple[float, float] | None:
    """Sub-pixel extent [lo, hi) of a 1-D coverage profile in [0, 1] (continuous coordinates)."""
    idx = np.flatnonzero(profile > thresh)
    if idx.size == 0:
        return None
    i0, i1 = int(idx[0]), int(idx[-1])
    return i0 + 1.0 - min(1.0, float(profile[i0])), i1 + min(1.0, float(profile[i1]))


def _blur(rng: np.random.Generator, patch: np.ndarray, long_side: float) -> np.ndarray:
    sigma = rng.uniform(0.0, 0.7) if long_side > 20 else rng.uniform(0.0, 0.5)
    if rng.random() < 0.12:  # motion blur
        n = int(rng.integers(3, 6))
        kernel = np.zeros((n, n), np.float32)
        angle = rng.uniform(0.0, math.pi)
        c = (n - 1) / 2
        for t in np.linspace(-c, c, 4 * n):
            kernel[int(round(c + t * math.sin(angle))), int(round(c + t * math.cos(angle)))] = 1.0
        patch = cv2.filter2D(patch, -1, kernel / kernel.sum(), borderType=cv2.BORDER_CONSTANT)
    if sigma > 0.25:
        patch = cv2.GaussianBlur(patch, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
    return patch


def _draw_pole(img: np.ndarray, rng: np.random.Generator, p: SignPlacement) -> None:
    x0, y0, x1, y1 = p.box
    size = img.shape[0]
    half = max(0.6, 0.035 * (x1 - x0))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    gray = rng.uniform(90, 190)
    color = (gray, gray, gray * rng.uniform(0.95, 1.05))
    bottom = size if rng.random() < 0.6 else cy + (y1 - y0) * rng.uniform(1.0, 4.0)
    pts = np.array([[cx - half, cy], [cx + half, cy], [cx + half, bottom], [cx - half, bottom]])
    cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], color, cv2.LINE_AA, shift=4)


def _paste_sign(img: np.ndarray, rng: np.random.Generator, p: SignPlacement) -> dict | None:
    """Warp, shade and blend one sign into `img` (float32 RGB, in place); return its annotation."""
    size = img.shape[0]
    model = sign_model(p.category)
    t = TEMPLATE_SIZE
    # Reduce the template to about the output scale first (area filter: antialiased), then warp.
    m = int(min(t, max(4, math.ceil(p.long_side * 1.15))))
    small = cv2.resize(model.premultiplied, (m, m), interpolation=cv2.INTER_AREA)
    small = _sign_appearance(rng, small.astype(np.float32) / 255.0)
    r = t / m
    small_to_tpl = np.array([[r, 0.0, 0.5 * r - 0.5], [0.0, r, 0.5 * r - 0.5], [0.0, 0.0, 1.0]])

    margin = 4
    bx0 = max(0, int(math.floor(p.box[0])) - margin)
    by0 = max(0, int(math.floor(p.box[1])) - margin)
    bx1 = min(size, int(math.ceil(p.box[2])) + margin)
    by1 = min(size, int(math.ceil(p.box[3])) + margin)
    h = translation(-bx0, -by0) @ p.homography @ small_to_tpl
    patch = cv2.warpPerspective(
        small, h, (bx1 - bx0, by1 - by0), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0),
    )  # fmt: skip
    alpha = patch[..., 3]
    ex = _coverage_edges(alpha.max(axis=0))
    ey = _coverage_edges(alpha.max(axis=1))
    if ex is None or ey is None:
        return None
    patch = _blur(rng, patch, p.long_side)
    region = img[by0:by1, bx0:bx1]
    region *= 1.0 - patch[..., 3:4]
    region += patch[..., :3] * 255.0

    box = [
        min(max(bx0 + ex[0], 0.0), size), min(max(by0 + ey[0], 0.0), size),
        min(max(bx0 + ex[1], 0.0), size), min(max(by0 + ey[1], 0.0), size),
    ]  # fmt: skip
    pts = cv2.perspectiveTransform(model.outline.astype(np.float64), p.homography).reshape(-1, 2)
    pts = np.clip(pts + 0.5, 0.0, size)
    obj = {
        "bbox": {"xmin": round(box[0], 2), "ymin": round(box[1], 2),
                 "xmax": round(box[2], 2), "ymax": round(box[3], 2)},
        "category": p.category,
    }  # fmt: skip
    key = "ellipse_org" if model.shape == "circle" else "polygon"
    obj[key] = [[round(float(x), 2), round(float(y), 2)] for x, y in pts]
    return obj


def compose_image(
    rng: np.random.Generator,
    image_size: int,
    categories: Sequence[str],
    backgrounds: BackgroundSampler | None = None,
) -> tuple[np.ndarray, list[dict], int]:
    """One synthetic image: (RGB uint8 array, TT100K object annotations, JPEG quality)."""
    layout = sample_layout(rng, image_size, categories)
    sampler = backgrounds if backgrounds is not None else default_backgrounds()
    img = sampler.sample(rng, image_size)
    add_clutter(img, rng, int(rng.integers(1, 9)))
    img = img.astype(np.float32)
    for p in layout:
        if p.pole:
            _draw_pole(img, rng, p)
    objects = [obj for p in layout if (obj := _paste_sign(img, rng, p)) is not None]

    # Whole-image lighting, sensor noise, occasional defocus.
    gamma = rng.uniform(0.8, 1.25)
    img = 255.0 * (np.clip(img, 0.0, 255.0) / 255.0) ** gamma
    if rng.random() < 0.15:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.7))
    noise = rng.uniform(0.0, 6.0)
    img += noise * rng.standard_normal(img.shape, dtype=np.float32)
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), objects, quality
