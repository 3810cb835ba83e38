"""The trainer evaluates TT100K-format datasets with the TT100K protocol, every other one (VOC,
COCO, ...) with COCO-style AP including the size breakdown."""

import copy

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, Instances

from featsr_d2.config import get_featsr_cfg
from featsr_d2.core.tt100k_categories import TYPE45
from featsr_d2.engine import build_featsr_evaluator
from featsr_d2.evaluation import TT100KEvaluator


def _perfect_predictions(dicts):
    outputs = []
    for d in dicts:
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(torch.tensor([a["bbox"] for a in d["annotations"]]).reshape(-1, 4))
        inst.scores = torch.ones(len(d["annotations"]))
        inst.pred_classes = torch.tensor(
            [a["category_id"] for a in d["annotations"]], dtype=torch.long
        )
        outputs.append({"instances": inst})
    return outputs


def test_tt100k_dataset_gets_tt100k_protocol(tiny_tt100k, tmp_path):
    _, test_name, _ = tiny_tt100k
    cfg = get_featsr_cfg()
    evaluator = build_featsr_evaluator(cfg, test_name, str(tmp_path))
    assert isinstance(evaluator, TT100KEvaluator)


def test_other_datasets_get_coco_style_ap(tiny_tt100k, tmp_path):
    """A VOC-like dataset (no TT100K metadata) is scored with AP, AP50, AP75 and AP-S/M/L."""
    _, test_name, _ = tiny_tt100k
    dicts = copy.deepcopy(DatasetCatalog.get(test_name))
    name = "_test_voc_like"
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=list(TYPE45), evaluator_type="pascal_voc")
    try:
        evaluator = build_featsr_evaluator(get_featsr_cfg(), name, str(tmp_path))
        assert isinstance(evaluator, COCOEvaluator)
        evaluator.reset()
        evaluator.process([{"image_id": d["image_id"]} for d in dicts], _perfect_predictions(dicts))
        bbox = evaluator.evaluate()["bbox"]
        assert {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(bbox)
        assert bbox["AP"] == pytest.approx(100.0) and bbox["AP50"] == pytest.approx(100.0)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
