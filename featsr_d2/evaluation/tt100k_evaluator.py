"""Detectron2 ``DatasetEvaluator`` for Tsinghua-Tencent 100K under the official protocol.

The evaluator collects each image's detections in TT100K's result format (categories by name, boxes
``xmin/ymin/xmax/ymax`` in original-image pixels, Detectron2's scores in ``[0, 1]``), gathers them
across processes, and scores them with :func:`featsr_d2.core.tt100k_protocol.evaluate_tt100k`.

The ground truth is the registered dataset as loaded (``DatasetCatalog.get(dataset_name)``): its
images are the evaluated ids, and its ``annotations`` are the objects, with the box as annotated
(``tt100k_bbox``, before the loader's clipping) where the dicts carry it. So evaluation sees exactly
what the loader accepted under ``DATASETS.TT100K.ON_BAD_RECORD``: a record the loader skipped is
neither validated again nor counted as a miss, and records of images outside the split are never
read. A dataset that lists an image twice is refused (its detections would count twice).

Dataset metadata it reads (``MetadataCatalog.get(dataset_name)``):

* ``thing_classes``: contiguous class id -> TT100K category name;
* ``evaluator_type``: ``"tt100k"`` when set.

Each dataset dict carries ``image_id`` (an int or a string; compared as a string), ``file_name``
and ``annotations`` (Detectron2's format); each model input carries ``image_id``.

Files written into ``output_dir`` (atomically): ``tt100k_results.json``, the detections as a TT100K
results file (``tools/tt100k_eval.py --results`` evaluates it again), and, with
``save_plots``, ``tt100k_curve.png``, the accuracy-recall curve with the operating point marked, and
``tt100k_detections.png``, the first ``num_vis_images`` images with their true positives, false
positives and misses drawn (:mod:`featsr_d2.evaluation.visualize`).
"""

from __future__ import annotations

import logging
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm

from featsr_d2.core.tt100k_protocol import (
    Types,
    accuracy_recall_curve,
    check_results,
    evaluate_tt100k,
    match_detections,
    resolve_class_set,
)
from featsr_d2.core.tt100k_report import (
    format_table,
    save_curve_png,
    table_scores,
    write_json_atomic,
)
from featsr_d2.evaluation.visualize import save_matches_png
from featsr_d2.utils.file_io import remove_stale_temporaries

__all__ = ["TT100KEvaluator", "build_tt100k_evaluator"]

logger = logging.getLogger(__name__)

_BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")


class TT100KEvaluator(DatasetEvaluator):
    """Accuracy, recall and F1 by object size (small, medium, large, all) on a TT100K dataset.

    ``evaluate()`` returns ``{"tt100k": {"small_f1", "small_recall", "small_accuracy", ...,
    "all_f1", "all_recall", "all_accuracy"}}`` in percent, like Detectron2's AP numbers.
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir: str | None = None,
        *,
        iou: float = 0.5,
        min_score: float = 0.5,
        types: Types = "type45",
        save_plots: bool = True,
        num_vis_images: int = 8,
        distributed: bool = True,
    ) -> None:
        """
        Args:
            dataset_name: a registered dataset whose metadata has ``thing_classes`` and whose
                dicts carry ``annotations`` (e.g. :func:`register_tt100k_instances`).
            output_dir: where the results file and the curve go; None writes nothing.
            iou: a match needs IoU strictly above this.
            min_score: detections scoring below this are ignored (Detectron2's ``[0, 1]`` scale).
            types: the class set, ``"type45"``, ``"all"`` or a list of category names.
            save_plots: also write the accuracy-recall curve and the detection pictures (needs
                ``output_dir``).
            num_vis_images: how many images the detection pictures show (0: none).
            distributed: gather the predictions of every process; only the main one evaluates.
        """
        meta = MetadataCatalog.get(dataset_name)
        evaluator_type = meta.get("evaluator_type")
        if evaluator_type is not None and evaluator_type != "tt100k":
            raise ValueError(
                f"dataset {dataset_name!r} has evaluator_type {evaluator_type!r}, not 'tt100k'"
            )
        # Loaded first: a class set "all" dataset learns its thing_classes when it is loaded.
        dicts = DatasetCatalog.get(dataset_name) if dataset_name in DatasetCatalog else None
        thing_classes = meta.get("thing_classes")
        if thing_classes is None or dicts is None:
            raise ValueError(
                f"dataset {dataset_name!r} needs to be registered, with 'thing_classes' in its "
                "metadata"
            )
        resolve_class_set(types)  # fail early on an unknown class set
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._classes: list[str] = list(thing_classes)
        self._iou = iou
        self._min_score = min_score
        self._types = types
        self._save_plots = save_plots
        self._num_vis_images = num_vis_images
        self._distributed = distributed
        self._cpu_device = torch.device("cpu")
        self._predictions: dict[str, list[dict[str, Any]]] = {}
        self._non_finite = 0  # detections dropped for a non-finite box or score
        self._gt_annos = self._ground_truth(dicts)  # before inference: a bad dataset fails early
        if output_dir and comm.is_main_process():
            remove_stale_temporaries(output_dir)  # of a killed run's results file or pictures

    def _ground_truth(self, dicts: list[dict[str, Any]]) -> dict[str, Any]:
        """The loaded dataset in TT100K's annotation format (see the module docstring)."""
        name = self._dataset_name
        imgs: dict[str, Any] = {}
        for d in dicts:
            img_id = str(d["image_id"])
            if img_id in imgs:
                raise ValueError(
                    f"dataset {name!r} lists image id {img_id!r} twice ({d.get('file_name')}): its "
                    "detections would be counted twice. Remove the duplicate from the split file."
                )
            if "annotations" not in d:
                raise ValueError(
                    f"dataset {name!r}: the dict of image {img_id!r} has no 'annotations'; the "
                    "TT100K evaluator scores the loaded ground truth (register the dataset with "
                    "featsr_d2.data.register_tt100k_instances)"
                )
            objects = []
            for ann in d["annotations"]:
                box = ann.get("tt100k_bbox")
                if box is None:
                    box = BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYXY_ABS)
                category = self._classes[ann["category_id"]]
                objects.append({"category": category, "bbox": dict(zip(_BOX_KEYS, box))})
            imgs[img_id] = {"path": d.get("file_name", ""), "objects": objects}
        return {"imgs": imgs}

    def reset(self) -> None:
        self._predictions = {}
        self._non_finite = 0

    def process(self, inputs: Sequence[dict[str, Any]], outputs: Sequence[dict[str, Any]]) -> None:
        """Converts each output's ``instances`` into TT100K objects keyed by the input's id.

        Every processed image is recorded, with or without detections; the detections of an image
        seen twice (e.g. evaluated in tiles) are appended.
        """
        for inp, out in zip(inputs, outputs):
            objects = self._predictions.setdefault(str(inp["image_id"]), [])
            if "instances" not in out:
                continue
            instances = out["instances"].to(self._cpu_device)
            boxes = instances.pred_boxes.tensor.tolist()
            scores = instances.scores.tolist()
            classes = instances.pred_classes.tolist()
            for box, score, cls in zip(boxes, scores, classes):
                if not all(math.isfinite(v) for v in (*box, score)):
                    self._non_finite += 1  # a diverging model: counted, not a crash at the end
                    continue
                if not 0 <= cls < len(self._classes):
                    raise ValueError(
                        f"the model predicted class {cls}, but {self._dataset_name!r} has "
                        f"{len(self._classes)} classes: MODEL.*.NUM_CLASSES does not match the "
                        "dataset's thing_classes"
                    )
                objects.append(
                    {
                        "category": self._classes[cls],
                        "bbox": dict(zip(_BOX_KEYS, box)),
                        "score": score,
                    }
                )

    def _gathered_predictions(self) -> tuple[dict[str, list[dict[str, Any]]], int] | None:
        """All processes' predictions and non-finite counts on the main process; None on the
        others."""
        if not self._distributed:
            return self._predictions, self._non_finite
        comm.synchronize()
        parts = comm.gather((self._predictions, self._non_finite), dst=0)
        if not comm.is_main_process():
            return None
        merged: dict[str, list[dict[str, Any]]] = {}
        for part, _ in parts:
            for img_id, objects in part.items():
                merged.setdefault(img_id, []).extend(objects)
        return merged, sum(n for _, n in parts)

    def evaluate(self) -> OrderedDict[str, dict[str, float]] | dict:
        gathered = self._gathered_predictions()
        if gathered is None:
            return {}
        predictions, non_finite = gathered
        if non_finite:
            logger.warning(
                "[TT100KEvaluator] %s: %d detections with a non-finite box or score were dropped",
                self._dataset_name,
                non_finite,
            )
        if not predictions:
            logger.warning("[TT100KEvaluator] Did not receive valid predictions.")
            return {}

        gt_annos = self._gt_annos
        img_ids = list(gt_annos["imgs"])
        unseen = sum(1 for i in img_ids if i not in predictions)
        if unseen:
            logger.warning(
                "%d of %d images of %s received no prediction; their objects count as misses",
                unseen,
                len(img_ids),
                self._dataset_name,
            )
        results_annos = {"imgs": {k: {"objects": v} for k, v in predictions.items()}}
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            write_json_atomic(results_annos, os.path.join(self._output_dir, "tt100k_results.json"))

        kwargs = {"img_ids": img_ids, "iou": self._iou, "types": self._types}
        for problem in check_results(gt_annos, results_annos, **kwargs):
            logger.warning("[TT100KEvaluator] %s: %s", self._dataset_name, problem)
        metrics = evaluate_tt100k(gt_annos, results_annos, min_score=self._min_score, **kwargs)
        logger.info(
            "TT100K evaluation on %s (%d images, IoU > %g, score >= %g, classes: %s):\n%s",
            self._dataset_name,
            len(img_ids),
            self._iou,
            self._min_score,
            self._types if isinstance(self._types, str) else f"{len(self._types)} listed",
            format_table(metrics, self._dataset_name),
        )
        if self._output_dir and self._save_plots:
            curve = accuracy_recall_curve(gt_annos, results_annos, **kwargs)
            save_curve_png(
                curve,
                os.path.join(self._output_dir, "tt100k_curve.png"),
                operating_point=metrics,
                operating_label=f"score >= {self._min_score:g}",
                title=f"TT100K accuracy-recall: {self._dataset_name}",
            )
        if self._output_dir and self._save_plots and self._num_vis_images > 0:
            matches = match_detections(gt_annos, results_annos, min_score=self._min_score, **kwargs)
            files = {i: gt_annos["imgs"][i]["path"] for i in matches}
            save_matches_png(
                os.path.join(self._output_dir, "tt100k_detections.png"),
                matches,
                files,
                num_images=self._num_vis_images,
                title=f"{self._dataset_name}, score >= {self._min_score:g}",
            )
        return OrderedDict(tt100k=table_scores(metrics))


def build_tt100k_evaluator(
    cfg,
    dataset_name: str,
    output_dir: str | None,
    *,
    save_plots: bool | None = None,
    distributed: bool = True,
) -> TT100KEvaluator:
    """The :class:`TT100KEvaluator` of ``cfg.TEST.TT100K`` (IoU, score threshold, class set,
    pictures) on ``dataset_name``; ``save_plots`` None takes ``cfg.TEST.TT100K.SAVE_PLOTS``."""
    protocol = cfg.TEST.TT100K
    return TT100KEvaluator(
        dataset_name,
        output_dir,
        iou=protocol.IOU,
        min_score=protocol.MIN_SCORE,
        types=protocol.TYPES,
        save_plots=protocol.SAVE_PLOTS if save_plots is None else save_plots,
        num_vis_images=protocol.NUM_VIS_IMAGES,
        distributed=distributed,
    )
