"""Compares detectors' TT100K results files with a control's, on the same test images: the FeatSR
study's table (COCO AP, AP-S/M/L, the TT100K protocol) and each arm's difference from the control
with a paired bootstrap interval over the images (:mod:`featsr_d2.evaluation.featsr_study_report`).
For results written by any framework, e.g. MMDetection's ``FeatSRTT100KMetric(output_dir=...)``.

    python tools/compare_tt100k_results.py --gt data/tt100k_synth10/annotations.json \\
        --ids data/tt100k_synth10/test/ids.txt --control work/control/tt100k_results.json \\
        --arm naive=work/naive/tt100k_results.json --out work/compare

Each ``--control`` / ``--arm NAME=FILE`` may be given once per seed (repeat it, in the same seed
order for every arm): records pair by position. Writes ``table.md``, ``table.json`` and
``difference_from_control.png`` to ``--out``; exit status 2 on unreadable or invalid input.
"""

from __future__ import annotations

import argparse
import os
import sys

from featsr_d2.core.tt100k import TT100KFormatError, load_annotations, load_ids, load_results
from featsr_d2.evaluation.featsr_study_report import build_study_report, write_study_report


def _record(path: str, seed: int, num_images: int) -> dict:
    none = [0] * num_images  # no ground-truth-box diagnostics: n/a in the table
    return {
        "seed": seed,
        "results": load_results(path),
        "gt_box_small": {"correct": none, "total": none},
        "generator_change": None,
        "cost": None,
    }


def _named(value: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {value!r}")
    return name, path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gt", required=True, help="TT100K annotations.json")
    p.add_argument("--ids", required=True, help="the test split's ids.txt (its order is kept)")
    p.add_argument("--control", action="append", required=True, help="results file, per seed")
    p.add_argument("--arm", action="append", type=_named, default=[], help="NAME=results file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--types", default="all", help="class set: all or type45")
    p.add_argument("--iou", type=float, default=0.5)
    p.add_argument("--minscore", type=float, default=0.5)
    p.add_argument("--bootstrap-samples", type=int, default=1000)
    args = p.parse_args(argv)
    try:
        gt = load_annotations(args.gt)
        img_ids = load_ids(args.ids, gt)
        runs = {"control": [_record(f, s, len(img_ids)) for s, f in enumerate(args.control)]}
        for name, path in args.arm:
            if name == "control":
                sys.exit("--arm: 'control' is the --control files' name; pick another")
            runs.setdefault(name, []).append(_record(path, len(runs.get(name, [])), len(img_ids)))
    except TT100KFormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = build_study_report(
        gt, img_ids, runs, types=args.types, iou=args.iou, min_score=args.minscore,
        num_samples=args.bootstrap_samples,
        notes={"files": {k: [os.path.abspath(f) for f in v] for k, v in
                         [("control", args.control)] + [(n, [f]) for n, f in args.arm]}},
    )  # fmt: skip
    write_study_report(report, args.out)
    with open(os.path.join(args.out, "table.md")) as f:
        print(f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
