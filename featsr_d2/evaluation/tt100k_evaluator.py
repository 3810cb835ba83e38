"""Detectron2 ``DatasetEvaluator`` for Tsinghua-Tencent 100K under the official protocol.

The evaluator collects each image's detections in TT100K's result format (categories by name, boxes
``xmin/ymin/xmax/ymax`` in original-image pixels, Detectron2's scores in ``[0, 1]``), gathers them
across processes, and scores them with :func:`featsr_d2.evaluation.tt100k.evaluate_tt100k` against
the dataset's ``annotations.json``, restricted to the image ids of the registered dataset.

Dataset metadata it reads (``MetadataCatalog.get(dataset_name)``):

* ``json_file``: the TT100K ``annotations.json`` holding the ground truth;
* ``thing_classes``: contiguous class id -> TT100K category name;
* ``evaluator_type``: ``"tt100k"`` when set.

Each dataset dict (``DatasetCatalog.get(dataset_name)``) and each model input carries ``image_id``,
the TT100K image id (an int or a string; compared as a string).

Files written into ``output_dir`` (atomically): ``tt100k_results.json``, the detections as a TT100K
results file (``python -m featsr_d2.evaluation.tt100k --results`` evaluates it again), and, with
``save_plots``, ``tt100k_curve.png``, the accuracy-recall curve with the operating point marked, and
``tt100k_detections.png``, the first ``num_vis_images`` images with their true positives, false
positives and misses drawn (:mod:`featsr_d2.evaluation.visualize`).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from featsr_d2.evaluation.tt100k import (
    TABLE_BINS,
    Types,
    accuracy_recall_curve,
    evaluate_tt100k,
    format_table,
    load_annotations,
    match_detections,
    resolve_class_set,
    save_curve_png,
    write_json_atomic,
)
from featsr_d2.evaluation.visualize import save_matches_png

__all__ = ["TT100KEvaluator"]

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
            dataset_name: a registered dataset whose metadata has ``json_file`` and
                ``thing_classes``.
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
        json_file = meta.get("json_file")
        thing_classes = meta.get("thing_classes")
        if json_file is None or thing_classes is None:
            raise ValueError(
                f"dataset {dataset_name!r} needs 'json_file' and 'thing_classes' in its metadata"
            )
        resolve_class_set(types)  # fail early on an unknown class set
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._json_file = str(json_file)
        self._classes: list[str] = list(thing_classes)
        self._iou = iou
        self._min_score = min_score
        self._types = types
        self._save_plots = save_plots
        self._num_vis_images = num_vis_images
        self._image_root = str(meta.get("image_root", os.path.dirname(self._json_file)))
        self._distributed = distributed
        self._cpu_device = torch.device("cpu")
        self._predictions: dict[str, list[dict[str, Any]]] = {}

    def reset(self) -> None:
        self._predictions = {}

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
                objects.append(
                    {
                        "category": self._classes[cls],
                        "bbox": dict(zip(_BOX_KEYS, box)),
                        "score": score,
                    }
                )

    def _gathered_predictions(self) -> dict[str, list[dict[str, Any]]] | None:
        """All processes' predictions on the main process; None on the others."""
        if not self._distributed:
            return self._predictions
        comm.synchronize()
        parts = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return None
        merged: dict[str, list[dict[str, Any]]] = {}
        for part in parts:
            for img_id, objects in part.items():
                merged.setdefault(img_id, []).extend(objects)
        return merged

    def evaluate(self) -> OrderedDict[str, dict[str, float]] | dict:
        predictions = self._gathered_predictions()
        if predictions is None:
            return {}
        if not predictions:
            logger.warning("[TT100KEvaluator] Did not receive valid predictions.")
            return {}

        img_ids = list(
            dict.fromkeys(str(d["image_id"]) for d in DatasetCatalog.get(self._dataset_name))
        )
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

        gt_annos = load_annotations(self._json_file)
        kwargs = {"img_ids": img_ids, "iou": self._iou, "types": self._types}
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
            files = {
                i: os.path.join(self._image_root, gt_annos["imgs"][i]["path"]) for i in matches
            }
            save_matches_png(
                os.path.join(self._output_dir, "tt100k_detections.png"),
                matches,
                files,
                num_images=self._num_vis_images,
                title=f"{self._dataset_name}, score >= {self._min_score:g}",
            )
        scores = {
            f"{name}_{key}": 100.0 * metrics[name][key]
            for name, key in itertools.product(TABLE_BINS, ("f1", "recall", "accuracy"))
        }
        return OrderedDict(tt100k=scores)
