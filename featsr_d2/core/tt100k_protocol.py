"""The official Tsinghua-Tencent 100K (TT100K) evaluation protocol: accuracy, recall and F1 by size.

This module re-implements the rules of ``eval_annos`` in the TT100K release's ``anno_func.py``
(Zhu et al., "Traffic-Sign Detection and Classification in the Wild", CVPR 2016), the protocol under
which FeatSR (Noh et al., 2019) reports its Table 1. It is pure numpy; the files are read by
:mod:`featsr_d2.core.tt100k`, the table and the curve's picture are made by
:mod:`featsr_d2.core.tt100k_report`, the Detectron2 glue lives in
:mod:`featsr_d2.evaluation.tt100k_evaluator`, the MMDetection metric in
:mod:`featsr_d2.mmdet.tt100k_metric` and the command line in ``tools/tt100k_eval.py``.

File formats
------------
Ground truth (``annotations.json``)::

    {"types": [...], "imgs": {"<id>": {"path": "test/<id>.jpg", "id": <int>,
                                       "objects": [{"category": "pl40",
                                                    "bbox": {"xmin": .., "ymin": .., "xmax": ..,
                                                             "ymax": ..}}, ...]}}}

Results use the same layout (``{"imgs": {"<id>": {"objects": [...]}}}``) with a ``"score"`` on every
object. Boxes are in pixels of the original image, corners ``(xmin, ymin)``-``(xmax, ymax)``.

Score scale: our result files carry Detectron2's scores, in ``[0, 1]``, and every score threshold
(``min_score``, ``--minscore``, the curve's thresholds) is compared with the scores as stored. The
official ``eval_annos`` defaults to ``minscore=40`` (and ``get_refine_rects`` to ``minscore=20``),
which indicates that the result files of the official release score on a ``[0, 100]`` scale; to
evaluate such a file, give the threshold in its scale (e.g. ``--minscore 40``, which corresponds to
our ``0.4``).

Rules (identical to ``eval_annos`` with ``check_type=True``, ``match_same=True``)
-------------------------------------------------------------------------------
1. Class set: ground truth and detections whose category is outside the class set (``"type45"``,
   the 45 official classes; ``"all"``, no filtering; or an explicit list) are ignored entirely.
2. Score threshold: detections with ``score < min_score`` are ignored entirely.
3. Matching, per image: a (ground truth, detection) pair is a candidate when both categories are
   equal and ``IoU > iou`` (strictly; IoU exactly at the threshold does not match). IoU is computed
   on the continuous boxes (no ``+1``); a side of negative length counts as 0, and a pair with zero
   union has IoU 0. Candidates are sorted by IoU, descending, and accepted greedily when neither
   side is matched yet (one-to-one). Ties in IoU are broken by the ground-truth index, then the
   detection index, both in the order of the objects in their file (the order the official stable
   sort produces). Matching does not depend on the size bins.
4. Size bins, by the long side ``max(xmax - xmin, ymax - ymin)`` of a box, half-open
   ``[low, high)``: small ``[0, 32)``, medium ``[32, 96)``, large ``[96, 400)``, all ``[0, 400)``
   (the "Overall" column).
   Ground truth outside the bin is ignored, together with the detection matched to it (whatever the
   detection's own size). An unmatched detection is ignored when its own box is outside the bin. A
   matched detection whose ground truth is inside the bin counts, whatever its own size.
5. ``tp`` = matched pairs counted in the bin; ``accuracy = tp / num_det`` and
   ``recall = tp / num_gt`` over the kept detections and ground truth, each 1 when its denominator
   is 0;
   ``f1 = 2 * accuracy * recall / (accuracy + recall)``, 0 when both are 0.
6. Every image of the evaluated split counts: an image absent from the results file contributes its
   ground truth as misses. Result images outside the split are ignored. Without an explicit id
   list, the split is every image of the ground truth (the official code uses the result file's ids
   instead, and fails on an image absent from the results).
7. Per class (bin "all"): the counts restricted to one category. Because only equal categories are
   ever paired, this equals running the protocol with that single class as the class set.

The accuracy-recall curve (:func:`accuracy_recall_curve`) is exact at every threshold: removing
low-score detections can hand a ground truth to another detection (greedy matching follows IoU,
not score), so matching is recomputed at each score level of each image where a detection that takes
part in a candidate pair appears; all other detections only change the counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featsr_d2.core.tt100k import (
    TT100KFormatError,
    image_records,
    parse_object,
    record_objects,
    validate_record,
)
from featsr_d2.core.tt100k_categories import CLASS_SETS, SIZE_BINS, TYPE45

__all__ = [
    "AccuracyRecallCurve",
    "Types",
    "accuracy_recall_curve",
    "check_results",
    "evaluate_tt100k",
    "match_detections",
    "resolve_class_set",
]

Types = str | Sequence[str]


def resolve_class_set(types: Types) -> tuple[str, ...] | None:
    """``"type45"``: the 45 official classes; ``"all"``: None (no filtering); a list: itself."""
    if isinstance(types, str):
        if types == "type45":
            return TYPE45
        if types == "all":
            return None
        raise ValueError(f"unknown class set {types!r}; expected one of {CLASS_SETS} or a list")
    classes = tuple(dict.fromkeys(types))
    if not all(isinstance(c, str) for c in classes):
        raise ValueError("a class list must hold category names (strings)")
    return classes


@dataclass(frozen=True)
class _Objects:
    """The objects of the evaluated images, flattened in (image, file) order."""

    img: np.ndarray  # (N,) int64: position of the image in the evaluated id list
    cls: np.ndarray  # (N,) int64: index into the class list
    boxes: np.ndarray  # (N, 4) float64: xmin, ymin, xmax, ymax
    scores: np.ndarray  # (N,) float64: NaN for ground truth

    @property
    def long_side(self) -> np.ndarray:
        return np.maximum(self.boxes[:, 2] - self.boxes[:, 0], self.boxes[:, 3] - self.boxes[:, 1])

    def in_bin(self, low: float, high: float) -> np.ndarray:
        side = self.long_side
        return (side >= low) & (side < high)


# Number types taken without the detailed check (finiteness is checked in bulk afterwards).
_PLAIN_NUMBERS = (int, float, np.float64, np.float32, np.int64, np.int32)


def _collect(
    annos: Mapping[str, Any], img_ids: Sequence[str], *, source: str, is_result: bool
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Flattens the objects of ``img_ids`` (all validated) into (image index, category, box, score).

    Plain numbers and strings take a fast path; anything else goes through the detailed validator,
    which either names the offending record or accepts the value (e.g. a ``Fraction``).
    """
    imgs = image_records(annos, source)
    img_index: list[int] = []
    cats: list[str] = []
    coords: list[float] = []  # flat: 4 per object (much faster to convert than nested lists)
    scores: list[float] = []
    number = _PLAIN_NUMBERS
    nan = math.nan
    for i, img_id in enumerate(img_ids):
        record = imgs.get(img_id)
        if record is None:
            if is_result:  # no detections in this image
                continue
            raise TT100KFormatError(f"{source}: image id {img_id!r} is not in the ground truth")
        where = f"{source}: imgs[{img_id!r}]"
        objects = record_objects(record, where)
        checked = False
        for obj in objects:
            try:
                cat = obj["category"]
                bbox = obj["bbox"]
                x0, y0, x1, y1 = bbox["xmin"], bbox["ymin"], bbox["xmax"], bbox["ymax"]
                score = obj["score"] if is_result else nan
            except (KeyError, TypeError, IndexError):
                validate_record(record, where, require_score=is_result)
                raise  # the validator found nothing: an unforeseen failure, let it surface
            plain = (
                type(cat) is str
                and type(x0) in number
                and type(y0) in number
                and type(x1) in number
                and type(y1) in number
                and type(score) in number
            )
            if not plain and not checked:
                validate_record(record, where, require_score=is_result)
                checked = True
            cats.append(cat)
            coords += (x0, y0, x1, y1)
            scores.append(score)
        img_index += [i] * len(objects)
    box_array = np.asarray(coords, dtype=np.float64).reshape(-1, 4)
    score_array = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(box_array).all() or (is_result and not np.isfinite(score_array).all()):
        for img_id in img_ids:  # find and name the offending record
            if img_id in imgs:
                validate_record(
                    imgs[img_id], f"{source}: imgs[{img_id!r}]", require_score=is_result
                )
    return np.asarray(img_index, dtype=np.int64), cats, box_array, score_array


def _normalise_ids(gt_annos: Mapping[str, Any], img_ids: Iterable[str | int] | None) -> list[str]:
    gt_imgs = image_records(gt_annos, "<ground truth>")
    if img_ids is None:
        return [str(i) for i in gt_imgs]
    ids = [str(i) for i in img_ids]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"image id {dup!r} is listed more than once")
    missing = [i for i in ids if i not in gt_imgs]
    if missing:
        raise TT100KFormatError(
            f"{len(missing)} image id(s) absent from the ground truth: {missing[:5]}"
        )
    return ids


def _prepare(
    gt_annos: Mapping[str, Any],
    result_annos: Mapping[str, Any],
    img_ids: Iterable[str | int] | None,
    types: Types,
) -> tuple[list[str], _Objects, _Objects]:
    """Flattens the evaluated images into arrays, dropping objects outside the class set."""
    ids = _normalise_ids(gt_annos, img_ids)
    result_imgs = image_records(result_annos, "<results>")
    # Result ids are JSON keys (strings); accept int keys from in-memory mappings too.
    result_annos = {"imgs": {str(k): v for k, v in result_imgs.items()}}

    g_img, g_cats, g_boxes, g_scores = _collect(
        gt_annos, ids, source="<ground truth>", is_result=False
    )
    d_img, d_cats, d_boxes, d_scores = _collect(
        result_annos, ids, source="<results>", is_result=True
    )
    class_set = resolve_class_set(types)
    classes = sorted(set(g_cats) | set(d_cats)) if class_set is None else list(class_set)
    index = {c: k for k, c in enumerate(classes)}

    def build(img: np.ndarray, cats: list[str], boxes: np.ndarray, scores: np.ndarray) -> _Objects:
        cls = np.asarray([index.get(c, -1) for c in cats], dtype=np.int64)
        keep = cls >= 0
        return _Objects(img[keep], cls[keep], boxes[keep], scores[keep])

    return classes, build(g_img, g_cats, g_boxes, g_scores), build(d_img, d_cats, d_boxes, d_scores)


def check_results(
    gt_annos: Mapping[str, Any],
    result_annos: Mapping[str, Any],
    *,
    img_ids: Iterable[str | int] | None = None,
    iou: float = 0.5,
    types: Types = "type45",
) -> list[str]:
    """What would make :func:`evaluate_tt100k`'s numbers silently meaningless, as sentences with
    counts (empty when nothing is wrong): result images outside the evaluated split (all of them:
    a results file of another split), detections of categories outside the class set, detections
    with inverted or empty boxes or lying outside every image (left of or above it: ``xmax <= 0``
    or ``ymax <= 0``, whatever the image's size), which can never match, and evaluated images
    without any ground truth in the class set (recall and accuracy are then 1 by convention).
    ``iou`` is unused; it is accepted so that the evaluation's keyword arguments can be passed as
    they are."""
    del iou
    ids = _normalise_ids(gt_annos, img_ids)
    evaluated = set(ids)
    result_imgs = {str(k): v for k, v in image_records(result_annos, "<results>").items()}
    class_set = resolve_class_set(types)
    allowed = None if class_set is None else set(class_set)
    problems = []
    outside = [i for i in result_imgs if i not in evaluated]
    if result_imgs and len(outside) == len(result_imgs):
        problems.append(
            f"none of the {len(result_imgs)} result images is among the {len(ids)} evaluated "
            f"ones (e.g. {outside[0]!r}): is the results file for another split?"
        )
    elif outside:
        problems.append(
            f"{len(outside)} of {len(result_imgs)} result images are not in the evaluated split "
            "and are ignored"
        )
    other_classes: dict[str, int] = {}
    inverted = outside_images = scored = 0
    for img_id in ids:
        record = result_imgs.get(img_id)
        if record is None:
            continue
        for k, obj in enumerate(record_objects(record, f"<results>: imgs[{img_id!r}]")):
            category, box, _ = parse_object(obj, f"<results>: imgs[{img_id!r}].objects[{k}]")
            if allowed is not None and category not in allowed:
                other_classes[category] = other_classes.get(category, 0) + 1
                continue
            scored += 1
            if not (box[2] > box[0] and box[3] > box[1]):
                inverted += 1
            elif box[2] <= 0 or box[3] <= 0:
                outside_images += 1
    if other_classes:
        names = ", ".join(sorted(other_classes)[:5])
        problems.append(
            f"{sum(other_classes.values())} detections in {len(other_classes)} categories outside "
            f"the class set {types if isinstance(types, str) else 'given'} are ignored ({names})"
        )
    if inverted:
        problems.append(
            f"{inverted} detections have an inverted or empty box (xmax <= xmin or ymax <= ymin) "
            "and can never match: are the boxes in (xmin, ymin, xmax, ymax) order?"
        )
    if outside_images:
        problems.append(
            f"{outside_images} of the {scored} detections lie outside every image (xmax <= 0 or "
            "ymax <= 0: left of or above it) and can never match: are the coordinates shifted, "
            "or relative to another origin (e.g. the box centre)?"
        )
    gt_imgs = image_records(gt_annos, "<ground truth>")
    num_gt = 0
    for img_id in ids:
        for obj in record_objects(gt_imgs[img_id], f"<ground truth>: imgs[{img_id!r}]"):
            category = obj.get("category") if isinstance(obj, Mapping) else None
            num_gt += allowed is None or category in allowed
    if num_gt == 0:
        problems.append(
            f"the {len(ids)} evaluated images hold no ground truth in the class set: recall is 1 "
            "by convention and the numbers say nothing about the detector"
        )
    return problems


def _pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of the rows of two (N, 4) arrays, row by row; 0 where the union is empty."""
    iw = np.maximum(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0.0)
    ih = np.maximum(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0.0)
    inter = iw * ih
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _candidate_pairs(
    gt: _Objects, det: _Objects, num_classes: int, iou_thr: float
) -> tuple[np.ndarray, np.ndarray]:
    """All (gt, det) pairs of one image and one category with IoU > iou_thr, in greedy order.

    The order is IoU descending, then gt index, then detection index (rule 3). Indices are global
    (into ``gt`` / ``det``), which are in (image, file) order, so the tie-break is the file order.
    """
    key_gt = gt.img * num_classes + gt.cls
    key_det = det.img * num_classes + det.cls
    order = np.argsort(key_det, kind="stable")
    sorted_keys = key_det[order]
    first = np.searchsorted(sorted_keys, key_gt, side="left")
    counts = np.searchsorted(sorted_keys, key_gt, side="right") - first
    pair_gt = np.repeat(np.arange(len(key_gt)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    pair_det = order[np.repeat(first, counts) + offsets]
    ious = _pairwise_iou(gt.boxes[pair_gt], det.boxes[pair_det])
    keep = ious > iou_thr
    pair_gt, pair_det, ious = pair_gt[keep], pair_det[keep], ious[keep]
    greedy_order = np.lexsort((pair_det, pair_gt, -ious))
    return pair_gt[greedy_order], pair_det[greedy_order]


def _greedy_match(pair_gt: np.ndarray, pair_det: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accepts the pairs in the given order when neither side is taken yet; returns those pairs."""
    out_gt: list[int] = []
    out_det: list[int] = []
    taken_gt: set[int] = set()
    taken_det: set[int] = set()
    for g, d in zip(pair_gt.tolist(), pair_det.tolist()):
        if g not in taken_gt and d not in taken_det:
            taken_gt.add(g)
            taken_det.add(d)
            out_gt.append(g)
            out_det.append(d)
    return np.asarray(out_gt, dtype=np.int64), np.asarray(out_det, dtype=np.int64)


def _metrics(tp: int, num_det: int, num_gt: int) -> dict[str, float | int]:
    accuracy = tp / num_det if num_det else 1.0
    recall = tp / num_gt if num_gt else 1.0
    f1 = 2 * accuracy * recall / (accuracy + recall) if accuracy + recall > 0 else 0.0
    return {
        "recall": recall,
        "accuracy": accuracy,
        "f1": f1,
        "num_gt": int(num_gt),
        "num_det": int(num_det),
        "tp": int(tp),
    }


def _match(
    gt_annos: Mapping[str, Any],
    result_annos: Mapping[str, Any],
    img_ids: Iterable[str | int] | None,
    *,
    iou: float,
    min_score: float,
    types: Types,
) -> tuple[list[str], _Objects, _Objects, np.ndarray, np.ndarray]:
    """Rules 1-3: the filtered objects and the indices of the matched (gt, detection) pairs."""
    classes, gt, det = _prepare(gt_annos, result_annos, img_ids, types)
    kept = det.scores >= min_score
    det = _Objects(det.img[kept], det.cls[kept], det.boxes[kept], det.scores[kept])
    match_gt, match_det = _greedy_match(*_candidate_pairs(gt, det, len(classes), iou))
    return classes, gt, det, match_gt, match_det


def evaluate_tt100k(
    gt_annos: Mapping[str, Any],
    result_annos: Mapping[str, Any],
    *,
    img_ids: Iterable[str | int] | None = None,
    iou: float = 0.5,
    min_score: float = 0.0,
    types: Types = "type45",
) -> dict[str, Any]:
    """Evaluates TT100K results under the official rules (see the module docstring).

    Args:
        gt_annos: the ground truth, ``{"imgs": {id: {"objects": [...]}}}``.
        result_annos: the detections, same layout, a ``"score"`` on every object.
        img_ids: the evaluated split (e.g. ``test/ids.txt``); None: every ground-truth image.
        iou: a match needs IoU strictly above this.
        min_score: detections scoring below this are ignored (in the results' own score scale).
        types: ``"type45"``, ``"all"`` or a list of categories.

    Returns:
        ``{"all" | "small" | "medium" | "large": {"recall", "accuracy", "f1", "num_gt", "num_det",
        "tp"}, "per_class": {category: {...}}}``; rates are fractions in ``[0, 1]``, per-class
        entries use the "all" bin.
    """
    classes, gt, det, match_gt, match_det = _match(
        gt_annos, result_annos, img_ids, iou=iou, min_score=min_score, types=types
    )

    results: dict[str, Any] = {}
    per_class: dict[str, Any] = {}
    for name, (low, high) in SIZE_BINS.items():
        gt_in = gt.in_bin(low, high)
        counted_det = det.in_bin(low, high)  # unmatched detections: by their own size
        counted_det[match_det] = gt_in[match_gt]  # matched ones: by their ground truth
        tp_gt = np.zeros(len(gt_in), dtype=bool)
        tp_gt[match_gt] = gt_in[match_gt]
        results[name] = _metrics(int(tp_gt.sum()), int(counted_det.sum()), int(gt_in.sum()))
        if name == "all":
            num_classes = len(classes)
            tp_c = np.bincount(gt.cls[tp_gt], minlength=num_classes)
            det_c = np.bincount(det.cls[counted_det], minlength=num_classes)
            gt_c = np.bincount(gt.cls[gt_in], minlength=num_classes)
            for k, cls in enumerate(classes):
                per_class[cls] = _metrics(int(tp_c[k]), int(det_c[k]), int(gt_c[k]))
    results["per_class"] = per_class
    return results


def match_detections(
    gt_annos: Mapping[str, Any],
    result_annos: Mapping[str, Any],
    *,
    img_ids: Iterable[str | int] | None = None,
    iou: float = 0.5,
    min_score: float = 0.0,
    types: Types = "type45",
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """The per-object outcome of the matching that :func:`evaluate_tt100k` counts.

    Returns ``{img_id: {"gt": [...], "det": [...]}}`` over the evaluated images, each object as
    ``{"category", "bbox": [x0, y0, x1, y1], "matched": bool}`` (detections also carry ``"score"``),
    after the class-set and score filters. A matched detection is a true positive, an unmatched one
    a false positive, an unmatched ground truth object a miss (over the ``all`` bin).
    """
    classes, gt, det, match_gt, match_det = _match(
        gt_annos, result_annos, img_ids, iou=iou, min_score=min_score, types=types
    )
    gt_matched = np.zeros(len(gt.cls), dtype=bool)
    gt_matched[match_gt] = True
    det_matched = np.zeros(len(det.cls), dtype=bool)
    det_matched[match_det] = True
    ids = _normalise_ids(gt_annos, img_ids)
    out: dict[str, dict[str, list[dict[str, Any]]]] = {i: {"gt": [], "det": []} for i in ids}
    for k in range(len(gt.cls)):
        out[ids[gt.img[k]]]["gt"].append(
            {
                "category": classes[gt.cls[k]],
                "bbox": gt.boxes[k].tolist(),
                "matched": bool(gt_matched[k]),
            }
        )
    for k in range(len(det.cls)):
        out[ids[det.img[k]]]["det"].append(
            {
                "category": classes[det.cls[k]],
                "bbox": det.boxes[k].tolist(),
                "score": float(det.scores[k]),
                "matched": bool(det_matched[k]),
            }
        )
    return out


def _suffix_sums(delta: np.ndarray) -> np.ndarray:
    """(B, n) -> (B, n + 1): column k is the sum of the columns k.. of ``delta``; column n is 0."""
    out = np.zeros((delta.shape[0], delta.shape[1] + 1), dtype=delta.dtype)
    out[:, :-1] = np.cumsum(delta[:, ::-1], axis=1)[:, ::-1]
    return out


@dataclass(frozen=True)
class AccuracyRecallCurve:
    """Accuracy and recall of every size bin as functions of the score threshold.

    ``bins[name]`` maps ``"recall"``, ``"accuracy"``, ``"f1"`` (float arrays) and ``"tp"``,
    ``"num_det"``, ``"num_gt"`` (int arrays) to values aligned with ``thresholds`` (ascending); the
    value at threshold ``t`` is what :func:`evaluate_tt100k` returns with ``min_score=t``.
    """

    thresholds: np.ndarray
    bins: dict[str, dict[str, np.ndarray]]


def accuracy_recall_curve(
    gt_annos: Mapping[str, Any],
    result_annos: Mapping[str, Any],
    *,
    img_ids: Iterable[str | int] | None = None,
    iou: float = 0.5,
    types: Types = "type45",
    thresholds: Sequence[float] | np.ndarray | None = None,
) -> AccuracyRecallCurve:
    """The exact accuracy-recall curve over score thresholds, for every size bin.

    Args:
        thresholds: the score thresholds to evaluate; None: every distinct detection score.
        Other arguments: as for :func:`evaluate_tt100k`.

    Method: each count is a sum over images of a step function of the threshold. An image's
    matching only changes where one of its detections that belongs to a candidate pair enters, so
    it is recomputed (greedily, rule 3) at each such score level; the changes of ``tp`` and of the
    count of kept detections at that level are recorded as events. Every detection adds one event
    (its own bin membership) at its score. The counts at a threshold ``t`` are the sums of the
    events with score ``>= t``, read from suffix sums with a binary search.
    """
    classes, gt, det = _prepare(gt_annos, result_annos, img_ids, types)
    pair_gt, pair_det = _candidate_pairs(gt, det, len(classes), iou)
    names = list(SIZE_BINS)
    gt_in = np.stack([gt.in_bin(*SIZE_BINS[n]) for n in names]).astype(np.int64)  # (B, G)
    det_in = np.stack([det.in_bin(*SIZE_BINS[n]) for n in names]).astype(np.int64)  # (B, D)
    num_gt = gt_in.sum(axis=1)

    # Events of the matching: (score, delta tp per bin, delta of the kept-detection count per bin).
    # A matched pair counts its detection iff its gt is in the bin, replacing the detection's own
    # bin membership: correction = gt_in[g] - det_in[d].
    event_scores: list[float] = []
    event_tp: list[np.ndarray] = []
    event_det: list[np.ndarray] = []
    pair_img = gt.img[pair_gt]
    by_image = np.argsort(pair_img, kind="stable")  # keeps the greedy order within an image
    pair_gt, pair_det, pair_img = pair_gt[by_image], pair_det[by_image], pair_img[by_image]
    bounds = np.flatnonzero(np.diff(pair_img)) + 1
    for img_gt, img_det in zip(np.split(pair_gt, bounds), np.split(pair_det, bounds)):
        if len(img_gt) == 0:
            continue
        pair_scores = det.scores[img_det]
        prev_tp = np.zeros(len(names), dtype=np.int64)
        prev_corr = np.zeros(len(names), dtype=np.int64)
        for level in np.unique(pair_scores)[::-1]:
            present = pair_scores >= level
            g, d = _greedy_match(img_gt[present], img_det[present])
            tp = gt_in[:, g].sum(axis=1)
            corr = tp - det_in[:, d].sum(axis=1)
            event_scores.append(float(level))
            event_tp.append(tp - prev_tp)
            event_det.append(corr - prev_corr)
            prev_tp, prev_corr = tp, corr

    scores = np.concatenate([det.scores, np.asarray(event_scores, dtype=np.float64)])
    no_events = np.zeros((len(names), 0), dtype=np.int64)
    delta_tp = np.concatenate(
        [np.zeros_like(det_in), np.stack(event_tp, 1) if event_tp else no_events], axis=1
    )
    delta_det = np.concatenate([det_in, np.stack(event_det, 1) if event_det else no_events], axis=1)
    order = np.argsort(scores, kind="stable")
    scores = scores[order]
    suffix_tp = _suffix_sums(delta_tp[:, order])
    suffix_det = _suffix_sums(delta_det[:, order])

    if thresholds is None:
        thr = np.unique(det.scores)
    else:
        thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    first = np.searchsorted(scores, thr, side="left")  # first event with score >= t
    bins: dict[str, dict[str, np.ndarray]] = {}
    for b, name in enumerate(names):
        tp = suffix_tp[b, first]
        n_det = suffix_det[b, first]
        n_gt = np.full_like(tp, num_gt[b])
        accuracy = np.where(n_det > 0, tp / np.maximum(n_det, 1), 1.0)
        recall = np.where(n_gt > 0, tp / np.maximum(n_gt, 1), 1.0)
        denom = accuracy + recall
        f1 = np.where(denom > 0, 2 * accuracy * recall / np.where(denom > 0, denom, 1.0), 0.0)
        bins[name] = {
            "recall": recall,
            "accuracy": accuracy,
            "f1": f1,
            "tp": tp,
            "num_det": n_det,
            "num_gt": n_gt,
        }
    return AccuracyRecallCurve(thresholds=thr, bins=bins)
