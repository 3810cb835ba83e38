"""tools/compare_tt100k_results.py: the study's table and paired intervals for results files."""

import json
import os
import runpy

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
compare_main = runpy.run_path(os.path.join(REPO, "tools", "compare_tt100k_results.py"))["main"]


def _write(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
    return str(path)


@pytest.fixture
def files(tmp_path):
    """Twelve 200 px images, each with one small sign (20 px) and one large (120 px)."""
    imgs, control, better = {}, {}, {}
    for i in range(12):
        small = {"xmin": 10.0, "ymin": 10.0, "xmax": 30.0, "ymax": 30.0}
        large = {"xmin": 60.0, "ymin": 60.0, "xmax": 180.0, "ymax": 180.0}
        imgs[str(i)] = {"id": i, "path": f"test/{i}.jpg", "width": 200, "height": 200,
                        "objects": [{"category": "pn", "bbox": small},
                                    {"category": "pl40", "bbox": large}]}  # fmt: skip
        found_large = {"category": "pl40", "bbox": large, "score": 0.9}
        found_small = {"category": "pn", "bbox": small, "score": 0.8}
        # the control misses the small sign on every other image; "better" finds every one
        control[str(i)] = {"objects": [found_large] + ([found_small] if i % 2 else [])}
        better[str(i)] = {"objects": [found_large, found_small]}
    gt = _write(tmp_path / "annotations.json", {"types": ["pn", "pl40"], "imgs": imgs})
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(str(i) for i in range(12)) + "\n")
    return {
        "gt": gt, "ids": str(ids),
        "control": _write(tmp_path / "control.json", {"imgs": control}),
        "better": _write(tmp_path / "better.json", {"imgs": better}),
    }  # fmt: skip


def test_an_arm_that_finds_more_small_signs_helps_and_the_same_file_shows_no_effect(
    files, tmp_path
):
    out = tmp_path / "out"
    argv = ["--gt", files["gt"], "--ids", files["ids"], "--control", files["control"],
            "--arm", f"better={files['better']}", "--arm", f"same={files['control']}",
            "--out", str(out), "--bootstrap-samples", "200"]  # fmt: skip
    assert compare_main(argv) == 0
    report = json.loads((out / "table.json").read_text())
    better = report["differences"]["better"]["ap_small"]
    assert better["estimate"] > 0 and better["low"] > 0
    assert report["differences"]["better"]["verdict"] == "helps"
    same = report["differences"]["same"]["ap_small"]
    assert same["estimate"] == 0 and same["low"] == 0 and same["high"] == 0
    assert report["differences"]["same"]["verdict"] == "no effect shown"
    assert (out / "table.md").exists() and (out / "difference_from_control.png").exists()


def test_a_malformed_results_file_is_refused_naming_it(files, tmp_path, capsys):
    bad = _write(tmp_path / "bad.json", {"imgs": {"0": {"objects": [{"category": "pn"}]}}})
    argv = ["--gt", files["gt"], "--ids", files["ids"], "--control", files["control"],
            "--arm", f"bad={bad}", "--out", str(tmp_path / "out")]  # fmt: skip
    assert compare_main(argv) == 2
    assert "bad.json" in capsys.readouterr().err
