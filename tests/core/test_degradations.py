"""MATLAB-compatible bicubic resizing against an independent reference, and the degradations:
composable, deterministic for a seed, JPEG really lossy at low quality."""

import os

import numpy as np
import pytest

from featsr_d2.config import add_sr_config, get_featsr_cfg
from featsr_d2.core.degradations import (
    BicubicDownscale,
    Compose,
    GaussianBlur,
    GaussianNoise,
    JPEGCompression,
    cajnn_degradation,
    degrade,
    jpeg_roundtrip,
)
from featsr_d2.data.sr_dataset import read_rgb
from featsr_d2.data.sr_degradation import build_sr_degradation
from featsr_d2.evaluation.sr_metrics import psnr

SKIMAGE_DATA = os.path.join(os.path.dirname(__import__("skimage").__file__), "data")


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
