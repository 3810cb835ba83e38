"""The report of :func:`featsr_d2.evaluation.lr_detection.evaluate_lr_detection`: the Markdown
tables in the layout of TDSR's Tables 1 and 2, and paired bootstrap intervals between rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from featsr_d2.evaluation.lr_detection import ground_truth_boxes
from featsr_d2.evaluation.paired_bootstrap import CocoAP, paired_bootstrap

__all__ = ["compare_rows", "format_lr_detection_table"]

COCO_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
TT100K_BINS = ("small", "medium", "large", "all")


def compare_rows(
    results: Mapping[str, Any],
    dataset_name: str,
    pairs: Sequence[tuple[str, str]],
    *,
    num_samples: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, float]]]:
    """Paired bootstrap intervals over the test images of ``A - B`` for each (A, B) in ``pairs``:
    mean PSNR (when both rows have one), COCO AP and AP-S (recomputed per resample with
    :class:`featsr_d2.evaluation.paired_bootstrap.CocoAP`).

    Returns:
        ``{"A - B": {"PSNR": interval, "AP": interval, "APs": interval}}``, each interval as
        :func:`featsr_d2.evaluation.paired_bootstrap.paired_bootstrap` returns it.
    """
    per_image = results["per_image"]
    ids = per_image["image_ids"]
    truth = ground_truth_boxes(dataset_name)
    missing = [i for i in ids if i not in truth]
    if missing:
        raise ValueError(f"images {missing[:3]} are not in {dataset_name}")
    gt = [[(box, c) for box, c in truth[i]] for i in ids]
    aps: dict[tuple[str, str], CocoAP] = {}

    def ap(label: str, area: str) -> CocoAP:
        if (label, area) not in aps:
            dets = [[(d[:4], int(d[4]), d[5]) for d in image] for image in
                    per_image[label]["detections"]]  # fmt: skip
            aps[label, area] = CocoAP(gt, dets, area)
        return aps[label, area]

    out: dict[str, dict[str, dict[str, float]]] = {}
    for a, b in pairs:
        for label in (a, b):
            if label not in per_image:
                raise ValueError(f"no row {label!r} to compare; rows: {list(results['rows'])}")
        key = f"{a} - {b}"
        out[key] = {}
        pa, pb = per_image[a]["psnr"], per_image[b]["psnr"]
        if pa and pb:
            diff = np.asarray(pa) - np.asarray(pb)
            out[key]["PSNR"] = paired_bootstrap(
                len(ids), lambda idx, d=diff: float(d[idx].mean()), num_samples=num_samples,
                seed=seed,
            )  # fmt: skip
        for metric, area in (("AP", "all"), ("APs", "small")):
            fa, fb = ap(a, area), ap(b, area)
            out[key][metric] = paired_bootstrap(
                len(ids), lambda idx, fa=fa, fb=fb: fa.on_indices(idx) - fb.on_indices(idx),
                num_samples=num_samples, seed=seed,
            )  # fmt: skip
    return out


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def format_lr_detection_table(results: Mapping[str, Any]) -> str:
    """Markdown tables of :func:`evaluate_lr_detection`'s results: one row per method, PSNR, then
    the TT100K table (recall / accuracy / F1 per size, percent), COCO's AP columns and VOC's mean
    AP50 as present; VOC's per-class AP50 in a second table."""
    rows = results["rows"]
    first = next(iter(rows.values()))["metrics"]
    header = ["Method", "PSNR (dB)"]
    if "tt100k" in first:
        header += [f"{b} R / A / F1" for b in TT100K_BINS]
    if "bbox" in first:
        voc = any(k.startswith("AP50-") for k in first["bbox"])
        header += ["mAP50 (VOC)"] if voc else list(COCO_COLUMNS)
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    per_class: list[str] = []
    for label, row in rows.items():
        m = row["metrics"]
        cells = [label, _fmt(row["psnr"])]
        if "tt100k" in m:
            t = m["tt100k"]
            cells += [
                " / ".join(f"{t[f'{b}_{k}']:.1f}" for k in ("recall", "accuracy", "f1"))
                for b in TT100K_BINS
            ]
        if "bbox" in m:
            box = m["bbox"]
            classes = [k[len("AP50-") :] for k in box if k.startswith("AP50-")]
            if classes:
                cells += [_fmt(box.get("AP50"))]
                if not per_class:
                    per_class = [
                        "| Method | " + " | ".join(classes) + " |",
                        "|" + " --- |" * (len(classes) + 1),
                    ]
                per_class.append(
                    f"| {label} | " + " | ".join(f"{box[f'AP50-{c}']:.1f}" for c in classes) + " |"
                )
            else:
                cells += [_fmt(box.get(c)) for c in COCO_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    return table + ("\n\nAP50 per class:\n\n" + "\n".join(per_class) if per_class else "")
