"""MATLAB-compatible bicubic resizing (``imresize(I, scale, 'bicubic')``, antialiasing on), an op
shared by the data and the models: the LR-making downscale of the degradations
(:mod:`featsr_d2.core.degradations`), the baseline of every SR table
(:class:`featsr_d2.core.sr.bicubic.Bicubic`) and the skip of the SR networks' residual mode
(:class:`featsr_d2.core.sr.network.SRNetwork`).

Published SR numbers use MATLAB's ``imresize`` both to make the low-resolution inputs and as the
bicubic baseline, so PSNR is only comparable with the same kernel. The facts of MATLAB's
``imresize`` reproduced here:

- the cubic convolution kernel of Keys with a = -0.5, support [-2, 2];
- when shrinking (scale < 1) with antialiasing, the kernel is stretched to ``scale * k(scale * x)``
  and its support to ``4 / scale`` (so a 1/4 downscale averages over 16 input pixels);
- output pixel ``x`` (1-based) samples input coordinate ``u = x / scale + 0.5 * (1 - 1 / scale)``;
  the taps are ``floor(u - width / 2) + (0 .. ceil(width) + 1)``, their weights are normalized to
  sum to 1, and taps outside the image are mirrored ("symmetric" padding: ..., 2, 1, 1, 2, ...);
- the output size for a scale factor is ``ceil(scale * input size)``;
- the two dimensions are resized one after the other (separable), in double precision; uint8 images
  are rounded to the nearest integer and saturated.

Each 1-D resize is a dense (out, in) matrix built in float64 here, so a resize is two matrix
products; the matrices are cached per (in, out, scale) size.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from featsr_d2.utils.image import round_to_uint8

__all__ = ["cubic_kernel", "imresize", "imresize_np", "resize_matrix"]


def cubic_kernel(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    absx = np.abs(x)
    absx2 = absx**2
    absx3 = absx**3
    return (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1) + (
        -0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0
    ) * ((absx > 1) & (absx <= 2))


@functools.lru_cache(maxsize=64)
def _resize_matrix_cached(in_len: int, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    kernel_width = 4.0
    if scale < 1 and antialias:

        def kernel(x):
            return scale * cubic_kernel(scale * x)

        kernel_width /= scale
    else:
        kernel = cubic_kernel
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    weights = kernel(u[:, None] - indices)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])  # 0-based
    cols = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(out_len), taps)
    np.add.at(matrix, (rows, cols.ravel()), weights.ravel())
    matrix.setflags(write=False)
    return matrix


def resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """The (out_len, in_len) float64 matrix of MATLAB's 1-D bicubic resize by ``scale``."""
    if in_len < 1 or out_len < 1:
        raise ValueError(f"sizes must be positive, got in={in_len}, out={out_len}")
    return _resize_matrix_cached(int(in_len), int(out_len), float(scale), bool(antialias))


def _output_size(
    in_hw: tuple[int, int], scale: float | None, size: tuple[int, int] | None
) -> tuple[tuple[int, int], tuple[float, float]]:
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale and size")
    if scale is not None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        out = tuple(int(math.ceil(scale * n - 1e-9)) for n in in_hw)
        return out, (float(scale), float(scale))
    out = (int(size[0]), int(size[1]))
    return out, (out[0] / in_hw[0], out[1] / in_hw[1])


def imresize(
    x: torch.Tensor,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> torch.Tensor:
    """MATLAB's ``imresize(x, scale, 'bicubic')`` on a float tensor of shape (..., H, W).

    Args:
        x: float tensor, any leading dimensions; computed in its dtype (float64 is exact).
        scale: the scale factor (output ``ceil(scale * H)`` by ``ceil(scale * W)``), or
        size: the output (height, width) instead.
        antialias: MATLAB's 'Antialiasing' (on by default, used only when shrinking).

    Differentiable with respect to ``x``.
    """
    if not x.is_floating_point():
        raise TypeError(f"imresize takes a float tensor, got {x.dtype}; see imresize_np for uint8")
    (out_h, out_w), (sh, sw) = _output_size((x.shape[-2], x.shape[-1]), scale, size)
    wh = torch.tensor(
        resize_matrix(x.shape[-2], out_h, sh, antialias), dtype=x.dtype, device=x.device
    )
    ww = torch.tensor(
        resize_matrix(x.shape[-1], out_w, sw, antialias), dtype=x.dtype, device=x.device
    )
    return wh @ x @ ww.T


def imresize_np(
    image: np.ndarray,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> np.ndarray:
    """MATLAB's ``imresize`` on an (H, W) or (H, W, C) numpy image. uint8 in gives uint8 out
    (rounded and saturated, as MATLAB does); float in gives float64 out."""
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    (out_h, out_w), (sh, sw) = _output_size(image.shape[:2], scale, size)
    wh = resize_matrix(image.shape[0], out_h, sh, antialias)
    ww = resize_matrix(image.shape[1], out_w, sw, antialias)
    data = image.astype(np.float64)
    if image.ndim == 2:
        out = wh @ data @ ww.T
    else:
        out = np.einsum("oh,hwc,pw->opc", wh, data, ww, optimize=True)
    if image.dtype == np.uint8:
        return round_to_uint8(out)
    return out
