"""TT100KEvaluator on a tiny registered dataset, fed with Detectron2 Instances."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from featsr_d2.core.tt100k import load_results
from featsr_d2.evaluation import TT100KEvaluator, evaluate_tt100k
from featsr_d2.evaluation.visualize import FN_COLOR, FP_COLOR, TP_COLOR

CLASSES = ["pl40", "i2", "zz9"]  # zz9 is outside type45


def _box(x0: float, y0: float, x1: float, y1: float) -> dict[str, float]:
    return {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1}


GT = {
    "types": CLASSES,
    "imgs": {
        "10": {
            "path": "test/10.jpg",
            "id": 10,
            "objects": [
                {"category": "pl40", "bbox": _box(0, 0, 20, 20)},  # small: found
                {"category": "i2", "bbox": _box(100, 100, 150, 150)},  # medium: found
                {"category": "zz9", "bbox": _box(300, 300, 310, 310)},  # outside type45
            ],
        },
        "11": {
            "path": "test/11.jpg",
            "id": 11,
            "objects": [{"category": "i2", "bbox": _box(0, 0, 200, 120)}],  # large: missed
        },
        "12": {  # in the dataset, never processed: its gt counts as a miss
            "path": "test/12.jpg",
            "id": 12,
            "objects": [{"category": "pl40", "bbox": _box(0, 0, 10, 10)}],
        },
        "13": {  # not in the dataset: ignored
            "path": "other/13.jpg",
            "id": 13,
            "objects": [{"category": "pl40", "bbox": _box(0, 0, 10, 10)}],
        },
    },
}


def _instances(boxes: list[list[float]], scores: list[float], classes: list[int]) -> Instances:
    inst = Instances((2048, 2048))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
    return inst


def _dataset_dict(root: Path, img_id: int) -> dict:
    """The Detectron2 dict of a GT image, as the loader (class set "all") returns it."""
    annotations = [
        {
            "bbox": [obj["bbox"][k] for k in ("xmin", "ymin", "xmax", "ymax")],
            "bbox_mode": BoxMode.XYXY_ABS,
            "category_id": CLASSES.index(obj["category"]),
        }
        for obj in GT["imgs"][str(img_id)]["objects"]
    ]
    return {
        "file_name": str(root / "test" / f"{img_id}.jpg"),
        "image_id": img_id,
        "height": 2048,
        "width": 2048,
        "annotations": annotations,
    }


@pytest.fixture
def dataset(tmp_path: Path) -> Iterator[str]:
    json_file = tmp_path / "annotations.json"
    json_file.write_text(json.dumps(GT))
    (tmp_path / "test").mkdir()
    for i in (10, 11, 12):  # grey images for the detection pictures
        cv2.imwrite(str(tmp_path / "test" / f"{i}.jpg"), np.full((640, 640, 3), 128, np.uint8))
    name = f"featsr_test_tt100k_{uuid.uuid4().hex[:8]}"
    dicts = [_dataset_dict(tmp_path, i) for i in (10, 11, 12)]
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=CLASSES, evaluator_type="tt100k")
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _run(evaluator: TT100KEvaluator) -> dict:
    evaluator.reset()
    inputs = [{"image_id": 10}, {"image_id": "11"}]
    outputs = [
        {
            "instances": _instances(
                [[0, 0, 20, 19], [100, 100, 150, 150], [300, 300, 310, 310], [500, 0, 540, 30]],
                [0.9, 0.6, 0.9, 0.4],  # the last is below min_score 0.5
                [0, 1, 2, 0],
            )
        },
        {"instances": _instances([[0, 0, 200, 120], [0, 300, 60, 340]], [0.3, 0.7], [1, 1])},
    ]
    evaluator.process(inputs, outputs)
    return evaluator.evaluate()


def test_evaluator_end_to_end(dataset, tmp_path):
    out_dir = tmp_path / "inference"
    results = _run(TT100KEvaluator(dataset, str(out_dir)))
    assert list(results) == ["tt100k"]
    m = results["tt100k"]
    assert len(m) == 12 and list(m)[:3] == ["small_f1", "small_recall", "small_accuracy"]
    # small: 2 gt (image 10's pl40, image 12's pl40), 1 found; 1 kept detection.
    assert m["small_recall"] == pytest.approx(50.0) and m["small_accuracy"] == pytest.approx(100.0)
    assert m["small_f1"] == pytest.approx(200 / 3)
    # medium: 1 gt found; 2 kept detections (the 60-pixel one in image 11 is a false positive).
    assert m["medium_recall"] == pytest.approx(100.0) and m["medium_accuracy"] == pytest.approx(
        50.0
    )
    # large: 1 gt, its only detection scores 0.3 < 0.5: recall 0, accuracy 1 (no detections).
    assert m["large_recall"] == 0.0 and m["large_accuracy"] == pytest.approx(100.0)
    assert m["large_f1"] == 0.0
    # all: 2 of 4 gt found, 2 of 3 detections right.
    assert m["all_recall"] == pytest.approx(50.0) and m["all_accuracy"] == pytest.approx(200 / 3)

    saved = load_results(out_dir / "tt100k_results.json")
    assert sorted(saved["imgs"]) == ["10", "11"]
    first = saved["imgs"]["10"]["objects"][0]
    assert first["category"] == "pl40" and first["bbox"] == _box(0, 0, 20, 19)
    assert first["score"] == pytest.approx(0.9)
    # The saved file re-evaluates to the same numbers with the pure function.
    again = evaluate_tt100k(GT, saved, img_ids=["10", "11", "12"], min_score=0.5)
    assert again["all"]["recall"] * 100 == pytest.approx(m["all_recall"])
    assert (out_dir / "tt100k_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == ["tt100k_curve.png", "tt100k_detections.png", "tt100k_results.json"]
    picture = cv2.cvtColor(cv2.imread(str(out_dir / "tt100k_detections.png")), cv2.COLOR_BGR2RGB)
    colors = {tuple(c) for c in picture.reshape(-1, 3)}
    assert {TP_COLOR, FP_COLOR, FN_COLOR} <= colors  # hits, false alarms and misses are drawn


def test_evaluator_options_and_no_output_dir(dataset, tmp_path):
    results = _run(TT100KEvaluator(dataset, None, min_score=0.0, types="all", distributed=False))[
        "tt100k"
    ]
    # With every class and score: zz9 is found too, and image 11's large i2 is matched.
    assert results["all_recall"] == pytest.approx(100 * 4 / 5)
    assert results["all_accuracy"] == pytest.approx(100 * 4 / 6)
    assert results["large_recall"] == pytest.approx(100.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations.json", "test"]


def test_evaluator_without_predictions_and_bad_metadata(dataset):
    evaluator = TT100KEvaluator(dataset)
    evaluator.reset()
    assert evaluator.evaluate() == {}
    # An image processed without detections is a valid prediction set: everything is missed.
    evaluator.process([{"image_id": 12}], [{"instances": _instances([], [], [])}])
    results = evaluator.evaluate()["tt100k"]
    assert results["all_recall"] == 0.0 and results["all_accuracy"] == pytest.approx(100.0)

    with pytest.raises(ValueError, match="unknown class set"):
        TT100KEvaluator(dataset, types="type99")
    coco, missing = f"{dataset}_coco", f"{dataset}_no_meta"
    try:
        MetadataCatalog.get(coco).set(
            json_file="x.json", thing_classes=CLASSES, evaluator_type="coco"
        )
        with pytest.raises(ValueError, match="evaluator_type 'coco'"):
            TT100KEvaluator(coco)
        with pytest.raises(ValueError, match="thing_classes"):
            TT100KEvaluator(missing)
    finally:
        MetadataCatalog.remove(coco)
        MetadataCatalog.remove(missing)
