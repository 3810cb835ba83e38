"""PSNR and SSIM against hand-computed values and scikit-image; the benchmark loop and table."""

import json
import math
import os

import cv2
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from featsr_d2.core.degradations import make_benchmark_lr
from featsr_d2.core.sr import Bicubic
from featsr_d2.data.sr_dataset import read_rgb
from featsr_d2.evaluation.sr_metrics import (
    evaluate_sr,
    format_sr_table,
    psnr,
    rgb_to_y,
    ssim,
)

SKIMAGE_DATA = os.path.join(os.path.dirname(__import__("skimage").__file__), "data")


@pytest.fixture(scope="module")
def pair():
    """A real photograph and a degraded copy of it (JPEG at quality 30)."""
    gt = read_rgb(os.path.join(SKIMAGE_DATA, "coffee.png"))[100:196, 200:328].copy()
    ok, buf = cv2.imencode(".jpg", gt[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 30])
    return gt, cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


def test_luma_is_bt601():
    assert np.allclose(rgb_to_y(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)), [[16, 235]])
    assert math.isclose(rgb_to_y(np.array([[[255, 0, 0]]]))[0, 0], 16 + 65.481)


def test_psnr_hand_computed():
    a = np.full((20, 20, 3), 100, np.uint8)
    b = a + 5
    assert math.isclose(psnr(a, b, y_channel=False), 10 * math.log10(255**2 / 25))
    # On Y, a uniform offset d in R, G and B is an offset of d * 219 / 255 in Y.
    d_y = 5 * (65.481 + 128.553 + 24.966) / 255
    assert math.isclose(psnr(a, b), 10 * math.log10(255**2 / d_y**2))
    assert psnr(a, a) == math.inf
    c = a.copy()
    c[:4] = 0  # differences only inside a 4 px border
    assert psnr(a, c, crop_border=3) < 30 and psnr(a, c, crop_border=4) == math.inf


def test_ssim_hand_computed():
    a = np.full((24, 24), 100.0)
    b = np.full((24, 24), 140.0)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 140 + c1) / (100**2 + 140**2 + c1)  # no variance: contrast term 1
    assert math.isclose(ssim(a, b), expected, rel_tol=1e-9)
    assert math.isclose(ssim(a, a), 1.0)
    with pytest.raises(ValueError, match="shape"):
        ssim(a, b[:20])


def test_psnr_and_ssim_match_scikit_image(pair):
    gt, jpg = pair
    assert math.isclose(
        psnr(gt, jpg, y_channel=False),
        peak_signal_noise_ratio(gt, jpg, data_range=255),
        rel_tol=1e-12,
    )
    y_gt, y_jpg = rgb_to_y(gt)[4:-4, 4:-4], rgb_to_y(jpg)[4:-4, 4:-4]
    assert math.isclose(
        psnr(gt, jpg, crop_border=4), peak_signal_noise_ratio(y_gt, y_jpg, data_range=255)
    )
    kwargs = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    ours = ssim(gt, jpg, crop_border=4)
    theirs = structural_similarity(y_gt, y_jpg, **kwargs)
    assert abs(ours - theirs) < 1e-6 and 0.5 < ours < 0.99
    rgb = structural_similarity(gt.astype(float), jpg.astype(float), channel_axis=2, **kwargs)
    assert abs(ssim(gt, jpg, y_channel=False) - rgb) < 1e-6


def test_evaluate_sr_protocol_and_table(tmp_path, pair):
    gt, _ = pair
    folder = tmp_path / "images"
    folder.mkdir()
    for name, img in (("a.png", gt), ("b.png", np.ascontiguousarray(gt[::-1, ::-1]))):
        cv2.imwrite(str(folder / name), img[..., ::-1])
    paths = sorted(str(p) for p in folder.iterdir())
    results = evaluate_sr(
        {"Bicubic": Bicubic(scale=4)}, paths, scale=4, qualities=(0, 10),
        vis_dir=str(tmp_path / "vis"), reference="Bicubic",
    )  # fmt: skip
    mean = results["mean"]["Bicubic"]
    assert mean[10]["psnr"] < mean[0]["psnr"] and mean[10]["ssim"] < mean[0]["ssim"]
    lr, hr = make_benchmark_lr(gt, 4, 0)
    bic = Bicubic(scale=4)
    from featsr_d2.evaluation.sr_inference import super_resolve

    first = [r for r in results["per_image"] if r["image"] == "a" and r["quality"] == 0][0]
    assert math.isclose(first["psnr"], psnr(super_resolve(bic, lr), hr, crop_border=4))
    assert len(results["per_image"]) == 4 and results["parameters"]["Bicubic"] == 0
    assert sorted(os.listdir(tmp_path / "vis")) == [
        "a_q0.png",
        "a_q10.png",
        "b_q0.png",
        "b_q10.png",
    ]
    vis = cv2.imread(str(tmp_path / "vis" / "a_q10.png"))
    assert vis.shape[1] > 3 * hr.shape[1]  # input, bicubic, ground truth side by side
    table = format_sr_table(results)
    assert "| Bicubic | 0.00M |" in table and f"{mean[10]['psnr']:.2f}" in table
    json.dumps(results)  # serializable for tools/eval_sr.py
