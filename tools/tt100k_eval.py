"""The official TT100K protocol on files: prints the FeatSR Table 1 row of a results file
(:mod:`featsr_d2.core.tt100k_protocol`), optionally writes the rates as JSON and the
accuracy-recall curve as a PNG. Exit status 2 on unreadable or invalid input, naming the file.

    python tools/tt100k_eval.py --gt annotations.json --results results.json \\
        [--ids test/ids.txt] [--iou 0.5] [--minscore S] [--types type45|all] \\
        [--json out.json] [--curve out.png] [--name MODEL]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

from featsr_d2.core.tt100k import (
    TT100KFormatError,
    load_ids,
    load_results,
    read_json,
    validate_annotations,
)
from featsr_d2.core.tt100k_categories import CLASS_SETS
from featsr_d2.core.tt100k_protocol import (
    accuracy_recall_curve,
    check_results,
    evaluate_tt100k,
)
from featsr_d2.core.tt100k_report import (
    format_table,
    save_curve_png,
    summarize,
    write_json_atomic,
)


def finite_float(text: str) -> float:
    """An argparse type: a finite float (``nan`` and ``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def unit_interval(text: str) -> float:
    """An argparse type for an IoU threshold: a float in ``[0, 1)`` (a match needs IoU strictly
    above it, so 1 or more would match nothing)."""
    value = finite_float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside [0, 1): no pair could ever match")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tools/tt100k_eval.py",
        description="Evaluates TT100K results with the official protocol (accuracy, recall, F1 "
        "by object size) and prints the FeatSR Table 1 row.",
    )
    parser.add_argument("--gt", required=True, help="ground truth annotations.json")
    parser.add_argument("--results", required=True, help="results file, same format plus 'score'")
    parser.add_argument("--ids", help="split file, one image id per line (default: all gt images)")
    parser.add_argument(
        "--iou", type=unit_interval, default=0.5, help="IoU threshold (strict), in [0, 1)"
    )
    parser.add_argument(
        "--minscore", type=finite_float, default=0.0, help="score threshold, in the results' scale"
    )
    parser.add_argument("--types", choices=CLASS_SETS, default="type45", help="class set")
    parser.add_argument("--json", help="write the rates (fractions) to this JSON file")
    parser.add_argument("--curve", help="write the accuracy-recall curve to this PNG file")
    parser.add_argument("--name", help="model name in the table (default: the results file stem)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluates the files named in ``argv``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        gt = read_json(args.gt, "annotation file")
        ids = load_ids(args.ids, gt) if args.ids else None
        # Only the evaluated split's records: a bad record of another split does not matter.
        validate_annotations(gt, source=args.gt, require_score=False, img_ids=ids)
        results = load_results(args.results)
        kwargs = {"img_ids": ids, "iou": args.iou, "types": args.types}
        problems = check_results(gt, results, **kwargs)
    except (OSError, TT100KFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    metrics = evaluate_tt100k(gt, results, min_score=args.minscore, **kwargs)
    print(format_table(metrics, args.name or os.path.splitext(os.path.basename(args.results))[0]))
    for option, path, write in (
        ("--json", args.json, lambda: write_json_atomic(summarize(metrics), args.json)),
        ("--curve", args.curve, lambda: _write_curve(gt, results, metrics, args, kwargs)),
    ):
        if not path:
            continue
        try:
            write()
        except OSError as e:
            print(f"error: {option} {path}: cannot write ({e.strerror or e})", file=sys.stderr)
            return 2
    return 0


def _write_curve(gt, results, metrics, args, kwargs) -> None:
    curve = accuracy_recall_curve(gt, results, **kwargs)
    label = f"score >= {args.minscore:g}"
    save_curve_png(curve, args.curve, operating_point=metrics, operating_label=label)


if __name__ == "__main__":
    sys.exit(main())
