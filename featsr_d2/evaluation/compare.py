"""Side-by-side comparison of TT100K detectors on small objects: which ones one detector finds and
the other misses, and zoomed pictures of them (``make demo``: the control against FeatSR). Matches
come from saved detections with the official protocol of
:mod:`featsr_d2.core.tt100k_protocol`.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from featsr_d2.core.tt100k_categories import SIZE_BINS
from featsr_d2.core.tt100k_protocol import match_detections
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
    "match_all",
    "save_sign_comparison_png",
    "small_object_differences",
    "small_sign_differences",
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

    ``matches_*`` are :func:`~featsr_d2.core.tt100k_protocol.match_detections` outputs on
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


def small_sign_differences(
    matches_a: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    matches_b: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
) -> list[tuple[str, int, bool]]:
    """The small ground-truth signs that one model finds and the other misses: ``(img_id, index
    of the sign in the image's ground truth, found by b)``, those b finds first, then by image."""
    out = []
    for img_id, ma in matches_a.items():
        for k, (ga, gb) in enumerate(zip(ma["gt"], matches_b[img_id]["gt"])):
            if _is_small(ga["bbox"]) and ga["matched"] != gb["matched"]:
                out.append((img_id, k, bool(gb["matched"])))
    out.sort(key=lambda t: (not t[2], t[0], t[1]))
    return out


def _caption(width: int, text: str, color=(0, 0, 0)) -> np.ndarray:
    bar = np.full((22, width, 3), 255, np.uint8)
    cv2.putText(bar, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1)
    return bar


def _sign_window(bbox: Sequence[float], context: float, min_side: int) -> tuple[int, int, int]:
    """A square window (x0, y0, side) centred on a sign, ``context`` times its long side."""
    x0, y0, x1, y1 = bbox
    side = int(round(max(context * max(x1 - x0, y1 - y0), min_side)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def _crop(rgb: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """``rgb[y0:y0+side, x0:x0+side]``, grey where the window leaves the image."""
    out = np.full((side, side, 3), 128, np.uint8)
    h, w = rgb.shape[:2]
    ax, ay, bx, by = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if ax < bx and ay < by:
        out[ay - y0 : by - y0, ax - x0 : bx - x0] = rgb[ay:by, ax:bx]
    return out


def _verdict(matches: Mapping[str, Sequence[Mapping[str, Any]]], index: int) -> str:
    """ "found" (with the best overlapping true positive's score) or "missed"."""
    sign = matches["gt"][index]
    if not sign["matched"]:
        return "missed"
    x0, y0, x1, y1 = sign["bbox"]
    scores = [d["score"] for d in matches["det"] if d["matched"] and d["category"] ==
              sign["category"] and d["bbox"][0] < x1 and d["bbox"][2] > x0 and
              d["bbox"][1] < y1 and d["bbox"][3] > y0]  # fmt: skip
    return f"found {max(scores):.2f}" if scores else "found"


def save_sign_comparison_png(
    path: str,
    matches: Mapping[str, Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]],
    image_files: Mapping[str, str],
    signs: Sequence[tuple[str, int, bool]],
    *,
    title: str = "",
    cell: int = 176,
    context: float = 3.0,
    pairs_per_row: int = 3,
) -> None:
    """Zoomed crops of the small signs two models disagree on (``signs`` from
    :func:`small_sign_differences`): per sign, a square window of ``context`` times its long side
    around it, enlarged to ``cell`` pixels, once per model (``matches`` maps two model names to
    their :func:`match_detections` outputs) with its detections drawn and its verdict on that
    sign; ``pairs_per_row`` signs per row. Written atomically to ``path``."""
    if not signs:
        raise ValueError("save_sign_comparison_png needs at least one sign")
    names = list(matches)
    cells = []
    for img_id, index, _ in signs:
        bgr = cv2.imread(image_files[img_id], cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read image {image_files[img_id]} (image id {img_id})")
        sign = matches[names[0]][img_id]["gt"][index]
        x0, y0, side = _sign_window(sign["bbox"], context, min_side=24)
        crop = _crop(swap_rgb_bgr(bgr), x0, y0, side)
        for name in names:
            m = matches[name][img_id]
            drawn = draw_matches(crop, _shift(m, x0, y0), min_side=cell)
            drawn = cv2.resize(drawn, (cell, cell), interpolation=cv2.INTER_AREA)
            verdict = _verdict(m, index)
            color = TP_COLOR if verdict != "missed" else FN_COLOR
            head = _caption(cell, f"{name}: {verdict}", color=color)
            foot = _caption(cell, f"{img_id} {sign['category']} {_long_side(sign['bbox'])} px")
            cells.append(np.concatenate([head, drawn, foot]))
    mosaic = tile(cells, columns=len(names) * pairs_per_row, pad=6)
    legend = _caption(mosaic.shape[1], title)
    x = max(8 + cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] + 20, 0)
    outcomes = ((TP_COLOR, "found"), (FN_COLOR, "missed"), (FP_COLOR, "false positive"))
    for color, text in outcomes:
        cv2.rectangle(legend, (x, 5), (x + 14, 17), color, -1)
        cv2.putText(legend, text, (x + 20, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        x += 40 + cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0]
    write_png(path, np.concatenate([legend, mosaic], axis=0))


def _long_side(bbox: Sequence[float]) -> int:
    return int(round(max(bbox[2] - bbox[0], bbox[3] - bbox[1])))


def _shift(matches, x0: int, y0: int):
    def moved(obj):
        x_a, y_a, x_b, y_b = obj["bbox"]
        return {**obj, "bbox": [x_a - x0, y_a - y0, x_b - x0, y_b - y0]}

    return {"gt": [moved(o) for o in matches["gt"]], "det": [moved(o) for o in matches["det"]]}


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
