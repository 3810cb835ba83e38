"""The official Tsinghua-Tencent 100K protocol as an MMDetection metric.

:class:`FeatSRTT100KMetric` (registered in MMDetection's ``METRICS``) collects each image's
detections in TT100K's result format (categories by name, boxes ``xmin/ymin/xmax/ymax`` in
original-image pixels, the detector's scores) and its ground truth as the dataset loaded it, and
scores them with :func:`featsr_d2.core.tt100k_protocol.evaluate_tt100k`, the function the
Detectron2 evaluator (:class:`featsr_d2.evaluation.tt100k_evaluator.TT100KEvaluator`) calls: on
the same detections both give the same numbers (``tests/mmdet/test_tt100k_metric.py``).

The ground truth of an image is its data sample's ``tt100k_objects``: the objects
:class:`featsr_d2.mmdet.datasets.FeatSRTT100KDataset` loaded, boxes as annotated. The test
pipeline's ``PackDetInputs`` must carry it (``meta_keys=(..., "tt100k_objects")``, as
``configs/mmdet/_base_/datasets/tt100k.py`` does). Every evaluated image counts, with or without
detections; a record the loader skipped is never counted as a miss. Class names come from the
dataset's ``metainfo["classes"]`` (the runner hands it to the metric).

``compute_metrics`` returns the FeatSR paper's Table 1 numbers in percent, ``{small,medium,large,
all}_{f1,recall,accuracy}``, under the prefix ``tt100k/`` (as the Detectron2 evaluator returns
them under ``tt100k``), logs the table, and, with ``output_dir``, writes the detections as a TT100K
results file (``tt100k_results.json``; ``tools/tt100k_eval.py --results`` evaluates it again) and,
with ``save_curve``, the accuracy-recall curve (``tt100k_curve.png``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from featsr_d2.core.tt100k import BOX_KEYS
from featsr_d2.core.tt100k_protocol import (
    Types,
    accuracy_recall_curve,
    check_results,
    evaluate_tt100k,
    resolve_class_set,
)
from featsr_d2.core.tt100k_report import (
    format_table,
    save_curve_png,
    table_scores,
    write_json_atomic,
)

__all__ = ["FeatSRTT100KMetric"]

GT_KEY = "tt100k_objects"


@METRICS.register_module()
class FeatSRTT100KMetric(BaseMetric):
    """Accuracy, recall and F1 by object size under the official TT100K protocol; see the module
    docstring.

    Args:
        iou: a match needs IoU strictly above this.
        min_score: detections scoring below this are ignored (the detector's score scale, [0, 1]).
        types: the class set, ``"type45"``, ``"all"`` or a list of category names.
        output_dir: where ``tt100k_results.json`` (and the curve) go; None writes nothing.
        save_curve: also write ``tt100k_curve.png`` (needs ``output_dir``).
        collect_device, prefix, collect_dir: as :class:`mmengine.evaluator.BaseMetric`.
    """

    default_prefix = "tt100k"

    def __init__(
        self,
        iou: float = 0.5,
        min_score: float = 0.5,
        types: Types = "type45",
        output_dir: str | None = None,
        save_curve: bool = False,
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        resolve_class_set(types)  # fail early on an unknown class set
        if save_curve and not output_dir:
            raise ValueError("FeatSRTT100KMetric: save_curve needs an output_dir to write to")
        self.iou = float(iou)
        self.min_score = float(min_score)
        self.types = types if isinstance(types, str) else list(types)
        self.output_dir = output_dir
        self.save_curve = bool(save_curve)

    def _classes(self) -> list[str]:
        meta = self.dataset_meta or {}
        if not meta.get("classes"):
            raise ValueError(
                "FeatSRTT100KMetric needs the dataset's classes (dataset_meta['classes']): the "
                "runner sets them from the evaluated dataset's metainfo"
            )
        return list(meta["classes"])

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Records each image's ground truth and detections (finite ones; the non-finite are
        counted)."""
        classes = self._classes()
        for sample in data_samples:
            if GT_KEY not in sample:
                raise KeyError(
                    f"FeatSRTT100KMetric: the data sample of image {sample.get('img_id')!r} has "
                    f"no {GT_KEY!r}, the ground truth it scores. Evaluate a FeatSRTT100KDataset "
                    f"and add {GT_KEY!r} to PackDetInputs' meta_keys in the test pipeline (as "
                    "configs/mmdet/_base_/datasets/tt100k.py does)."
                )
            pred = sample["pred_instances"]
            boxes = pred["bboxes"].detach().cpu().tolist()
            scores = pred["scores"].detach().cpu().tolist()
            labels = pred["labels"].detach().cpu().tolist()
            detections, non_finite = [], 0
            for box, score, label in zip(boxes, scores, labels):
                if not all(math.isfinite(v) for v in (*box, score)):
                    non_finite += 1  # a diverging model: counted, not a crash at the end
                    continue
                if not 0 <= label < len(classes):
                    raise ValueError(
                        f"the model predicted class {label}, but the dataset has {len(classes)} "
                        "classes: the detector's num_classes does not match the dataset's"
                    )
                detections.append(
                    {"category": classes[label], "bbox": dict(zip(BOX_KEYS, box)), "score": score}
                )
            gt = [{"category": o["category"], "bbox": dict(o["bbox"])} for o in sample[GT_KEY]]
            self.results.append((str(sample["img_id"]), gt, detections, non_finite))

    def compute_metrics(self, results: list) -> dict[str, float]:
        logger = MMLogger.get_current_instance()
        gt_imgs: dict[str, Any] = {}
        result_imgs: dict[str, Any] = {}
        non_finite = 0
        for img_id, gt, detections, dropped in results:
            if img_id in gt_imgs:
                raise ValueError(
                    f"FeatSRTT100KMetric: image id {img_id!r} was evaluated twice: its detections "
                    "would count twice. Evaluate each image of the split once."
                )
            gt_imgs[img_id] = {"objects": gt}
            result_imgs[img_id] = {"objects": detections}
            non_finite += dropped
        if non_finite:
            logger.warning(
                "FeatSRTT100KMetric: %d detections with a non-finite box or score were dropped",
                non_finite,
            )
        gt_annos = {"imgs": gt_imgs}
        results_annos = {"imgs": result_imgs}
        if self.output_dir:
            os.makedirs(self.output_dir, exist_ok=True)
            write_json_atomic(results_annos, os.path.join(self.output_dir, "tt100k_results.json"))
        img_ids = list(gt_imgs)
        kwargs = {"img_ids": img_ids, "iou": self.iou, "types": self.types}
        for problem in check_results(gt_annos, results_annos, **kwargs):
            logger.warning("FeatSRTT100KMetric: %s", problem)
        metrics = evaluate_tt100k(gt_annos, results_annos, min_score=self.min_score, **kwargs)
        types = self.types if isinstance(self.types, str) else f"{len(self.types)} listed"
        logger.info(
            "TT100K evaluation (%d images, IoU > %g, score >= %g, classes: %s):\n%s",
            len(img_ids),
            self.iou,
            self.min_score,
            types,
            format_table(metrics, "TT100K"),
        )
        if self.save_curve:
            save_curve_png(
                accuracy_recall_curve(gt_annos, results_annos, **kwargs),
                os.path.join(self.output_dir, "tt100k_curve.png"),
                operating_point=metrics,
                operating_label=f"score >= {self.min_score:g}",
            )
        return table_scores(metrics)
