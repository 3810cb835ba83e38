"""Image degradations that make low-resolution inputs from high-resolution photographs: composable
steps, deterministic for a seed.

Every step maps an RGB uint8 image of shape (H, W, 3) and a ``numpy.random.Generator`` to a new RGB
uint8 image; the input is never modified. Random parameters are drawn from the generator, so
``Compose(...)(image, np.random.default_rng(seed))`` gives the same result for the same seed.

- :class:`BicubicDownscale`: MATLAB's ``imresize(I, 1/s, 'bicubic')`` with antialiasing (the
  degradation of the SR benchmarks, so PSNR compares with published numbers); the image is first
  cropped to a multiple of ``s`` ("mod crop") when it is not one;
- :class:`GaussianBlur`: isotropic Gaussian blur of a fixed or random sigma (TDSR's blur condition;
  applied before the downscale);
- :class:`GaussianNoise`: additive white Gaussian noise on the 0..255 scale, fixed or random sigma
  (TDSR's noise condition; applied after the downscale), rounded and saturated to uint8;
- :class:`JPEGCompression`: a real JPEG encoding and decoding with OpenCV's libjpeg (4:2:0 chroma
  subsampling, standard quantization tables scaled by the quality), fixed quality or uniform in
  an inclusive range (CAJNN trains on [10, 100]);
- :func:`cajnn_degradation`: CAJNN's pipeline, downscale then compress.

A pipeline named by its steps ("blur", "bicubic", "noise", "jpeg") is :func:`build_degradation`
(a Detectron2 config's ``INPUT.SR.*``: :func:`featsr_d2.data.sr_degradation.build_sr_degradation`;
an MMDetection pipeline's ``FeatSRMakeLRImage``). This module is the one place an LR image is
made: :func:`make_lr_image` (a pipeline on an HR image padded to a multiple of the scale: the
detection mappers and transforms, TDSR; :func:`lr_seed` seeds its test-time randomness per
image), :func:`degrade` (a pipeline with a seed: the SR trainer's samples) and
:func:`make_benchmark_lr` (the SR benchmarks' bicubic and JPEG).
"""

from __future__ import annotations

import abc
import math
import zlib
from collections.abc import Sequence

import cv2
import numpy as np

from featsr_d2.core.layers.imresize import imresize_np
from featsr_d2.utils.image import round_to_uint8, swap_rgb_bgr

__all__ = [
    "BicubicDownscale",
    "Compose",
    "Degradation",
    "GaussianBlur",
    "DEGRADATION_STEPS",
    "GaussianNoise",
    "JPEGCompression",
    "build_degradation",
    "cajnn_degradation",
    "degrade",
    "jpeg_roundtrip",
    "lr_seed",
    "lr_size",
    "make_benchmark_lr",
    "make_lr_image",
    "mod_crop",
]


def _check_image(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"degradations take RGB uint8 images of shape (H, W, 3), got {image.dtype} "
            f"{image.shape}"
        )


def _as_range(value: float | Sequence[float], name: str) -> tuple[float, float]:
    """A fixed value or a (low, high) range, as (low, high)."""
    if isinstance(value, (int, float)):
        low = high = float(value)
    else:
        values = [float(v) for v in value]
        if len(values) == 1:
            low = high = values[0]
        elif len(values) == 2:
            low, high = values
        else:
            raise ValueError(f"{name} must be a value or [low, high], got {value}")
    if low < 0 or high < low:
        raise ValueError(f"{name} must satisfy 0 <= low <= high, got {value}")
    return low, high


def _draw(value_range: tuple[float, float], rng: np.random.Generator) -> float:
    """The fixed value of a (low, low) range, or a uniform draw from (low, high)."""
    low, high = value_range
    return float(rng.uniform(low, high)) if high > low else low


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
    """``image`` cropped at the bottom and right to sides that are multiples of ``scale``."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


class Degradation(abc.ABC):
    """A degradation step: ``step(image, rng) -> image`` (RGB uint8, (H, W, 3))."""

    @abc.abstractmethod
    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Degrade ``image`` with randomness drawn from ``rng`` only."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class BicubicDownscale(Degradation):
    """MATLAB-compatible antialiased bicubic downscaling by an integer ``scale``."""

    def __init__(self, scale: int):
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.scale = int(scale)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_image(image)
        hr = mod_crop(image, self.scale)
        if hr.shape[0] == 0 or hr.shape[1] == 0:
            raise ValueError(f"image {image.shape[:2]} is smaller than the scale {self.scale}")
        return imresize_np(hr, 1.0 / self.scale)


class GaussianBlur(Degradation):
    """Gaussian blur; ``sigma`` (pixels) fixed or a (low, high) range drawn uniformly. The kernel
    is ``2 * ceil(3 * sigma) + 1`` wide; borders are reflected."""

    def __init__(self, sigma: float | Sequence[float]):
        self.sigma = _as_range(sigma, "sigma")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_image(image)
        sigma = _draw(self.sigma, rng)
        if sigma <= 0:
            return image.copy()
        k = 2 * math.ceil(3 * sigma) + 1
        out = cv2.GaussianBlur(
            image.astype(np.float32), (k, k), sigmaX=sigma, sigmaY=sigma,
            borderType=cv2.BORDER_REFLECT,
        )  # fmt: skip
        return round_to_uint8(out)


class GaussianNoise(Degradation):
    """Additive white Gaussian noise; ``sigma`` on the 0..255 scale, fixed or a (low, high)
    range drawn uniformly. Rounded and saturated to uint8."""

    def __init__(self, sigma: float | Sequence[float]):
        self.sigma = _as_range(sigma, "sigma")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_image(image)
        sigma = _draw(self.sigma, rng)
        noisy = image.astype(np.float64) + rng.normal(0.0, sigma, size=image.shape)
        return round_to_uint8(noisy)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode ``image`` (RGB uint8) as a JPEG of ``quality`` (1..100) with OpenCV and decode it."""
    _check_image(image)
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    ok, buf = cv2.imencode(".jpg", swap_rgb_bgr(image), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG")
    return swap_rgb_bgr(cv2.imdecode(buf, cv2.IMREAD_COLOR))


class JPEGCompression(Degradation):
    """A real JPEG round trip; ``quality`` fixed or an inclusive (low, high) integer range drawn
    uniformly."""

    def __init__(self, quality: int | Sequence[int]):
        low, high = _as_range(quality, "quality")
        if low != int(low) or high != int(high) or not 1 <= low <= high <= 100:
            raise ValueError(f"JPEG quality must be integers in 1..100, got {quality}")
        self.quality = (int(low), int(high))

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        low, high = self.quality
        quality = int(rng.integers(low, high + 1)) if high > low else low
        return jpeg_roundtrip(image, quality)


class Compose(Degradation):
    """Steps applied in order, sharing one generator."""

    def __init__(self, steps: Sequence[Degradation]):
        self.steps = list(steps)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_image(image)
        for step in self.steps:
            image = step(image, rng)
        return image

    @property
    def scale(self) -> int:
        """The product of the downscale factors of the steps."""
        return math.prod(s.scale for s in self.steps if isinstance(s, BicubicDownscale))


def degrade(image: np.ndarray, degradation: Degradation, seed: int) -> np.ndarray:
    """``degradation(image)`` with a generator seeded by ``seed``."""
    return degradation(image, np.random.default_rng(seed))


def cajnn_degradation(scale: int = 4, quality: int | Sequence[int] = (10, 100)) -> Compose:
    """CAJNN's training pipeline (section IV-A): bicubic downscale by ``scale``, then JPEG with a
    quality drawn uniformly from [10, 100] (or fixed)."""
    return Compose([BicubicDownscale(scale), JPEGCompression(quality)])


# The step names of a named pipeline (:func:`build_degradation`).
DEGRADATION_STEPS = ("blur", "bicubic", "noise", "jpeg")


def build_degradation(
    names: Sequence[str],
    *,
    scale: int,
    blur_sigma: float | Sequence[float] = 1.0,
    noise_sigma: float | Sequence[float] = 10.0,
    jpeg_quality: int | Sequence[int] = (10, 100),
    setting: str = "degradations",
) -> Compose:
    """The pipeline of the steps ``names`` (among :data:`DEGRADATION_STEPS`, in order, "bicubic"
    exactly once, downscaling by ``scale``), with each step's fixed value or (low, high) range;
    ``setting`` is how an error names ``names``."""
    lowered = [n.lower() for n in names]
    unknown = [n for n in lowered if n not in DEGRADATION_STEPS]
    if unknown or lowered.count("bicubic") != 1:
        raise ValueError(
            f"{setting} must name steps among {DEGRADATION_STEPS} with 'bicubic' exactly "
            f"once, got {list(names)}"
        )
    steps: list[Degradation] = []
    for name in lowered:
        if name == "bicubic":
            steps.append(BicubicDownscale(scale))
        elif name == "blur":
            steps.append(GaussianBlur(blur_sigma))
        elif name == "noise":
            steps.append(GaussianNoise(noise_sigma))
        else:
            steps.append(JPEGCompression(jpeg_quality))
    return Compose(steps)


# --------------------------------------------------------------------------------------------------
# Making an LR image: the one place (the detection mapper, the SR samples and benchmarks use it)
# --------------------------------------------------------------------------------------------------


def lr_size(height: int, width: int, scale: int) -> tuple[int, int]:
    """The LR size of an (height, width) HR image: (ceil(height / scale), ceil(width / scale))."""
    return math.ceil(height / scale), math.ceil(width / scale)


def lr_seed(seed: int, key: object) -> list[int]:
    """A generator seed for one image's test-time degradation: ``seed`` and a stable hash of the
    image's key (its id, else its file name), so that every method of a table, in either
    framework, sees the same degradation of an image."""
    if key is None:
        raise KeyError("an LR image's seed needs the image's id or file name, got None")
    return [int(seed), zlib.crc32(str(key).encode("utf-8"))]


def make_lr_image(
    hr: np.ndarray, scale: int, degradation: Degradation, rng: np.random.Generator
) -> np.ndarray:
    """The LR image (ceil(H / s), ceil(W / s), 3) of an RGB uint8 (H, W, 3) HR image: padded to a
    multiple of ``scale`` by edge replication, then ``degradation`` (which downscales by
    ``scale``)."""
    if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {hr.dtype} {hr.shape}")
    h, w = hr.shape[:2]
    lh, lw = lr_size(h, w, scale)
    if (lh * scale, lw * scale) != (h, w):
        hr = np.pad(hr, ((0, lh * scale - h), (0, lw * scale - w), (0, 0)), mode="edge")
    lr = degradation(np.ascontiguousarray(hr), rng)
    if lr.shape != (lh, lw, 3):
        raise ValueError(
            f"the degradation made {lr.shape} from a {hr.shape} image; expected ({lh}, {lw}, 3): "
            f"does it downscale by {scale}?"
        )
    return lr


def make_benchmark_lr(
    hr: np.ndarray, scale: int, quality: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The SR benchmarks' LR image (CAJNN's protocol): ``(LR, cropped HR)``, ``hr`` cropped to a
    multiple of ``scale`` (:func:`mod_crop`), MATLAB-bicubic downscaled and, when ``quality`` > 0,
    JPEG-compressed at that quality."""
    hr = mod_crop(hr, scale)
    lr = BicubicDownscale(scale)(hr, np.random.default_rng(0))
    if quality:
        lr = jpeg_roundtrip(lr, quality)
    return lr, np.ascontiguousarray(hr)
