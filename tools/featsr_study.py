#!/usr/bin/env python
"""FeatSR's evidence study in one command: does feature SR help small objects, and which
supervision is best? (featsr_d2.engine.featsr_study; design and reading in docs/RESULTS.md.)

From one stage-1 detector, the arms (control: the small/large split without SR; extractor, aligned
or with its previous placement, or rescaled to F^1.0's scale; naive; none; bottleneck) run stage 2
then stage 3 on the frozen trunk's cached outputs, paired by seed, at each schedule factor; the
base detector, an arm with at most K small proposals per image through G, and the base with sliced
inference are evaluated beside them. Writes OUT/table.md, table.json, difference_from_control.png
(factor 1), OUT/x<k>/ (factor k) and OUT/summary.md; a rerun resumes (cache chunks and finished
runs are kept)::

    python tools/featsr_study.py --schedules 1 4       # the demo's detector: issue 21's design
    python tools/featsr_study.py --seeds 0 --arms control extractor --out output/study_quick
"""

import argparse
import logging
import os

import torch
from detectron2.utils.logger import setup_logger

import featsr_d2  # noqa: F401  (registers datasets, backbones and heads)
from featsr_d2.engine.featsr_study import ARMS, DEFAULT_ARMS, StudySettings, run_study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--stage2-config", default=os.path.join(CONFIGS, "featsr_MNV2_FPN_synth.yaml"))
    p.add_argument(
        "--stage3-config", default=os.path.join(CONFIGS, "featsr_MNV2_FPN_synth_stage3.yaml")
    )
    p.add_argument(
        "--weights", default="output/faster_rcnn_MNV2_FPN_synth/model_final.pth",
        help="the stage-1 detector every arm starts from",
    )  # fmt: skip
    p.add_argument("--out", default="output/featsr_study", help="output folder (resumable)")
    p.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), choices=list(ARMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument(
        "--schedules", nargs="+", type=int, default=[1],
        help="factors k of the phases' iterations; each arm runs at each (row <arm>_x<k>)",
    )  # fmt: skip
    p.add_argument("--stage2-iters", type=int, default=None, help="default: the config's")
    p.add_argument("--stage3-iters", type=int, default=None, help="default: the config's")
    p.add_argument(
        "--num-train-images", type=int, default=400,
        help="training images cached for stages 2 and 3 (2 epochs of the demo's 200 + 100 "
        "iterations of 4 images); 0: all",
    )  # fmt: skip
    p.add_argument("--num-test-images", type=int, default=None, help="default: all")
    p.add_argument(
        "--caps", nargs="*", type=int, default=[],
        help="K values evaluated on --capped-arm at factor 1 (MODEL.FEATSR.MAX_SMALL_PER_IMAGE)",
    )  # fmt: skip
    p.add_argument("--capped-arm", default="extractor", choices=list(ARMS))
    p.add_argument("--no-sliced", action="store_true", help="skip the sliced-inference row")
    p.add_argument(
        "--cost-images",
        type=int,
        default=30,
        help="test images timed for the cost column (0: none)",
    )
    p.add_argument("--bootstrap-samples", type=int, default=1000)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides")
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    setup_logger(name="featsr_d2")
    setup_logger(name="detectron2").setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = StudySettings(
        stage2_config=args.stage2_config,
        stage3_config=args.stage3_config,
        weights=args.weights,
        out_dir=args.out,
        arms=args.arms,
        seeds=args.seeds,
        schedules=args.schedules,
        stage2_iters=args.stage2_iters,
        stage3_iters=args.stage3_iters,
        num_train_images=args.num_train_images or None,
        num_test_images=args.num_test_images,
        caps=args.caps,
        capped_arm=args.capped_arm,
        sliced=not args.no_sliced,
        cost_images=args.cost_images,
        bootstrap_samples=args.bootstrap_samples,
        opts=args.opts,
    )
    run_study(settings)
    with open(os.path.join(args.out, "summary.md")) as f:
        print(f.read())


if __name__ == "__main__":
    main()
