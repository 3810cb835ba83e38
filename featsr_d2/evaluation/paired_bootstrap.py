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
cumulative sum, computed for every category and IoU threshold in a few array operations (about a
millisecond for 600 images of 20 detections, so that thousands of resamples stay cheap). On the
full set it equals pycocotools' AP (tested), also at one IoU threshold (``iou_thresholds=[0.5]``:
AP50); there are no crowd boxes in the datasets it is used on (crowd ground truth is not
supported).
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


def _iou(d: Sequence[float], g: Sequence[float]) -> float:
    """IoU of two XYXY boxes, as pycocotools (no +1)."""
    width = max(min(d[2], g[2]) - max(d[0], g[0]), 0.0)
    inter = width * max(min(d[3], g[3]) - max(d[1], g[1]), 0.0)
    union = (d[2] - d[0]) * (d[3] - d[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
    return inter / union if union > 0 else 0.0


def _match(ious: list[list[float]], gt_ignore: list[bool], threshold: float) -> list[int]:
    """COCOeval.evaluateImg's greedy matching of one image and category for one threshold: per
    detection (rows of ``ious``, by descending score), the ground truth it matches, or -1. Ground
    truth must be ordered not-ignored first. Plain Python: the groups are a few boxes each."""
    taken = [False] * len(gt_ignore)
    out = []
    for row in ious:
        best, best_iou = -1, min(threshold, 1 - 1e-10)
        for g, iou in enumerate(row):
            if taken[g]:
                continue
            if best > -1 and not gt_ignore[best] and gt_ignore[g]:
                break
            if iou < best_iou:
                continue
            best, best_iou = g, iou
        if best > -1:
            taken[best] = True
        out.append(best)
    return out


class CocoAP:
    """COCO box AP over a fixed set of images, recomputable on weighted resamples of them."""

    def __init__(
        self,
        ground_truth: Sequence[Sequence[tuple[Sequence[float], int]]],
        detections: Sequence[Sequence[tuple[Sequence[float], int, float]]],
        area_range: str = "all",
        iou_thresholds: Sequence[float] | None = None,
    ):
        """
        Args:
            ground_truth: per image, [(XYXY box, category)].
            detections: per image (same order), [(XYXY box, category, score)].
            area_range: "all", "small", "medium" or "large".
            iou_thresholds: the IoU thresholds AP is averaged over; None: COCO's 0.50:0.05:0.95.
                ``[0.5]`` gives AP50 (pycocotools' ``stats[1]``), ``[0.75]`` AP75.
        """
        if len(ground_truth) != len(detections):
            raise ValueError(
                f"{len(ground_truth)} images of ground truth, {len(detections)} of detections"
            )
        if iou_thresholds is None:
            thresholds = IOU_THRESHOLDS
        else:
            thresholds = np.asarray(iou_thresholds, float).reshape(-1)
            if len(thresholds) == 0 or not np.all((thresholds >= 0) & (thresholds <= 1)):
                raise ValueError(f"IoU thresholds must be in [0, 1], got {list(iou_thresholds)}")
        self.iou_thresholds = thresholds
        lo, hi = AREA_RANGES[area_range]
        self.num_images = len(ground_truth)

        def outside(box: list[float]) -> bool:
            return not lo <= (box[2] - box[0]) * (box[3] - box[1]) <= hi

        # The objects of each category, by image (image order, then file order), in one pass.
        gt_by_cat: dict[int, dict[int, list]] = {}
        det_by_cat: dict[int, dict[int, list]] = {}
        for i, gts in enumerate(ground_truth):
            for b, c in gts:
                gt_by_cat.setdefault(c, {}).setdefault(i, []).append([float(v) for v in b])
        for i, dets in enumerate(detections):
            for b, c, s in dets:
                det_by_cat.setdefault(c, {}).setdefault(i, []).append(([float(v) for v in b], s))
        num_t = len(thresholds)
        unmatched = (False,) * num_t
        # per category: arrays over its detections that count at some threshold (image, matched[T],
        # ignored[T], sorted by score) and the per-image count of non-ignored ground truth
        cats = []
        for cat in sorted(gt_by_cat.keys() | det_by_cat.keys()):
            gt_imgs, det_imgs = gt_by_cat.get(cat, {}), det_by_cat.get(cat, {})
            # per detection: image, rank in its image, score, matched and ignored per threshold
            det_img: list[int] = []
            det_rank: list[int] = []
            det_score: list[float] = []
            det_tp: list[tuple[bool, ...]] = []
            det_ign: list[tuple[bool, ...]] = []
            npos = np.zeros(self.num_images)
            for i in sorted(gt_imgs.keys() | det_imgs.keys()):
                dl = sorted(det_imgs.get(i, []), key=lambda t: -t[1])  # stable, as mergesort
                dl = dl[:MAX_DETS]
                gl = gt_imgs.get(i, [])
                g_ign = [outside(b) for b in gl]
                order = sorted(range(len(gl)), key=g_ign.__getitem__)  # stable: counted first
                gl, g_ign = [gl[k] for k in order], [g_ign[k] for k in order]
                npos[i] = g_ign.count(False)
                matches = None
                if gl:
                    ious = [[_iou(b, g) for g in gl] for b, _ in dl]
                    matches = [_match(ious, g_ign, thr) for thr in thresholds]
                for rank, (b, s) in enumerate(dl):
                    if matches is None:
                        tp, ign = unmatched, (outside(b),) * num_t
                    else:
                        tp = tuple(m[rank] >= 0 for m in matches)
                        out = outside(b)
                        ign = tuple(g_ign[m[rank]] if m[rank] >= 0 else out for m in matches)
                    if all(ign):
                        continue  # ignored at every threshold: changes no count
                    det_img.append(i)
                    det_rank.append(rank)
                    det_score.append(s)
                    det_tp.append(tp)
                    det_ign.append(ign)
            img = np.array(det_img, int)
            tp = np.array(det_tp, bool).reshape(-1, num_t).T
            ign = np.array(det_ign, bool).reshape(-1, num_t).T
            # by descending score, ties in (image, rank) order: COCOeval's stable sort of the
            # images' detections concatenated in image order
            order = np.lexsort((np.array(det_rank, int), img, -np.array(det_score, float)))
            cats.append((img[order], tp[:, order], ign[:, order], npos))
        self._pack(cats)

    def _pack(self, cats: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Lays the categories out for :meth:`__call__`, which handles them all with a few array
        operations instead of a loop.

        Most detections are false positives counted at every threshold ("plain"): their weights
        enter through one cumulative sum over every category's detections (in category order,
        by descending score). The thresholds' rows hold only the others, of the categories with
        a true positive somewhere, in buckets of categories of similar column counts (at most
        twice the bucket's smallest), padded at the end with columns of weight 0 that repeat the
        last one (a repeated point changes no AP).
        """
        num_t = len(self.iou_thresholds)
        self._npos = np.stack([npos for *_, npos in cats]) if cats else np.zeros((0, 0))
        starts = np.cumsum([0] + [len(img) for img, *_ in cats])
        self._img = np.concatenate([img for img, *_ in cats]) if cats else np.zeros(0, int)
        self._plain = np.concatenate([~tp.any(0) & ~ign.any(0) for _, tp, ign, _ in cats] or
                                     [np.zeros(0, bool)])  # fmt: skip
        # start of each category in the cumulative sum (index of the element before it, or -1)
        self._before = starts[:-1] - 1
        with_tp = [k for k, (_, tp, _, _) in enumerate(cats) if tp.any()]  # the others: AP 0
        cols = {k: starts[k] + np.flatnonzero(~self._plain[starts[k] : starts[k + 1]])
                for k in with_tp}  # fmt: skip
        self._buckets = []
        by_size = sorted(cols, key=lambda k: len(cols[k]))
        while by_size:
            smallest = len(cols[by_size[0]])
            size = next((n for n, k in enumerate(by_size) if len(cols[k]) > 2 * smallest),
                        len(by_size))  # fmt: skip
            members, by_size = np.array(by_size[:size]), by_size[size:]
            width = max(len(cols[k]) for k in members)
            weight_at = np.full((len(members), width), len(self._img))  # the appended weight 0
            fp_at = np.zeros((len(members), width), int)
            tp = np.zeros((len(members), num_t, width), bool)
            ign = np.ones((len(members), num_t, width), bool)
            for row, k in enumerate(members):
                c, n = cols[k], len(cols[k])
                weight_at[row, :n] = c
                fp_at[row, :n], fp_at[row, n:] = c, c[-1]
                first = starts[k]
                tp[row, :, :n] = cats[k][1][:, c - first]
                ign[row, :, :n] = cats[k][2][:, c - first]
            self._buckets.append((members, weight_at, fp_at, tp, ign))

    def __call__(self, weights: np.ndarray | None = None) -> float:
        """AP in percent with image ``i`` counted ``weights[i]`` times (default: once each); -1
        when no category has ground truth in the area range."""
        w = np.ones(self.num_images) if weights is None else np.asarray(weights, float)
        if len(self._npos) == 0:
            return -1.0
        # one dot product per category: a matrix product can round float weights differently
        totals = np.array([np.dot(npos, w) for npos in self._npos])
        det_weight = np.append(w[self._img], 0.0)
        plain_fps = np.cumsum(det_weight[:-1] * self._plain)
        base = np.append(0.0, plain_fps)[self._before + 1]
        aps = np.zeros(len(totals))  # 0: no true positive at any threshold
        for members, weight_at, fp_at, tp, ign in self._buckets:
            fps = plain_fps[fp_at] - base[members, None]
            aps[members] = _categories_ap(det_weight[weight_at], fps, tp, ign, totals[members])
        counted = totals > 0
        return float(np.mean(aps[counted]) * 100) if counted.any() else -1.0

    def on_indices(self, indices: np.ndarray) -> float:
        """AP on the resample ``indices`` (image indices with repeats)."""
        return self(np.bincount(indices, minlength=self.num_images))


def _categories_ap(
    det_weight: np.ndarray, plain_fps: np.ndarray, tp: np.ndarray, ign: np.ndarray,
    totals: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Categories' (first axis) precision averaged over the recall points and IoU thresholds
    (``tp`` and ``ign``'s second axis), from their detections (last axis, by descending score)
    that are a true positive or ignored at some threshold; ``plain_fps`` is the weight of the
    other detections (false positives at every threshold) up to each column, ``det_weight`` the
    columns' weights, ``totals`` the weights of the ground truth.

    COCOeval's precision-recall list holds every counted detection; this one, for all thresholds
    at once, holds the columns only, with an ignored column (or one of an image of weight 0) at
    weight 0. The same AP: a recall point reads the precision, made monotone, at the first
    detection reaching it, always a true positive (or the first detection, for recall 0, where
    the monotone precision is the highest of all); and the monotone precision at a true positive
    is the highest precision of the true positives from it on, since a detection that is not one
    does not raise the precision. For integer weights (resamples) every count is exact, so AP is
    the same to the bit; for other weights, to rounding.
    """
    num_c, num_t, num_d = tp.shape
    counted = np.where(ign, 0.0, det_weight[:, None, :])
    tps = np.cumsum(counted * tp, axis=2)
    fps = np.cumsum(counted * ~tp, axis=2) + plain_fps[:, None, :]
    recall = tps / np.where(totals > 0, totals, 1.0)[:, None, None]  # total 0: not averaged
    precision = tps / (tps + fps + np.spacing(1))
    precision = np.maximum.accumulate(precision[:, :, ::-1], axis=2)[:, :, ::-1]
    # COCOeval reads the precision at the first detection whose recall reaches each recall point,
    # i.e. at index #(detections with recall < point); detection j is below point p for p >= c_j.
    num_r = len(RECALL_POINTS)
    c = np.searchsorted(RECALL_POINTS, recall, side="right")
    c += np.arange(num_c * num_t).reshape(num_c, num_t, 1) * (num_r + 1)
    first = np.bincount(c.ravel(), minlength=num_c * num_t * (num_r + 1))
    first = np.cumsum(first.reshape(num_c, num_t, num_r + 1), axis=2)[:, :, :num_r]
    valid = first < num_d
    read = np.take_along_axis(precision, np.minimum(first, num_d - 1), axis=2)
    return np.where(valid, read, 0.0).reshape(num_c, num_t * num_r).mean(axis=1)
