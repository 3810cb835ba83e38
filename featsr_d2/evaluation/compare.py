"""Side-by-side comparison of TT100K detectors on small objects: which ones one detector finds and
the other misses, and pictures of them (``make demo``: the control against FeatSR). Matches come
from saved detections with the official protocol of :mod:`featsr_d2.evaluation.tt100k_protocol`.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from featsr_d2.data.tt100k_categories import SIZE_BINS
from featsr_d2.evaluation.tt100k_protocol import match_detections
from featsr_d2.evaluation.visualize import (
    FN_COLOR,
    FP_COLOR,
    TP_COLOR,
    draw_matches,
    tile,
    write_png,
)
from featsr_d2.utils.image import swap_rgb_bgr

__all__ = [
    "small_object_differences",
    "save_comparison_png",
]


def _per_model(fn, gt_annos, results, img_ids, **kwargs) -> dict:
    ids = list(img_ids) if img_ids is not None else None
    return {name: fn(gt_annos, res, img_ids=ids, **kwargs) for name, res in results.items()}


def _is_small(box: Sequence[float]) -> bool:
    lo, hi = SIZE_BINS["small"]
    return lo <= max(box[2] - box[0], box[3] - box[1]) < hi


def small_object_differences(
    matches_a: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    matches_b: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
) -> list[tuple[str, int, int]]:
    """Images where the two models' outcomes on small ground-truth objects differ.

    ``matches_*`` are :func:`~featsr_d2.evaluation.tt100k_protocol.match_detections` outputs on
    the same images. Returns ``(img_id, found only by b, found only by a)`` for every image with a
    difference, most differences first.
    """
    out = []
    for img_id, ma in matches_a.items():
        mb = matches_b[img_id]
        gained = lost = 0
        for ga, gb in zip(ma["gt"], mb["gt"]):
            if not _is_small(ga["bbox"]):
                continue
            gained += gb["matched"] and not ga["matched"]
            lost += ga["matched"] and not gb["matched"]
        if gained or lost:
            out.append((img_id, int(gained), int(lost)))
    out.sort(key=lambda t: (-(t[1] + t[2]), t[0]))
    return out


def _caption(width: int, text: str) -> np.ndarray:
    bar = np.full((24, width, 3), 255, np.uint8)
    cv2.putText(bar, text, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    return bar


def _crop_around(matches: Mapping[str, Sequence[Mapping[str, Any]]], shape, margin: int = 48):
    """The box (x0, y0, x1, y1) around the small ground-truth objects, with a margin."""
    boxes = [g["bbox"] for g in matches["gt"] if _is_small(g["bbox"])]
    if not boxes:
        return 0, 0, shape[1], shape[0]
    b = np.asarray(boxes)
    x0, y0 = max(0, int(b[:, 0].min()) - margin), max(0, int(b[:, 1].min()) - margin)
    x1, y1 = min(shape[1], int(b[:, 2].max()) + margin), min(shape[0], int(b[:, 3].max()) + margin)
    return x0, y0, x1, y1


def _shift(matches, x0: int, y0: int):
    def moved(obj):
        x_a, y_a, x_b, y_b = obj["bbox"]
        return {**obj, "bbox": [x_a - x0, y_a - y0, x_b - x0, y_b - y0]}

    return {"gt": [moved(o) for o in matches["gt"]], "det": [moved(o) for o in matches["det"]]}


def save_comparison_png(
    path: str,
    matches: Mapping[str, Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]],
    image_files: Mapping[str, str],
    img_ids: Sequence[str],
    *,
    title: str = "",
) -> None:
    """One row per image, one column per model (``matches`` maps a model name to its
    :func:`match_detections` output), cropped around the image's small objects and enlarged;
    written atomically to ``path``."""
    if not img_ids:
        raise ValueError("save_comparison_png needs at least one image id")
    names = list(matches)
    cells = []
    for img_id in img_ids:
        bgr = cv2.imread(image_files[img_id], cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read image {image_files[img_id]} (image id {img_id})")
        rgb = swap_rgb_bgr(bgr)
        x0, y0, x1, y1 = _crop_around(matches[names[0]][img_id], rgb.shape)
        crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        for name in names:
            drawn = draw_matches(crop, _shift(matches[name][img_id], x0, y0), min_side=320)
            cells.append(np.concatenate([_caption(drawn.shape[1], f"{name}: {img_id}"), drawn]))
    mosaic = tile(cells, columns=len(names))
    legend = _caption(mosaic.shape[1], title)
    x = max(8 + cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0] + 20, 0)
    outcomes = ((TP_COLOR, "found"), (FN_COLOR, "missed"), (FP_COLOR, "false positive"))
    for color, text in outcomes:
        cv2.rectangle(legend, (x, 6), (x + 14, 18), color, -1)
        cv2.putText(legend, text, (x + 20, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        x += 40 + cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0]
    write_png(path, np.concatenate([legend, mosaic], axis=0))


def match_all(
    gt_annos: Mapping[str, Any],
    results: Mapping[str, Mapping[str, Any]],
    *,
    img_ids: Iterable[str] | None = None,
    min_score: float = 0.5,
    iou: float = 0.5,
    types="type45",
):
    """:func:`match_detections` for each model's results (the argument order of
    :func:`compare_models`)."""
    kwargs = {"min_score": min_score, "iou": iou, "types": types}
    return _per_model(match_detections, gt_annos, results, img_ids, **kwargs)
