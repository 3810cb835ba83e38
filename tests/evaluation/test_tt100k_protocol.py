"""The official TT100K protocol (featsr_d2.core.tt100k_protocol, tools/tt100k_eval.py): one
hand-built case per rule, a plain-loop reference of the rules compared on seeded random data, the
curve, loading and the CLI."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from featsr_d2.core.tt100k import TT100KFormatError, load_annotations, load_ids, load_results
from featsr_d2.core.tt100k_categories import SIZE_BINS, TYPE45
from featsr_d2.core.tt100k_protocol import accuracy_recall_curve, evaluate_tt100k
from featsr_d2.core.tt100k_report import format_table, save_curve_png, summarize

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(REPO, "tools", "tt100k_eval.py")
main = runpy.run_path(CLI)["main"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def box(x0: float, y0: float, x1: float, y1: float) -> dict[str, float]:
    return {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1}


def obj(category: str, bbox: dict[str, float], score: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"category": category, "bbox": bbox}
    if score is not None:
        out["score"] = score
    return out


def annos(imgs: dict[str, list[dict[str, Any]]], *, gt: bool = True) -> dict[str, Any]:
    records = {
        k: ({"path": f"test/{k}.jpg", "id": int(k), "objects": v} if gt else {"objects": v})
        for k, v in imgs.items()
    }
    return {"types": list(TYPE45), "imgs": records} if gt else {"imgs": records}


def counts(results: dict[str, Any], name: str = "all") -> tuple[int, int, int]:
    r = results[name]
    return r["tp"], r["num_det"], r["num_gt"]


# ------------------------------------------------------------------------------------------------
# One case per rule
# ------------------------------------------------------------------------------------------------


def test_iou_exactly_at_threshold_does_not_match():
    gt = annos({"1": [obj("pl40", box(0, 0, 10, 10))]})
    at = annos({"1": [obj("pl40", box(0, 0, 10, 20), 0.9)]}, gt=False)  # IoU = 100 / 200 = 0.5
    above = annos({"1": [obj("pl40", box(0, 0, 10, 19), 0.9)]}, gt=False)  # IoU = 100 / 190
    r = evaluate_tt100k(gt, at, iou=0.5)
    assert counts(r) == (0, 1, 1)
    assert (r["all"]["recall"], r["all"]["accuracy"], r["all"]["f1"]) == (0.0, 0.0, 0.0)
    assert counts(evaluate_tt100k(gt, above, iou=0.5)) == (1, 1, 1)
    assert counts(evaluate_tt100k(gt, above, iou=100 / 190)) == (0, 1, 1)


def test_wrong_category_never_matches():
    gt = annos({"1": [obj("pl40", box(0, 0, 10, 10))]})
    res = annos({"1": [obj("pl50", box(0, 0, 10, 10), 0.9)]}, gt=False)
    assert counts(evaluate_tt100k(gt, res)) == (0, 1, 1)
    assert counts(evaluate_tt100k(gt, res, types="all")) == (0, 1, 1)


def test_greedy_by_descending_iou_not_by_score():
    # All boxes span y in [0, 10], so IoU is the 1-D overlap ratio in x.
    # (G2, d2) = 1.0, (G2, d1) = 9/11, (G1, d1) = 7/13, (G1, d2) = 6/14 (below 0.5).
    # Greedy by IoU: G2-d2, then G1-d1: two matches. Matching in score order (d1 first, to its best
    # ground truth G2) would leave d2 and G1 unmatched: one match.
    gt = annos({"1": [obj("pl40", box(0, 0, 10, 10)), obj("pl40", box(4, 0, 14, 10))]})
    res = annos(
        {"1": [obj("pl40", box(3, 0, 13, 10), 0.9), obj("pl40", box(4, 0, 14, 10), 0.3)]},
        gt=False,
    )
    r = evaluate_tt100k(gt, res)
    assert counts(r) == (2, 2, 2)
    assert r["all"]["recall"] == 1.0 and r["all"]["accuracy"] == 1.0


def test_iou_tie_between_ground_truths_goes_to_the_first_in_the_file():
    det = obj("pl40", box(0, 0, 30, 30), 0.9)  # small
    g_small = obj("pl40", box(0, 0, 30, 20))  # IoU 600 / 900, small
    g_medium = obj("pl40", box(0, 0, 30, 45))  # IoU 900 / 1350, medium
    res = annos({"1": [det]}, gt=False)

    r = evaluate_tt100k(annos({"1": [g_small, g_medium]}), res)
    assert counts(r, "small") == (1, 1, 1)
    assert counts(r, "medium") == (0, 0, 1)  # its detection went to the small gt: ignored here
    assert r["medium"]["accuracy"] == 1.0 and r["medium"]["recall"] == 0.0

    r = evaluate_tt100k(annos({"1": [g_medium, g_small]}), res)
    assert counts(r, "small") == (0, 0, 1)
    assert counts(r, "medium") == (1, 1, 1)


def test_iou_tie_between_detections_goes_to_the_first_in_the_file():
    gt = annos({"1": [obj("pl40", box(0, 0, 30, 30))]})  # small
    d_small = obj("pl40", box(0, 0, 30, 20), 0.2)  # IoU 600 / 900, small
    d_medium = obj("pl40", box(0, 0, 30, 45), 0.8)  # IoU 900 / 1350, medium

    # d_small takes the gt; unmatched d_medium counts in the medium bin (whose gt is ignored).
    r = evaluate_tt100k(gt, annos({"1": [d_small, d_medium]}, gt=False))
    assert counts(r, "medium") == (0, 1, 0)
    assert counts(r, "small") == (1, 1, 1)
    # d_medium takes the gt and is ignored with it in the medium bin; unmatched d_small is small.
    r = evaluate_tt100k(gt, annos({"1": [d_medium, d_small]}, gt=False))
    assert counts(r, "medium") == (0, 0, 0)
    assert counts(r, "small") == (1, 2, 1)


def test_ground_truth_outside_bin_is_ignored_with_its_matched_detection():
    gt = annos({"1": [obj("pl40", box(0, 0, 34, 34))]})  # long side 34: medium
    res = annos({"1": [obj("pl40", box(1, 1, 31, 31), 0.9)]}, gt=False)  # 30: small, IoU 0.78
    r = evaluate_tt100k(gt, res)
    assert counts(r, "small") == (0, 0, 0)  # the small detection goes with its medium gt
    assert (r["small"]["recall"], r["small"]["accuracy"], r["small"]["f1"]) == (1.0, 1.0, 1.0)
    assert counts(r, "medium") == (1, 1, 1)  # counted by its gt's size, not its own
    assert counts(r, "large") == (0, 0, 0)
    assert counts(r, "all") == (1, 1, 1)


def test_unmatched_detection_outside_bin_is_ignored():
    gt = annos({"1": [obj("pl40", box(0, 0, 10, 10))]})
    res = annos(
        {"1": [obj("pl40", box(0, 0, 10, 10), 0.9), obj("pl40", box(100, 100, 150, 140), 0.9)]},
        gt=False,
    )
    r = evaluate_tt100k(gt, res)
    assert counts(r, "small") == (1, 1, 1)
    assert counts(r, "medium") == (0, 1, 0)  # the unmatched 50-pixel detection
    assert r["medium"]["accuracy"] == 0.0 and r["medium"]["recall"] == 1.0
    assert r["medium"]["f1"] == 0.0
    assert counts(r, "large") == (0, 0, 0)
    assert counts(r, "all") == (1, 2, 1)
    assert r["all"]["accuracy"] == 0.5 and r["all"]["f1"] == pytest.approx(2 / 3)


def test_size_bins_are_half_open_on_the_long_side():
    gt = annos(
        {
            "1": [
                obj("pl40", box(0, 0, 31.5, 8)),  # small
                obj("pl40", box(0, 100, 10, 132)),  # long side 32: medium
                obj("pl40", box(0, 200, 96, 210)),  # 96: large
                obj("pl40", box(0, 300, 400, 310)),  # 400: outside every bin
            ]
        }
    )
    r = evaluate_tt100k(gt, annos({}, gt=False))
    assert [r[b]["num_gt"] for b in ("small", "medium", "large", "all")] == [1, 1, 1, 3]


def test_score_threshold_is_inclusive_and_ignores_lower_scores():
    gt = annos({"1": [obj("pl40", box(0, 0, 10, 10))]})
    res = annos(
        {"1": [obj("pl40", box(0, 0, 10, 10), 0.39), obj("pl40", box(50, 50, 60, 60), 0.4)]},
        gt=False,
    )
    assert counts(evaluate_tt100k(gt, res, min_score=0.0)) == (1, 2, 1)
    assert counts(evaluate_tt100k(gt, res, min_score=0.4)) == (0, 1, 1)
    assert counts(evaluate_tt100k(gt, res, min_score=0.41)) == (0, 0, 1)


def _rematch_case() -> tuple[dict[str, Any], dict[str, Any]]:
    # G_small 30x30 and G_medium 40x30. d_hi (0.9): IoU 0.95 with G_medium, 0.789 with G_small;
    # d_lo (0.3) = G_medium: IoU 1.0 with it, 0.75 with G_small. With both detections:
    # G_medium-d_lo and G_small-d_hi. Without d_lo, d_hi takes G_medium and G_small is missed.
    gt = annos({"1": [obj("pl40", box(0, 0, 30, 30)), obj("pl40", box(0, 0, 40, 30))]})
    res = annos(
        {"1": [obj("pl40", box(0, 0, 38, 30), 0.9), obj("pl40", box(0, 0, 40, 30), 0.3)]},
        gt=False,
    )
    return gt, res


def test_score_threshold_applies_before_matching():
    gt, res = _rematch_case()
    r = evaluate_tt100k(gt, res, min_score=0.0)
    assert counts(r, "small") == (1, 1, 1) and counts(r, "medium") == (1, 1, 1)
    r = evaluate_tt100k(gt, res, min_score=0.5)
    assert counts(r, "small") == (0, 0, 1)  # d_hi now matches the medium gt
    assert counts(r, "medium") == (1, 1, 1)


def test_classes_outside_the_set_are_ignored():
    gt = annos({"1": [obj("pl40", box(0, 0, 10, 10)), obj("zz9", box(20, 20, 30, 30))]})
    res = annos(
        {"1": [obj("zz9", box(20, 20, 30, 30), 0.9), obj("i2", box(50, 50, 60, 60), 0.9)]},
        gt=False,
    )
    assert "zz9" not in TYPE45
    r = evaluate_tt100k(gt, res, types="type45")
    assert counts(r) == (0, 1, 1)  # zz9 gone on both sides; i2 is a false positive
    assert set(r["per_class"]) == set(TYPE45)
    r = evaluate_tt100k(gt, res, types="all")
    assert counts(r) == (1, 2, 2)
    assert sorted(r["per_class"]) == ["i2", "pl40", "zz9"]
    r = evaluate_tt100k(gt, res, types=["zz9"])
    assert counts(r) == (1, 1, 1)
    assert list(r["per_class"]) == ["zz9"]
    with pytest.raises(ValueError, match="unknown class set"):
        evaluate_tt100k(gt, res, types="type42")


def test_every_image_of_the_split_counts():
    gt = annos(
        {
            "1": [obj("pl40", box(0, 0, 10, 10))],
            "2": [obj("pl40", box(0, 0, 10, 10)), obj("i2", box(20, 0, 30, 10))],
            "3": [obj("pl40", box(0, 0, 10, 10))],
            "4": [],
        }
    )
    res = annos(
        {
            "1": [obj("pl40", box(0, 0, 10, 10), 0.9)],
            "3": [],  # present, no detections
            "4": [obj("pl40", box(0, 0, 10, 10), 0.9)],  # false positive on an image without gt
            "99": [obj("pl40", box(0, 0, 10, 10), 0.9)],  # not in the ground truth: ignored
        },
        gt=False,
    )
    r = evaluate_tt100k(gt, res)  # image "2" is absent from the results: its gt are misses
    assert counts(r) == (1, 2, 4)
    assert r["all"]["recall"] == 0.25 and r["all"]["accuracy"] == 0.5
    assert counts(evaluate_tt100k(gt, res, img_ids=["1", 3])) == (1, 1, 2)
    assert counts(evaluate_tt100k(gt, res, img_ids=[])) == (0, 0, 0)
    with pytest.raises(TT100KFormatError, match="absent from the ground truth"):
        evaluate_tt100k(gt, res, img_ids=["1", "99"])
    with pytest.raises(ValueError, match="more than once"):
        evaluate_tt100k(gt, res, img_ids=["1", "1"])


def test_empty_denominators_give_one():
    gt = annos({"1": [obj("pl40", box(0, 0, 10, 10))], "2": []})
    nothing = annos({}, gt=False)
    r = evaluate_tt100k(gt, nothing, img_ids=["2"])  # no gt, no detections
    assert (r["all"]["recall"], r["all"]["accuracy"], r["all"]["f1"]) == (1.0, 1.0, 1.0)
    r = evaluate_tt100k(gt, nothing)  # misses only: accuracy 1 (nothing detected), recall 0
    assert (r["all"]["recall"], r["all"]["accuracy"], r["all"]["f1"]) == (0.0, 1.0, 0.0)
    fp = annos({"2": [obj("pl40", box(0, 0, 10, 10), 0.9)]}, gt=False)
    r = evaluate_tt100k(gt, fp, img_ids=["2"])  # false positives only: recall 1 (nothing to find)
    assert (r["all"]["recall"], r["all"]["accuracy"], r["all"]["f1"]) == (1.0, 0.0, 0.0)


def test_per_class_counts():
    gt = annos(
        {
            "1": [
                obj("pl40", box(0, 0, 10, 10)),
                obj("pl40", box(20, 0, 30, 10)),
                obj("i2", box(40, 0, 50, 10)),
                obj("w13", box(0, 0, 500, 500)),  # long side 500: outside the "all" bin
            ]
        }
    )
    res = annos(
        {
            "1": [
                obj("pl40", box(0, 0, 10, 10), 0.9),
                obj("i2", box(40, 0, 50, 10), 0.8),
                obj("i2", box(60, 0, 70, 10), 0.7),
                obj("w13", box(0, 0, 500, 500), 0.9),  # matched to an ignored gt: ignored
            ]
        },
        gt=False,
    )
    pc = evaluate_tt100k(gt, res)["per_class"]
    assert (pc["pl40"]["tp"], pc["pl40"]["num_det"], pc["pl40"]["num_gt"]) == (1, 1, 2)
    assert (pc["pl40"]["recall"], pc["pl40"]["accuracy"]) == (0.5, 1.0)
    assert (pc["i2"]["tp"], pc["i2"]["num_det"], pc["i2"]["num_gt"]) == (1, 2, 1)
    assert (pc["i2"]["recall"], pc["i2"]["accuracy"]) == (1.0, 0.5)
    assert (pc["w13"]["tp"], pc["w13"]["num_det"], pc["w13"]["num_gt"]) == (0, 0, 0)
    assert (pc["w13"]["recall"], pc["w13"]["accuracy"], pc["w13"]["f1"]) == (1.0, 1.0, 1.0)
    assert pc["pl40"]["f1"] == pytest.approx(2 / 3)


# ------------------------------------------------------------------------------------------------
# A plain-loop reference of the rules, compared on seeded random data
# ------------------------------------------------------------------------------------------------


def _ref_iou(a: dict[str, float], b: dict[str, float]) -> float:
    iw = max(min(a["xmax"], b["xmax"]) - max(a["xmin"], b["xmin"]), 0.0)
    ih = max(min(a["ymax"], b["ymax"]) - max(a["ymin"], b["ymin"]), 0.0)
    inter = iw * ih
    area_a = (a["xmax"] - a["xmin"]) * (a["ymax"] - a["ymin"])
    area_b = (b["xmax"] - b["xmin"]) * (b["ymax"] - b["ymin"])
    return inter / (area_a + area_b - inter)


def _ref_long(b: dict[str, float]) -> float:
    return max(b["xmax"] - b["xmin"], b["ymax"] - b["ymin"])


def reference(gt, res, img_ids, iou, min_score, types, low, high) -> tuple[int, int, int]:
    """(tp, num_det, num_gt) of one size bin, image by image, pair by pair."""
    tp = num_det = num_gt = 0
    for img_id in img_ids:
        gts = gt["imgs"][img_id]["objects"]
        dets = res["imgs"].get(img_id, {"objects": []})["objects"]
        gt_ok = [types is None or g["category"] in types for g in gts]
        det_ok = [
            (types is None or d["category"] in types) and d["score"] >= min_score for d in dets
        ]
        candidates = []
        for i, g in enumerate(gts):
            for j, d in enumerate(dets):
                if gt_ok[i] and det_ok[j] and g["category"] == d["category"]:
                    v = _ref_iou(g["bbox"], d["bbox"])
                    if v > iou:
                        candidates.append((v, i, j))
        candidates.sort(key=lambda c: -c[0])  # stable: ties keep (gt, det) order
        gt_match: dict[int, int] = {}
        det_match: dict[int, int] = {}
        for _, i, j in candidates:
            if i not in gt_match and j not in det_match:
                gt_match[i], det_match[j] = j, i
        for i, g in enumerate(gts):
            if gt_ok[i] and low <= _ref_long(g["bbox"]) < high:
                num_gt += 1
                tp += i in gt_match
        for j, d in enumerate(dets):
            if not det_ok[j]:
                continue
            sized = gts[det_match[j]]["bbox"] if j in det_match else d["bbox"]
            num_det += low <= _ref_long(sized) < high
    return tp, num_det, num_gt


def random_data(seed: int, num_images: int = 40) -> tuple[dict[str, Any], dict[str, Any]]:
    rng = np.random.default_rng(seed)
    cats = ["pl40", "pl50", "i2", "zz9"]
    gt_imgs: dict[str, list] = {}
    res_imgs: dict[str, list] = {}
    for k in range(num_images):
        gts = []
        for _ in range(rng.integers(0, 6)):
            size = float(rng.choice([8, 20, 31, 32, 50, 95, 96, 200, 399, 400, 450]))
            x, y = (float(v) for v in rng.integers(0, 120, size=2))
            gts.append(
                obj(str(rng.choice(cats)), box(x, y, x + size, y + float(rng.integers(4, 60))))
            )
        dets = []
        for g in gts:
            for _ in range(rng.integers(0, 3)):
                b = dict(g["bbox"])
                for key in b:
                    b[key] += float(rng.integers(-6, 7))
                b["xmax"] = max(b["xmax"], b["xmin"] + 1)
                b["ymax"] = max(b["ymax"], b["ymin"] + 1)
                cat = g["category"] if rng.random() < 0.85 else str(rng.choice(cats))
                dets.append(obj(cat, b, round(float(rng.random()), 1)))  # many equal scores
            if rng.random() < 0.3:  # an exact duplicate: equal IoU with every gt
                dets.append(obj(g["category"], dict(g["bbox"]), round(float(rng.random()), 1)))
        for _ in range(rng.integers(0, 3)):
            x, y, s = (float(v) for v in rng.integers(0, 200, size=3))
            dets.append(
                obj(str(rng.choice(cats)), box(x, y, x + s + 2, y + s + 2), float(rng.random()))
            )
        rng.shuffle(dets)
        gt_imgs[str(k)] = gts
        if rng.random() < 0.9:
            res_imgs[str(k)] = dets
    return annos(gt_imgs), annos(res_imgs, gt=False)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_the_plain_loop_reference(seed):
    gt, res = random_data(seed)
    ids = list(gt["imgs"])
    for iou, min_score, types in [(0.5, 0.0, "type45"), (0.3, 0.5, "all"), (0.7, 0.2, ["pl50"])]:
        r = evaluate_tt100k(gt, res, iou=iou, min_score=min_score, types=types)
        class_set = TYPE45 if types == "type45" else None if types == "all" else types
        for name, (low, high) in SIZE_BINS.items():
            expected = reference(gt, res, ids, iou, min_score, class_set, low, high)
            assert counts(r, name) == expected, (iou, min_score, types, name)
    # Non-trivial data: matches, misses and false positives in every bin.
    r = evaluate_tt100k(gt, res, types="all")
    for name in SIZE_BINS:
        tp, num_det, num_gt = counts(r, name)
        assert 0 < tp < num_det and tp < num_gt, name


def test_per_class_equals_single_class_evaluation():
    gt, res = random_data(2)
    r = evaluate_tt100k(gt, res, types="all", min_score=0.3)
    assert len(r["per_class"]) == 4
    for cls, metrics in r["per_class"].items():
        single = evaluate_tt100k(gt, res, types=[cls], min_score=0.3)["all"]
        assert metrics == single, cls


# ------------------------------------------------------------------------------------------------
# The accuracy-recall curve
# ------------------------------------------------------------------------------------------------


def test_curve_equals_evaluation_at_every_threshold():
    gt, res = random_data(3, num_images=30)
    scores = np.unique([o["score"] for img in res["imgs"].values() for o in img["objects"]])
    thresholds = np.concatenate([[-1.0, 0.0], scores, (scores[:-1] + scores[1:]) / 2, [2.0]])
    curve = accuracy_recall_curve(gt, res, types="all", thresholds=thresholds)
    np.testing.assert_array_equal(curve.thresholds, thresholds)
    for k, t in enumerate(thresholds):
        r = evaluate_tt100k(gt, res, types="all", min_score=float(t))
        for name in SIZE_BINS:
            got = {key: curve.bins[name][key][k] for key in r[name]}
            assert got == pytest.approx(r[name], abs=0, rel=1e-12), (t, name)
    default = accuracy_recall_curve(gt, res, types="all")
    np.testing.assert_array_equal(default.thresholds, scores)


def test_curve_recomputes_the_matching_when_detections_drop_out():
    gt, res = _rematch_case()
    curve = accuracy_recall_curve(gt, res, thresholds=[0.0, 0.3, 0.5, 0.9, 1.0])
    # Filtering one matching computed with every detection would keep d_hi on the small gt.
    np.testing.assert_array_equal(curve.bins["small"]["tp"], [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(curve.bins["small"]["num_det"], [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(curve.bins["medium"]["tp"], [1, 1, 1, 1, 0])
    np.testing.assert_array_equal(curve.bins["all"]["recall"], [1.0, 1.0, 0.5, 0.5, 0.0])
    np.testing.assert_array_equal(curve.bins["all"]["accuracy"], [1.0, 1.0, 1.0, 1.0, 1.0])


def test_curve_without_detections():
    gt = annos({"1": [obj("pl40", box(0, 0, 10, 10))]})
    curve = accuracy_recall_curve(gt, annos({}, gt=False))
    assert curve.thresholds.shape == (0,)
    curve = accuracy_recall_curve(gt, annos({}, gt=False), thresholds=[0.5])
    assert curve.bins["all"]["recall"].tolist() == [0.0]
    assert curve.bins["all"]["accuracy"].tolist() == [1.0]
    assert curve.bins["small"]["num_gt"].tolist() == [1]


def test_save_curve_png(tmp_path):
    gt, res = random_data(4, num_images=10)
    curve = accuracy_recall_curve(gt, res)
    path = tmp_path / "curve.png"
    save_curve_png(curve, path, operating_point=evaluate_tt100k(gt, res, min_score=0.5))
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]  # no temporary file left


# ------------------------------------------------------------------------------------------------
# Loading, reporting and the command line
# ------------------------------------------------------------------------------------------------


def test_loading_errors_name_the_file_and_record(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"imgs": {')
    with pytest.raises(TT100KFormatError, match=r"bad\.json: not valid JSON"):
        load_annotations(bad_json)

    no_imgs = tmp_path / "no_imgs.json"
    no_imgs.write_text('{"types": []}')
    with pytest.raises(TT100KFormatError, match=r"no_imgs\.json: missing key 'imgs'"):
        load_annotations(no_imgs)

    no_bbox = tmp_path / "no_bbox.json"
    no_bbox.write_text(json.dumps(annos({"7": [obj("pl40", box(0, 0, 1, 1)), {"category": "i2"}]})))
    with pytest.raises(
        TT100KFormatError, match=r"no_bbox\.json: imgs\['7'\]\.objects\[1\]: missing key 'bbox'"
    ):
        load_annotations(no_bbox)

    bad_coord = tmp_path / "bad_coord.json"
    bad_coord.write_text(json.dumps(annos({"7": [obj("pl40", {"xmin": 0, "ymin": 0, "xmax": 1})]})))
    with pytest.raises(TT100KFormatError, match=r"objects\[0\]: bbox is missing key 'ymax'"):
        load_annotations(bad_coord)

    no_score = tmp_path / "no_score.json"
    no_score.write_text(json.dumps(annos({"5": [obj("pl40", box(0, 0, 1, 1))]}, gt=False)))
    with pytest.raises(
        TT100KFormatError, match=r"no_score\.json: imgs\['5'\]\.objects\[0\]: .*no 'score'"
    ):
        load_results(no_score)
    assert load_annotations(no_score)["imgs"]["5"]["objects"][0]["category"] == "pl40"

    no_objects = tmp_path / "no_objects.json"
    no_objects.write_text(json.dumps({"imgs": {"3": {"path": "test/3.jpg"}}}))
    with pytest.raises(TT100KFormatError, match=r"imgs\['3'\]: missing key 'objects'"):
        load_annotations(no_objects)


def test_bad_values_are_rejected_with_their_record(tmp_path):
    gt = annos({"1": [obj("pl40", box(0, 0, 10, 10))]})
    nan_score = tmp_path / "nan_score.json"
    nan_score.write_text(
        '{"imgs": {"1": {"objects": [{"category": "pl40", "score": NaN, "bbox": '
        '{"xmin": 0, "ymin": 0, "xmax": 10, "ymax": 10}}]}}}'
    )
    with pytest.raises(TT100KFormatError, match=r"nan_score\.json: .*'score' must be a finite"):
        load_results(nan_score)
    # In-memory mappings get the same checks when evaluated.
    bad = [
        (obj("pl40", box(0, 0, 10, float("inf")), 0.5), r"bbox\['ymax'\] must be a finite number"),
        (obj("pl40", box(0, 0, "10", 10), 0.5), r"bbox\['xmax'\] must be a finite number"),
        (obj("pl40", box(True, 0, 10, 10), 0.5), r"bbox\['xmin'\] must be a finite number"),
        (obj(3, box(0, 0, 10, 10), 0.5), r"'category' must be a string"),
        (obj("pl40", box(0, 0, 10, 10), float("nan")), r"'score' must be a finite number"),
    ]
    for o, message in bad:
        res = annos({"1": [obj("pl40", box(0, 0, 10, 10), 0.9), o]}, gt=False)
        with pytest.raises(TT100KFormatError, match=r"<results>: imgs\['1'\]\.objects\[1\]: "):
            evaluate_tt100k(gt, res)
        with pytest.raises(TT100KFormatError, match=message):
            evaluate_tt100k(gt, res)
    # Numbers of other types are accepted (numpy scalars from in-memory results).
    res = annos(
        {"1": [obj("pl40", box(np.float32(0), 0, np.int16(10), 10), np.float64(0.9))]}, gt=False
    )
    assert counts(evaluate_tt100k(gt, res)) == (1, 1, 1)


def test_load_ids(tmp_path):
    gt = annos({"1": [], "2": []})
    ids = tmp_path / "ids.txt"
    ids.write_text("2\n1\n\n")
    assert load_ids(ids, gt) == ["2", "1"]
    ids.write_text("1\n3\n")
    with pytest.raises(TT100KFormatError, match=r"ids\.txt: 1 image id\(s\) absent .* line 2"):
        load_ids(ids, gt)
    ids.write_text("1\n2\n1\n")
    with pytest.raises(TT100KFormatError, match=r"ids\.txt:3: image id '1' already listed"):
        load_ids(ids)


def test_format_table_layout():
    gt, res = random_data(5, num_images=10)
    r = evaluate_tt100k(gt, res, types="all")
    lines = format_table(r, "FeatSR").splitlines()
    assert len(lines) == 4
    assert [c.strip() for c in lines[0].split("|")] == [
        "Model",
        "Small",
        "Medium",
        "Large",
        "Overall",
    ]
    assert [c.split() for c in lines[1].split("|")[1:]] == [["Rec.", "Acc.", "F1"]] * 4
    values = [c.split() for c in lines[3].split("|")]
    assert values[0] == ["FeatSR"]
    for cell, name in zip(values[1:], ("small", "medium", "large", "all")):
        assert cell == [f"{100 * r[name][k]:.1f}" for k in ("recall", "accuracy", "f1")]


def _write_cli_inputs(tmp_path: Path) -> tuple[Path, Path, Path, dict[str, Any]]:
    gt, res = random_data(6, num_images=12)
    gt_path, res_path, ids_path = tmp_path / "gt.json", tmp_path / "res.json", tmp_path / "ids.txt"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps(res))
    ids = list(gt["imgs"])[:8]
    ids_path.write_text("\n".join(ids) + "\n")
    expected = summarize(evaluate_tt100k(gt, res, img_ids=ids, iou=0.5, min_score=0.3, types="all"))
    return gt_path, res_path, ids_path, expected


def test_cli_end_to_end(tmp_path):
    gt_path, res_path, ids_path, expected = _write_cli_inputs(tmp_path)
    out_json, out_png = tmp_path / "out" / "metrics.json", tmp_path / "out" / "curve.png"
    out_json.parent.mkdir()
    cmd = [sys.executable, CLI, "--gt", str(gt_path)]
    cmd += ["--results", str(res_path), "--ids", str(ids_path), "--iou", "0.5"]
    cmd += ["--minscore", "0.3", "--types", "all", "--json", str(out_json), "--curve", str(out_png)]
    env = dict(os.environ, PYTHONPATH=REPO)  # this checkout's featsr_d2, as the tests import it
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Overall" in proc.stdout and "res" in proc.stdout.splitlines()[-1]
    assert json.loads(out_json.read_text()) == expected
    assert set(expected) == {"all", "small", "medium", "large", "per_class"}
    assert set(expected["all"]) == {"recall", "accuracy", "f1"}
    assert out_png.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in out_json.parent.iterdir()) == ["curve.png", "metrics.json"]


def test_cli_reports_bad_input(tmp_path, capsys):
    gt_path, res_path, _, _ = _write_cli_inputs(tmp_path)
    ids = tmp_path / "missing_ids.txt"
    ids.write_text("does-not-exist\n")
    assert main(["--gt", str(gt_path), "--results", str(res_path), "--ids", str(ids)]) == 2
    assert "missing_ids.txt" in capsys.readouterr().err
    res_path.write_text(json.dumps(annos({"0": [obj("pl40", box(0, 0, 1, 1))]}, gt=False)))
    assert main(["--gt", str(gt_path), "--results", str(res_path)]) == 2
    assert "no 'score'" in capsys.readouterr().err
