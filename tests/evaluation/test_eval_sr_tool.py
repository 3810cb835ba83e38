"""tools/eval_sr.py end to end on a tiny set: a residual CAJNN against bicubic and the "JPEG
removal then bicubic" baseline with paired bootstrap intervals; images too small for the scale
skipped and named; invalid scales refused; CPU by default without CUDA (issue 12, point 14)."""

import json
import os
import runpy

import cv2
import numpy as np
import pytest
import torch

from featsr_d2.core.degradations import make_benchmark_lr
from featsr_d2.core.layers import imresize_np
from featsr_d2.core.sr import Bicubic
from featsr_d2.core.sr.deblock import DeblockBicubic, nlm_deblock
from featsr_d2.data.sr_dataset import read_rgb
from featsr_d2.evaluation.sr_metrics import evaluate_sr, tune_deblock_strengths

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SKIMAGE_DATA = os.path.join(os.path.dirname(__import__("skimage").__file__), "data")
CAJNN_CFG = os.path.join(REPO, "configs", "sr", "cajnn_x4_jpeg.yaml")
TINY_CAJNN = ["MODEL.SR.CAJNN.NUM_FEAT", "8", "MODEL.SR.CAJNN.NUM_BLOCKS", "1",
              "MODEL.SR.CAJNN.GROWTH", "4", "MODEL.SR.RESIDUAL", "True"]  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


def run_tool(argv):
    return runpy.run_path(os.path.join(REPO, "tools", "eval_sr.py"))["main"](argv)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three 48 px crops of real photographs and one 3x3 image (smaller than the scale 4)."""
    folder = tmp_path_factory.mktemp("sr_images")
    for name, y, x in (("coffee", 100, 200), ("chelsea", 80, 150), ("astronaut", 60, 200)):
        crop = read_rgb(os.path.join(SKIMAGE_DATA, f"{name}.png"))[y : y + 48, x : x + 48]
        cv2.imwrite(str(folder / f"{name}.png"), np.ascontiguousarray(crop[..., ::-1]))
    cv2.imwrite(str(folder / "tiny.png"), np.full((3, 3, 3), 128, np.uint8))
    return folder


def test_tool_end_to_end_with_deblocking_and_intervals(images, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU default, anywhere
    out = tmp_path / "eval"
    results = run_tool([
        "--model", f"CAJNN={CAJNN_CFG}", "--images", str(images), "--qualities", "10", "0",
        "--deblock", "--tune-images", os.path.join(SKIMAGE_DATA, "rocket.jpg"),
        "--center-crop", "64", "--compare", "CAJNN:Bicubic", "--compare",
        "Deblock+Bicubic:Bicubic", "--bootstrap-samples", "50", "--output", str(out),
        *TINY_CAJNN,
    ])  # fmt: skip
    assert list(results["mean"]) == ["Bicubic", "Deblock+Bicubic", "CAJNN"]
    assert results["settings"]["images"] == ["astronaut", "chelsea", "coffee"]
    assert [os.path.basename(s["image"]) for s in results["skipped"]] == ["tiny.png"]
    assert "smaller than the scale 4" in results["skipped"][0]["reason"]
    strengths = results["deblock_strengths"]
    assert strengths[0] == 0.0 and strengths[10] > 0  # q10 blocking is worth removing
    # the untrained residual CAJNN is its bilinear skip, below bicubic without JPEG
    cmp = results["comparisons"]
    assert cmp["CAJNN - Bicubic"][0]["psnr"]["estimate"] < 0
    for key, by_q in cmp.items():
        for q, metrics in by_q.items():
            a, b = key.split(" - ")
            mean = results["mean"]
            want = mean[a][q]["psnr"] - mean[b][q]["psnr"]
            assert metrics["psnr"]["estimate"] == pytest.approx(want)
            assert metrics["psnr"]["low"] <= metrics["psnr"]["high"]
    # no JPEG: the deblocking baseline is exactly bicubic
    assert cmp["Deblock+Bicubic - Bicubic"][0]["psnr"]["estimate"] == 0.0
    table = (out / "table.md").read_text()
    assert "tiny.png" in table and "| CAJNN - Bicubic |" in table
    with open(out / "results.json") as f:
        assert json.load(f)["skipped"][0]["reason"] == results["skipped"][0]["reason"]
    assert len(os.listdir(out / "vis")) == 6


@pytest.mark.parametrize("scale", ["0", "-2"])
def test_invalid_scale_is_refused(images, tmp_path, scale):
    with pytest.raises(SystemExit, match="positive integer"):
        run_tool(["--scale", scale, "--images", str(images), "--output", str(tmp_path)])


def test_bicubic_only_run_needs_no_device_setting(images, tmp_path, monkeypatch):
    """Detectron2's default MODEL.DEVICE is cuda: without a GPU the tool uses the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    results = run_tool([
        "--scale", "2", "--images", str(images / "coffee.png"), "--qualities", "0", "--no-vis",
        "--output", str(tmp_path),
    ])  # fmt: skip
    assert results["settings"]["scale"] == 2 and not results["skipped"]


def test_all_images_too_small_is_an_error_naming_them(images):
    with pytest.raises(ValueError, match="none of the 1 images"):
        evaluate_sr({"Bicubic": Bicubic(scale=4)}, [str(images / "tiny.png")], scale=4)


def test_deblocking_baseline_is_nlm_then_matlab_bicubic():
    hr = read_rgb(os.path.join(SKIMAGE_DATA, "coffee.png"))[:64, :64]
    lr, _ = make_benchmark_lr(hr, 4, 10)
    model = DeblockBicubic(4, {10: 8.0, 0: 0.0})
    with pytest.raises(RuntimeError, match="set_jpeg_quality"):
        model(torch.rand(1, 3, 4, 4))
    model.set_jpeg_quality(10)
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].double() / 255
    out = model(x)[0].permute(1, 2, 0).numpy() * 255
    expected = imresize_np(nlm_deblock(lr, 8.0).astype(np.float64), 4.0)
    np.testing.assert_allclose(out, expected, atol=1e-9)
    assert np.abs(nlm_deblock(lr, 8.0).astype(int) - lr).max() > 0  # it filters
    with pytest.raises(ValueError, match="no deblocking strength"):
        model.set_jpeg_quality(20)
    strengths = tune_deblock_strengths(
        [os.path.join(SKIMAGE_DATA, "rocket.jpg")], scale=4, qualities=(10, 0), center_crop=96,
        grid=(0, 5, 10),
    )  # fmt: skip
    assert strengths[0] == 0.0 and strengths[10] in (5, 10)
