"""tools/eval_lr_detection.py on the tiny dataset: every row, PSNR against an independent
computation, the evaluators' results, the pictures; the LR row's box mapping; the VOC table."""

import json
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from torch import nn

from featsr_d2.config import get_detector_cfg, get_featsr_cfg
from featsr_d2.core.degradations import BicubicDownscale, JPEGCompression
from featsr_d2.core.layers import imresize_np
from featsr_d2.evaluation.lr_detection_report import format_lr_detection_table
from featsr_d2.evaluation.padded_lr_detector import PaddedLRDetector
from featsr_d2.evaluation.sr_metrics import psnr
from featsr_d2.modeling.sr import build_sr_network

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYNTH = os.path.join(REPO, "configs", "tdsr", "tdsr_dbpn_x4_synth.yaml")
DETECTOR_OPTS = [
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "64", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread_in_repo")


@pytest.fixture
def tool_run(tiny_tt100k, tmp_path):
    """Weights for the tool: a (random) detector, a tiny D-DBPN as an SR checkpoint and as the SR
    stage of a TDSR checkpoint; the tool's KEY VALUE overrides."""
    _, test_name, _ = tiny_tt100k
    opts = [
        "MODEL.DEVICE", "cpu", "MODEL.TDSR.DETECTOR_OPTS", str(DETECTOR_OPTS),
        "MODEL.SR.DBPN.FEAT", "16", "MODEL.SR.DBPN.BASE_FILTER", "8", "MODEL.SR.DBPN.NUM_STAGES",
        "2", "MODEL.SR.WEIGHTS", "", "DATASETS.TEST", f"('{test_name}',)",
        "DATALOADER.NUM_WORKERS", "0", "TEST.TT100K.MIN_SCORE", "0.0",
    ]  # fmt: skip
    cfg = get_featsr_cfg(SYNTH, opts)
    torch.manual_seed(0)
    detector = build_model(get_detector_cfg(cfg))
    torch.save({"model": detector.state_dict()}, tmp_path / "detector.pth")
    sr = build_sr_network(cfg)
    torch.save({"model": sr.state_dict()}, tmp_path / "sr.pth")
    tdsr = {f"sr.{k}": v + 0.01 for k, v in sr.state_dict().items()}
    tdsr.update({f"detector.{k}": v for k, v in detector.state_dict().items()})
    torch.save({"model": tdsr, "iteration": 0}, tmp_path / "tdsr.pth")
    opts += ["MODEL.TDSR.DETECTOR_WEIGHTS", str(tmp_path / "detector.pth")]
    return opts, cfg, tmp_path


def _run_tool(argv):
    import runpy

    module = runpy.run_path(os.path.join(REPO, "tools", "eval_lr_detection.py"))
    return module["main"](argv)


def test_table_tool_on_the_tiny_dataset(tool_run, tiny_tt100k):
    opts, cfg, tmp = tool_run
    out = tmp / "table"
    results = _run_tool([
        "--config", SYNTH, "--row", f"SR=@{tmp / 'sr.pth'}",
        "--row", f"TDSR={SYNTH}@{tmp / 'tdsr.pth'}", "--num-vis", "2", "--output", str(out), *opts,
    ])  # fmt: skip
    rows = results["rows"]
    assert list(rows) == ["HR", "LR", "Bicubic", "SR", "TDSR"]
    num_images = len(DatasetCatalog.get(tiny_tt100k[1]))
    assert results["num_images"] == num_images
    assert rows["HR"]["psnr"] is None and rows["LR"]["psnr"] is None
    assert rows["SR"]["psnr"] != rows["TDSR"]["psnr"]  # the TDSR checkpoint's SR stage was loaded
    for row in rows.values():
        for size in ("small", "medium", "large", "all"):
            assert 0.0 <= row["metrics"]["tt100k"][f"{size}_recall"] <= 100.0
        assert {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(row["metrics"]["bbox"])

    # Bicubic's PSNR, computed here without the tool: MATLAB bicubic down and up of each HR image.
    mapper = DatasetMapper(get_detector_cfg(cfg), is_train=False)
    scores = []
    for d in DatasetCatalog.get(tiny_tt100k[1]):
        hr = mapper(dict(d))["image"].permute(1, 2, 0).numpy()
        lr = BicubicDownscale(4)(np.ascontiguousarray(hr), np.random.default_rng(0))
        up = imresize_np(lr, 4.0)
        scores.append(psnr(up, hr, crop_border=4, y_channel=True))
    # (float32 in the model against float64 here: a few pixels may round the other way)
    assert rows["Bicubic"]["psnr"] == pytest.approx(np.mean(scores), abs=2e-3)

    table = (out / "table.md").read_text()
    for label in rows:
        assert f"| {label} |" in table
    with open(out / "results.json") as f:
        assert json.load(f)["rows"]["Bicubic"]["psnr"] == pytest.approx(rows["Bicubic"]["psnr"])
    pictures = sorted(os.listdir(out / "vis"))
    assert len(pictures) == 2 and all(p.endswith(".png") for p in pictures)

    # The CAJNN paper's setting: JPEG-compressed LR inputs cost bicubic PSNR.
    jpeg = _run_tool([
        "--config", SYNTH, "--jpeg-quality", "10", "--max-images", "2", "--num-vis", "0",
        "--output", str(tmp / "jpeg"), *opts,
    ])  # fmt: skip
    assert jpeg["num_images"] == 2
    assert jpeg["settings"]["degradations"] == "bicubic + jpeg (quality [10])"
    scores = []
    for d in DatasetCatalog.get(tiny_tt100k[1])[:2]:
        hr = np.ascontiguousarray(mapper(dict(d))["image"].permute(1, 2, 0).numpy())
        lr = JPEGCompression(10)(BicubicDownscale(4)(hr, None), None)
        scores.append(psnr(imresize_np(lr, 4.0), hr, crop_border=4, y_channel=True))
    assert jpeg["rows"]["Bicubic"]["psnr"] == pytest.approx(np.mean(scores), abs=2e-3)
    assert jpeg["rows"]["Bicubic"]["psnr"] < rows["Bicubic"]["psnr"]


class _FixedBoxDetector(nn.Module):
    """Returns one box, given in the coordinates of its input image, rescaled to height x width as
    Detectron2's detectors do; records its inputs."""

    input_format = "RGB"

    def __init__(self, box):
        super().__init__()
        self.box = box
        self.seen = []

    def forward(self, batched_inputs):
        out = []
        for x in batched_inputs:
            self.seen.append(x)
            h, w = x["image"].shape[-2:]
            sy, sx = x["height"] / h, x["width"] / w
            b = self.box
            inst = Instances((x["height"], x["width"]))
            inst.pred_boxes = Boxes(torch.tensor([[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]]))
            inst.scores = torch.tensor([0.9])
            inst.pred_classes = torch.tensor([3])
            out.append({"instances": inst})
        return out


def test_padded_lr_maps_boxes_back_to_the_hr_image():
    detector = _FixedBoxDetector([2.0, 4.0, 10.0, 12.0])  # in the 64 x 80 canvas
    model = PaddedLRDetector(detector, scale=4).eval()
    lr = torch.randint(0, 255, (3, 16, 20), dtype=torch.uint8)
    x = {"image": torch.zeros(3, 64, 80, dtype=torch.uint8), "lr_image": lr,
         "height": 128, "width": 160}  # fmt: skip
    (out,) = model([x])
    canvas = detector.seen[0]["image"]
    assert torch.equal(canvas[:, :16, :20], lr) and canvas[:, 16:].sum() == 0
    assert out["instances"].image_size == (128, 160)
    expected = torch.tensor([[2.0, 4.0, 10.0, 12.0]]) * 4 * 2  # x s, then 64 -> 128 px
    torch.testing.assert_close(out["instances"].pred_boxes.tensor, expected)

    far = PaddedLRDetector(_FixedBoxDetector([70.0, 60.0, 79.0, 63.0]), scale=4).eval()
    assert len(far([x])[0]["instances"]) == 0  # mapped outside the image: dropped


def test_voc_table_has_per_class_ap50():
    voc = {"AP": 40.0, "AP50": 60.0, "AP75": 38.0, "AP50-aeroplane": 70.0, "AP50-bicycle": 50.0}
    tdsr = dict(voc, AP50=62.2)
    results = {"rows": {"HR": {"psnr": None, "metrics": {"bbox": voc}},
                        "TDSR": {"psnr": 24.06, "metrics": {"bbox": tdsr}}}}  # fmt: skip
    table = format_lr_detection_table(results)
    assert "| HR | - | 60.00 |" in table and "| TDSR | 24.06 | 62.20 |" in table
    assert "| Method | aeroplane | bicycle |" in table and "| HR | 70.0 | 50.0 |" in table


def test_voc_evaluator_reports_ap50_per_class(tmp_path):
    """Two VOC-format images, one object each: exact detections of the first class only give
    AP50 100 for it, 0 for the other, 50 on average."""
    from detectron2.data import MetadataCatalog
    from detectron2.data.datasets import register_pascal_voc

    from featsr_d2.evaluation.voc_per_class import VOCPerClassEvaluator

    classes = ("aeroplane", "bicycle")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "test.txt").write_text("a\nb\n")
    objects = {"a": ("aeroplane", (10, 20, 50, 60)), "b": ("bicycle", (5, 5, 30, 40))}
    for name, (cls, (x0, y0, x1, y1)) in objects.items():
        (tmp_path / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><size><width>100</width><height>100</height></size><object>"
            f"<name>{cls}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
            f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object></annotation>"
        )
    register_pascal_voc("_test_tiny_voc_2007", str(tmp_path), "test", 2007, classes)
    try:
        evaluator = VOCPerClassEvaluator("_test_tiny_voc_2007")
        evaluator.reset()
        inst = Instances((100, 100))
        inst.pred_boxes = Boxes(torch.tensor([[9.0, 19.0, 50.0, 60.0]]))  # VOC boxes are 1-based
        inst.scores = torch.tensor([0.9])
        inst.pred_classes = torch.tensor([0])
        evaluator.process([{"image_id": "a"}], [{"instances": inst}])
        evaluator.process([{"image_id": "b"}], [{"instances": Instances((100, 100), **{
            "pred_boxes": Boxes(torch.zeros(0, 4)), "scores": torch.zeros(0),
            "pred_classes": torch.zeros(0, dtype=torch.long)})}])  # fmt: skip
        box = evaluator.evaluate()["bbox"]
    finally:
        DatasetCatalog.remove("_test_tiny_voc_2007")
        MetadataCatalog.remove("_test_tiny_voc_2007")
    assert box["AP50-aeroplane"] == pytest.approx(100.0)
    assert box["AP50-bicycle"] == pytest.approx(0.0)
    assert box["AP50"] == pytest.approx(50.0)


def test_table_tool_bootstrap_comparisons(tool_run, tiny_tt100k):
    """--compare A:B: paired intervals over the images for PSNR, AP and AP-S, whose estimates
    are the differences of the table's own figures (AP recomputed as pycocotools does)."""
    opts, _, tmp = tool_run
    results = _run_tool([
        "--config", SYNTH, "--row", f"SR=@{tmp / 'sr.pth'}", "--compare", "SR:Bicubic",
        "--compare", "HR:Bicubic", "--bootstrap-samples", "50", "--num-vis", "0",
        "--max-images", "3",
        "--output", str(tmp / "cmp"), *opts,
    ])  # fmt: skip
    rows, comparisons = results["rows"], results["comparisons"]
    assert list(comparisons) == ["SR - Bicubic", "HR - Bicubic"]
    sr = comparisons["SR - Bicubic"]
    assert sr["PSNR"]["estimate"] == pytest.approx(rows["SR"]["psnr"] - rows["Bicubic"]["psnr"])
    assert "PSNR" not in comparisons["HR - Bicubic"]  # HR has no PSNR
    for key, metric in (("SR - Bicubic", "AP"), ("HR - Bicubic", "AP"), ("HR - Bicubic", "APs")):
        a, b = key.split(" - ")
        table_diff = rows[a]["metrics"]["bbox"][metric] - rows[b]["metrics"]["bbox"][metric]
        c = comparisons[key][metric]
        assert c["estimate"] == pytest.approx(table_diff, abs=0.05)
        assert c["low"] <= c["high"] and c["num_items"] == results["num_images"]
    assert "| SR - Bicubic |" in (tmp / "cmp" / "table.md").read_text()
    with pytest.raises(SystemExit, match="rows are"):
        _run_tool(["--config", SYNTH, "--compare", "TDSR:Bicubic", "--output", str(tmp), *opts])


def test_image_ids_cannot_write_outside_the_output_folder(tmp_path):
    """Issue 12 point 9: side-by-side PNGs are named from image ids; "../../x" stays inside."""
    from detectron2.data import MetadataCatalog
    from detectron2.evaluation import DatasetEvaluators

    from featsr_d2.evaluation.lr_detection import LRDetectionRow, evaluate_lr_detection

    name = "_test_hostile_ids"
    ids = ["../../x", "/abs/y", "ok_1"]
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: [
            {"image_id": i, "height": 32, "width": 32, "annotations": []} for i in ids
        ])  # fmt: skip
        MetadataCatalog.get(name).set(thing_classes=[f"c{k}" for k in range(5)])
    batches = [[{"image_id": i, "height": 32, "width": 32,
                 "image": torch.zeros(3, 32, 32, dtype=torch.uint8)}] for i in ids]  # fmt: skip
    out = tmp_path / "a" / "b" / "out"
    results = evaluate_lr_detection(
        {"HR": LRDetectionRow(_FixedBoxDetector([2, 2, 20, 20]), "hr")},
        batches,
        {"HR": DatasetEvaluators([])},
        dataset_name=name, scale=4, input_format="RGB", vis_dir=str(out / "vis"), num_vis=3,
        vis_min_score=0.5,
    )  # fmt: skip
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert len(written) == 3 and all(w.startswith("a/b/out/vis/") for w in written), written
    assert "a/b/out/vis/ok_1.png" in written  # safe ids keep their names
    assert results["per_image"]["image_ids"] == ids


def test_pictures_match_as_the_protocol_does():
    """The pictures' matcher is the TT100K protocol's: greedy by IoU, not by score. A
    high-scoring detection that overlaps less loses the ground truth to a better-placed one, as in
    the table; boxes are scaled for display after matching."""
    from featsr_d2.core.tt100k_protocol import match_detections
    from featsr_d2.evaluation.lr_detection import _matches

    gt = [([10.0, 10.0, 50.0, 50.0], 0), ([60.0, 60.0, 90.0, 90.0], 1)]
    inst = Instances((100, 100))
    boxes = [[14.0, 14.0, 50.0, 50.0], [11.0, 11.0, 50.0, 50.0], [60.0, 60.0, 90.0, 90.0],
             [0.0, 0.0, 5.0, 5.0]]  # fmt: skip
    inst.pred_boxes = Boxes(torch.tensor(boxes))
    inst.scores = torch.tensor([0.9, 0.6, 0.8, 0.1])
    inst.pred_classes = torch.tensor([0, 0, 0, 0])
    matches = _matches(
        gt, inst, ["a", "b"], iou=0.5, min_score=0.5, types="all", to_display=(0.5, 2.0)
    )
    assert [d["matched"] for d in matches["det"]] == [False, True, False]  # by IoU, not score
    assert [g["matched"] for g in matches["gt"]] == [True, False]  # class b is never detected
    assert matches["det"][1]["bbox"] == pytest.approx([5.5, 22.0, 25.0, 100.0])
    key = lambda box: dict(zip(("xmin", "ymin", "xmax", "ymax"), box))  # noqa: E731
    protocol = match_detections(
        {"imgs": {"1": {"objects": [{"category": "ab"[c], "bbox": key(b)} for b, c in gt]}}},
        {"imgs": {"1": {"objects": [
            {"category": "a", "bbox": key(b), "score": s}
            for b, s in zip(inst.pred_boxes.tensor.tolist(), inst.scores.tolist())
        ]}}},
        min_score=0.5, types="all",
    )["1"]  # fmt: skip
    assert [d["matched"] for d in protocol["det"]] == [d["matched"] for d in matches["det"]]
    assert [g["matched"] for g in protocol["gt"]] == [g["matched"] for g in matches["gt"]]
