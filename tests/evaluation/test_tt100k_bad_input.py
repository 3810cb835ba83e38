"""Bad input at evaluation time: the loader's policy reaches the evaluator, duplicates, the
warnings about silent numbers, and the command line's clear errors."""

from __future__ import annotations

import json
import logging
import os
import runpy
import uuid

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances
from PIL import Image

from featsr_d2.core.tt100k_categories import TYPE45
from featsr_d2.core.tt100k_protocol import check_results
from featsr_d2.data import TT100KFormatError, register_tt100k_instances, set_bad_record_policy
from featsr_d2.evaluation import TT100KEvaluator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
cli_main = runpy.run_path(os.path.join(REPO, "tools", "tt100k_eval.py"))["main"]


def _box(x0, y0, x1, y1):
    return {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1}


GOOD = {"category": "pl40", "bbox": _box(4, 4, 24, 24)}
NAN_I2 = {"category": "i2", "bbox": _box(1, 1, np.nan, 9)}
TRUE_I2 = {"category": "i2", "bbox": _box(True, 1, 30, 30)}
I2 = {"category": "i2", "bbox": _box(30, 4, 50, 24)}
OTHER = {"category": "zz_other", "bbox": _box(1, 1, 9, 9)}


def _tree(root, imgs, *, train_ids, test_ids, types=("pl40", "i2", "zz_other")):
    for split in ("train", "test"):
        (root / split).mkdir(exist_ok=True)
    for rec in imgs.values():
        Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(root / rec["path"])
    (root / "annotations.json").write_text(json.dumps({"types": list(types), "imgs": imgs}))
    (root / "train" / "ids.txt").write_text("".join(f"{i}\n" for i in train_ids))
    (root / "test" / "ids.txt").write_text("".join(f"{i}\n" for i in test_ids))


@pytest.fixture
def register(tmp_path):
    names = []

    def _register(split, policy, class_set="type45"):
        name = f"_test_tt100k_bad_{uuid.uuid4().hex[:8]}"
        register_tt100k_instances(name, str(tmp_path), split, class_set=class_set)
        set_bad_record_policy([name], policy)
        names.append(name)
        return name

    yield _register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _instances(boxes, classes, scores=None):
    inst = Instances((48, 64))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor(scores or [0.9] * len(classes), dtype=torch.float32)
    inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
    return inst


def _perfect(evaluator, name, classes):
    """Feed the evaluator each image of the dataset as inference would, detecting its gt exactly."""
    evaluator.reset()
    for d in DatasetCatalog.get(name):
        boxes = [a["bbox"] for a in d["annotations"]]
        cls = [a["category_id"] for a in d["annotations"]]
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": _instances(boxes, cls)}])
    return evaluator.evaluate()["tt100k"]


def test_skip_policy_reaches_evaluation(tmp_path, register):
    imgs = {
        # A training image with a NaN coordinate: evaluation of the test split must not read it.
        "1": {"path": "train/1.jpg", "objects": [NAN_I2]},
        # A test image with a coordinate given as `true`: skipped by the loader, so no miss.
        "2": {"path": "test/2.jpg", "objects": [TRUE_I2, GOOD]},
        "3": {"path": "test/3.jpg", "objects": [GOOD]},
    }  # fmt: skip
    _tree(tmp_path, imgs, train_ids=[1], test_ids=[2, 3])
    name = register("test", "skip")
    metrics = _perfect(TT100KEvaluator(name, None), name, TYPE45)
    assert metrics["all_recall"] == pytest.approx(100.0)
    assert metrics["all_accuracy"] == pytest.approx(100.0)
    strict = register("test", "error")
    with pytest.raises(TT100KFormatError, match=r"imgs\['2'\]\.objects\[0\]: bbox\['xmin'\]"):
        TT100KEvaluator(strict, None)


def test_duplicate_test_id_is_not_counted_twice(tmp_path, register):
    imgs = {
        "2": {"path": "test/2.jpg", "objects": [GOOD]},
        "3": {"path": "test/3.jpg", "objects": [GOOD, I2]},
    }  # fmt: skip
    _tree(tmp_path, imgs, train_ids=[], test_ids=[2, 3, 2])
    name = register("test", "skip")
    metrics = _perfect(TT100KEvaluator(name, None), name, TYPE45)
    assert metrics["all_accuracy"] == pytest.approx(100.0)
    assert metrics["all_recall"] == pytest.approx(100.0)
    with pytest.raises(TT100KFormatError, match=r"ids\.txt:3: image id 2 is already listed"):
        TT100KEvaluator(register("test", "error"), None)


def test_evaluator_refuses_a_dataset_listing_an_image_twice(register):
    name = f"_test_tt100k_dup_{uuid.uuid4().hex[:8]}"
    dicts = [{"file_name": "a.jpg", "image_id": 5, "annotations": []}] * 2
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=list(TYPE45), evaluator_type="tt100k")
    try:
        with pytest.raises(ValueError, match=r"lists image id '5' twice"):
            TT100KEvaluator(name, None)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_silent_numbers_are_warned_with_counts(tmp_path, register, caplog):
    imgs = {
        "2": {"path": "test/2.jpg", "objects": [GOOD]},
        "3": {"path": "test/3.jpg", "objects": [OTHER]},
    }  # fmt: skip
    _tree(tmp_path, imgs, train_ids=[], test_ids=[2, 3])
    name = register("test", "error", class_set="all")  # classes pl40, i2, zz_other
    evaluator = TT100KEvaluator(name, None, types="type45")
    evaluator.reset()
    evaluator.process(
        [{"image_id": 2}, {"image_id": 3}],
        [
            {"instances": _instances([[4, 4, 24, 24], [20, 20, 10, 10]], [0, 0])},  # 1 inverted
            {"instances": _instances([[1, 1, 9, 9], [2, 2, 8, 8]], [2, 2])},  # outside type45
        ],
    )
    with caplog.at_level(logging.WARNING, logger="featsr_d2.evaluation.tt100k_evaluator"):
        evaluator.evaluate()
    assert "2 detections in 1 categories outside the class set type45" in caplog.text
    assert "1 detections have an inverted or empty box" in caplog.text


def test_check_results_other_split_and_empty_ground_truth():
    gt = {
        "imgs": {
            "1": {"objects": []},
            "2": {"objects": [{"category": "zz", "bbox": _box(0, 0, 5, 5)}]},
        }
    }
    det = {"imgs": {"7": {"objects": []}, "8": {"objects": []}}}
    problems = check_results(gt, det, img_ids=["1", "2"])
    assert any("none of the 2 result images is among the 2 evaluated" in p for p in problems)
    assert any("hold no ground truth in the class set: recall is 1" in p for p in problems)
    det = {"imgs": {"1": {"objects": [{**GOOD, "score": 0.5}]}, "9": {"objects": []}}}
    problems = check_results({"imgs": {"1": {"objects": [GOOD]}}}, det)
    assert problems == ["1 of 2 result images are not in the evaluated split and are ignored"]


def test_command_line_errors(tmp_path, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"imgs": {"1": {"objects": [GOOD]}}}))
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"imgs": {"1": {"objects": [{**GOOD, "score": 0.9}]}}}))
    for iou in ("nan", "1.5", "-0.1"):
        with pytest.raises(SystemExit) as e:
            cli_main(["--gt", str(gt), "--results", str(res), "--iou", iou])
        assert e.value.code == 2
        assert "--iou" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["--gt", str(gt), "--results", str(res), "--minscore", "nan"])
    assert "--minscore" in capsys.readouterr().err
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = blocker / "out.json"
    assert cli_main(["--gt", str(gt), "--results", str(res), "--json", str(out)]) == 2
    assert f"--json {out}: cannot write" in capsys.readouterr().err
    gt.write_bytes(b'{"imgs": {"\xff": {}}}')
    assert cli_main(["--gt", str(gt), "--results", str(res)]) == 2
    assert "gt.json: not UTF-8" in capsys.readouterr().err


def test_evaluator_removes_temporaries_of_a_killed_run(tmp_path, register, caplog):
    _tree(tmp_path, {"2": {"path": "test/2.jpg", "objects": [GOOD]}}, train_ids=[], test_ids=[2])
    out = tmp_path / "inference"
    out.mkdir()
    stale = out / ".featsr_d2-tmp.tt100k_results.json.otherhost-1.abcdefgh.tmp"
    users = out / ".tt100k_results.json.abcdefgh.tmp"  # no project prefix: never removed
    old = 3 * 24 * 3600
    for path in (stale, users):
        path.write_text("{")
        os.utime(path, (path.stat().st_mtime - old, path.stat().st_mtime - old))
    TT100KEvaluator(register("test", "error"), str(out))
    assert not stale.exists() and users.exists()


def test_non_finite_detections_are_dropped_and_counted(tmp_path, register, caplog):
    _tree(tmp_path, {"2": {"path": "test/2.jpg", "objects": [GOOD]}}, train_ids=[], test_ids=[2])
    evaluator = TT100KEvaluator(register("test", "error"), None)
    evaluator.reset()
    boxes = [[4, 4, 24, 24], [float("nan"), 1, 5, 5], [1, 1, float("inf"), 5]]
    pl40 = TYPE45.index("pl40")
    evaluator.process([{"image_id": 2}], [{"instances": _instances(boxes, [pl40] * 3)}])
    with caplog.at_level(logging.WARNING, logger="featsr_d2.evaluation.tt100k_evaluator"):
        metrics = evaluator.evaluate()["tt100k"]
    assert "2 detections with a non-finite box or score were dropped" in caplog.text
    assert metrics["all_accuracy"] == pytest.approx(100.0)


def test_command_line_validates_only_the_evaluated_split(tmp_path, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"imgs": {"1": {"objects": [GOOD]}, "2": {"objects": [NAN_I2]}}}))
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"imgs": {"1": {"objects": [{**GOOD, "score": 0.9}]}}}))
    ids = tmp_path / "ids.txt"
    ids.write_text("1\n")
    assert cli_main(["--gt", str(gt), "--results", str(res), "--ids", str(ids)]) == 0
    assert "100.0" in capsys.readouterr().out
    assert cli_main(["--gt", str(gt), "--results", str(res)]) == 2  # every image evaluated
    assert "gt.json: imgs['2'].objects[0]: bbox['xmax'] must be a finite number" in (
        capsys.readouterr().err
    )


def test_detections_outside_every_image_are_warned_with_counts(tmp_path, capsys):
    """Issue 22.6: detections with negative coordinates (recall 0, exit status 0) are named."""
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"types": ["pl40", "i2"], "imgs": {"1": {"objects": [GOOD, I2]}}}))
    shifted = [{**o, "bbox": _box(*(v - 100 for v in o["bbox"].values())), "score": 0.9}
               for o in (GOOD, I2)]  # fmt: skip
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"imgs": {"1": {"objects": shifted}}}))
    assert cli_main(["--gt", str(gt), "--results", str(res)]) == 0
    err = capsys.readouterr().err
    assert "warning: 2 of the 2 detections lie outside every image" in err
    partly = [{**GOOD, "bbox": _box(-5, -5, 10, 10), "score": 0.9}]  # overlaps its image: no
    problems = check_results(json.loads(gt.read_text()), {"imgs": {"1": {"objects": partly}}})
    assert not any("outside every image" in p for p in problems)
