"""Backgrounds for synthetic traffic-sign images: photographs that installed packages ship,
procedural street-like scenes, and clutter (distractors, including sign-coloured discs as hard
negatives).

Photographs are found on disk only; nothing is fetched. The sources, in this order, each used when
present: scikit-image's bundled data photos, scikit-learn's sample images (china, flower), Debian's
mate-backgrounds (``/usr/share/backgrounds``) and opencv-doc's example photos.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
from collections.abc import Sequence

import cv2
import numpy as np

from featsr_d2.utils.image import swap_rgb_bgr
from featsr_d2.utils.packages import package_dir

__all__ = [
    "BackgroundSampler",
    "add_clutter",
    "default_backgrounds",
    "find_photo_paths",
    "load_photos",
    "procedural_scene",
]

logger = logging.getLogger(__name__)

# scikit-image's bundled data files that are natural photographs (not synthetic or microscopy).
_SKIMAGE_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
    "grass.png", "gravel.png", "motorcycle_left.png", "motorcycle_right.png", "rocket.jpg",
    "text.png",
)  # fmt: skip
_SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
_SYSTEM_GLOBS = (
    "/usr/share/backgrounds/**/*.jpg",
    "/usr/share/backgrounds/**/*.png",
    "/usr/share/doc/opencv-doc/examples/data/*.jpg",
)
_IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def find_photo_paths() -> list[str]:
    """Paths of the background photographs available on this machine, in a fixed order."""
    paths: list[str] = []
    skimage_dir = package_dir("skimage")
    if skimage_dir is not None:
        paths += [os.path.join(skimage_dir, "data", f) for f in _SKIMAGE_PHOTOS]
    sklearn_dir = package_dir("sklearn")
    if sklearn_dir is not None:
        paths += [os.path.join(sklearn_dir, "datasets", "images", f) for f in _SKLEARN_PHOTOS]
    for pattern in _SYSTEM_GLOBS:
        paths += sorted(glob.glob(pattern, recursive=True))
    seen = set()
    out = []
    for p in paths:
        if p not in seen and os.path.isfile(p) and p.lower().endswith(_IMAGE_EXTS):
            seen.add(p)
            out.append(p)
    return out


def load_photos(paths: Sequence[str], max_side: int = 1024, min_side: int = 96) -> list[np.ndarray]:
    """Read photographs as RGB uint8 arrays, downscaled so that the long side is at most `max_side`.

    Files that cannot be decoded or that are smaller than `min_side` are skipped with a warning.
    """
    photos = []
    for path in paths:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            logger.warning("skipping unreadable background photo %s", path)
            continue
        h, w = bgr.shape[:2]
        if min(h, w) < min_side:
            logger.warning("skipping background photo %s: %dx%d is too small", path, w, h)
            continue
        scale = max_side / max(h, w)
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        rgb = swap_rgb_bgr(bgr)
        rgb.setflags(write=False)
        photos.append(rgb)
    return photos


def _random_color(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    c = rng.integers(low, high, size=3)
    return int(c[0]), int(c[1]), int(c[2])


def _random_color_in(rng: np.random.Generator, *ranges: tuple[int, int]) -> tuple[int, int, int]:
    """An RGB colour with each channel drawn from its own [low, high) range."""
    r, g, b = (int(rng.integers(lo, hi)) for lo, hi in ranges)
    return r, g, b


def _low_freq_noise(rng: np.random.Generator, size: int, cells: int, amp: float) -> np.ndarray:
    """Smooth (size, size, 1) float32 noise in [-amp, amp]."""
    grid = rng.uniform(-amp, amp, size=(cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)[..., None]


def procedural_scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """A street-like scene: sky gradient, buildings with windows, trees, a road; RGB uint8."""
    horizon = int(size * rng.uniform(0.35, 0.7))
    sky_top = np.array([rng.uniform(90, 170), rng.uniform(130, 200), rng.uniform(170, 245)])
    if rng.random() < 0.3:  # overcast
        sky_top = np.full(3, rng.uniform(150, 225))
    sky_bottom = np.clip(sky_top + rng.uniform(10, 50), 0, 255)
    ground = np.array(_random_color(rng, 60, 140), dtype=np.float64)
    t = np.linspace(0.0, 1.0, size)[:, None]
    column = np.where(
        np.arange(size)[:, None] < horizon,
        sky_top * (1 - t) + sky_bottom * t,
        ground * (0.8 + 0.4 * t),
    )
    img = np.repeat(column[:, None, :], size, axis=1).astype(np.float32)

    # Buildings along the horizon, with window grids.
    x = int(rng.integers(-size // 4, 0))
    while x < size:
        w = int(rng.integers(size // 8, size // 3))
        top = int(horizon - rng.uniform(0.1, 0.6) * size)
        color = _random_color(rng, 70, 220)
        cv2.rectangle(img, (x, top), (x + w, horizon), color, -1)
        win = max(2, int(rng.integers(3, 9) * size / 320))
        win_color = _random_color(rng, 20, 120)
        for wy in range(top + win, horizon - win, 3 * win):
            for wx in range(x + win, x + w - win, 3 * win):
                cv2.rectangle(img, (wx, wy), (wx + win, wy + win), win_color, -1)
        x += w + int(rng.integers(0, size // 10))

    # Trees: clusters of green blobs.
    for _ in range(int(rng.integers(0, 5))):
        cx, cy = int(rng.integers(0, size)), int(rng.integers(horizon // 3, horizon + size // 8))
        green = _random_color_in(rng, (20, 80), (80, 150), (20, 80))
        for _ in range(6):
            r = int(rng.integers(size // 30, size // 9) + 1)
            off = rng.integers(-size // 12, size // 12 + 1, size=2)
            cv2.circle(img, (cx + int(off[0]), cy + int(off[1])), r, green, -1, cv2.LINE_AA)

    # A road in perspective with lane markings.
    if rng.random() < 0.7:
        vx = int(rng.integers(size // 4, 3 * size // 4))
        road = np.array(
            [[vx - 2, horizon], [vx + 2, horizon], [size * 1.3, size], [-size * 0.3, size]]
        )
        gray = int(rng.integers(60, 120))
        cv2.fillPoly(img, [road.astype(np.int32)], (gray, gray, gray), cv2.LINE_AA)
        for k in range(6):
            y0 = horizon + (size - horizon) * (k / 6) ** 1.5
            y1 = horizon + (size - horizon) * ((k + 0.5) / 6) ** 1.5
            x0 = vx + (size * 0.5 - vx) * (y0 - horizon) / (size - horizon)
            x1 = vx + (size * 0.5 - vx) * (y1 - horizon) / (size - horizon)
            cv2.line(img, (int(x0), int(y0)), (int(x1), int(y1)), (235, 235, 235),
                     max(1, int(2 + 6 * (y0 - horizon) / size)), cv2.LINE_AA)  # fmt: skip

    img += _low_freq_noise(rng, size, int(rng.integers(4, 12)), 18.0)
    return np.clip(img, 0, 255).astype(np.uint8)


def add_clutter(img: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Draw `count` distractors on `img` (RGB uint8, in place): billboards, poles and wires,
    blobs, and plain red, blue and yellow shapes that look like signs at a glance but belong to no
    class."""
    size = img.shape[0]
    for _ in range(count):
        kind = rng.integers(0, 7)
        d = float(np.exp(rng.uniform(np.log(8), np.log(max(10.0, size * 0.2)))))
        cx, cy = int(rng.integers(0, size)), int(rng.integers(0, size))
        r = max(2, int(d / 2))
        thick = max(1, int(d * rng.uniform(0.08, 0.16)))
        if kind == 0:  # billboard or shop sign with stripes of "text"
            w, h = int(d * rng.uniform(1.0, 2.5)), int(d * rng.uniform(0.4, 1.0))
            cv2.rectangle(img, (cx, cy), (cx + w, cy + h), _random_color(rng), -1)
            tc = _random_color(rng)
            for k in range(int(rng.integers(1, 4))):
                y = cy + int((k + 0.5) * h / 3.5)
                cv2.line(img, (cx + w // 8, y), (cx + w - w // 8, y), tc, max(1, h // 8))
        elif kind == 1:  # red ring or red disk (no TT100K type45 class)
            red = _random_color_in(rng, (170, 230), (10, 60), (20, 70))
            if rng.random() < 0.5:
                cv2.circle(img, (cx, cy), r, (240, 240, 235), -1, cv2.LINE_AA)
                cv2.circle(img, (cx, cy), r, red, thick, cv2.LINE_AA)
            else:
                cv2.circle(img, (cx, cy), r, red, -1, cv2.LINE_AA)
        elif kind == 2:  # blue disk or blue rectangle (guide sign)
            blue = _random_color_in(rng, (10, 50), (50, 110), (140, 210))
            if rng.random() < 0.5:
                cv2.circle(img, (cx, cy), r, blue, -1, cv2.LINE_AA)
            else:
                w = int(d * rng.uniform(1.2, 3.0))
                cv2.rectangle(img, (cx, cy), (cx + w, cy + r), blue, -1)
                cv2.rectangle(img, (cx, cy), (cx + w, cy + r), (240, 240, 240), max(1, thick // 2))
        elif kind == 3:  # yellow or orange diamond / square
            color = _random_color_in(rng, (220, 255), (120, 210), (0, 40))
            pts = np.array([[cx, cy - r], [cx + r, cy], [cx, cy + r], [cx - r, cy]], np.int32)
            cv2.fillPoly(img, [pts], color, cv2.LINE_AA)
        elif kind == 4:  # pole or wire
            color = _random_color(rng, 30, 200)
            x2, y2 = cx + int(rng.integers(-size, size)), cy + int(rng.integers(-size, size))
            cv2.line(img, (cx, cy), (x2, y2), color, max(1, thick // 2), cv2.LINE_AA)
        elif kind == 5:  # irregular blob (foliage, car, person)
            n = int(rng.integers(4, 9))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = r * rng.uniform(0.5, 1.2, n)
            pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
            cv2.fillPoly(img, [pts], _random_color(rng), cv2.LINE_AA)
        else:  # white disk with black ring, or an arrow-less white panel
            cv2.circle(img, (cx, cy), r, (235, 235, 230), -1, cv2.LINE_AA)
            cv2.circle(img, (cx, cy), r, (25, 25, 25), max(1, thick // 2), cv2.LINE_AA)


class BackgroundSampler:
    """Draws square backgrounds: a random crop of a photograph (rescaled, flipped, colour-jittered),
    or a procedural scene when there is no photograph or with probability `procedural_prob`.

    Args:
        photos: RGB uint8 photographs (see :func:`load_photos`).
        procedural_prob: chance of a procedural scene even when photographs exist.
    """

    def __init__(self, photos: Sequence[np.ndarray], procedural_prob: float = 0.2):
        self.photos = list(photos)
        self.procedural_prob = procedural_prob
        # Grayscale photographs get a random colour cast: colour alone must not give signs away.
        self.grayscale = [
            bool(np.ptp(p[::8, ::8].astype(np.int16), axis=2).max() <= 4) for p in photos
        ]

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """A (size, size, 3) RGB uint8 background."""
        if not self.photos or rng.random() < self.procedural_prob:
            return procedural_scene(rng, size)
        k = int(rng.integers(len(self.photos)))
        photo = self.photos[k]
        h, w = photo.shape[:2]
        side = int(min(h, w) * np.exp(rng.uniform(np.log(0.3), 0.0)))
        side = max(16, side)
        y0 = int(rng.integers(0, h - side + 1))
        x0 = int(rng.integers(0, w - side + 1))
        crop = photo[y0 : y0 + side, x0 : x0 + side]
        interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        img = cv2.resize(crop, (size, size), interpolation=interp).astype(np.float32)
        if rng.random() < 0.5:
            img = img[:, ::-1]
        if self.grayscale[k]:
            img = img * rng.uniform(0.7, 1.15, size=3).astype(np.float32)
        gray = img.mean(axis=2, keepdims=True)
        img = gray + (img - gray) * rng.uniform(0.6, 1.3)  # saturation
        img = (img - 128.0) * rng.uniform(0.75, 1.2) + 128.0 + rng.uniform(-30, 30)
        return np.clip(img, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def default_backgrounds() -> BackgroundSampler:
    """A sampler over the photographs found on disk, loaded once per process."""
    paths = find_photo_paths()
    photos = load_photos(paths)
    if not photos:
        logger.warning("no background photographs found: using procedural scenes only")
    return BackgroundSampler(photos)
