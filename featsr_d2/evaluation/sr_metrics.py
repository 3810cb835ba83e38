"""Super-resolution quality: PSNR and SSIM as the SR papers measure them, and the benchmark loop
behind ``tools/eval_sr.py``.

Conventions (those of the SR literature's MATLAB scripts and of BasicSR):

- images are compared as 8-bit RGB (network outputs are clamped to [0, 1] and rounded first);
- ``crop_border`` pixels are removed from every side before measuring (the scale, by convention);
- on the Y channel by default: ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` for R, G, B in
  0..255 (ITU-R BT.601, MATLAB's ``rgb2ycbcr``), kept in floating point (not rounded);
- PSNR = 10 log10(255^2 / MSE) over all kept pixels (and channels); identical images give ``inf``;
- SSIM (Wang et al., 2004): 11x11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255,
  statistics from the window (population variances), averaged over the positions where the
  window fits entirely inside the image; for RGB, the mean over the three channels.

The benchmark protocol (:func:`evaluate_sr`) follows CAJNN's: each ground-truth image is cropped to
a multiple of the scale, downscaled with MATLAB's bicubic, then JPEG-compressed with each quality
(0 = not compressed), super-resolved by every network and by bicubic upscaling, and measured. An
image too small for the scale and the metrics is skipped, named and counted (``"skipped"``).
:func:`compare_sr` gives paired bootstrap intervals over the images of one method minus another;
:func:`tune_deblock_strengths` picks the "JPEG removal then bicubic" baseline's filter strength per
quality on training images.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from featsr_d2.core.degradations import make_benchmark_lr
from featsr_d2.core.layers.imresize import imresize_np
from featsr_d2.core.sr.deblock import nlm_deblock
from featsr_d2.data.sr_dataset import read_rgb
from featsr_d2.evaluation.paired_bootstrap import paired_bootstrap
from featsr_d2.evaluation.sr_inference import super_resolve
from featsr_d2.evaluation.sr_visualize import safe_file_stem

__all__ = [
    "compare_sr",
    "evaluate_sr",
    "format_sr_table",
    "psnr",
    "rgb_to_y",
    "ssim",
    "tune_deblock_strengths",
]

logger = logging.getLogger(__name__)

_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """The BT.601 luma (16..235 for 0..255 RGB) of an (H, W, 3) RGB image, as float64."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got {image.shape}")
    rgb = image.astype(np.float64)
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def _prepare(a: np.ndarray, b: np.ndarray, crop_border: int, y_channel: bool):
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} and {b.shape}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be non-negative, got {crop_border}")
    if y_channel and a.ndim == 3 and a.shape[2] == 3:
        a, b = rgb_to_y(a), rgb_to_y(b)
    else:
        a, b = a.astype(np.float64), b.astype(np.float64)
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if a.size == 0:
        raise ValueError("nothing is left after cropping the border")
    return a, b


def psnr(a: np.ndarray, b: np.ndarray, *, crop_border: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB of two 8-bit-range images (uint8 or float in 0..255) of one shape, (H, W) or
    (H, W, 3) RGB; see the module docstring."""
    a, b = _prepare(a, b, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _ssim_2d(a: np.ndarray, b: np.ndarray) -> float:
    if min(a.shape) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {a.shape}")
    g = cv2.getGaussianKernel(11, 1.5)
    window = g @ g.T

    def filt(x):
        return cv2.filter2D(x, -1, window, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + _SSIM_C1) * (2 * cov + _SSIM_C2)
    den = (mu_a**2 + mu_b**2 + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    return float(np.mean(num / den))


def ssim(a: np.ndarray, b: np.ndarray, *, crop_border: int = 0, y_channel: bool = True) -> float:
    """SSIM of two 8-bit-range images (uint8 or float in 0..255) of one shape; see the module
    docstring."""
    a, b = _prepare(a, b, crop_border, y_channel)
    if a.ndim == 2:
        return _ssim_2d(a, b)
    return float(np.mean([_ssim_2d(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


_SSIM_WINDOW = 11


def _center_crop(image: np.ndarray, size: int) -> np.ndarray:
    if size <= 0:
        return image
    h, w = image.shape[:2]
    ch, cw = min(size, h), min(size, w)
    return image[(h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]


def _too_small(shape: tuple[int, ...], scale: int, crop_border: int) -> str | None:
    """Why an HR image of ``shape`` cannot be evaluated at ``scale`` (None if it can)."""
    h, w = shape[:2]
    if min(h, w) < scale:
        return f"{w}x{h} px is smaller than the scale {scale}"
    side = min(h // scale * scale, w // scale * scale) - 2 * crop_border
    if side < _SSIM_WINDOW:
        return (
            f"{w}x{h} px leaves {max(side, 0)} px after the {crop_border} px border, less than "
            f"SSIM's {_SSIM_WINDOW} px window"
        )
    return None


def evaluate_sr(
    models: Mapping[str, nn.Module],
    image_paths: Sequence[str],
    *,
    scale: int,
    qualities: Sequence[int] = (10, 20, 40),
    crop_border: int | None = None,
    y_channel: bool = True,
    device: str | torch.device = "cpu",
    vis_dir: str | None = None,
    reference: str | None = None,
    center_crop: int = 0,
) -> dict:
    """Benchmark ``models`` (label -> network; each maps LR to ``scale`` x) on ``image_paths``.

    Args:
        qualities: JPEG qualities of the LR inputs; 0 means uncompressed.
        crop_border: border pixels ignored by the metrics (default: ``scale``).
        vis_dir: when set, write ``<image>_q<quality>.png`` side by sides there (input, bicubic,
            each model, ground truth).
        reference: label in ``models`` of the bicubic baseline drawn second in the side by sides.
        center_crop: when positive, evaluate the central ``center_crop`` x ``center_crop`` pixels
            of each ground truth (smaller sides are kept), to bound the compute.

    Returns:
        ``{"per_image": [{"image", "quality", "method", "psnr", "ssim", "seconds"}...],
        "mean": {method: {quality: {"psnr", "ssim"}}}, "seconds_per_image": {method: s},
        "parameters": {method: n}, "settings": {...}}``.
    """
    from featsr_d2.evaluation.sr_visualize import side_by_side, write_png

    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    crop_border = scale if crop_border is None else crop_border
    rows = []
    seconds: dict[str, list[float]] = {m: [] for m in models}
    skipped: list[dict[str, str]] = []
    evaluated: list[str] = []
    for path in image_paths:
        gt_full = _center_crop(read_rgb(path), center_crop)
        reason = _too_small(gt_full.shape, scale, crop_border)
        if reason:
            logger.warning("skipping %s: %s", path, reason)
            skipped.append({"image": path, "reason": reason})
            continue
        name = os.path.splitext(os.path.basename(path))[0]
        if name in evaluated:  # two files of one name in different folders
            name = f"{name}_{len(evaluated)}"
        evaluated.append(name)
        for quality in qualities:
            lr, gt = make_benchmark_lr(gt_full, scale, quality)
            outputs = {}
            for label, model in models.items():
                if hasattr(model, "set_jpeg_quality"):  # a baseline told the quality
                    model.set_jpeg_quality(int(quality))
                start = time.perf_counter()
                sr = super_resolve(model, lr, device)
                seconds[label].append(time.perf_counter() - start)
                if sr.shape != gt.shape:
                    raise ValueError(
                        f"{label} made {sr.shape} from {lr.shape}; expected {gt.shape}"
                    )
                outputs[label] = sr
                rows.append(
                    {
                        "image": name,
                        "quality": int(quality),
                        "method": label,
                        "psnr": psnr(sr, gt, crop_border=crop_border, y_channel=y_channel),
                        "ssim": ssim(sr, gt, crop_border=crop_border, y_channel=y_channel),
                        "seconds": seconds[label][-1],
                    }
                )
            logger.info(
                "%s q=%s: %s", name, quality,
                ", ".join(f"{r['method']} {r['psnr']:.2f} dB" for r in rows[-len(models):]),
            )  # fmt: skip
            if vis_dir:
                order = ([reference] if reference in outputs else []) + [
                    k for k in outputs if k != reference
                ]
                panels = [(f"input q={quality}" if quality else "input", lr)]
                panels += [(k, outputs[k]) for k in order] + [("ground truth", gt)]
                stem = safe_file_stem(f"{name}_q{quality}")
                write_png(os.path.join(vis_dir, f"{stem}.png"), side_by_side(panels))
    if skipped:
        logger.warning(
            "skipped %d of %d images: %s", len(skipped), len(image_paths),
            ", ".join(os.path.basename(s["image"]) for s in skipped),
        )  # fmt: skip
    if not evaluated:
        raise ValueError(
            f"none of the {len(image_paths)} images is large enough to evaluate at scale {scale}"
        )
    mean: dict[str, dict[int, dict[str, float]]] = {}
    for label in models:
        mean[label] = {}
        for quality in qualities:
            sel = [r for r in rows if r["method"] == label and r["quality"] == quality]
            mean[label][int(quality)] = {
                "psnr": float(np.mean([r["psnr"] for r in sel])),
                "ssim": float(np.mean([r["ssim"] for r in sel])),
            }
    return {
        "per_image": rows,
        "mean": mean,
        "seconds_per_image": {m: float(np.mean(s)) for m, s in seconds.items()},
        "parameters": {m: num_parameters(model) for m, model in models.items()},
        "settings": {
            "scale": scale,
            "qualities": [int(q) for q in qualities],
            "crop_border": crop_border,
            "channel": "Y" if y_channel else "RGB",
            "images": evaluated,
            "center_crop": int(center_crop),
        },
        "skipped": skipped,
    }


def compare_sr(
    results: dict,
    pairs: Sequence[tuple[str, str]],
    *,
    num_samples: int = 2000,
    seed: int = 0,
) -> dict[str, dict[int, dict[str, dict[str, float]]]]:
    """Paired bootstrap intervals over the images of ``A - B`` mean PSNR and SSIM, per JPEG
    quality, for each (A, B) in ``pairs`` of :func:`evaluate_sr`'s methods.

    Returns:
        ``{"A - B": {quality: {"psnr": interval, "ssim": interval}}}`` (intervals as
        :func:`featsr_d2.evaluation.paired_bootstrap.paired_bootstrap` returns them).
    """
    images = results["settings"]["images"]
    table = {(r["method"], r["quality"], r["image"]): r for r in results["per_image"]}
    out: dict[str, dict[int, dict[str, dict[str, float]]]] = {}
    for a, b in pairs:
        for label in (a, b):
            if label not in results["mean"]:
                raise ValueError(f"no method {label!r}; methods: {list(results['mean'])}")
        key = f"{a} - {b}"
        out[key] = {}
        for quality in results["settings"]["qualities"]:
            out[key][quality] = {}
            for metric in ("psnr", "ssim"):
                diff = np.array(
                    [table[a, quality, n][metric] - table[b, quality, n][metric] for n in images]
                )
                out[key][quality][metric] = paired_bootstrap(
                    len(images), lambda idx, d=diff: float(d[idx].mean()),
                    num_samples=num_samples, seed=seed,
                )  # fmt: skip
    return out


def tune_deblock_strengths(
    image_paths: Sequence[str],
    *,
    scale: int,
    qualities: Sequence[int],
    grid: Sequence[float] = (0, 2, 4, 6, 8, 10, 13, 16, 20, 25),
    center_crop: int = 0,
    y_channel: bool = True,
) -> dict[int, float]:
    """For each JPEG quality, the non-local-means strength of the grid that maximizes the mean
    PSNR of deblocking + bicubic on ``image_paths`` (training images, not the test images);
    quality 0 (uncompressed) gets 0."""
    images = []
    for path in image_paths:
        hr = _center_crop(read_rgb(path), center_crop)
        if _too_small(hr.shape, scale, scale) is None:
            images.append(hr)
    if not images:
        raise ValueError("no tuning image is large enough")
    best: dict[int, float] = {}
    for quality in qualities:
        if not quality:
            best[int(quality)] = 0.0
            continue
        pairs = [make_benchmark_lr(hr, scale, quality) for hr in images]
        scores = []
        for h in grid:
            scores.append(np.mean([
                psnr(imresize_np(nlm_deblock(lr, h), float(scale)), gt, crop_border=scale,
                     y_channel=y_channel)
                for lr, gt in pairs
            ]))  # fmt: skip
        best[int(quality)] = float(grid[int(np.argmax(scores))])
        logger.info("deblocking strength for quality %d: h=%s (grid %s)", quality,
                    best[int(quality)], list(grid))  # fmt: skip
    return best


def format_sr_table(results: dict) -> str:
    """A markdown table of ``evaluate_sr``'s means: one row per method, PSNR/SSIM per quality,
    parameters and seconds per image."""
    qualities = results["settings"]["qualities"]
    head = ["method", "params"] + [
        f"q={q} PSNR / SSIM" if q else "no JPEG PSNR / SSIM" for q in qualities
    ]
    head.append("s / image")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for method, by_q in results["mean"].items():
        cells = [method, f"{results['parameters'][method] / 1e6:.2f}M"]
        cells += [f"{by_q[q]['psnr']:.2f} / {by_q[q]['ssim']:.4f}" for q in qualities]
        cells.append(f"{results['seconds_per_image'][method]:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
