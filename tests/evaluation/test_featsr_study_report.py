"""The FeatSR study report: per-image TT100K counts that add up to the protocol's, differences and
verdicts that behave (none between identical arms, "helps" for an arm that finds what the control
misses), the best-F1 threshold chosen on half A only, single-run arms paired with every control
seed, the generator warning, and the files it writes."""

import copy
import json

import cv2
import numpy as np
import pytest

from featsr_d2.core.tt100k_protocol import evaluate_tt100k
from featsr_d2.evaluation.featsr_study_report import (
    GENERATOR_STILL,
    build_study_report,
    per_image_counts,
    write_study_report,
)

CLASSES = ("pl40", "pn", "i5")
NUM_IMAGES = 8
SIDES = {"small": 20, "medium": 50, "large": 120}  # long sides; areas < 32^2, < 96^2, > 96^2


def _box(x0, y0, side):
    return {"xmin": x0, "ymin": y0, "xmax": x0 + side, "ymax": y0 + side}


def make_gt():
    """8 images, each with a small, a medium and (every other image) a large sign."""
    imgs = {}
    for i in range(NUM_IMAGES):
        objects = [
            {"category": CLASSES[i % 3], "bbox": _box(10, 10, SIDES["small"])},
            {"category": CLASSES[(i + 1) % 3], "bbox": _box(100, 100, SIDES["medium"])},
        ]
        if i % 2 == 0:
            objects.append({"category": CLASSES[(i + 2) % 3], "bbox": _box(300, 300, 120)})
        imgs[f"img{i}"] = {"objects": objects}
    return {"types": list(CLASSES), "imgs": imgs}


def detections(gt, *, drop_small=(), score=0.9):
    """The ground truth as detections, without the small signs of the images in ``drop_small``,
    plus one false positive (a small box of a wrong class) in every image."""
    out = {}
    for k, (img_id, rec) in enumerate(gt["imgs"].items()):
        objects = []
        for o in rec["objects"]:
            small = o["bbox"]["xmax"] - o["bbox"]["xmin"] < 32
            if not (small and k in drop_small):
                objects.append({**copy.deepcopy(o), "score": score})
        objects.append({"category": "pn", "bbox": _box(600, 50, 16), "score": 0.55})
        out[img_id] = {"objects": objects}
    return {"imgs": out}


def noisy_detections(gt, rng):
    """Jittered, partly misclassified detections of several sizes with random scores."""
    out = {}
    for img_id, rec in gt["imgs"].items():
        objects = []
        for o in rec["objects"]:
            b = o["bbox"]
            side = b["xmax"] - b["xmin"]
            if rng.random() < 0.8:
                j = rng.normal(0, side * 0.1, 4)
                box = {k: b[k] + float(v) for k, v in zip(("xmin", "ymin", "xmax", "ymax"), j)}
                cat = o["category"] if rng.random() < 0.85 else CLASSES[int(rng.integers(3))]
                objects.append({"category": cat, "bbox": box, "score": float(rng.random())})
        for _ in range(int(rng.integers(0, 4))):
            side = float(rng.choice([12, 40, 150]))
            x, y = (float(v) for v in rng.uniform(0, 500, 2))
            objects.append({"category": CLASSES[int(rng.integers(3))], "bbox": _box(x, y, side),
                            "score": float(rng.random())})  # fmt: skip
        out[img_id] = {"objects": objects}
    return {"imgs": out}


def record(results, seed=0, *, correct=None, change=None, cost=None):
    total = [1] * NUM_IMAGES  # one small sign per image
    return {
        "seed": seed,
        "results": results,
        "gt_box_small": {"correct": list(correct or total), "total": total},
        "generator_change": change,
        "cost": cost,
    }


def ids(gt):
    return list(gt["imgs"])


def test_per_image_counts_sum_to_evaluate_tt100k():
    gt = make_gt()
    rng = np.random.default_rng(0)
    results = noisy_detections(gt, rng)
    nontrivial = False
    for types in ("all", ["pl40", "pn"]):
        for min_score in (0.0, 0.5):
            kwargs = {"iou": 0.5, "min_score": min_score, "types": types}
            counts = per_image_counts(gt, results, ids(gt), **kwargs)
            expected = evaluate_tt100k(gt, results, img_ids=ids(gt), **kwargs)
            for b in ("small", "medium", "large", "all"):
                for k in ("tp", "num_det", "num_gt"):
                    assert len(counts[b][k]) == NUM_IMAGES
                    assert int(counts[b][k].sum()) == expected[b][k], (types, min_score, b, k)
                nontrivial |= 0 < expected[b]["tp"] < expected[b]["num_det"]
    assert nontrivial  # matches and false positives both occur


def test_identical_arm_has_no_difference():
    gt = make_gt()
    runs = {
        "control": [record(noisy_detections(gt, np.random.default_rng(s)), s) for s in (0, 1)],
    }
    runs["same"] = copy.deepcopy(runs["control"])
    report = build_study_report(gt, ids(gt), runs, num_samples=50)
    diff = report["differences"]["same"]
    checked = 0
    for key in report["settings"]["interval_metrics"]:
        d = diff[key]
        if d["estimate"] is None:  # a metric without ground truth in range (none here)
            continue
        assert d["estimate"] == d["low"] == d["high"] == 0.0, key
        assert d["signs"] == "0 0", key
        checked += 1
    assert checked == len(report["settings"]["interval_metrics"])
    assert diff["verdict"] == "no effect shown"


def test_arm_finding_the_small_signs_helps_and_the_reverse_hurts():
    gt = make_gt()
    misses = [record(detections(gt, drop_small=range(NUM_IMAGES)), s) for s in (0, 1, 2)]
    finds = [record(detections(gt), s) for s in (0, 1, 2)]
    report = build_study_report(gt, ids(gt), {"control": misses, "featsr": finds}, num_samples=100)
    diff = report["differences"]["featsr"]
    assert report["arms"]["control"]["mean"]["ap_small"] == pytest.approx(0.0)
    assert report["arms"]["featsr"]["mean"]["ap_small"] == pytest.approx(100.0)
    assert diff["ap_small"]["low"] > 0
    assert diff["ap_small"]["signs"] == "+ + +"
    assert diff["best_f1_small"]["estimate"] > 0
    assert diff["f1_small"]["low"] > 0
    assert diff["ap_medium"]["estimate"] == 0.0  # the medium signs are found by both
    assert diff["ap50"]["estimate"] > 0 and diff["ap50"]["low"] is None  # a point difference
    assert diff["verdict"] == "helps"

    reverse = build_study_report(gt, ids(gt), {"control": finds, "x": misses}, num_samples=100)
    assert reverse["differences"]["x"]["ap_small"]["high"] < 0
    assert reverse["differences"]["x"]["verdict"] == "hurts"


def test_best_threshold_is_chosen_on_half_a_only():
    gt = make_gt()
    results = noisy_detections(gt, np.random.default_rng(3))
    half_b = set(ids(gt)[1::2])

    def rescored(on_half_b: bool):
        out = copy.deepcopy(results)
        for img_id, rec in out["imgs"].items():
            if (img_id in half_b) == on_half_b:
                for o in rec["objects"]:
                    o["score"] *= 1e-3  # below any threshold of half A's scores (> 1e-3)
        return out

    def run(res):
        report = build_study_report(gt, ids(gt), {"control": [record(res)]}, num_samples=10)
        entry = report["arms"]["control"]["runs"][0]
        return entry["best_threshold"], entry["tt100k"]["best_f1_all"]["num_det"]

    threshold, num_det = run(results)
    assert threshold > 1e-3 and num_det > 0
    threshold_b, num_det_b = run(rescored(on_half_b=True))
    assert threshold_b == threshold  # half B's scores do not choose it ...
    assert num_det_b == 0  # ... but are scored at it
    threshold_a, _ = run(rescored(on_half_b=False))
    assert threshold_a != threshold  # half A's scores do choose it


def test_single_run_arm_pairs_with_every_control_seed():
    gt = make_gt()
    # control seed k misses the small signs of the first 2k + 1 images
    control = [record(detections(gt, drop_small=range(2 * k + 1)), 10 + k) for k in range(3)]
    base = [record(detections(gt, drop_small=(0, 1, 2)), 7)]
    report = build_study_report(gt, ids(gt), {"control": control, "base": base}, num_samples=50)
    diff = report["differences"]["base"]
    assert diff["pairs"] == [[7, 10], [7, 11], [7, 12]]
    arm_ap = report["arms"]["base"]["runs"][0]["metrics"]["ap_small"]
    control_ap = [r["metrics"]["ap_small"] for r in report["arms"]["control"]["runs"]]
    assert len(set(control_ap)) == 3
    expected = [arm_ap - c for c in control_ap]
    assert diff["ap_small"]["per_pair"] == pytest.approx(expected)
    assert diff["ap_small"]["estimate"] == pytest.approx(np.mean(expected))
    assert diff["ap_small"]["signs"] == "- 0 +"  # base misses 3 small signs, control 1, 3, 5

    with pytest.raises(ValueError, match="pair seed by seed"):
        build_study_report(gt, ids(gt), {"control": control, "two": control[:2]}, num_samples=5)


@pytest.mark.parametrize("largest_change, warned", [(GENERATOR_STILL / 10, True), (0.05, False)])
def test_generator_not_moved_warning(tmp_path, largest_change, warned):
    gt = make_gt()
    results = detections(gt)
    runs = {
        "control": [record(results, s, change=0.5) for s in (0, 1)],  # the control does not count
        "featsr": [record(results, 0, change=0.001), record(results, 1, change=largest_change)],
        "base": [record(results, 0)],  # no generator: not an SR arm
    }
    report = build_study_report(gt, ids(gt), runs, num_samples=5)
    write_study_report(report, str(tmp_path))
    table = (tmp_path / "table.md").read_text()
    assert (report["warning"] is not None) == warned
    assert table.startswith("> **WARNING: G has not moved") == warned
    assert ("no conclusion about SR" in table) == warned
    assert "| control | 2 |" in table and "| featsr | 2 |" in table  # the table follows


def test_written_files(tmp_path):
    gt = make_gt()
    rng = np.random.default_rng(5)
    runs = {
        "control": [record(noisy_detections(gt, rng), s, cost=1.0) for s in (0, 1)],
        "featsr": [
            record(noisy_detections(gt, rng), s, change=0.2, cost=1.3, correct=[1, 0] * 4)
            for s in (0, 1)
        ],
        "sliced": [record(noisy_detections(gt, rng), 0, cost=2.5)],
    }
    notes = {"train_minutes": 12.5, "cache": {"hits": 3}}
    report = build_study_report(gt, ids(gt), runs, num_samples=20, notes=notes)
    write_study_report(report, str(tmp_path / "out"))

    with open(tmp_path / "out" / "table.json") as f:
        assert json.load(f) == report
    table = (tmp_path / "out" / "table.md").read_text()
    lines = table.splitlines()
    rows = [line.split(" | ")[0] for line in lines if line.startswith("| ")]
    assert rows[:4] == ["| arm", "| control", "| featsr", "| sliced"]  # control first
    assert rows[4:] == ["| arm − control", "| featsr", "| sliced"]
    assert "- train_minutes: 12.5" in lines and '- cache: {"hits": 3}' in lines
    featsr_row = next(line for line in lines if line.startswith("| featsr | 2 |"))
    assert featsr_row.endswith("| 50.0 | 20.0 | 130.0 |")  # GT-box small acc., G change, cost
    assert report["arms"]["featsr"]["mean"]["gt_box_small_acc"] == pytest.approx(50.0)

    png = tmp_path / "out" / "difference_from_control.png"
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 400
    assert image.std() > 0  # something is drawn
