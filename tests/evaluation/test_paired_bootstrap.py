"""The paired bootstrap and the resamplable COCO AP: AP equal to pycocotools' on the full set (all
and by size), resampling by weights equal to duplicating images, intervals that behave."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from featsr_d2.evaluation.paired_bootstrap import CocoAP, format_interval, paired_bootstrap


def random_set(rng: np.random.Generator, num_images: int, num_classes: int = 3):
    """Ground truth of several sizes and noisy, partly wrong detections of it, per image."""
    gts, dets = [], []
    for _ in range(num_images):
        g, d = [], []
        for _ in range(int(rng.integers(0, 6))):
            side = float(rng.choice([12, 24, 40, 70, 120]) * rng.uniform(0.8, 1.2))
            x, y = rng.uniform(0, 200, 2)
            box = [x, y, x + side, y + side * rng.uniform(0.7, 1.3)]
            cls = int(rng.integers(num_classes))
            g.append((box, cls))
            if rng.random() < 0.8:
                jitter = rng.normal(0, side * 0.1, 4)
                d.append(([b + j for b, j in zip(box, jitter)], cls, float(rng.random())))
            if rng.random() < 0.3:
                d.append((box, (cls + 1) % num_classes, float(rng.random())))
        for _ in range(int(rng.integers(0, 3))):
            x, y = rng.uniform(0, 200, 2)
            side = float(rng.uniform(8, 100))
            d.append(([x, y, x + side, y + side], int(rng.integers(num_classes)),
                      float(rng.random())))  # fmt: skip
        gts.append(g)
        dets.append(d)
    return gts, dets


def pycocotools_ap(gts, dets, num_classes=3) -> list[float]:
    """[AP, AP50, AP75, APs, APm, APl] in percent from pycocotools."""
    images = [{"id": i + 1, "width": 400, "height": 400} for i in range(len(gts))]
    annotations, results = [], []
    for i, (g, d) in enumerate(zip(gts, dets)):
        for box, cls in g:
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": cls,
                "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0,
            })  # fmt: skip
        for box, cls, score in d:
            results.append({
                "image_id": i + 1, "category_id": cls, "score": score,
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
            })  # fmt: skip
    coco = COCO()
    categories = [{"id": c, "name": str(c)} for c in range(num_classes)]
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return [float(v * 100) for v in evaluation.stats[:6]]


def test_coco_ap_equals_pycocotools_overall_and_by_size():
    gts, dets = random_set(np.random.default_rng(0), 40)
    expected = pycocotools_ap(gts, dets)
    assert expected[0] > 5  # a non-trivial case
    for area, want in (("all", expected[0]), ("small", expected[3]), ("medium", expected[4]),
                       ("large", expected[5])):  # fmt: skip
        assert CocoAP(gts, dets, area)() == pytest.approx(want, abs=1e-6), area


def test_coco_ap_at_one_iou_threshold_equals_pycocotools_ap50_and_ap75():
    gts, dets = random_set(np.random.default_rng(2), 40)
    expected = pycocotools_ap(gts, dets)
    assert expected[1] > expected[2] > 5  # a non-trivial case, AP50 above AP75
    assert CocoAP(gts, dets, iou_thresholds=[0.5])() == pytest.approx(expected[1], abs=1e-6)
    assert CocoAP(gts, dets, iou_thresholds=[0.75])() == pytest.approx(expected[2], abs=1e-6)
    idx = np.array([0, 0, 3, 5, 5, 9, 17, 17, 17, 30])
    resampled = pycocotools_ap([gts[i] for i in idx], [dets[i] for i in idx])[1]
    assert CocoAP(gts, dets, iou_thresholds=[0.5]).on_indices(idx) == pytest.approx(resampled)
    with pytest.raises(ValueError, match="IoU thresholds"):
        CocoAP(gts, dets, iou_thresholds=[])


def test_coco_ap_keeps_the_100_best_detections_of_an_image_as_pycocotools():
    gts, dets = random_set(np.random.default_rng(3), 6)
    # 121 detections of one category in one image (the cut is per image and category), tied
    # scores; the one on the last ground truth (medium) scores lowest, and is cut
    gts[0] = gts[0] + [([300.0, 300.0, 340.0, 340.0], 2)]
    false = [([400.0 + k, 10.0, 420.0 + k, 30.0], 2, 0.5 if k % 2 else 0.25) for k in range(120)]
    dets[0] = dets[0] + false + [([300.0, 300.0, 340.0, 340.0], 2, 0.01)]
    expected = pycocotools_ap(gts, dets)
    for area, want in (("all", expected[0]), ("medium", expected[4])):
        assert CocoAP(gts, dets, area)() == pytest.approx(want, abs=1e-6), area


def test_coco_ap_weights_equal_duplicated_images():
    gts, dets = random_set(np.random.default_rng(1), 12)
    idx = np.array([0, 0, 3, 5, 5, 5, 7, 11, 2, 2])
    resampled = CocoAP([gts[i] for i in idx], [dets[i] for i in idx])()
    assert CocoAP(gts, dets).on_indices(idx) == pytest.approx(resampled, abs=1e-9)
    assert resampled == pytest.approx(
        pycocotools_ap([gts[i] for i in idx], [dets[i] for i in idx])[0], abs=1e-6
    )


def test_perfect_detections_score_100_and_no_ground_truth_is_minus_1():
    gts = [[([0, 0, 50, 50], 0)], [([10, 10, 20, 20], 1)]]
    dets = [[(b, c, 0.9) for b, c in g] for g in gts]
    assert CocoAP(gts, dets)() == pytest.approx(100.0)
    assert CocoAP(gts, dets, "large")() == -1.0


def test_paired_bootstrap_intervals():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 200)
    b = a - 0.5 + rng.normal(0, 0.1, 200)  # a is 0.5 better, consistently
    r = paired_bootstrap(200, lambda i: float(np.mean(a[i] - b[i])), num_samples=500)
    assert r["low"] < r["estimate"] < r["high"]
    assert 0.45 < r["low"] and r["high"] < 0.55 and r["p_above_0"] == 1.0
    again = paired_bootstrap(200, lambda i: float(np.mean(a[i] - b[i])), num_samples=500)
    assert again == r  # seeded
    same = paired_bootstrap(200, lambda i: float(np.mean(a[i] - a[i])), num_samples=100)
    assert same["low"] == same["high"] == same["estimate"] == 0.0
    assert format_interval(r).startswith("+0.5")
    with pytest.raises(ValueError, match="at least 2"):
        paired_bootstrap(1, lambda i: 0.0)
