"""The report of the TT100K protocol (:mod:`featsr_d2.core.tt100k_protocol`): its rates,
the FeatSR paper's Table 1 row, its JSON file and the accuracy-recall curve's picture."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from featsr_d2.core.tt100k_categories import SIZE_BINS
from featsr_d2.core.tt100k_protocol import AccuracyRecallCurve
from featsr_d2.utils.file_io import atomic_write, atomic_write_json

__all__ = [
    "TABLE_BINS",
    "format_table",
    "save_curve_png",
    "summarize",
    "table_scores",
    "write_json_atomic",
]

# Column order of the FeatSR paper's Table 1 ("Overall" is the "all" bin).
TABLE_BINS = ("small", "medium", "large", "all")
_METRIC_KEYS = ("recall", "accuracy", "f1")

PathLike = str | os.PathLike


def summarize(results: Mapping[str, Any]) -> dict[str, Any]:
    """The rates (``recall``, ``accuracy``, ``f1``) of :func:`evaluate_tt100k`'s results."""
    out: dict[str, Any] = {n: {k: results[n][k] for k in _METRIC_KEYS} for n in SIZE_BINS}
    out["per_class"] = {
        cls: {k: m[k] for k in _METRIC_KEYS} for cls, m in results.get("per_class", {}).items()
    }
    return out


def table_scores(results: Mapping[str, Any]) -> dict[str, float]:
    """The Table 1 numbers of :func:`evaluate_tt100k`'s results in percent, as the evaluators
    return them: ``{bin}_{f1,recall,accuracy}`` for the small, medium, large and all bins."""
    return {
        f"{name}_{key}": 100.0 * results[name][key]
        for name in TABLE_BINS
        for key in ("f1", "recall", "accuracy")
    }


def format_table(results: Mapping[str, Any], model_name: str) -> str:
    """Formats the results in the layout of the FeatSR paper's Table 1 (percent, one decimal).

    ``Overall`` is the ``[0, 400)`` ("all") bin. Example::

        Model  |       Small        |       Medium       |       Large        |      Overall
               |   Rec.  Acc.    F1 |   Rec.  Acc.    F1 |   Rec.  Acc.    F1 |   Rec.  Acc.    F1
        -------+--------------------+--------------------+--------------------+-------------------
        FeatSR |   81.2  73.0  76.9 |   ...
    """
    titles = {"small": "Small", "medium": "Medium", "large": "Large", "all": "Overall"}
    cell = 18
    name_w = max(len("Model"), len(model_name))
    header1 = [f"{'Model':<{name_w}}"] + [f"{titles[b]:^{cell}}" for b in TABLE_BINS]
    header2 = [" " * name_w] + [f"{'Rec.':>6}{'Acc.':>6}{'F1':>6}" for _ in TABLE_BINS]
    row = [f"{model_name:<{name_w}}"] + [
        "".join(f"{100.0 * results[b][k]:6.1f}" for k in ("recall", "accuracy", "f1"))
        for b in TABLE_BINS
    ]
    rule = "-" * (name_w + 1) + "+" + "+".join("-" * (cell + 2) for _ in TABLE_BINS)
    lines = [" | ".join(header1), " | ".join(header2), rule, " | ".join(row)]
    return "\n".join(line.rstrip() for line in lines)


def write_json_atomic(obj: Any, path: PathLike) -> None:
    """Dumps ``obj`` as JSON to ``path`` atomically (temporary file in the same folder, rename)."""
    atomic_write_json(os.fspath(path), obj, indent=2)


def save_curve_png(
    curve: AccuracyRecallCurve,
    path: PathLike,
    *,
    operating_point: Mapping[str, Any] | None = None,
    operating_label: str = "operating point",
    title: str | None = None,
) -> None:
    """Plots the accuracy-recall curve of every size bin to a PNG, atomically.

    The axes follow the official TT100K notebook: accuracy on x, recall on y. ``operating_point``,
    the results of :func:`evaluate_tt100k` at the chosen score threshold, is marked on each line.
    Uses matplotlib's Agg canvas directly, leaving the global pyplot backend alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 5.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for b, name in enumerate(TABLE_BINS):
        low, high = SIZE_BINS[name]
        color = f"C{b}"
        values = curve.bins[name]
        ax.plot(values["accuracy"], values["recall"], color=color, label=f"{name} [{low}, {high})")
        if operating_point is not None:
            ax.plot(
                [operating_point[name]["accuracy"]],
                [operating_point[name]["recall"]],
                marker="o",
                color=color,
                markeredgecolor="black",
                linestyle="none",
            )
    if operating_point is not None:  # one neutral legend entry for the markers
        ax.plot(
            [],
            [],
            marker="o",
            color="white",
            markeredgecolor="black",
            linestyle="none",
            label=operating_label,
        )
    ax.set_xlabel("accuracy")
    ax.set_ylabel("recall")
    ax.set_xlim(0.0, 1.02)
    ax.set_ylim(0.0, 1.02)
    ax.grid(linestyle=":")
    ax.legend(loc="lower left")
    ax.set_title(title or "TT100K accuracy-recall")
    fig.tight_layout()
    atomic_write(os.fspath(path), lambda f: fig.savefig(f, format="png"), binary=True)
