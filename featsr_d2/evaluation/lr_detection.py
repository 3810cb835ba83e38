"""Detection on low-resolution images in the layout of TDSR's Tables 1 and 2
(``tools/eval_lr_detection.py``).

Rows, all on the same LR images (one data pass; each image's degradation is seeded by its id,
:mod:`featsr_d2.data.lr_mapper`):

- ``HR``: the frozen detector on the HR images (the upper bound);
- ``LR``: the detector on the LR image placed at the top-left of a black canvas of the detector's
  input size (TDSR: "padded with black to fit to the pretrained SSD300 detector",
  :class:`PaddedLRDetector`); its detections are mapped back to HR coordinates (x s), the paper's
  only sensible reading, since its ground truth is that of the HR image;
- ``Bicubic``: MATLAB-bicubic upscaling then the detector (``TaskDrivenSR`` with ``Bicubic``);
- any number of SR rows (SR pretrained only, SR-FT, SR-FT+, TDSR, CAJNN, ...): ``TaskDrivenSR``
  models built from their configs and weights.

Columns: PSNR of each row's image against the HR image (the SR convention of this repository:
Y channel, ``scale`` border pixels cropped, 8-bit images; none for HR and LR) and the detection
metrics of the dataset: the TT100K table (recall / accuracy / F1 by size) and COCO AP, AP50, AP75,
AP-S/M/L for TT100K-format datasets; COCO's for COCO; VOC AP50 per class and their mean for VOC
(:class:`VOCPerClassEvaluator`). Side-by-side PNGs show each row's image with its detections
(true positives green, false positives red, misses blue; :mod:`featsr_d2.evaluation.visualize`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_json
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    PascalVOCDetectionEvaluator,
)
from detectron2.evaluation.pascal_voc_evaluation import voc_eval
from detectron2.structures import BoxMode, Instances
from detectron2.utils import comm
from torch import nn

from featsr_d2.data.lr_mapper import hr_to_rgb
from featsr_d2.data.sr_dataset import tensor_to_image
from featsr_d2.evaluation.paired_bootstrap import CocoAP, paired_bootstrap
from featsr_d2.evaluation.sr_metrics import psnr
from featsr_d2.evaluation.sr_visualize import safe_file_stem, side_by_side, write_png
from featsr_d2.evaluation.tt100k_evaluator import build_tt100k_evaluator
from featsr_d2.evaluation.visualize import draw_matches

__all__ = [
    "LRDetectionRow",
    "PaddedLRDetector",
    "VOCPerClassEvaluator",
    "build_lr_detection_evaluator",
    "coco_view",
    "compare_rows",
    "default_metrics",
    "evaluate_lr_detection",
    "first_images",
    "format_lr_detection_table",
]

logger = logging.getLogger(__name__)

COCO_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
TT100K_BINS = ("small", "medium", "large", "all")


class PaddedLRDetector(nn.Module):
    """The ``LR`` row: a detector on the LR image pasted at the top-left of a black canvas of the
    HR input's size, its boxes scaled by ``scale`` back to the HR image's coordinates."""

    def __init__(self, detector: nn.Module, scale: int):
        super().__init__()
        fmt = getattr(detector, "input_format", None)
        if fmt not in ("RGB", "BGR"):
            raise ValueError(f"the detector's INPUT.FORMAT must be RGB or BGR, got {fmt!r}")
        self.detector = detector
        self.scale = int(scale)
        self.input_format = fmt

    def canvas(self, dataset_dict: Mapping[str, Any]) -> torch.Tensor:
        """The black (3, H, W) RGB uint8 canvas of the input's HR size holding its LR image."""
        h, w = dataset_dict["image"].shape[-2:]
        lr = dataset_dict["lr_image"]
        out = torch.zeros((3, h, w), dtype=torch.uint8)
        lh, lw = min(lr.shape[-2], h), min(lr.shape[-1], w)
        out[:, :lh, :lw] = lr[:, :lh, :lw]
        return out

    @torch.no_grad()
    def forward(self, batched_inputs: Sequence[Mapping[str, Any]]) -> list[dict]:
        if self.training:
            raise RuntimeError("PaddedLRDetector is an evaluation baseline; it does not train")
        det_inputs, sizes = [], []
        for x in batched_inputs:
            canvas = self.canvas(x)
            h, w = canvas.shape[-2:]
            height, width = x.get("height", h), x.get("width", w)
            sizes.append((height, width))
            det_inputs.append(
                {
                    "image": canvas.flip(0) if self.input_format == "BGR" else canvas,
                    # The detector rescales its boxes from the canvas to this size: x s, then to
                    # the original image's size.
                    "height": height * self.scale,
                    "width": width * self.scale,
                }
            )
        outputs = self.detector(det_inputs)
        results = []
        for out, (height, width) in zip(outputs, sizes):
            inst = out["instances"]
            fixed = Instances((height, width), **inst.get_fields())
            fixed.pred_boxes.clip((height, width))
            results.append({"instances": fixed[fixed.pred_boxes.nonempty()]})
        return results


class VOCPerClassEvaluator(PascalVOCDetectionEvaluator):
    """Detectron2's VOC evaluator (AP, AP50, AP75 over classes), plus each class's AP50 as
    ``"AP50-<class>"``, the columns of TDSR's Table 1 (VOC07 11-point metric for 2007)."""

    def evaluate(self):
        ret = super().evaluate()
        all_predictions = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return ret
        predictions = defaultdict(list)
        for part in all_predictions:
            for cls_id, lines in part.items():
                predictions[cls_id].extend(lines)
        with tempfile.TemporaryDirectory(prefix="voc_per_class_") as dirname:
            template = os.path.join(dirname, "{}.txt")
            for cls_id, name in enumerate(self._class_names):
                with open(template.format(name), "w") as f:
                    f.write("\n".join(predictions.get(cls_id, [""])))
                _, _, ap = voc_eval(
                    template,
                    self._anno_file_template,
                    self._image_set_path,
                    name,
                    ovthresh=0.5,
                    use_07_metric=self._is_2007,
                )
                ret["bbox"][f"AP50-{name}"] = float(ap * 100)
        return ret


def first_images(dataset_name: str, num_images: int) -> str:
    """The name of a registered dataset holding the first ``num_images`` images of
    ``dataset_name`` with its metadata (registered on first use), so that every evaluator scores
    exactly the images evaluated."""
    name = f"{dataset_name}__first{num_images}"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: DatasetCatalog.get(dataset_name)[:num_images])
        meta = MetadataCatalog.get(dataset_name).as_dict()
        MetadataCatalog.get(name).set(**{k: v for k, v in meta.items() if k != "name"})
    return name


def coco_view(dataset_name: str, output_dir: str) -> str:
    """The name of a registered copy of ``dataset_name`` whose ``json_file`` is its COCO-format
    conversion (written into ``output_dir``), for COCO AP on datasets of other formats (TT100K's
    ``json_file`` is not COCO's)."""
    meta = MetadataCatalog.get(dataset_name)
    if meta.get("evaluator_type") == "coco":
        return dataset_name
    name = f"{dataset_name}__coco"
    if name not in DatasetCatalog.list():
        path = os.path.join(output_dir, f"{dataset_name}_coco_format.json")
        convert_to_coco_json(dataset_name, path, allow_cached=False)
        DatasetCatalog.register(name, lambda: DatasetCatalog.get(dataset_name))
        MetadataCatalog.get(name).set(
            thing_classes=list(meta.thing_classes), json_file=path, evaluator_type="coco"
        )
    return name


def default_metrics(dataset_name: str) -> list[str]:
    """The metrics of a dataset's table: ``["tt100k", "coco"]`` for TT100K-format datasets,
    ``["voc"]`` for VOC, ``["coco"]`` otherwise."""
    kind = MetadataCatalog.get(dataset_name).get("evaluator_type")
    if kind == "tt100k":
        return ["tt100k", "coco"]
    if kind == "pascal_voc":
        return ["voc"]
    return ["coco"]


def build_lr_detection_evaluator(
    cfg, dataset_name: str, output_dir: str, metrics: Sequence[str]
) -> DatasetEvaluator:
    """The evaluators of ``metrics`` (among "tt100k", "coco", "voc") for one row, writing into
    ``output_dir``; TT100K's protocol keys come from ``cfg.TEST.TT100K``."""
    evaluators: list[DatasetEvaluator] = []
    for metric in metrics:
        if metric == "tt100k":
            evaluators.append(
                build_tt100k_evaluator(
                    cfg, dataset_name, output_dir, save_plots=False, distributed=False
                )
            )
        elif metric == "coco":
            evaluators.append(
                COCOEvaluator(
                    coco_view(dataset_name, output_dir),
                    tasks=("bbox",),
                    distributed=False,
                    output_dir=output_dir,
                )
            )
        elif metric == "voc":
            evaluators.append(VOCPerClassEvaluator(dataset_name))
        else:
            raise ValueError(f"unknown metric {metric!r}; expected tt100k, coco or voc")
    return DatasetEvaluators(evaluators)


@dataclass
class LRDetectionRow:
    """One row of the table: a model taking the LR mapper's inputs and returning detections in
    original-image coordinates, and what its image is: ``"hr"`` (the HR input), ``"lr"`` (the
    padded LR canvas of a :class:`PaddedLRDetector`) or ``"sr"`` (the ``"sr_image"`` the model
    returns)."""

    model: nn.Module
    kind: str
    psnr: list[float] = field(default_factory=list)
    detections: list[list[list[float]]] = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in ("hr", "lr", "sr"):
            raise ValueError(f"row kind must be hr, lr or sr, got {self.kind!r}")


def _ground_truth(dataset_name: str) -> dict[str, list[tuple[list[float], int]]]:
    """image id -> [(XYXY box in original pixels, class id)] of a registered dataset."""
    out = {}
    for d in DatasetCatalog.get(dataset_name):
        objs = []
        for a in d.get("annotations", []):
            if a.get("iscrowd", 0):
                continue
            box = BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS)
            objs.append((list(box), int(a["category_id"])))
        out[str(d["image_id"])] = objs
    return out


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _matches(
    gt: Sequence[tuple[list[float], int]],
    instances: Instances,
    classes: Sequence[str],
    *,
    min_score: float,
    to_display: tuple[float, float],
) -> dict[str, list[dict]]:
    """Greedy one-to-one matching by descending score (same class, IoU > 0.5) of an image's
    detections scoring at least ``min_score`` with its ground truth, in the layout of
    :func:`featsr_d2.evaluation.visualize.draw_matches`, boxes scaled by ``to_display`` (x, y)."""
    inst = instances.to("cpu")
    keep = inst.scores >= min_score
    boxes = inst.pred_boxes.tensor[keep].tolist()
    scores = inst.scores[keep].tolist()
    labels = inst.pred_classes[keep].tolist()
    taken = [False] * len(gt)
    dets = []
    for k in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        best, best_iou = -1, 0.5
        for g, (gbox, gcls) in enumerate(gt):
            if not taken[g] and gcls == labels[k]:
                iou = _iou(boxes[k], gbox)
                if iou > best_iou:
                    best, best_iou = g, iou
        if best >= 0:
            taken[best] = True
        dets.append((boxes[k], labels[k], scores[k], best >= 0))
    sx, sy = to_display

    def scaled(box):
        return [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]

    return {
        "gt": [
            {"bbox": scaled(b), "category": classes[c], "matched": m}
            for (b, c), m in zip(gt, taken)
        ],
        "det": [
            {"bbox": scaled(b), "category": classes[c], "score": s, "matched": m}
            for b, c, s, m in dets
        ],
    }


@torch.no_grad()
def evaluate_lr_detection(
    rows: Mapping[str, LRDetectionRow],
    data_loader,
    evaluators: Mapping[str, DatasetEvaluator],
    *,
    dataset_name: str,
    scale: int,
    input_format: str,
    y_channel: bool = True,
    crop_border: int | None = None,
    vis_dir: str | None = None,
    num_vis: int = 4,
    vis_min_score: float = 0.5,
) -> dict:
    """Run every row on every batch of ``data_loader`` (inputs of
    :class:`~featsr_d2.data.lr_mapper.LRDetectionDatasetMapper`) and evaluate it.

    Args:
        rows: label -> row, in table order.
        evaluators: label -> a fresh evaluator of that row.
        input_format: the detector's ``INPUT.FORMAT`` of the inputs' ``"image"``.
        crop_border: border pixels ignored by PSNR (default: ``scale``).
        vis_dir: write ``<image id>.png`` (:func:`safe_file_stem` of the id) side by sides of the
            first ``num_vis`` images there,
            detections scoring at least ``vis_min_score`` drawn.

    Returns:
        ``{"rows": {label: {"psnr": mean dB or None, "metrics": evaluator results}},
        "num_images": n, "settings": {...}, "per_image": {"image_ids": [...], label: {"psnr":
        [dB per image] or None, "detections": per image [[x1, y1, x2, y2, class, score]...]}}}``
        (boxes in original-image pixels; for :func:`compare_rows`).
    """
    crop_border = scale if crop_border is None else crop_border
    for row in rows.values():
        row.model.eval()
        row.psnr = []
        row.detections = []
        if row.kind == "sr":
            row.model.return_sr_image = True
    for ev in evaluators.values():
        ev.reset()
    classes = MetadataCatalog.get(dataset_name).thing_classes
    gt = _ground_truth(dataset_name) if vis_dir and num_vis > 0 else {}
    seen = 0
    image_ids: list[str] = []
    for inputs in data_loader:
        image_ids += [str(x["image_id"]) for x in inputs]
        hr = [hr_to_rgb(x["image"], input_format) for x in inputs]
        drawn: dict[int, list[tuple[str, np.ndarray]]] = defaultdict(list)
        for label, row in rows.items():
            outputs = row.model(inputs)
            evaluators[label].process(inputs, outputs)
            for out in outputs:
                inst = out["instances"].to("cpu")
                row.detections.append(
                    [
                        [*(round(v, 2) for v in box), int(c), round(float(sc), 5)]
                        for box, c, sc in zip(
                            inst.pred_boxes.tensor.tolist(),
                            inst.pred_classes.tolist(),
                            inst.scores.tolist(),
                        )
                    ]
                )
            for i, (x, out) in enumerate(zip(inputs, outputs)):
                if row.kind == "sr":
                    image = tensor_to_image(out.pop("sr_image"))
                    row.psnr.append(
                        psnr(image, hr[i], crop_border=crop_border, y_channel=y_channel)
                    )
                    title = f"{label} {row.psnr[-1]:.2f} dB"
                elif row.kind == "lr":
                    image = row.model.canvas(x).permute(1, 2, 0).numpy()
                    title = label
                else:
                    image = hr[i]
                    title = label
                if seen + i < num_vis and vis_dir:
                    h, w = hr[i].shape[:2]
                    height, width = x.get("height", h), x.get("width", w)
                    factor = 1.0 / scale if row.kind == "lr" else 1.0
                    matches = _matches(
                        gt.get(str(x["image_id"]), []),
                        out["instances"],
                        classes,
                        min_score=vis_min_score,
                        to_display=(factor * w / width, factor * h / height),
                    )
                    drawn[i].append((title, draw_matches(image, matches, min_side=320)))
        for i, panels in drawn.items():
            name = safe_file_stem(inputs[i]["image_id"]) + ".png"  # ids are data: no "../"
            write_png(os.path.join(vis_dir, name), side_by_side(panels))
        seen += len(inputs)
        logger.info("LR detection: %d images", seen)
    results: dict[str, Any] = {"rows": OrderedDict(), "num_images": seen}
    for label, row in rows.items():
        metrics = evaluators[label].evaluate() or {}
        results["rows"][label] = {
            "psnr": float(np.mean(row.psnr)) if row.psnr else None,
            "metrics": _plain(metrics),
        }
    results["settings"] = {
        "dataset": dataset_name,
        "scale": scale,
        "psnr_channel": "Y" if y_channel else "RGB",
        "crop_border": crop_border,
        "vis_min_score": vis_min_score,
    }
    results["per_image"] = {"image_ids": image_ids}
    for label, row in rows.items():
        results["per_image"][label] = {
            "psnr": list(row.psnr) if row.psnr else None,
            "detections": row.detections,
        }
    return results


def compare_rows(
    results: Mapping[str, Any],
    dataset_name: str,
    pairs: Sequence[tuple[str, str]],
    *,
    num_samples: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, float]]]:
    """Paired bootstrap intervals over the test images of ``A - B`` for each (A, B) in ``pairs``:
    mean PSNR (when both rows have one), COCO AP and AP-S (recomputed per resample with
    :class:`featsr_d2.evaluation.paired_bootstrap.CocoAP`).

    Returns:
        ``{"A - B": {"PSNR": interval, "AP": interval, "APs": interval}}``, each interval as
        :func:`featsr_d2.evaluation.paired_bootstrap.paired_bootstrap` returns it.
    """
    per_image = results["per_image"]
    ids = per_image["image_ids"]
    truth = _ground_truth(dataset_name)
    missing = [i for i in ids if i not in truth]
    if missing:
        raise ValueError(f"images {missing[:3]} are not in {dataset_name}")
    gt = [[(box, c) for box, c in truth[i]] for i in ids]
    aps: dict[tuple[str, str], CocoAP] = {}

    def ap(label: str, area: str) -> CocoAP:
        if (label, area) not in aps:
            dets = [[(d[:4], int(d[4]), d[5]) for d in image] for image in
                    per_image[label]["detections"]]  # fmt: skip
            aps[label, area] = CocoAP(gt, dets, area)
        return aps[label, area]

    out: dict[str, dict[str, dict[str, float]]] = {}
    for a, b in pairs:
        for label in (a, b):
            if label not in per_image:
                raise ValueError(f"no row {label!r} to compare; rows: {list(results['rows'])}")
        key = f"{a} - {b}"
        out[key] = {}
        pa, pb = per_image[a]["psnr"], per_image[b]["psnr"]
        if pa and pb:
            diff = np.asarray(pa) - np.asarray(pb)
            out[key]["PSNR"] = paired_bootstrap(
                len(ids), lambda idx, d=diff: float(d[idx].mean()), num_samples=num_samples,
                seed=seed,
            )  # fmt: skip
        for metric, area in (("AP", "all"), ("APs", "small")):
            fa, fb = ap(a, area), ap(b, area)
            out[key][metric] = paired_bootstrap(
                len(ids), lambda idx, fa=fa, fb=fb: fa.on_indices(idx) - fb.on_indices(idx),
                num_samples=num_samples, seed=seed,
            )  # fmt: skip
    return out


def _plain(obj):
    """Evaluator results as JSON-serializable builtins."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def format_lr_detection_table(results: Mapping[str, Any]) -> str:
    """Markdown tables of :func:`evaluate_lr_detection`'s results: one row per method, PSNR, then
    the TT100K table (recall / accuracy / F1 per size, percent), COCO's AP columns and VOC's mean
    AP50 as present; VOC's per-class AP50 in a second table."""
    rows = results["rows"]
    first = next(iter(rows.values()))["metrics"]
    header = ["Method", "PSNR (dB)"]
    if "tt100k" in first:
        header += [f"{b} R / A / F1" for b in TT100K_BINS]
    if "bbox" in first:
        voc = any(k.startswith("AP50-") for k in first["bbox"])
        header += ["mAP50 (VOC)"] if voc else list(COCO_COLUMNS)
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    per_class: list[str] = []
    for label, row in rows.items():
        m = row["metrics"]
        cells = [label, _fmt(row["psnr"])]
        if "tt100k" in m:
            t = m["tt100k"]
            cells += [
                " / ".join(f"{t[f'{b}_{k}']:.1f}" for k in ("recall", "accuracy", "f1"))
                for b in TT100K_BINS
            ]
        if "bbox" in m:
            box = m["bbox"]
            classes = [k[len("AP50-") :] for k in box if k.startswith("AP50-")]
            if classes:
                cells += [_fmt(box.get("AP50"))]
                if not per_class:
                    per_class = [
                        "| Method | " + " | ".join(classes) + " |",
                        "|" + " --- |" * (len(classes) + 1),
                    ]
                per_class.append(
                    f"| {label} | " + " | ".join(f"{box[f'AP50-{c}']:.1f}" for c in classes) + " |"
                )
            else:
                cells += [_fmt(box.get(c)) for c in COCO_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    return table + ("\n\nAP50 per class:\n\n" + "\n".join(per_class) if per_class else "")
