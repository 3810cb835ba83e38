#!/usr/bin/env python
"""Evaluate SR networks against MATLAB-bicubic upscaling: PSNR and SSIM (Y channel, ``scale``
border pixels cropped, unless told otherwise) per image and on average, for several JPEG qualities
of the LR input; parameters and seconds per image; a markdown table, a JSON file and side-by-side
PNGs (input, bicubic, each network, ground truth).

CFG=configs/sr/quick_schedules/cajnn_x4_jpeg_cpu.yaml
python tools/eval_sr.py --model CAJNN=$CFG@output/sr/cajnn_x4_jpeg_cpu/model_final.pth \
    --model Real-ESRGAN=configs/sr/realesrgan_x4plus.yaml \
    --qualities 10 20 40 0 --output output/sr_eval [MODEL.DEVICE cpu ...]

--model LABEL=CONFIG[@WEIGHTS] builds CONFIG's network (WEIGHTS overrides MODEL.SR.WEIGHTS); the
trailing KEY VALUE overrides apply to every model's config (e.g. MODEL.SR.SELF_ENSEMBLE True;
MODEL.DEVICE falls back to cpu without CUDA). Images, qualities, channel and border default to the
first config's DATASETS.SR.TEST and TEST.SR. --deblock adds the "JPEG removal then bicubic" row
(non-local means at a per-quality strength tuned on --tune-images, then bicubic);
--compare A:B adds paired bootstrap intervals over the images of A - B per quality. Images too
small for the scale are skipped and listed.
"""

import argparse
import json
import os

from detectron2.utils.logger import setup_logger

from featsr_d2.checkpoint import load_initial_sr_weights
from featsr_d2.config import get_sr_cfg
from featsr_d2.core.sr import Bicubic
from featsr_d2.core.sr.deblock import DeblockBicubic
from featsr_d2.data.sr_dataset import resolve_sr_images
from featsr_d2.engine import cpu_without_cuda
from featsr_d2.evaluation.paired_bootstrap import format_interval, parse_compare
from featsr_d2.evaluation.sr_metrics import (
    compare_sr,
    evaluate_sr,
    format_sr_table,
    tune_deblock_strengths,
)
from featsr_d2.modeling.sr import build_sr_network
from featsr_d2.utils.file_io import atomic_write_json, atomic_write_text
from featsr_d2.utils.output_lock import hold_output_dir


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=CONFIG[@WEIGHTS]")
    parser.add_argument("--images", nargs="+", help="folders, files or bundled:test")
    parser.add_argument("--qualities", nargs="+", type=int, help="JPEG qualities; 0 = none")
    parser.add_argument("--scale", type=int, help="scale when no --model is given")
    parser.add_argument("--rgb", action="store_true", help="measure on RGB, not on Y")
    parser.add_argument("--crop-border", type=int, help="default: the scale")
    parser.add_argument("--center-crop", type=int, default=0, help="evaluate central NxN crops")
    parser.add_argument("--output", default="output/sr_eval", help="results folder")
    parser.add_argument("--no-vis", action="store_true", help="do not write side-by-side PNGs")
    parser.add_argument(
        "--deblock",
        action="store_true",
        help='add the "JPEG removal (non-local means) then bicubic" row',
    )
    parser.add_argument(
        "--tune-images",
        nargs="+",
        default=["bundled:train"],
        help="images on which --deblock's strengths are chosen (not test images)",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="A:B",
        help="bootstrap intervals of method A minus method B",
    )
    parser.add_argument("--bootstrap-samples", type=int, default=2000)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with hold_output_dir(args.output):  # one run per output folder
        return _main(args)


def _main(args):
    setup_logger(name="featsr_d2", abbrev_name="featsr")  # per-image progress
    if args.scale is not None and args.scale < 1:
        raise SystemExit(f"--scale must be a positive integer, got {args.scale}")
    pairs = parse_compare(args.compare, "method labels")
    models, cfgs = {}, []
    for spec in args.model:
        label, sep, rest = spec.partition("=")
        if not sep or not label:
            raise SystemExit(f"--model takes LABEL=CONFIG[@WEIGHTS], got {spec!r}")
        config, _, weights = rest.partition("@")
        opts = list(args.opts) + (["MODEL.SR.WEIGHTS", weights] if weights else [])
        cfg = cpu_without_cuda(get_sr_cfg(config, opts))
        cfgs.append(cfg)
        model = build_sr_network(cfg)
        load_initial_sr_weights(
            model, weights=cfg.MODEL.SR.WEIGHTS, warm_start=cfg.MODEL.SR.WARM_START
        )
        models[label] = model.eval()
    base = cfgs[0] if cfgs else cpu_without_cuda(get_sr_cfg(None, args.opts))
    scales = {cfg.MODEL.SR.SCALE for cfg in cfgs} | ({args.scale} if args.scale else set())
    if len(scales) > 1:
        raise SystemExit(f"the models do not share one scale: {sorted(scales)}")
    scale = scales.pop() if scales else base.MODEL.SR.SCALE
    if scale < 1:
        raise SystemExit(f"MODEL.SR.SCALE must be a positive integer, got {scale}")
    qualities = args.qualities if args.qualities is not None else base.TEST.SR.JPEG_QUALITIES
    bad = [q for q in qualities if not 0 <= q <= 100]
    if bad:
        raise SystemExit(f"JPEG qualities must be 0 (none) or 1..100, got {bad}")
    extra = {}
    if args.deblock:
        strengths = tune_deblock_strengths(
            resolve_sr_images(args.tune_images), scale=scale, qualities=qualities,
            center_crop=args.center_crop, y_channel=not args.rgb and base.TEST.SR.Y_CHANNEL,
        )  # fmt: skip
        extra["Deblock+Bicubic"] = DeblockBicubic(scale, strengths)
    models = {"Bicubic": Bicubic(scale=scale), **extra, **models}
    for a, b in pairs:
        if a not in models or b not in models:
            raise SystemExit(f"--compare {a}:{b}: methods are {list(models)}")
    border = base.TEST.SR.CROP_BORDER
    results = evaluate_sr(
        models,
        resolve_sr_images(args.images or base.DATASETS.SR.TEST),
        scale=scale,
        qualities=qualities,
        crop_border=args.crop_border
        if args.crop_border is not None
        else (None if border < 0 else border),
        y_channel=not args.rgb and base.TEST.SR.Y_CHANNEL,
        device=base.MODEL.DEVICE,
        vis_dir=None if args.no_vis else os.path.join(args.output, "vis"),
        reference="Bicubic",
        center_crop=args.center_crop,
    )
    table = format_sr_table(results)
    settings = results["settings"]
    crop = f"central {args.center_crop} px crops of " if args.center_crop else ""
    header = (
        f"x{scale}, {settings['channel']} channel, {settings['crop_border']} px border cropped, "
        f"{crop}images: {', '.join(settings['images'])}\n\n"
    )
    if results["skipped"]:
        header += (
            f"Skipped {len(results['skipped'])} images: "
            + "; ".join(f"{s['image']} ({s['reason']})" for s in results["skipped"])
            + "\n\n"
        )
    if args.deblock:
        strengths = extra["Deblock+Bicubic"].strengths
        results["deblock_strengths"] = strengths
        table += f"\n\nDeblock+Bicubic: non-local-means strength h per JPEG quality {strengths}"
    if pairs:
        results["comparisons"] = compare_sr(results, pairs, num_samples=args.bootstrap_samples)
        qs = settings["qualities"]
        table += (
            "\n\nPaired bootstrap over the images, A - B, PSNR dB / SSIM, estimate [95% "
            f"interval] ({args.bootstrap_samples} resamples):\n\n| A - B | "
            + " | ".join(f"q={q}" if q else "no JPEG" for q in qs)
            + " |\n|"
            + " --- |" * (len(qs) + 1)
        )
        for key, by_q in results["comparisons"].items():
            cells = [
                f"{format_interval(by_q[q]['psnr'])} / {format_interval(by_q[q]['ssim'], 4)}"
                for q in qs
            ]
            table += f"\n| {key} | " + " | ".join(cells) + " |"
    atomic_write_json(os.path.join(args.output, "results.json"), results, indent=1)
    atomic_write_text(os.path.join(args.output, "table.md"), header + table + "\n")
    print(header + table)
    print(json.dumps({m: f"{n:,}" for m, n in results["parameters"].items()}))
    return results


if __name__ == "__main__":
    main()
