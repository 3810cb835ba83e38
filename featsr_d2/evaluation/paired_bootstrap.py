"""Paired bootstrap intervals over test images, and COCO box AP recomputable on any resample of
the images, for comparing two methods evaluated on the same images.

:func:`paired_bootstrap` resamples the image indices with replacement (the same resample for both
methods, hence "paired") and reports the percentile interval of a difference statistic: the mean
per-image difference of PSNR, or the difference of two AP values recomputed on the resample.

:class:`CocoAP` recomputes COCO's box AP from per-image detections in milliseconds per resample.
It follows pycocotools' ``COCOeval`` (bbox, ``maxDets`` 100, area ranges all / small < 32^2 /
medium < 96^2 / large): per image and category, detections sorted by score are matched greedily
to the unmatched ground truth of highest IoU >= t, preferring ground truth inside the area range;
detections matched to ground truth outside the range, or unmatched and outside it, are ignored;
precision is made monotone and read at the 101 recall points 0, 0.01, ..., 1; AP is the mean over
the IoU thresholds 0.50:0.05:0.95 and the categories with ground truth in the range. Matching
happens once per image; a resample only re-weights the images, so AP on a resample is a weighted
cumulative sum. On the full set it equals pycocotools' AP (tested); there are no crowd boxes in
the datasets it is used on (crowd ground truth is not supported).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

__all__ = ["AREA_RANGES", "CocoAP", "format_interval", "paired_bootstrap", "parse_compare"]

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
AREA_RANGES = {"all": (0.0, 1e10), "small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2),
               "large": (96.0**2, 1e10)}  # fmt: skip
MAX_DETS = 100


def paired_bootstrap(
    num_items: int,
    statistic: Callable[[np.ndarray], float],
    *,
    num_samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """The statistic on all items and its percentile bootstrap interval.

    Args:
        num_items: the number of paired items (test images).
        statistic: maps an index array (a resample, with repeats) to the difference of interest,
            e.g. ``lambda idx: np.mean(a[idx] - b[idx])``.
        num_samples: bootstrap resamples.
        confidence: the interval's coverage.
        seed: the resamples depend only on it.

    Returns:
        ``{"estimate", "low", "high", "p_above_0", "num_items", "num_samples", "confidence"}``;
        ``p_above_0`` is the fraction of resamples with a positive statistic.
    """
    if num_items < 2:
        raise ValueError(f"a bootstrap needs at least 2 paired items, got {num_items}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    values = np.array(
        [statistic(rng.integers(0, num_items, num_items)) for _ in range(num_samples)]
    )
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return {
        "estimate": float(statistic(np.arange(num_items))),
        "low": float(low),
        "high": float(high),
        "p_above_0": float(np.mean(values > 0)),
        "num_items": int(num_items),
        "num_samples": int(num_samples),
        "confidence": float(confidence),
    }


def parse_compare(specs: Sequence[str], what: str = "row labels") -> list[tuple[str, str]]:
    """The (A, B) pairs of the tools' ``--compare A:B``; a malformed one exits, naming it."""
    pairs = []
    for spec in specs:
        a, sep, b = spec.partition(":")
        if not sep or not a or not b:
            raise SystemExit(f"--compare takes A:B (two {what}), got {spec!r}")
        pairs.append((a, b))
    return pairs


def format_interval(result: Mapping[str, float], digits: int = 2) -> str:
    """``+0.53 [+0.21, +0.88]``."""
    f = f"{{:+.{digits}f}}"
    return f"{f.format(result['estimate'])} [{f.format(result['low'])}, {f.format(result['high'])}]"


def _iou_matrix(dets: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU of XYXY boxes (n, 4) x (m, 4), as pycocotools (no +1)."""
    if len(dets) == 0 or len(gts) == 0:
        return np.zeros((len(dets), len(gts)))
    x1 = np.maximum(dets[:, None, 0], gts[None, :, 0])
    y1 = np.maximum(dets[:, None, 1], gts[None, :, 1])
    x2 = np.minimum(dets[:, None, 2], gts[None, :, 2])
    y2 = np.minimum(dets[:, None, 3], gts[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_d = (dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1])
    area_g = (gts[:, 2] - gts[:, 0]) * (gts[:, 3] - gts[:, 1])
    union = area_d[:, None] + area_g[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _match(ious: np.ndarray, gt_ignore: np.ndarray, threshold: float):
    """COCOeval.evaluateImg's greedy matching for one threshold: (det matched, det matched to an
    ignored ground truth). Ground truth must be ordered not-ignored first."""
    num_d, num_g = ious.shape
    taken = np.zeros(num_g, bool)
    matched = np.zeros(num_d, bool)
    ignored = np.zeros(num_d, bool)
    for d in range(num_d):
        best, best_iou = -1, min(threshold, 1 - 1e-10)
        for g in range(num_g):
            if taken[g]:
                continue
            if best > -1 and not gt_ignore[best] and gt_ignore[g]:
                break
            if ious[d, g] < best_iou:
                continue
            best, best_iou = g, ious[d, g]
        if best > -1:
            taken[best] = True
            matched[d] = True
            ignored[d] = gt_ignore[best]
    return matched, ignored


class CocoAP:
    """COCO box AP over a fixed set of images, recomputable on weighted resamples of them."""

    def __init__(
        self,
        ground_truth: Sequence[Sequence[tuple[Sequence[float], int]]],
        detections: Sequence[Sequence[tuple[Sequence[float], int, float]]],
        area_range: str = "all",
    ):
        """
        Args:
            ground_truth: per image, [(XYXY box, category)].
            detections: per image (same order), [(XYXY box, category, score)].
            area_range: "all", "small", "medium" or "large".
        """
        if len(ground_truth) != len(detections):
            raise ValueError(
                f"{len(ground_truth)} images of ground truth, {len(detections)} of detections"
            )
        lo, hi = AREA_RANGES[area_range]
        self.num_images = len(ground_truth)
        cats = sorted({c for gts in ground_truth for _, c in gts} | {
            c for dets in detections for _, c, _ in dets})  # fmt: skip
        # per category: arrays over all its detections (image, score, matched[T], ignored[T])
        # and the per-image count of non-ignored ground truth
        self._cats = []
        for cat in cats:
            det_img, det_score, det_tp, det_ign = [], [], [], []
            npos = np.zeros(self.num_images)
            any_eval = False
            for i in range(self.num_images):
                g = np.array([b for b, c in ground_truth[i] if c == cat], float).reshape(-1, 4)
                dl = [(b, s) for b, c, s in detections[i] if c == cat]
                if len(g) == 0 and not dl:
                    continue
                any_eval = True
                g_area = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
                g_ign = (g_area < lo) | (g_area > hi)
                order = np.argsort(g_ign, kind="stable")
                g, g_ign = g[order], g_ign[order]
                npos[i] = np.count_nonzero(~g_ign)
                dl.sort(key=lambda t: -t[1])  # stable, as COCOeval's mergesort
                dl = dl[:MAX_DETS]
                if not dl:
                    continue
                d = np.array([b for b, _ in dl], float).reshape(-1, 4)
                d_area = (d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1])
                d_out = (d_area < lo) | (d_area > hi)
                ious = _iou_matrix(d, g)
                tp = np.zeros((len(IOU_THRESHOLDS), len(d)), bool)
                ign = np.zeros_like(tp)
                for t, thr in enumerate(IOU_THRESHOLDS):
                    m, mi = _match(ious, g_ign, thr)
                    tp[t] = m
                    ign[t] = mi | (~m & d_out)
                det_img.append(np.full(len(d), i))
                det_score.append(np.array([s for _, s in dl], float))
                det_tp.append(tp)
                det_ign.append(ign)
            if not any_eval:
                continue
            if det_img:
                img = np.concatenate(det_img)
                score = np.concatenate(det_score)
                tp = np.concatenate(det_tp, axis=1)
                ign = np.concatenate(det_ign, axis=1)
                order = np.argsort(-score, kind="mergesort")
                img, tp, ign = img[order], tp[:, order], ign[:, order]
            else:
                img = np.zeros(0, int)
                tp = ign = np.zeros((len(IOU_THRESHOLDS), 0), bool)
            self._cats.append((img, tp, ign, npos))

    def __call__(self, weights: np.ndarray | None = None) -> float:
        """AP in percent with image ``i`` counted ``weights[i]`` times (default: once each); -1
        when no category has ground truth in the area range."""
        w = np.ones(self.num_images) if weights is None else np.asarray(weights, float)
        aps = []
        for img, tp, ign, npos in self._cats:
            total = float(np.dot(npos, w))
            if total == 0:
                continue
            dw = w[img]
            precision_at = np.zeros((len(IOU_THRESHOLDS), len(RECALL_POINTS)))
            for t in range(len(IOU_THRESHOLDS)):
                keep = ~ign[t] & (dw > 0)
                wt = dw[keep]
                tps = np.cumsum(wt * tp[t][keep])
                fps = np.cumsum(wt * ~tp[t][keep])
                if len(tps) == 0:
                    continue
                recall = tps / total
                precision = tps / (tps + fps + np.spacing(1))
                precision = np.maximum.accumulate(precision[::-1])[::-1]
                idx = np.searchsorted(recall, RECALL_POINTS, side="left")
                valid = idx < len(precision)
                precision_at[t, valid] = precision[idx[valid]]
            aps.append(precision_at.mean())
        return float(np.mean(aps) * 100) if aps else -1.0

    def on_indices(self, indices: np.ndarray) -> float:
        """AP on the resample ``indices`` (image indices with repeats)."""
        return self(np.bincount(indices, minlength=self.num_images))
