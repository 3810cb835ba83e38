"""The statistics, tables and plot of the FeatSR evidence study (issue #14): does an arm (FeatSR,
its ablations, the base detector, slicing) detect small traffic signs better than the control?

:mod:`featsr_d2.engine.featsr_study` trains the arms and hands every run's detections to
:func:`build_study_report`, which computes per run (one record per arm and seed):

- COCO box AP (IoU 0.50:0.05:0.95), AP50, AP-S / AP-M / AP-L (COCO's area bins: < 32^2,
  < 96^2, the rest), over every detection of the record, with
  :class:`featsr_d2.evaluation.paired_bootstrap.CocoAP`;
- the TT100K protocol's F1 (and recall, accuracy) per size bin at ``min_score``
  (:func:`featsr_d2.core.tt100k_protocol.evaluate_tt100k`; bins by the long side: small < 32,
  medium < 96, large < 400, all < 400);
- F1 per size bin at the run's best score threshold: the threshold maximising the "all" F1 on
  half A of the test images (even positions of ``img_ids``), F1 read on half B (odd positions),
  so that the threshold is not tuned on the images it is scored on;
- GT-box small accuracy: the fraction of small ground-truth boxes (TT100K bin) that the head
  classifies correctly when given the ground-truth box (counted by the study, per image).

AP and TT100K numbers use the same class set (``types``); AP uses every detection (no score
threshold; COCO keeps the best 100 per image and category), the TT100K numbers those scoring
``>= min_score``. AP's "all" has no size limit, the TT100K "all" bin stops at 400 pixels.

For each arm other than the control, each metric's difference from the control is estimated by a
paired bootstrap over test images (:func:`featsr_d2.evaluation.paired_bootstrap.paired_bootstrap`,
the same resamples for every arm and metric): the statistic is the mean over seed pairs (seed k of
the arm with seed k of the control; an arm with one record pairs with every control seed) of the
metric of the arm's run minus the control's, both on the resample. Metrics of half B resample
half B's images. The primary endpoint, fixed before any run, is the AP-S difference: an arm
"helps" when its interval lies above 0, "hurts" when below, otherwise "no effect shown".

Which metrics get intervals, and the number of resamples (measured on synthetic data: 6 arms x 3
seeds x 600 images x 20 detections per image, 45 classes): every metric gets a 95% percentile
interval (:data:`INTERVAL_METRICS`) except AP50, reported as a point difference. The counted
metrics cost microseconds per resample; the four AP ones about a millisecond per run and resample
(COCO AP recomputed on the re-weighted images), about 90 ms per resample for the 18 runs, plus
about 20 s to match every run once. The default ``num_samples=1000`` took 111 s in all, on one
core shared with a training job; a GT-box small accuracy or AP on a resample without ground
truth in range counts as no difference there.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featsr_d2.core.tt100k_categories import SIZE_BINS
from featsr_d2.core.tt100k_protocol import (
    Types,
    _metrics,  # the protocol's rates from counts (rule 5), kept in one place
    accuracy_recall_curve,
    match_detections,
    resolve_class_set,
)
from featsr_d2.core.tt100k_report import TABLE_BINS
from featsr_d2.evaluation.paired_bootstrap import CocoAP, paired_bootstrap
from featsr_d2.utils.file_io import atomic_write, atomic_write_json, atomic_write_text

__all__ = [
    "GENERATOR_STILL",
    "INTERVAL_METRICS",
    "METRICS",
    "PRIMARY_METRIC",
    "best_f1_threshold",
    "build_study_report",
    "format_study_markdown",
    "per_image_counts",
    "save_difference_png",
    "write_study_report",
]

# Below this mean relative change ||G(x) - x|| / ||x|| on every SR run, G has not moved.
GENERATOR_STILL = 0.01
PRIMARY_METRIC = "ap_small"
CONFIDENCE = 0.95
# A full-set difference smaller than this (percentage points) has no sign ("0").
_SIGN_TOLERANCE = 1e-9
_AP_AREAS = {"ap": "all", "ap_small": "small", "ap_medium": "medium", "ap_large": "large"}


@dataclass(frozen=True)
class _Metric:
    key: str
    label: str  # column title
    half_b: bool  # computed on half B of the images (else on all of them)
    meaning: str


METRICS: tuple[_Metric, ...] = (
    _Metric("ap", "AP", False, "COCO box AP, IoU 0.50:0.05:0.95, all detections"),
    _Metric("ap50", "AP50", False, "COCO box AP at IoU 0.50"),
    _Metric("ap_small", "AP-S", False, "COCO AP, objects of area < 32^2"),
    _Metric("ap_medium", "AP-M", False, "COCO AP, objects of area in [32^2, 96^2]"),
    _Metric("ap_large", "AP-L", False, "COCO AP, objects of area > 96^2"),
    *(
        _Metric(f"f1_{b}", f"F1 {b}", False, f"TT100K F1, {b} bin, scores >= min_score")
        for b in TABLE_BINS
    ),
    *(
        _Metric(
            f"best_f1_{b}",
            f"F1 {b} best thr. (B)",
            True,
            f"TT100K F1, {b} bin, on half B at the threshold of best 'all' F1 on half A",
        )
        for b in TABLE_BINS
    ),
    _Metric(
        "gt_box_small_acc",
        "GT-box small acc.",
        False,
        "small ground-truth boxes (long side < 32) classified correctly by the head",
    ),
)
# Metrics given a bootstrap interval; the others get a point difference (see the docstring).
INTERVAL_METRICS = tuple(m.key for m in METRICS if m.key != "ap50")
# Columns of the arms table, and of the differences table.
_ARM_COLUMNS = (
    "ap", "ap50", "ap_small", "ap_medium", "ap_large", "f1_small", "f1_medium", "f1_large",
    "f1_all", "best_f1_small", "gt_box_small_acc",
)  # fmt: skip
_DIFF_COLUMNS = ("ap_small", "ap", "best_f1_small", "gt_box_small_acc")


# --------------------------------------------------------------------------------------------------
# Per-run metrics
# --------------------------------------------------------------------------------------------------


def _long_side(box: Sequence[float]) -> float:
    return max(box[2] - box[0], box[3] - box[1])


def per_image_counts(
    gt_annos: Mapping[str, Any],
    result_annos: Mapping[str, Any],
    img_ids: Sequence[str],
    *,
    iou: float = 0.5,
    min_score: float = 0.0,
    types: Types = "type45",
) -> dict[str, dict[str, np.ndarray]]:
    """The TT100K protocol's counts per image, so that its rates can be recomputed on any
    resample of the images.

    Returns ``{bin: {"tp", "num_det", "num_gt"}}`` (int arrays aligned with ``img_ids``) for the
    bins of ``SIZE_BINS``; summed over the images they are :func:`evaluate_tt100k`'s counts. From
    :func:`match_detections`' per-object outcome (rule 4): ground truth counts in its bin; a
    matched detection counts in its ground truth's bin (matching is one-to-one, so there are
    ``tp`` of them), an unmatched one by its own size.
    """
    matches = match_detections(
        gt_annos, result_annos, img_ids=img_ids, iou=iou, min_score=min_score, types=types
    )
    out = {b: {k: np.zeros(len(img_ids), np.int64) for k in ("tp", "num_det", "num_gt")}
           for b in SIZE_BINS}  # fmt: skip
    for i, img_id in enumerate(img_ids):
        objects = matches[str(img_id)]
        gt_sides = [(_long_side(o["bbox"]), o["matched"]) for o in objects["gt"]]
        fp_sides = [_long_side(o["bbox"]) for o in objects["det"] if not o["matched"]]
        for name, (low, high) in SIZE_BINS.items():
            counts = out[name]
            counts["num_gt"][i] = sum(low <= s < high for s, _ in gt_sides)
            counts["tp"][i] = sum(low <= s < high for s, m in gt_sides if m)
            counts["num_det"][i] = counts["tp"][i] + sum(low <= s < high for s in fp_sides)
    return out


def best_f1_threshold(
    gt_annos: Mapping[str, Any],
    result_annos: Mapping[str, Any],
    img_ids: Sequence[str],
    *,
    iou: float = 0.5,
    types: Types = "type45",
) -> tuple[float | None, float]:
    """The score threshold of the highest "all"-bin TT100K F1 on ``img_ids`` (the lowest such
    threshold on a tie), among the scores of their detections, and that F1; ``(None, 0.0)`` when
    they hold no detection (then no threshold keeps any)."""
    curve = accuracy_recall_curve(gt_annos, result_annos, img_ids=img_ids, iou=iou, types=types)
    if len(curve.thresholds) == 0:
        return None, 0.0
    f1 = curve.bins["all"]["f1"]
    k = int(np.argmax(f1))
    return float(curve.thresholds[k]), float(f1[k])


def _f1_percent(tp: float, num_det: float, num_gt: float) -> float:
    return 100.0 * _metrics(tp, num_det, num_gt)["f1"]


class _Resamples:
    """Numbers the bootstrap's resamples, so that a run's metric on a resample is computed once,
    however many comparisons (arms, seed pairs) use it."""

    def __init__(self) -> None:
        self._ids: dict[bytes, int] = {}

    def key(self, idx: np.ndarray) -> int:
        return self._ids.setdefault(np.ascontiguousarray(idx, np.int64).tobytes(), len(self._ids))


@dataclass
class _Run:
    """One record's metrics: point values on the full sets, and functions of a resample."""

    seed: Any
    values: dict[str, float | None]  # percent; None: not defined (no ground truth in range)
    on_idx: dict[str, Callable[[np.ndarray], float]]
    extra: dict[str, Any]  # reported as they are: counts, rates, the threshold
    generator_change: float | None
    cost: float | None
    _cache: dict[tuple[str, int], float] = field(default_factory=dict)

    def on(self, metric: str, idx: np.ndarray, resamples: _Resamples) -> float:
        key = (metric, resamples.key(idx))
        if key not in self._cache:
            self._cache[key] = self.on_idx[metric](idx)
        return self._cache[key]


def _evaluate_run(
    record: Mapping[str, Any],
    gt_annos: Mapping[str, Any],
    img_ids: Sequence[str],
    gt_boxes: list[list[tuple[list[float], int]]],
    cat_index: dict[str, int],
    *,
    types: Types,
    iou: float,
    min_score: float,
) -> _Run:
    results = record["results"]
    res_imgs = {str(k): v for k, v in results.get("imgs", {}).items()}
    dets = [
        [(_box(o["bbox"]), cat_index[o["category"]], float(o["score"]))
         for o in res_imgs.get(i, {}).get("objects", []) if o["category"] in cat_index]
        for i in img_ids
    ]  # fmt: skip
    values: dict[str, float | None] = {}
    on_idx: dict[str, Callable[[np.ndarray], float]] = {}
    extra: dict[str, Any] = {"tt100k": {}}

    aps = {k: CocoAP(gt_boxes, dets, area) for k, area in _AP_AREAS.items()}
    aps["ap50"] = CocoAP(gt_boxes, dets, "all", iou_thresholds=[0.5])
    for key, ap in aps.items():
        full = ap()
        values[key] = None if full < 0 else full
        on_idx[key] = ap.on_indices

    def counted(prefix: str, counts: dict[str, dict[str, np.ndarray]]) -> None:
        for b in TABLE_BINS:
            tp, nd, ng = (counts[b][k] for k in ("tp", "num_det", "num_gt"))
            rates = _metrics(int(tp.sum()), int(nd.sum()), int(ng.sum()))
            values[f"{prefix}{b}"] = 100.0 * rates["f1"]
            extra["tt100k"][f"{prefix}{b}"] = rates
            on_idx[f"{prefix}{b}"] = lambda idx, tp=tp, nd=nd, ng=ng: _f1_percent(
                tp[idx].sum(), nd[idx].sum(), ng[idx].sum()
            )

    kwargs = {"iou": iou, "types": types}
    counted("f1_", per_image_counts(gt_annos, results, img_ids, min_score=min_score, **kwargs))
    half_a, half_b = list(img_ids[0::2]), list(img_ids[1::2])
    threshold, f1_a = best_f1_threshold(gt_annos, results, half_a, **kwargs)
    extra["best_threshold"] = threshold
    extra["best_threshold_f1_all_half_a"] = 100.0 * f1_a
    at = math.inf if threshold is None else threshold
    counted("best_f1_", per_image_counts(gt_annos, results, half_b, min_score=at, **kwargs))

    small = record.get("gt_box_small")
    values["gt_box_small_acc"] = None
    if small is not None:
        correct = np.asarray(small["correct"], float)
        total = np.asarray(small["total"], float)
        if correct.shape != (len(img_ids),) or total.shape != (len(img_ids),):
            raise ValueError(
                f"gt_box_small of seed {record.get('seed')} must hold one count per image "
                f"({len(img_ids)}), got {correct.shape} and {total.shape}"
            )
        if total.sum() > 0:
            values["gt_box_small_acc"] = 100.0 * correct.sum() / total.sum()
            extra["gt_box_small"] = {"correct": int(correct.sum()), "total": int(total.sum())}
        # a resample without small boxes has no accuracy: count it as 0 difference (rare)
        on_idx["gt_box_small_acc"] = lambda idx: (
            100.0 * correct[idx].sum() / total[idx].sum() if total[idx].sum() > 0 else 0.0
        )
    return _Run(
        seed=record.get("seed"),
        values=values,
        on_idx=on_idx,
        extra=extra,
        generator_change=_optional_float(record.get("generator_change")),
        cost=_optional_float(record.get("cost")),
    )


def _box(bbox: Mapping[str, float]) -> list[float]:
    return [float(bbox["xmin"]), float(bbox["ymin"]), float(bbox["xmax"]), float(bbox["ymax"])]


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


def _pairs(arm: str, runs: list[_Run], control: list[_Run]) -> list[tuple[_Run, _Run]]:
    """Seed k with control seed k; a single run (of the arm or of the control) with every run of
    the other side."""
    if len(runs) == len(control):
        return list(zip(runs, control))
    if len(runs) == 1:
        return [(runs[0], c) for c in control]
    if len(control) == 1:
        return [(r, control[0]) for r in runs]
    raise ValueError(
        f"arm {arm!r} has {len(runs)} records and the control {len(control)}: they pair seed by "
        "seed, so they need as many (or the arm exactly one)"
    )


def _sign(value: float) -> str:
    return "+" if value > _SIGN_TOLERANCE else "-" if value < -_SIGN_TOLERANCE else "0"


def _difference(
    metric: _Metric,
    pairs: list[tuple[_Run, _Run]],
    num_items: int,
    resamples: _Resamples,
    *,
    with_interval: bool,
    num_samples: int,
    seed: int,
) -> dict[str, Any]:
    """The metric's arm - control difference: per seed pair on the full set, their mean, and
    (``with_interval``) its paired bootstrap interval."""
    key = metric.key
    per_pair = [a.values[key] - c.values[key] if a.values[key] is not None and
                c.values[key] is not None else None for a, c in pairs]  # fmt: skip
    out: dict[str, Any] = {"estimate": None, "low": None, "high": None, "p_above_0": None,
                           "per_pair": per_pair, "signs": None}  # fmt: skip
    if any(d is None for d in per_pair):
        return out
    out["estimate"] = float(np.mean(per_pair))
    out["signs"] = " ".join(_sign(d) for d in per_pair)
    if with_interval:

        def statistic(idx: np.ndarray) -> float:
            return float(
                np.mean([a.on(key, idx, resamples) - c.on(key, idx, resamples) for a, c in pairs])
            )

        result = paired_bootstrap(
            num_items, statistic, num_samples=num_samples, confidence=CONFIDENCE, seed=seed
        )
        out.update({k: result[k] for k in ("estimate", "low", "high", "p_above_0")})
    return out


def _verdict(primary: Mapping[str, Any]) -> str:
    if primary["low"] is None:
        return "not available"
    if primary["low"] > 0:
        return "helps"
    if primary["high"] < 0:
        return "hurts"
    return "no effect shown"


def _mean(values: Sequence[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))


def _generator_warning(runs: Mapping[str, list[_Run]], control: str) -> str | None:
    """The warning when every SR arm's generator has moved its input by less than
    ``GENERATOR_STILL`` on every run (no warning without SR arms)."""
    changes = {
        arm: [r.generator_change for r in rs if r.generator_change is not None]
        for arm, rs in runs.items()
        if arm != control
    }
    changes = {arm: c for arm, c in changes.items() if c}
    if not changes or max(max(c) for c in changes.values()) >= GENERATOR_STILL:
        return None
    largest = max(max(c) for c in changes.values())
    return (
        f"G has not moved: on every run of the SR arms ({', '.join(changes)}) the mean relative "
        f"change ||G(x) - x|| / ||x|| on small test RoIs is below {GENERATOR_STILL:g} (largest "
        f"{largest:.2g}). These runs did not test super-resolution; no conclusion about SR can be "
        "drawn from the table below."
    )


def build_study_report(
    gt_annos: dict,
    img_ids: list[str],
    runs: dict[str, list[dict]],
    *,
    control: str = "control",
    types: Types = "all",
    iou: float = 0.5,
    min_score: float = 0.5,
    num_samples: int = 1000,
    seed: int = 0,
    notes: dict | None = None,
) -> dict:
    """The study's numbers: per arm (means over its runs) and per run, and each arm's
    differences from the control with paired bootstrap intervals over the test images (see the
    module docstring for the metrics and the statistics).

    Args:
        gt_annos: TT100K ground truth (:func:`featsr_d2.core.tt100k.load_annotations`).
        img_ids: the test images, in a fixed order (half A: even positions, half B: odd).
        runs: arm name -> one record per seed, ``{"seed", "results", "gt_box_small",
            "generator_change", "cost"}``; records pair with the control's by position, and an
            arm with one record pairs with every control record.
        control: the arm the others are compared with.
        types: the class set of both the TT100K protocol and AP (as ``evaluate_tt100k``'s).
        iou: the TT100K protocol's IoU threshold (strict).
        min_score: the TT100K protocol's score threshold of the ``f1_*`` metrics.
        num_samples: bootstrap resamples per interval.
        seed: the bootstrap's seed (the same resamples for every arm and metric).
        notes: extra facts reported as they are (diagnostics, timings, settings).

    Returns:
        The content of ``table.json`` (JSON-serialisable; rates in percent, ``None`` where a
        metric is not defined).
    """
    if control not in runs:
        raise ValueError(f"no control arm {control!r} among the runs: {list(runs)}")
    for arm, records in runs.items():
        if not records:
            raise ValueError(f"arm {arm!r} has no record")
    img_ids = [str(i) for i in img_ids]
    if len(img_ids) < 4:
        raise ValueError(f"the study needs at least 4 test images (2 per half), got {len(img_ids)}")
    if len(set(img_ids)) != len(img_ids):
        raise ValueError("an image id is listed more than once in img_ids")
    gt_imgs = gt_annos["imgs"]
    missing = [i for i in img_ids if i not in gt_imgs]
    if missing:
        raise ValueError(
            f"{len(missing)} test image(s) absent from the ground truth: {missing[:5]}"
        )
    class_set = resolve_class_set(types)
    allowed = None if class_set is None else set(class_set)
    names = set()
    for i in img_ids:
        names.update(o["category"] for o in gt_imgs[i]["objects"])
    for records in runs.values():
        for record in records:
            for rec in record["results"].get("imgs", {}).values():
                names.update(o["category"] for o in rec.get("objects", []))
    if allowed is not None:
        names &= allowed
    cat_index = {c: k for k, c in enumerate(sorted(names))}
    gt_boxes = [
        [(_box(o["bbox"]), cat_index[o["category"]]) for o in gt_imgs[i]["objects"]
         if o["category"] in cat_index]
        for i in img_ids
    ]  # fmt: skip

    evaluated = {
        arm: [
            _evaluate_run(
                r,
                gt_annos,
                img_ids,
                gt_boxes,
                cat_index,
                types=types,
                iou=iou,
                min_score=min_score,
            )  # fmt: skip
            for r in records
        ]
        for arm, records in runs.items()
    }
    order = [control] + [a for a in runs if a != control]
    resamples = _Resamples()
    num_b = len(img_ids[1::2])

    arms: dict[str, Any] = {}
    for arm in order:
        rs = evaluated[arm]
        changes = [r.generator_change for r in rs if r.generator_change is not None]
        costs = [r.cost for r in rs if r.cost is not None]
        arms[arm] = {
            "num_runs": len(rs),
            "mean": {m.key: _mean([r.values[m.key] for r in rs]) for m in METRICS},
            "generator_change": float(np.mean(changes)) if changes else None,
            "cost": float(np.mean(costs)) if costs else None,
            "runs": [
                {
                    "seed": r.seed,
                    "metrics": r.values,
                    **r.extra,
                    "generator_change": r.generator_change,
                    "cost": r.cost,
                }
                for r in rs
            ],  # fmt: skip
        }

    differences: dict[str, Any] = {}
    for arm in order[1:]:
        pairs = _pairs(arm, evaluated[arm], evaluated[control])
        diff: dict[str, Any] = {"pairs": [[a.seed, c.seed] for a, c in pairs]}
        for m in METRICS:
            diff[m.key] = _difference(
                m,
                pairs,
                num_b if m.half_b else len(img_ids),
                resamples,
                with_interval=m.key in INTERVAL_METRICS,
                num_samples=num_samples,
                seed=seed,
            )
        diff["verdict"] = _verdict(diff[PRIMARY_METRIC])
        differences[arm] = diff

    report = {
        "warning": _generator_warning(evaluated, control),
        "settings": {
            "control": control,
            "arms": order,
            "types": types if isinstance(types, str) else list(types),
            "iou": iou,
            "min_score": min_score,
            "num_images": len(img_ids),
            "num_images_half_a": len(img_ids[0::2]),
            "num_images_half_b": num_b,
            "num_samples": num_samples,
            "confidence": CONFIDENCE,
            "bootstrap_seed": seed,
            "primary_metric": PRIMARY_METRIC,
            "interval_metrics": list(INTERVAL_METRICS),
            "generator_still_below": GENERATOR_STILL,
        },
        "metrics": {
            m.key: {"label": m.label, "half_b": m.half_b, "meaning": m.meaning} for m in METRICS
        },  # fmt: skip
        "arms": arms,
        "differences": differences,
        "notes": dict(notes or {}),
    }
    # Plain JSON types only, so that the report equals its round trip through table.json.
    return json.loads(json.dumps(report, allow_nan=False, default=_plain))


def _plain(value: Any) -> Any:
    """numpy values (e.g. in ``notes``) as Python ones, for ``json.dumps``."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: {value!r}")


# --------------------------------------------------------------------------------------------------
# Writing it out
# --------------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}"


def _with_interval(d: Mapping[str, Any]) -> str:
    if d["estimate"] is None:
        return "n/a"
    if d["low"] is None:
        return f"{_signed(d['estimate'])} (no interval)"
    return f"{_signed(d['estimate'])} [{_signed(d['low'])}, {_signed(d['high'])}]"


def _note(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def format_study_markdown(report: Mapping[str, Any]) -> str:
    """``table.md``: the warning (if any), the arms table, the differences table, the notes."""
    s = report["settings"]
    labels = {k: m["label"] for k, m in report["metrics"].items()}
    lines = []
    if report["warning"]:
        lines += [f"> **WARNING: {report['warning']}**", ""]
    lines += [
        "# FeatSR evidence study",
        "",
        f"{s['num_images']} test images (half A {s['num_images_half_a']}, half B "
        f"{s['num_images_half_b']}), class set `{s['types']}`, TT100K IoU > {s['iou']:g}, "
        f"F1 at score >= {s['min_score']:g}. Percent, one decimal; arm rows are means over runs.",
        "",
    ]
    head = ["arm", "runs"] + [labels[k] for k in _ARM_COLUMNS] + ["G change", "cost"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, a in report["arms"].items():
        cells = [arm, str(a["num_runs"])] + [_pct(a["mean"][k]) for k in _ARM_COLUMNS]
        for k in ("generator_change", "cost"):
            cells.append(_pct(None if a[k] is None else 100.0 * a[k]))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "G change: mean ||G(x) - x|| / ||x|| on small test RoIs; cost: inference time relative "
        "to the base detector (both in percent).",
        "",
        f"## Difference from `{s['control']}` ({100 * s['confidence']:g}% paired bootstrap "
        f"interval over test images, {s['num_samples']} resamples)",
        "",
        f"Primary endpoint, fixed before the runs: {labels[s['primary_metric']]}. Verdict: "
        "helps if its interval lies above 0, hurts if below, no effect shown otherwise.",
        "",
    ]
    head = ["arm − control"] + [f"Δ{labels[k]}" for k in _DIFF_COLUMNS]
    head += [f"signs of Δ{labels[s['primary_metric']]} over seeds", "verdict"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, d in report["differences"].items():
        primary = d[s["primary_metric"]]
        cells = [arm] + [_with_interval(d[k]) for k in _DIFF_COLUMNS]
        cells += [primary["signs"] or "n/a", d["verdict"]]
        lines.append("| " + " | ".join(cells) + " |")
    if report["notes"]:
        lines += ["", "## Notes", ""]
        lines += [f"- {k}: {_note(v)}" for k, v in report["notes"].items()]
    lines += ["", "## Metrics", ""]
    lines += [f"- {m['label']}: {m['meaning']}" for m in report["metrics"].values()]
    return "\n".join(lines) + "\n"


_PANELS = (("ap", "all sizes"), ("ap_small", "small (area < 32²)"),
           ("ap_medium", "medium (32² to 96²)"), ("ap_large", "large (area > 96²)"))  # fmt: skip


def save_difference_png(report: Mapping[str, Any], path: str) -> None:
    """One panel per COCO size bin: each arm's AP difference from the control with its interval,
    and a line at 0. Uses matplotlib's Agg canvas directly (the global backend is left alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    arms = list(report["differences"])
    s = report["settings"]
    fig = Figure(figsize=(13.0, 1.6 + 0.45 * max(len(arms), 1)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(_PANELS), sharey=True)
    for ax, (key, title) in zip(axes, _PANELS):
        ax.axvline(0.0, color="black", linewidth=1)
        shown = 0
        for y, arm in enumerate(arms):
            d = report["differences"][arm][key]
            if d["estimate"] is None:
                continue
            shown += 1
            if d["low"] is not None:  # a percentile interval need not contain the estimate
                ax.plot([d["low"], d["high"]], [y, y], color="C0", linewidth=2)
                ax.plot([d["low"], d["high"]], [y, y], "|", color="C0", markersize=12)
            ax.plot([d["estimate"]], [y], "o", color="C0", markersize=7)
        if not shown:
            ax.text(0.5, 0.5, "no ground truth\nin this range", transform=ax.transAxes,
                    ha="center", va="center")  # fmt: skip
            ax.set_xticks([])
        ax.set_title(f"AP, {title}" + (" (primary)" if key == PRIMARY_METRIC else ""))
        ax.set_xlabel(f"AP difference from {s['control']} (points)")
        ax.grid(axis="x", linestyle=":")
    axes[0].set_yticks(range(len(arms)), arms)
    axes[0].set_ylim(len(arms) - 0.5, -0.5)
    fig.suptitle(
        f"Difference from {s['control']}: mean over seed pairs, "
        f"{100 * s['confidence']:g}% paired bootstrap interval over test images"
    )
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png"), binary=True)


def write_study_report(report: dict, out_dir: str) -> None:
    """Writes ``table.json``, ``table.md`` and ``difference_from_control.png`` to ``out_dir``,
    each atomically."""
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_json(os.path.join(out_dir, "table.json"), report, indent=2)
    atomic_write_text(os.path.join(out_dir, "table.md"), format_study_markdown(report))
    save_difference_png(report, os.path.join(out_dir, "difference_from_control.png"))
