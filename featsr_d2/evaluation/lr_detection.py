"""Detection on low-resolution images in the layout of TDSR's Tables 1 and 2
(``tools/eval_lr_detection.py``).

Rows, all on the same LR images (one data pass; each image's degradation is seeded by its id,
:mod:`featsr_d2.data.lr_mapper`):

- ``HR``: the frozen detector on the HR images (the upper bound);
- ``LR``: the detector on the LR image placed at the top-left of a black canvas of the detector's
  input size (TDSR: "padded with black to fit to the pretrained SSD300 detector",
  :mod:`featsr_d2.evaluation.padded_lr_detector`), its detections mapped back to HR coordinates;
- ``Bicubic``: MATLAB-bicubic upscaling then the detector (``TaskDrivenSR`` with ``Bicubic``);
- any number of SR rows (SR pretrained only, SR-FT, SR-FT+, TDSR, CAJNN, ...): ``TaskDrivenSR``
  models built from their configs and weights.

Columns: PSNR of each row's image against the HR image (the SR convention of this repository:
Y channel, ``scale`` border pixels cropped, 8-bit images; none for HR and LR) and the detection
metrics of the dataset: the TT100K table (recall / accuracy / F1 by size) and COCO AP, AP50, AP75,
AP-S/M/L for TT100K-format datasets; COCO's for COCO; VOC AP50 per class and their mean for VOC
(:class:`~featsr_d2.evaluation.voc_per_class.VOCPerClassEvaluator`). Side-by-side PNGs show each
row's image with its detections (true positives green, false positives red, misses blue;
:mod:`featsr_d2.evaluation.visualize`), matched by the TT100K protocol's matcher. The tables and
the bootstrap intervals are :mod:`featsr_d2.evaluation.lr_detection_report`'s.
"""

from __future__ import annotations

import logging
import math
import os
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator, DatasetEvaluators
from detectron2.structures import BoxMode, Instances
from torch import nn

from featsr_d2.core.tt100k_protocol import Types, match_detections
from featsr_d2.data.dataset_views import coco_view
from featsr_d2.evaluation.sr_metrics import psnr
from featsr_d2.evaluation.sr_visualize import safe_file_stem, side_by_side, write_png
from featsr_d2.evaluation.tt100k_evaluator import build_tt100k_evaluator
from featsr_d2.evaluation.visualize import draw_matches
from featsr_d2.evaluation.voc_per_class import VOCPerClassEvaluator
from featsr_d2.utils.image import detector_to_rgb, tensor_to_rgb

__all__ = [
    "LRDetectionRow",
    "build_lr_detection_evaluator",
    "default_metrics",
    "evaluate_lr_detection",
    "ground_truth_boxes",
]

logger = logging.getLogger(__name__)

_BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")


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


def ground_truth_boxes(
    dataset_name: str, *, as_annotated: bool = False
) -> dict[str, list[tuple[list[float], int]]]:
    """image id -> [(XYXY box in original pixels, class id)] of a registered dataset; with
    ``as_annotated``, a TT100K object's box as annotated (``tt100k_bbox``, before the loader's
    clipping: the box the TT100K protocol scores), else the dataset's box (COCO's)."""
    out = {}
    for d in DatasetCatalog.get(dataset_name):
        objs = []
        for a in d.get("annotations", []):
            if a.get("iscrowd", 0):
                continue
            box = a.get("tt100k_bbox") if as_annotated else None
            if box is None:
                box = BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS)
            objs.append((list(box), int(a["category_id"])))
        out[str(d["image_id"])] = objs
    return out


def _matches(
    gt: Sequence[tuple[list[float], int]],
    instances: Instances,
    classes: Sequence[str],
    *,
    iou: float,
    min_score: float,
    types: Types,
    to_display: tuple[float, float],
) -> dict[str, list[dict]]:
    """The TT100K protocol's matching
    (:func:`~featsr_d2.core.tt100k_protocol.match_detections`: same category, IoU strictly
    above ``iou``, greedy one-to-one by descending IoU) of an image's detections scoring at least
    ``min_score`` with its ground truth, within the class set ``types``, in the layout of
    :func:`featsr_d2.evaluation.visualize.draw_matches`, boxes scaled by ``to_display`` (x, y).
    Detections with a non-finite box or score are left out, as the evaluator does."""
    inst = instances.to("cpu")
    detections = [
        {"category": classes[c], "bbox": dict(zip(_BOX_KEYS, box)), "score": score}
        for box, c, score in zip(
            inst.pred_boxes.tensor.tolist(), inst.pred_classes.tolist(), inst.scores.tolist()
        )
        if all(math.isfinite(v) for v in (*box, score))
    ]
    truth = [{"category": classes[c], "bbox": dict(zip(_BOX_KEYS, box))} for box, c in gt]
    matches = match_detections(
        {"imgs": {"image": {"objects": truth}}},
        {"imgs": {"image": {"objects": detections}}},
        iou=iou,
        min_score=min_score,
        types=types,
    )["image"]
    sx, sy = to_display
    for outcomes in matches.values():
        for o in outcomes:
            x0, y0, x1, y1 = o["bbox"]
            o["bbox"] = [x0 * sx, y0 * sy, x1 * sx, y1 * sy]
    return matches


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
    vis_iou: float = 0.5,
    vis_types: Types = "all",
) -> dict:
    """Run every row on every batch of ``data_loader`` (inputs of
    :class:`~featsr_d2.data.lr_mapper.LRDetectionDatasetMapper`) and evaluate it.

    Args:
        rows: label -> row, in table order.
        evaluators: label -> a fresh evaluator of that row.
        input_format: the detector's ``INPUT.FORMAT`` of the inputs' ``"image"``.
        crop_border: border pixels ignored by PSNR (default: ``scale``).
        vis_dir: write ``<image id>.png`` (:func:`safe_file_stem` of the id) side by sides of the
            first ``num_vis`` images there, detections scoring at least ``vis_min_score`` drawn
            and matched to the ground truth by the TT100K protocol's rules at IoU ``vis_iou``
            over the class set ``vis_types`` (the table's own matcher, so a picture agrees with
            its TT100K table).

    Returns:
        ``{"rows": {label: {"psnr": mean dB or None, "metrics": evaluator results}},
        "num_images": n, "settings": {...}, "per_image": {"image_ids": [...], label: {"psnr":
        [dB per image] or None, "detections": per image [[x1, y1, x2, y2, class, score]...]}}}``
        (boxes in original-image pixels; for
        :func:`featsr_d2.evaluation.lr_detection_report.compare_rows`).
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
    gt = ground_truth_boxes(dataset_name, as_annotated=True) if vis_dir and num_vis > 0 else {}
    seen = 0
    image_ids: list[str] = []
    for inputs in data_loader:
        image_ids += [str(x["image_id"]) for x in inputs]
        hr = [detector_to_rgb(x["image"], input_format) for x in inputs]
        drawn: dict[int, list[tuple[str, np.ndarray]]] = defaultdict(list)
        for label, row in rows.items():
            outputs = row.model(inputs)
            evaluators[label].process(inputs, outputs)
            for out in outputs:
                inst = out["instances"].to("cpu")
                row.detections.append(
                    [
                        # unrounded: the bootstrap recomputes AP from these, equal to the table's
                        [*box, int(c), float(sc)]
                        for box, c, sc in zip(
                            inst.pred_boxes.tensor.tolist(),
                            inst.pred_classes.tolist(),
                            inst.scores.tolist(),
                        )
                    ]
                )
            for i, (x, out) in enumerate(zip(inputs, outputs)):
                if row.kind == "sr":
                    image = tensor_to_rgb(out.pop("sr_image"))
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
                        iou=vis_iou,
                        min_score=vis_min_score,
                        types=vis_types,
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
        "vis_iou": vis_iou,
        "vis_types": vis_types if isinstance(vis_types, str) else list(vis_types),
    }
    results["per_image"] = {"image_ids": image_ids}
    for label, row in rows.items():
        results["per_image"][label] = {
            "psnr": list(row.psnr) if row.psnr else None,
            "detections": row.detections,
        }
    return results


def _plain(obj):
    """Evaluator results as JSON-serializable builtins."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj
