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
trailing KEY VALUE overrides apply to every model's config (e.g. MODEL.SR.SELF_ENSEMBLE True).
Images, qualities, channel and border default to the first config's DATASETS.SR.TEST and TEST.SR.
"""

import argparse
import json
import os

from detectron2.utils.logger import setup_logger

from featsr_d2.data.sr_dataset import resolve_sr_images
from featsr_d2.evaluation.sr_metrics import evaluate_sr, format_sr_table
from featsr_d2.modeling.sr import Bicubic, build_sr_network, get_sr_cfg
from featsr_d2.utils.file_io import atomic_write_json, atomic_write_text


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
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logger(name="featsr_d2", abbrev_name="featsr")  # per-image progress
    models, cfgs = {}, []
    for spec in args.model:
        label, sep, rest = spec.partition("=")
        if not sep or not label:
            raise SystemExit(f"--model takes LABEL=CONFIG[@WEIGHTS], got {spec!r}")
        config, _, weights = rest.partition("@")
        opts = list(args.opts) + (["MODEL.SR.WEIGHTS", weights] if weights else [])
        cfg = get_sr_cfg(config, opts)
        cfgs.append(cfg)
        models[label] = build_sr_network(cfg).eval()
    base = cfgs[0] if cfgs else get_sr_cfg(None, args.opts)
    scales = {cfg.MODEL.SR.SCALE for cfg in cfgs} | ({args.scale} if args.scale else set())
    if len(scales) > 1:
        raise SystemExit(f"the models do not share one scale: {sorted(scales)}")
    scale = scales.pop() if scales else base.MODEL.SR.SCALE
    models = {"Bicubic": Bicubic(scale=scale), **models}
    border = base.TEST.SR.CROP_BORDER
    results = evaluate_sr(
        models,
        resolve_sr_images(args.images or base.DATASETS.SR.TEST),
        scale=scale,
        qualities=args.qualities if args.qualities is not None else base.TEST.SR.JPEG_QUALITIES,
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
    atomic_write_json(os.path.join(args.output, "results.json"), results, indent=1)
    atomic_write_text(os.path.join(args.output, "table.md"), header + table + "\n")
    print(header + table)
    print(json.dumps({m: f"{n:,}" for m, n in results["parameters"].items()}))
    return results


if __name__ == "__main__":
    main()
