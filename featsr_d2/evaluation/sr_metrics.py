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
(0 = not compressed), super-resolved by every network and by bicubic upscaling, and measured.
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

from featsr_d2.data.degradations import BicubicDownscale, jpeg_roundtrip, mod_crop
from featsr_d2.data.sr_dataset import image_to_tensor, read_rgb, tensor_to_image

__all__ = [
    "evaluate_sr",
    "format_sr_table",
    "make_lr",
    "psnr",
    "rgb_to_y",
    "ssim",
    "super_resolve",
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


def make_lr(hr: np.ndarray, scale: int, quality: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(LR, cropped HR): ``hr`` cropped to a multiple of ``scale``, MATLAB-bicubic downscaled and,
    when ``quality`` > 0, JPEG-compressed at that quality."""
    hr = mod_crop(hr, scale)
    lr = BicubicDownscale(scale)(hr, np.random.default_rng(0))
    if quality:
        lr = jpeg_roundtrip(lr, quality)
    return lr, np.ascontiguousarray(hr)


@torch.no_grad()
def super_resolve(model: nn.Module, lr: np.ndarray, device: str | torch.device = "cpu"):
    """``model`` (eval mode) on one RGB uint8 image -> RGB uint8 output."""
    was_training = model.training
    model.eval()
    try:
        out = model(image_to_tensor(lr).to(device))
    finally:
        model.train(was_training)
    return tensor_to_image(out[0])


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


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

    crop_border = scale if crop_border is None else crop_border
    rows = []
    seconds: dict[str, list[float]] = {m: [] for m in models}
    for path in image_paths:
        gt_full = read_rgb(path)
        if center_crop > 0:
            h, w = gt_full.shape[:2]
            ch, cw = min(center_crop, h), min(center_crop, w)
            gt_full = gt_full[
                (h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw
            ]
        name = os.path.splitext(os.path.basename(path))[0]
        for quality in qualities:
            lr, gt = make_lr(gt_full, scale, quality)
            outputs = {}
            for label, model in models.items():
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
                write_png(os.path.join(vis_dir, f"{name}_q{quality}.png"), side_by_side(panels))
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
            "images": [os.path.basename(p) for p in image_paths],
            "center_crop": int(center_crop),
        },
    }


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
