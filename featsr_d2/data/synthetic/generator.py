"""Composition of synthetic Tsinghua-Tencent 100K images and writing of the dataset in TT100K's
layout.

An image is a background (photograph or procedural scene) with clutter, on which 2 to 8 signs (none
in about 5% of the images) are pasted with a random perspective, rotation, lighting change and blur;
the whole image then gets noise and JPEG compression. Sign sizes follow TT100K's mix of small,
medium and large objects. Every image draws from its own random generator seeded with
``(seed, image index)``, so a dataset is the same whatever the number of worker processes.

Output (as the TT100K release)::

    OUT/annotations.json      {"types": [...], "imgs": {"<id>": {"path", "id", "objects": [...]}}}
    OUT/train/ids.txt, OUT/test/ids.txt
    OUT/train/<id>.jpg, OUT/test/<id>.jpg
"""

from __future__ import annotations

import functools
import json
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from featsr_d2.data.synthetic.backgrounds import (
    BackgroundSampler,
    add_clutter,
    find_photo_paths,
    load_photos,
)
from featsr_d2.data.synthetic.signs import TEMPLATE_SIZE, get_template, is_drawable
from featsr_d2.data.tt100k_categories import SIZE_BINS, TYPE45
from featsr_d2.utils.file_io import atomic_write_json, atomic_write_text

__all__ = [
    "SignPlacement",
    "compose_image",
    "format_summary",
    "generate_synthetic_tt100k",
    "resolve_categories",
    "sample_layout",
    "sample_long_side",
]

logger = logging.getLogger(__name__)

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
JPEG_QUALITY = (55, 95)  # inclusive range
FIRST_ID = 10000  # image ids are FIRST_ID + index, train images first
MIN_IMAGE_SIZE = 64


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


# --------------------------------------------------------------------------------------------------
# Per-process caches: sign templates in the form composition uses, and background photographs.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SignModel:
    premultiplied: np.ndarray  # (T, T, 4) uint8, colour multiplied by alpha
    contour: np.ndarray  # (K, 1, 2) float32 silhouette boundary, template pixel coordinates
    outline: np.ndarray  # (K', 1, 2) float32 annotation points (polygon corners or ellipse points)
    shape: str


@functools.cache
def _sign_model(category: str) -> _SignModel:
    tpl = get_template(category)
    rgba = tpl.rgba.astype(np.uint16)
    premult = rgba.copy()
    premult[..., :3] = (rgba[..., :3] * rgba[..., 3:4] + 127) // 255
    mask = (tpl.rgba[..., 3] >= 128).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contour = max(contours, key=cv2.contourArea).astype(np.float32)
    return _SignModel(
        premultiplied=premult.astype(np.uint8),
        contour=contour,
        outline=tpl.outline.reshape(-1, 1, 2).astype(np.float32),
        shape=tpl.shape,
    )


@functools.lru_cache(maxsize=1)
def _default_backgrounds() -> BackgroundSampler:
    paths = find_photo_paths()
    photos = load_photos(paths)
    if not photos:
        logger.warning("no background photographs found: using procedural scenes only")
    return BackgroundSampler(photos)


def _warm_caches(categories: Sequence[str]) -> None:
    """Render every template and load the photographs (before forking: workers inherit them)."""
    for c in categories:
        _sign_model(c)
    _default_backgrounds()


# --------------------------------------------------------------------------------------------------
# Layout: which signs go where, at what size (no pixels involved).
# --------------------------------------------------------------------------------------------------


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


def _translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def _sign_geometry(
    rng: np.random.Generator, model: _SignModel, long_side: float
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
    h0 = _translation(t / 2, t / 2) @ rot @ _translation(-t / 2, -t / 2) @ persp
    pts = cv2.perspectiveTransform(model.contour, h0).reshape(-1, 2)
    # Box of the silhouette in continuous coordinates: pixel centres +- 0.5.
    x0, y0 = pts.min(axis=0) - 0.5
    x1, y1 = pts.max(axis=0) + 0.5
    k = long_side / max(x1 - x0, y1 - y0)
    h = np.diag([k, k, 1.0]) @ _translation(-x0, -y0) @ h0
    # Continuous [0, w] maps to pixel centres [-0.5, w - 0.5].
    h = _translation(-0.5, -0.5) @ h
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
        h, w, hgt = _sign_geometry(rng, _sign_model(category), side)
        pole = bool(rng.random() < 0.5)
        for _ in range(PLACEMENT_TRIES):
            x = rng.uniform(0.0, image_size - w)
            y = rng.uniform(0.0, image_size - hgt)
            box = (x, y, x + w, y + hgt)
            if not any(_overlaps(box, p.box) for p in placements):
                placements.append(SignPlacement(category, _translation(x, y) @ h, box, pole))
                break
    return placements


# --------------------------------------------------------------------------------------------------
# Rendering.
# --------------------------------------------------------------------------------------------------


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
    model = _sign_model(p.category)
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
    h = _translation(-bx0, -by0) @ p.homography @ small_to_tpl
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
    sampler = backgrounds if backgrounds is not None else _default_backgrounds()
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


# --------------------------------------------------------------------------------------------------
# The dataset.
# --------------------------------------------------------------------------------------------------


def resolve_categories(categories: str | Sequence[str]) -> tuple[str, ...]:
    """Category names from "type45" (TT100K's 45 evaluation classes), a comma-separated string or
    a sequence of names; raises ValueError for names without a sign design."""
    if isinstance(categories, str):
        if categories == "type45":
            return tuple(TYPE45)
        if categories == "all":
            raise ValueError(
                "the 'all' TT100K class set cannot be synthesized: use 'type45' or a list of names"
            )
        categories = categories.split(",")
    names = tuple(dict.fromkeys(c.strip() for c in categories if c.strip()))
    if not names:
        raise ValueError("no categories given")
    unknown = [c for c in names if not is_drawable(c)]
    if unknown:
        raise ValueError(f"no sign design for categories {unknown}; see signs.SIGN_CATEGORIES")
    return names


@dataclass(frozen=True)
class _Job:
    split: str
    index: int  # global image index (train first), seeds the image's generator
    image_id: int


@dataclass(frozen=True)
class _Settings:
    out_dir: str
    image_size: int
    seed: int
    categories: tuple[str, ...]


def _render_job(settings: _Settings, job: _Job) -> tuple[_Job, list[dict]]:
    rng = np.random.default_rng([settings.seed, job.index])
    img, objects, quality = compose_image(rng, settings.image_size, settings.categories)
    path = os.path.join(settings.out_dir, job.split, f"{job.image_id}.jpg")
    Image.fromarray(img).save(path, format="JPEG", quality=quality)
    return job, objects


_WORKER_SETTINGS: _Settings | None = None


def _worker_init(settings: _Settings) -> None:
    global _WORKER_SETTINGS
    _WORKER_SETTINGS = settings
    cv2.setNumThreads(1)
    _warm_caches(settings.categories)  # no-op after fork: the caches came with the parent


def _worker_run(job: _Job) -> tuple[_Job, list[dict]]:
    assert _WORKER_SETTINGS is not None
    return _render_job(_WORKER_SETTINGS, job)


# Left in the output folder before anything else is written: what this generator wrote there, so
# that --overwrite deletes exactly that and nothing a user put there (a real TT100K, notes).
MARKER = ".featsr_synthetic.json"
_MARKER_KIND = "featsr_d2 synthetic TT100K"
_OURS = ("annotations.json", "train", "test")


def _written_files(out_dir: str) -> list[str] | None:
    """The relative paths this generator wrote into ``out_dir`` per its marker; None without a
    (valid) marker."""
    path = os.path.join(out_dir, MARKER)
    try:
        with open(path, encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("kind") != _MARKER_KIND:
        return None
    files = marker.get("files")
    if not isinstance(files, list) or not all(isinstance(p, str) for p in files):
        return None
    return files


def _remove_previous(out_dir: str) -> None:
    """Delete what the marker lists (only paths inside ``out_dir``), then the emptied split
    folders and the marker itself; annotations first, so that a half-removed dataset never looks
    complete."""
    files = _written_files(out_dir)
    assert files is not None
    root = os.path.realpath(out_dir)
    ordered = sorted(files, key=lambda p: p != "annotations.json")
    for rel in ordered:
        target = os.path.realpath(os.path.join(root, rel))
        if os.path.commonpath([root, target]) != root or target == root:
            continue  # a marker naming a path outside the folder is not obeyed
        if os.path.isfile(target) and not os.path.islink(os.path.join(root, rel)):
            os.remove(target)
    for split in ("train", "test"):
        folder = os.path.join(out_dir, split)
        if os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
    os.remove(os.path.join(out_dir, MARKER))


def _prepare_out_dir(out_dir: str, overwrite: bool, planned: list[str]) -> None:
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not a folder; give --out a folder")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not overwrite:
            raise FileExistsError(f"{out_dir} is not empty (pass overwrite=True / --overwrite)")
        present = [n for n in _OURS if os.path.lexists(os.path.join(out_dir, n))]
        if _written_files(out_dir) is not None:
            _remove_previous(out_dir)  # what remains is not ours, and is kept
        elif present:
            raise FileExistsError(
                f"{out_dir} holds {', '.join(present)} that this generator did not write (no "
                f"{MARKER} lists them): refusing to delete them, which could be a real dataset. "
                "Choose another --out, or remove them yourself."
            )
    os.makedirs(out_dir, exist_ok=True)
    marker = {"kind": _MARKER_KIND, "files": planned}
    atomic_write_json(os.path.join(out_dir, MARKER), marker)  # before any file it lists
    for split in ("train", "test"):
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)


def _size_bin(obj: dict) -> str:
    b = obj["bbox"]
    side = max(b["xmax"] - b["xmin"], b["ymax"] - b["ymin"])
    for name in ("small", "medium", "large"):
        lo, hi = SIZE_BINS[name]
        if lo <= side < hi:
            return name
    return "large"


def generate_synthetic_tt100k(
    out_dir: str,
    *,
    num_train: int = 600,
    num_test: int = 150,
    image_size: int = 320,
    seed: int = 0,
    categories: str | Sequence[str] = "type45",
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Write a synthetic dataset in the Tsinghua-Tencent 100K layout to `out_dir`.

    Args:
        out_dir: output directory; created if missing, refused if not empty unless `overwrite`,
            which deletes only the files an earlier run wrote there (listed in its ``MARKER``
            file) and refuses a folder holding annotations.json, train/ or test/ without one.
        num_train, num_test: number of images per split.
        image_size: side of the square images, px (>= 64).
        seed: non-negative seed; the dataset (annotation bytes and image bytes) depends only on it,
            the counts, the image size and the categories.
        categories: "type45" or a list (or comma-separated string) of drawable TT100K names.
        workers: processes to render with; None picks min(CPU count, 8), or 1 for fewer than 32
            images.
        progress: show a tqdm progress bar.

    Returns:
        A summary: ``out_dir``, ``num_images`` per split, ``num_empty_images``, ``num_objects``,
        ``per_class`` and ``per_size`` (small / medium / large by the long side of the box) counts,
        and ``seconds``.
    """
    start = time.perf_counter()
    if num_train < 0 or num_test < 0:
        raise ValueError("num_train and num_test must be >= 0")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    names = resolve_categories(categories)
    total = num_train + num_test
    if workers is None:
        workers = 1 if total < 32 else min(os.cpu_count() or 1, 8)
    workers = max(1, min(int(workers), max(1, total)))

    out_dir = os.path.abspath(out_dir)
    settings = _Settings(out_dir, int(image_size), int(seed), names)
    jobs = [
        _Job("train" if i < num_train else "test", i, FIRST_ID + i) for i in range(total)
    ]  # fmt: skip
    planned = [f"{job.split}/{job.image_id}.jpg" for job in jobs]
    planned += ["train/ids.txt", "test/ids.txt", "annotations.json"]
    _prepare_out_dir(out_dir, overwrite, planned)

    # OpenCV on one thread before anything is drawn: a worker forked while OpenCV's thread pool
    # runs can inherit a held lock and hang at its first OpenCV call.
    from tqdm import tqdm

    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    results: dict[int, list[dict]] = {}
    bar = tqdm(total=total, desc="synthetic TT100K", unit="img", disable=not progress)
    try:
        _warm_caches(names)
        if workers == 1:
            for job in jobs:
                _, objs = _render_job(settings, job)
                results[job.image_id] = objs
                bar.update(1)
        else:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
            chunk = max(1, min(16, total // (4 * workers)))
            with ctx.Pool(workers, initializer=_worker_init, initargs=(settings,)) as pool:
                for job, objs in pool.imap_unordered(_worker_run, jobs, chunksize=chunk):
                    results[job.image_id] = objs
                    bar.update(1)
    finally:
        cv2.setNumThreads(cv2_threads)
        bar.close()

    imgs = {}
    for job in jobs:
        imgs[str(job.image_id)] = {
            "path": f"{job.split}/{job.image_id}.jpg",
            "id": job.image_id,
            "objects": results[job.image_id],
        }
    for split in ("train", "test"):
        ids = [str(j.image_id) for j in jobs if j.split == split]
        atomic_write_text(os.path.join(out_dir, split, "ids.txt"), "".join(i + "\n" for i in ids))
    # Written last and atomically: a crashed run never leaves a complete-looking dataset.
    atomic_write_json(
        os.path.join(out_dir, "annotations.json"), {"types": list(names), "imgs": imgs}
    )

    per_class = dict.fromkeys(names, 0)
    per_size = {"small": 0, "medium": 0, "large": 0}
    for entry in imgs.values():
        for obj in entry["objects"]:
            per_class[obj["category"]] += 1
            per_size[_size_bin(obj)] += 1
    return {
        "out_dir": out_dir,
        "num_images": {"train": num_train, "test": num_test},
        "num_empty_images": sum(1 for e in imgs.values() if not e["objects"]),
        "num_objects": sum(per_class.values()),
        "per_class": per_class,
        "per_size": per_size,
        "seconds": time.perf_counter() - start,
    }


def format_summary(summary: dict, columns: int = 6) -> str:
    """A readable multi-line report of a :func:`generate_synthetic_tt100k` summary."""
    n = summary["num_objects"]
    lines = [
        f"synthetic TT100K in {summary['out_dir']}: {summary['num_images']['train']} train + "
        f"{summary['num_images']['test']} test images "
        f"({summary['num_empty_images']} without signs), "
        f"{n} signs, {summary['seconds']:.1f} s",
        "per size (long side of the box): "
        + ", ".join(
            f"{k} [{SIZE_BINS[k][0]}, {SIZE_BINS[k][1]}) {v} ({100.0 * v / max(1, n):.1f}%)"
            for k, v in summary["per_size"].items()
        ),
        "per class:",
    ]
    items = [f"{k:>6} {v:5d}" for k, v in summary["per_class"].items()]
    for i in range(0, len(items), columns):
        lines.append("  " + "   ".join(items[i : i + columns]))
    return "\n".join(lines)
