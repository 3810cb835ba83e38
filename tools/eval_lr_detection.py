#!/usr/bin/env python
"""Detection on low-resolution images, TDSR's Table 1 / Table 2 layout: rows HR, LR (padded with
black to the detector's input size), Bicubic and any SR models (SR, SR-FT, SR-FT+, TDSR, CAJNN...);
columns PSNR and the dataset's detection metrics (the TT100K table and COCO AP for TT100K-format
data, COCO AP for COCO, VOC AP50 per class for VOC). Writes table.md, results.json and side-by-side
PNGs (vis/) with each row's detections drawn. See featsr_d2/evaluation/lr_detection.py.

CFG=configs/tdsr/quick_schedules/tdsr_dbpn_slim_x4_synth_cpu.yaml
python tools/eval_lr_detection.py --config $CFG \
    --row SR=@output/sr/dbpn_slim_x4_cpu/model_final.pth \
    --row SR-FT=@output/tdsr_synth_cpu/srft/model_final.pth \
    --row TDSR=@output/tdsr_synth_cpu/tdsr/model_final.pth --output output/tdsr_synth_cpu/table

--config: a TaskDrivenSR config giving the dataset (DATASETS.TEST[0] unless --dataset), the frozen
detector, the scale and the LR degradation (INPUT.SR; --jpeg-quality Q compresses the LR inputs at
quality Q, the CAJNN paper's setting). --row LABEL=[CONFIG][@WEIGHTS] adds an SR row built from
CONFIG (default: --config) with WEIGHTS as its SR weights (an SR checkpoint or a TDSR one).
--compare A:B (repeatable) adds paired bootstrap intervals over the test images of A - B for PSNR,
COCO AP and AP-S (featsr_d2/evaluation/paired_bootstrap.py) to table.md and results.json. The
trailing KEY VALUE overrides apply to every config; MODEL.DEVICE falls back to cpu without CUDA.
File names made from labels and image ids are sanitized (they cannot leave --output).
"""

import argparse
import os

from detectron2.data import build_detection_test_loader
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger

import featsr_d2  # noqa: F401  (registers datasets, the TaskDrivenSR meta-architecture, SR networks)
from featsr_d2.checkpoint import TDSRCheckpointer
from featsr_d2.config import get_featsr_cfg
from featsr_d2.data import set_bad_record_policy
from featsr_d2.data.dataset_views import first_images
from featsr_d2.engine import cpu_without_cuda
from featsr_d2.engine.tdsr_trainer import build_lr_detection_mapper
from featsr_d2.evaluation.lr_detection import (
    LRDetectionRow,
    build_lr_detection_evaluator,
    default_metrics,
    evaluate_lr_detection,
)
from featsr_d2.evaluation.lr_detection_report import compare_rows, format_lr_detection_table
from featsr_d2.evaluation.padded_lr_detector import PaddedLRDetector
from featsr_d2.evaluation.paired_bootstrap import format_interval, parse_compare
from featsr_d2.evaluation.sr_visualize import safe_file_stem
from featsr_d2.utils.file_io import atomic_write_json, atomic_write_text
from featsr_d2.utils.output_lock import hold_output_dir


def build_tdsr_model(cfg):
    """The ``TaskDrivenSR`` model of ``cfg`` with the detector's and the SR network's weights
    that it names (``MODEL.TDSR.DETECTOR_WEIGHTS``, ``MODEL.SR.WEIGHTS``)."""
    model = build_model(cfg)
    TDSRCheckpointer.from_config(cfg, model).load("")
    return model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a TaskDrivenSR config")
    parser.add_argument("--row", action="append", default=[], metavar="LABEL=[CONFIG][@WEIGHTS]")
    parser.add_argument("--dataset", help="default: the config's DATASETS.TEST[0]")
    parser.add_argument("--jpeg-quality", type=int, default=0, help="JPEG-compress the LR inputs")
    parser.add_argument("--metrics", nargs="+", choices=("tt100k", "coco", "voc"))
    parser.add_argument("--max-images", type=int, default=0, help="0: the whole dataset")
    parser.add_argument("--num-vis", type=int, default=4, help="side-by-side PNGs to write")
    parser.add_argument("--output", default="output/lr_detection", help="results folder")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="A:B",
        help="bootstrap intervals of row A minus row B",
    )
    parser.add_argument(
        "--bootstrap-samples", type=int, default=300,
        help="resamples per --compare (COCO AP is recomputed twice per resample: about 40 ms "
        "each on 100 images of 45 classes, so 9 pairs x 2000 resamples take an hour)",
    )  # fmt: skip
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with hold_output_dir(args.output):  # one run per output folder
        return _main(args)


def _main(args):
    setup_logger(name="featsr_d2", abbrev_name="featsr")
    setup_logger(name="detectron2", abbrev_name="d2")
    opts = list(args.opts)
    if args.jpeg_quality:
        opts += ["INPUT.SR.DEGRADATIONS", "['bicubic', 'jpeg']"]
        opts += ["INPUT.SR.JPEG_QUALITY", f"[{args.jpeg_quality}]"]
    pairs = parse_compare(args.compare, "row labels")
    base = cpu_without_cuda(get_featsr_cfg(args.config, opts))
    if base.MODEL.META_ARCHITECTURE != "TaskDrivenSR":
        raise SystemExit(f"{args.config} is not a TaskDrivenSR config")
    dataset = args.dataset or base.DATASETS.TEST[0]
    set_bad_record_policy([dataset], base.DATASETS.TT100K.ON_BAD_RECORD)
    if args.max_images:
        dataset = first_images(dataset, args.max_images)
    scale = base.MODEL.SR.SCALE

    bicubic = build_tdsr_model(
        cpu_without_cuda(
            get_featsr_cfg(args.config, [*opts, "MODEL.SR.NAME", "Bicubic", "MODEL.SR.WEIGHTS", ""])
        )
    )
    rows = {
        "HR": LRDetectionRow(bicubic.detector, "hr"),
        "LR": LRDetectionRow(PaddedLRDetector(bicubic.detector, scale), "lr"),
        "Bicubic": LRDetectionRow(bicubic, "sr"),
    }
    for spec in args.row:
        label, sep, rest = spec.partition("=")
        if not sep or not label or label in rows:
            raise SystemExit(f"--row takes a new LABEL=[CONFIG][@WEIGHTS], got {spec!r}")
        config, _, weights = rest.partition("@")
        cfg = cpu_without_cuda(get_featsr_cfg(config or args.config, opts))
        if weights:
            cfg.MODEL.SR.WEIGHTS = weights
        if cfg.MODEL.SR.SCALE != scale:
            raise SystemExit(f"row {label} upscales by {cfg.MODEL.SR.SCALE}, the table by {scale}")
        rows[label] = LRDetectionRow(build_tdsr_model(cfg), "sr")
    for a, b in pairs:
        if a not in rows or b not in rows:
            raise SystemExit(f"--compare {a}:{b}: rows are {list(rows)}")

    metrics = args.metrics or default_metrics(dataset)
    evaluators = {
        label: build_lr_detection_evaluator(
            base,
            dataset,
            os.path.join(args.output, "inference", safe_file_stem(label)),
            metrics,
        )
        for label in rows
    }
    loader = build_detection_test_loader(
        base, dataset, mapper=build_lr_detection_mapper(base, is_train=False)
    )
    results = evaluate_lr_detection(
        rows,
        loader,
        evaluators,
        dataset_name=dataset,
        scale=scale,
        input_format=bicubic.input_format,
        y_channel=base.TEST.SR.Y_CHANNEL,
        crop_border=None if base.TEST.SR.CROP_BORDER < 0 else base.TEST.SR.CROP_BORDER,
        vis_dir=os.path.join(args.output, "vis") if args.num_vis > 0 else None,
        num_vis=args.num_vis,
        vis_min_score=base.TEST.TT100K.MIN_SCORE,
        vis_iou=base.TEST.TT100K.IOU,
        vis_types=base.TEST.TT100K.TYPES if "tt100k" in metrics else "all",
    )
    degradations = " + ".join(base.INPUT.SR.DEGRADATIONS)
    if "jpeg" in base.INPUT.SR.DEGRADATIONS:
        degradations += f" (quality {list(base.INPUT.SR.JPEG_QUALITY)})"
    results["settings"].update(degradations=degradations, rows={k: r.kind for k, r in rows.items()})
    header = (
        f"{dataset}, x{scale} ({degradations}), {results['num_images']} images; PSNR on "
        f"{results['settings']['psnr_channel']}, {results['settings']['crop_border']} px border\n\n"
    )
    table = format_lr_detection_table(results)
    if pairs:
        results["comparisons"] = compare_rows(
            results, dataset, pairs, num_samples=args.bootstrap_samples
        )
        table += (
            "\n\nPaired bootstrap over the images, A - B, estimate [95% interval] "
            f"({args.bootstrap_samples} resamples):\n\n| A - B | PSNR (dB) | AP | AP-S |\n"
            "| --- | --- | --- | --- |\n"
        )
        for key, c in results["comparisons"].items():
            cells = [format_interval(c[m]) if m in c else "-" for m in ("PSNR", "AP", "APs")]
            table += f"| {key} | " + " | ".join(cells) + " |\n"
    atomic_write_json(os.path.join(args.output, "results.json"), results, indent=1)
    atomic_write_text(os.path.join(args.output, "table.md"), header + table + "\n")
    print(header + table)
    return results


if __name__ == "__main__":
    main()
