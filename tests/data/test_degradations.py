"""MATLAB-compatible bicubic resizing against an independent reference, and the degradations:
composable, deterministic for a seed, JPEG really lossy at low quality."""

import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from featsr_d2.config import add_sr_config, get_featsr_cfg
from featsr_d2.data.degradations import (
    BicubicDownscale,
    Compose,
    GaussianBlur,
    GaussianNoise,
    JPEGCompression,
    build_sr_degradation,
    cajnn_degradation,
    degrade,
    jpeg_roundtrip,
)
from featsr_d2.data.sr_dataset import read_rgb
from featsr_d2.evaluation.sr_metrics import psnr
from featsr_d2.layers import imresize, imresize_np

SKIMAGE_DATA = os.path.join(os.path.dirname(__import__("skimage").__file__), "data")


@pytest.fixture(scope="module")
def photo():
    """A real photograph: a 96x128 crop of scikit-image's chelsea (a cat)."""
    return read_rgb(os.path.join(SKIMAGE_DATA, "chelsea.png"))[60:156, 150:278].copy()


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


def test_degradations_are_deterministic_for_a_seed(photo):
    pipeline = Compose(
        [
            GaussianBlur((0.5, 2.0)),
            BicubicDownscale(4),
            GaussianNoise((1, 10)),
            JPEGCompression((10, 100)),
        ]
    )
    a = degrade(photo, pipeline, seed=3)
    b = degrade(photo, pipeline, seed=3)
    c = degrade(photo, pipeline, seed=4)
    assert a.shape == (24, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(
        photo, read_rgb(os.path.join(SKIMAGE_DATA, "chelsea.png"))[60:156, 150:278]
    )


def test_jpeg_is_really_lossy_at_low_quality(photo):
    scores = {q: psnr(jpeg_roundtrip(photo, q), photo, y_channel=False) for q in (10, 40, 95)}
    assert scores[10] < scores[40] < scores[95]
    assert scores[10] < 32.0 and scores[95] > 38.0
    low = jpeg_roundtrip(photo, 10)
    assert not np.array_equal(low, photo)
    # 8x8 block boundaries: at q=10 the jumps across block edges exceed those inside blocks
    diff = np.abs(np.diff(low[..., 1].astype(np.int16), axis=1))
    assert diff[:, 7::8].mean() > 1.2 * diff[:, 3::8].mean()


def test_random_jpeg_quality_is_drawn_from_the_range(photo):
    small = BicubicDownscale(2)(photo, np.random.default_rng(0))
    fixed = {q: jpeg_roundtrip(small, q) for q in range(10, 101)}
    step = JPEGCompression((10, 100))
    seen = set()
    for seed in range(12):
        out = step(small, np.random.default_rng(seed))
        seen |= {q for q, img in fixed.items() if np.array_equal(out, img)}
    assert len(seen) >= 6 and min(seen) >= 10 and max(seen) <= 100


def test_blur_and_noise(photo):
    rng = np.random.default_rng(0)
    blurred = GaussianBlur(2.0)(photo, rng)
    grad = lambda im: np.abs(np.diff(im.astype(np.float64), axis=1)).mean()  # noqa: E731
    assert grad(blurred) < 0.6 * grad(photo)
    flat = np.full((64, 64, 3), 128, np.uint8)
    noisy = GaussianNoise(10.0)(flat, rng)
    assert abs(np.std(noisy.astype(np.float64) - 128) - 10.0) < 0.5


def test_cajnn_pipeline_and_config():
    photo = np.full((50, 66, 3), 200, np.uint8)
    lr = cajnn_degradation(4)(photo, np.random.default_rng(0))
    assert lr.shape == (12, 16, 3)  # cropped to a multiple of 4, then downscaled
    cfg = get_featsr_cfg()
    add_sr_config(cfg)
    cfg.merge_from_list(["INPUT.SR.DEGRADATIONS", ["blur", "bicubic", "noise", "jpeg"]])
    pipeline = build_sr_degradation(cfg)
    names = [type(s).__name__ for s in pipeline.steps]
    assert names == ["GaussianBlur", "BicubicDownscale", "GaussianNoise", "JPEGCompression"]
    assert pipeline.scale == 4 and pipeline.steps[3].quality == (10, 100)
    cfg.merge_from_list(["INPUT.SR.DEGRADATIONS", ["jpeg"]])
    with pytest.raises(ValueError, match="bicubic"):
        build_sr_degradation(cfg)
    with pytest.raises(ValueError, match="uint8"):
        BicubicDownscale(2)(photo.astype(np.float32), np.random.default_rng(0))
