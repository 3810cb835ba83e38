"""FeatSRTT100KMetric gives the Detectron2 TT100KEvaluator's numbers: one set of detections on the
tiny synthetic TT100K, fed to both (the mmdet side through its config's test pipeline and
mmengine's Evaluator), gives equal results files, equal Table 1 numbers and equal per-class
tables; and its errors name the fix."""

import json
import os

import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, Instances

from featsr_d2.core.tt100k_categories import TYPE45
from featsr_d2.core.tt100k_protocol import evaluate_tt100k
from featsr_d2.core.tt100k_report import format_table
from featsr_d2.evaluation import TT100KEvaluator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TT100K_CONFIG = os.path.join(REPO, "configs", "mmdet", "_base_", "datasets", "tt100k.py")


def _detections(dicts):
    """Per image: boxes, scores, labels, a mix of true positives (exact and shifted), wrong
    classes, low scores, false positives of every size, a non-finite box, and one image with no
    detection at all."""
    out = []
    for k, d in enumerate(dicts):
        boxes, scores, labels = [], [], []
        if k == 0:
            out.append((boxes, scores, labels))
            continue
        for j, ann in enumerate(d["annotations"]):
            x0, y0, x1, y1 = ann["tt100k_bbox"]
            label = ann["category_id"]
            case = (k + j) % 5
            if case == 0:  # exact: a true positive
                boxes.append([x0, y0, x1, y1]), scores.append(0.9), labels.append(label)
            elif case == 1:  # shifted by a pixel: still IoU > 0.5
                boxes.append([x0 + 1, y0, x1 + 1, y1]), scores.append(0.7), labels.append(label)
            elif case == 2:  # the wrong class: a false positive and a miss
                boxes.append([x0, y0, x1, y1]), scores.append(0.8)
                labels.append((label + 1) % len(TYPE45))
            elif case == 3:  # below min_score: ignored, a miss
                boxes.append([x0, y0, x1, y1]), scores.append(0.3), labels.append(label)
            # case 4: not detected
        for side, score in ((12.0, 0.95), (50.0, 0.6), (110.0, 0.55)):  # a false positive per bin
            boxes.append([1.0, 1.0, 1.0 + side, 1.0 + side]), scores.append(score)
            labels.append(k % len(TYPE45))
        if k == 1:
            boxes.append([float("nan"), 0.0, 5.0, 5.0]), scores.append(0.9), labels.append(0)
        out.append((boxes, scores, labels))
    return out


def _detectron2_evaluation(test_name, dicts, detections, output_dir):
    evaluator = TT100KEvaluator(test_name, str(output_dir), save_plots=False, distributed=False)
    evaluator.reset()
    for d, (boxes, scores, labels) in zip(dicts, detections):
        instances = Instances((d["height"], d["width"]))
        instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        instances.scores = torch.tensor(scores, dtype=torch.float32)
        instances.pred_classes = torch.tensor(labels, dtype=torch.int64)
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": instances}])
    return evaluator.evaluate()["tt100k"]


def _mmdet_test_dataset(root):
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import featsr_d2.mmdet  # noqa: F401  (registers the dataset and the metric)

    register_all_modules()
    cfg = Config.fromfile(TT100K_CONFIG)
    return DATASETS.build({**cfg.test_dataloader.dataset, "data_root": root}), cfg


def _mmdet_evaluation(dataset, cfg, detections, output_dir):
    from mmengine.evaluator import Evaluator
    from mmengine.structures import InstanceData

    evaluator = Evaluator({**cfg.test_evaluator, "output_dir": str(output_dir)})
    evaluator.dataset_meta = dataset.metainfo
    for k, (boxes, scores, labels) in enumerate(detections):
        packed = dataset[k]  # the config's test pipeline: resized input, boxes as annotated
        sample = packed["data_samples"]
        sample.pred_instances = InstanceData(
            bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            scores=torch.tensor(scores, dtype=torch.float32),
            labels=torch.tensor(labels, dtype=torch.int64),
        )
        evaluator.process(data_samples=[sample], data_batch={"inputs": [packed["inputs"]]})
    return evaluator.evaluate(len(dataset))


def test_the_metric_equals_the_detectron2_evaluator(tiny_tt100k, tmp_path):
    _, test_name, root = tiny_tt100k
    dicts = DatasetCatalog.get(test_name)
    detections = _detections(dicts)
    d2 = _detectron2_evaluation(test_name, dicts, detections, tmp_path / "d2")
    dataset, cfg = _mmdet_test_dataset(root)
    assert [str(d["image_id"]) for d in dicts] == [
        dataset.get_data_info(k)["img_id"] for k in range(len(dataset))
    ]
    mm = _mmdet_evaluation(dataset, cfg, detections, tmp_path / "mm")

    assert {k.removeprefix("tt100k/"): v for k, v in mm.items()} == d2
    assert sorted(mm) == sorted(f"tt100k/{k}" for k in d2) and len(d2) == 12
    # The detections are no degenerate case: some found, some missed, some false, in small signs.
    assert 0 < d2["all_recall"] < 100 and 0 < d2["all_accuracy"] < 100
    assert 0 < d2["small_recall"] < 100

    # The same results files, and the same tables (per class too) from each side's ground truth.
    results = [json.loads((tmp_path / s / "tt100k_results.json").read_text()) for s in ("d2", "mm")]
    assert results[0] == results[1]
    assert sum(len(r["objects"]) for r in results[0]["imgs"].values()) > len(dicts)
    gt_d2 = {
        str(d["image_id"]): {
            "objects": [
                {
                    "category": TYPE45[a["category_id"]],
                    "bbox": dict(zip(("xmin", "ymin", "xmax", "ymax"), a["tt100k_bbox"])),
                }
                for a in d["annotations"]
            ]
        }
        for d in dicts
    }
    gt_mm = {
        dataset.get_data_info(k)["img_id"]: {"objects": dataset.get_data_info(k)["tt100k_objects"]}
        for k in range(len(dataset))
    }
    assert gt_d2 == gt_mm
    tables = [
        evaluate_tt100k({"imgs": gt}, r, min_score=0.5) for gt, r in zip((gt_d2, gt_mm), results)
    ]
    assert tables[0] == tables[1]
    assert format_table(tables[0], "x") == format_table(tables[1], "x")
    assert any(0 < m["recall"] < 1 for m in tables[0]["per_class"].values())


def test_the_metric_names_what_is_missing(tiny_tt100k, tmp_path):
    from mmengine.structures import InstanceData

    from featsr_d2.mmdet.tt100k_metric import FeatSRTT100KMetric

    with pytest.raises(ValueError, match="unknown class set"):
        FeatSRTT100KMetric(types="type99")
    with pytest.raises(ValueError, match="save_curve needs an output_dir"):
        FeatSRTT100KMetric(save_curve=True)
    metric = FeatSRTT100KMetric()
    pred = InstanceData(
        bboxes=torch.zeros(1, 4), scores=torch.ones(1), labels=torch.tensor([45])
    ).to_dict()
    with pytest.raises(ValueError, match="dataset_meta"):
        metric.process({}, [{"img_id": "1", "pred_instances": pred, "tt100k_objects": []}])
    metric.dataset_meta = {"classes": TYPE45}
    with pytest.raises(KeyError, match="meta_keys"):
        metric.process({}, [{"img_id": "1", "pred_instances": pred}])
    with pytest.raises(ValueError, match="num_classes"):
        metric.process({}, [{"img_id": "1", "pred_instances": pred, "tt100k_objects": []}])
    with pytest.raises(ValueError, match="evaluated twice"):
        metric.compute_metrics([("1", [], [], 0), ("1", [], [], 0)])


def test_the_metric_writes_the_curve(tmp_path):
    from featsr_d2.mmdet.tt100k_metric import FeatSRTT100KMetric

    metric = FeatSRTT100KMetric(output_dir=str(tmp_path), save_curve=True, types="all")
    gt = [{"category": "pl40", "bbox": {"xmin": 0, "ymin": 0, "xmax": 20, "ymax": 20}}]
    det = [dict(gt[0], score=0.9)]
    scores = metric.compute_metrics([("1", gt, det, 0), ("2", gt, [], 0)])
    assert scores["small_recall"] == 50.0 and scores["small_accuracy"] == 100.0
    assert (tmp_path / "tt100k_curve.png").stat().st_size > 0
    assert json.loads((tmp_path / "tt100k_results.json").read_text())["imgs"]["2"] == {
        "objects": []
    }
