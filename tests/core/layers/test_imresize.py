"""MATLAB-compatible bicubic resizing (featsr_d2/core/layers/imresize.py) against a pixel-by-pixel
reference written from MATLAB's definition, and against Pillow."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from featsr_d2.core.layers import imresize, imresize_np


def _keys_cubic(x):
    x = abs(x)
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    if x <= 2:
        return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
    return 0.0


def _reference_resize_1d(signal, scale):
    """MATLAB's imresize along one axis, written out pixel by pixel from its definition
    (1-based coordinates, antialiased kernel when shrinking, symmetric border)."""
    n = len(signal)
    out_n = math.ceil(n * scale)
    width = 4.0 / scale if scale < 1 else 4.0
    out = np.zeros(out_n)
    for i in range(1, out_n + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        acc = total = 0.0
        for j in range(left, left + math.ceil(width) + 2):
            d = u - j
            w = scale * _keys_cubic(scale * d) if scale < 1 else _keys_cubic(d)
            k = j
            while k < 1 or k > n:  # symmetric padding: 0 -> 1, -1 -> 2, n + 1 -> n
                k = 1 - k if k < 1 else 2 * n + 1 - k
            acc += w * signal[k - 1]
            total += w
        out[i - 1] = acc / total
    return out


def _reference_imresize(image, scale):
    rows = np.stack([_reference_resize_1d(image[:, c], scale) for c in range(image.shape[1])], 1)
    return np.stack([_reference_resize_1d(rows[r], scale) for r in range(rows.shape[0])], 0)


@pytest.mark.parametrize("scale", [0.25, 0.5, 1 / 3, 2.0, 4.0])
def test_imresize_matches_the_pixel_by_pixel_reference(scale):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, size=(9, 13))
    expected = _reference_imresize(image, scale)
    got = imresize_np(image, scale)
    assert got.shape == (math.ceil(9 * scale), math.ceil(13 * scale)) == expected.shape
    assert np.allclose(got, expected, atol=1e-9)
    torch_got = imresize(torch.from_numpy(image)[None, None], scale)[0, 0].numpy()
    assert np.allclose(torch_got, expected, atol=1e-9)


@pytest.mark.parametrize("scale", [0.25, 4.0])
def test_imresize_interior_matches_pillow(scale, photo):
    """Pillow's antialiased bicubic (a = -0.5) samples the same positions with the same kernel;
    only the borders differ (Pillow truncates the kernel, MATLAB mirrors the image)."""
    gray = photo[..., 1].astype(np.float32)
    if scale > 1:
        gray = gray[:24, :32]
    h, w = math.ceil(gray.shape[0] * scale), math.ceil(gray.shape[1] * scale)
    pil = np.asarray(Image.fromarray(gray, mode="F").resize((w, h), Image.BICUBIC))
    ours = imresize_np(gray.astype(np.float64), scale)
    m = 3 if scale < 1 else 12  # output pixels whose kernel reaches the border
    assert np.abs(ours[m:-m, m:-m] - pil[m:-m, m:-m]).max() < 1e-2
    assert np.abs(ours - pil).max() > 1e-2  # the borders do differ: the comparison is real


def test_imresize_keeps_constants_and_rounds_uint8_like_matlab():
    const = np.full((17, 23, 3), 77, np.uint8)
    small = imresize_np(const, 0.25)
    assert small.shape == (5, 6, 3) and small.dtype == np.uint8 and (small == 77).all()
    assert (imresize_np(const, 3.0) == 77).all()
    ramp = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (8, 1))
    down = imresize_np(ramp, 0.5)
    ref = _reference_imresize(ramp.astype(np.float64), 0.5)
    assert (down == np.floor(np.clip(ref, 0, 255) + 0.5)).all()
