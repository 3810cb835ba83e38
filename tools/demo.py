#!/usr/bin/env python
"""`make demo`: FeatSR on the embedded default data, on CPU, against a fair control.

1. Generates the demo's synthetic TT100K (ten classes) under $DETECTRON2_DATASETS/tt100k_synth10
   if absent.
2. Stage 1: trains the MobileNetV2-FPN Faster R-CNN base detector with tools/train_net.py and
   evaluates it with the official TT100K protocol.
3. FeatSR's stages 2 and 3 from it, as the FeatSR study runs them (tools/featsr_study.py, one seed):
   the backbone and RPN are frozen, so their outputs are cached once and the heads train from the
   cache; the control arm gets the same split into small and large predictors, the same images and
   iterations, without SR (G stays the identity).
4. Prints the base detector, the control and FeatSR side by side (COCO AP, the TT100K table, FeatSR
   minus control with a paired bootstrap interval over the test images) and draws the test images
   where the control and FeatSR differ on small signs.

Everything resumes if a previous run stopped; what is finished is only re-read.
"""

import argparse
import os
import subprocess
import sys
import time

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.logger import setup_logger

import featsr_d2  # noqa: F401  (registers datasets, backbones and heads)
from featsr_d2.config import get_featsr_cfg
from featsr_d2.data.builtin import DEMO_CATEGORIES
from featsr_d2.data.synthetic import generate_synthetic_tt100k
from featsr_d2.data.tt100k import load_annotations, load_results
from featsr_d2.engine.featsr_study import StudySettings, run_study
from featsr_d2.evaluation.compare import match_all, save_comparison_png, small_object_differences

TOOLS = os.path.dirname(os.path.abspath(__file__))
TRAIN_NET = os.path.join(TOOLS, "train_net.py")
CONFIGS = os.path.join(os.path.dirname(TOOLS), "configs")
STAGE1_CONFIG = os.path.join(CONFIGS, "faster_rcnn_MNV2_FPN_synth.yaml")
STAGE2_CONFIG = os.path.join(CONFIGS, "featsr_MNV2_FPN_synth.yaml")
STAGE3_CONFIG = os.path.join(CONFIGS, "featsr_MNV2_FPN_synth_stage3.yaml")
# Training images cached for stages 2 and 3 (the study caches 800): what fits the demo's budget.
DEMO_TRAIN_IMAGES = 500


def ensure_synthetic_dataset(dataset_name: str, num_train: int, num_test: int, seed: int) -> None:
    """Writes the demo's synthetic TT100K (its ten classes) unless it exists."""
    root = MetadataCatalog.get(dataset_name).image_root
    if os.path.exists(os.path.join(root, "annotations.json")):
        print(f"[demo] using the synthetic TT100K in {root}")
        return
    print(f"[demo] generating the synthetic TT100K in {root}")
    generate_synthetic_tt100k(
        root,
        num_train=num_train,
        num_test=num_test,
        seed=seed,
        categories=DEMO_CATEGORIES,
        workers=os.cpu_count() or 1,
    )


def train_stage(config_file: str, opts: list[str], title: str):
    """Train (resuming) and evaluate one stage with tools/train_net.py in its own process (its own
    logs and output folder); returns its config."""
    cfg = get_featsr_cfg(config_file, opts)
    print(f"\n[demo] {title}: {config_file} -> {cfg.OUTPUT_DIR}", flush=True)
    start = time.perf_counter()
    cmd = [sys.executable, TRAIN_NET, "--resume", "--config-file", config_file, *opts]
    subprocess.run(cmd, check=True)  # a finished run only re-evaluates
    print(f"[demo] {title}: trained and evaluated in {(time.perf_counter() - start) / 60:.1f} min")
    return cfg


def compare(stage1, out_dir: str, seed: int, num_images: int) -> None:
    """Prints the study's table and draws where the control and FeatSR differ on small signs."""
    with open(os.path.join(out_dir, "table.md")) as f:
        print("\n" + f.read())
    dataset = stage1.DATASETS.TEST[0]
    meta = MetadataCatalog.get(dataset)
    gt = load_annotations(os.path.join(meta.image_root, "annotations.json"))
    img_ids = list(dict.fromkeys(str(d["image_id"]) for d in DatasetCatalog.get(dataset)))
    runs = os.path.join(out_dir, "runs")
    results = {
        name: load_results(os.path.join(runs, arm, f"seed{seed}", "tt100k_results.json"))
        for name, arm in (("control", "control"), ("FeatSR", "extractor"))
    }
    min_score = stage1.TEST.TT100K.MIN_SCORE
    kwargs = {"img_ids": img_ids, "min_score": min_score, "iou": stage1.TEST.TT100K.IOU}
    matches = match_all(gt, results, types=stage1.TEST.TT100K.TYPES, **kwargs)
    differences = small_object_differences(matches["control"], matches["FeatSR"])
    gained = sum(d[1] for d in differences)
    lost = sum(d[2] for d in differences)
    print(
        f"[demo] small signs (< 32 px) found at score >= {min_score:g} by FeatSR only: {gained}; "
        f"by the control only: {lost}; in {len(differences)} images"
    )
    if differences:
        files = {i: os.path.join(meta.image_root, gt["imgs"][i]["path"]) for i in img_ids}
        path = os.path.join(out_dir, "control_vs_featsr_small.png")
        shown = [d[0] for d in differences[:num_images]]
        title = f"small signs where the control and FeatSR differ (score >= {min_score:g})"
        save_comparison_png(path, matches, files, shown, title=title)
        print(f"[demo] the {len(shown)} images with the most differences: {path}")
    print(f"[demo] the base detector's TT100K results, curves and pictures: "
          f"{os.path.join(stage1.OUTPUT_DIR, 'inference', dataset)}")  # fmt: skip


def main(args):
    start = time.perf_counter()
    setup_logger(name="featsr_d2")  # the study's progress (cache, iterations, runs)
    stage1_cfg = get_featsr_cfg(args.stage1_config, args.opts)
    ensure_synthetic_dataset(
        stage1_cfg.DATASETS.TRAIN[0], args.num_train, args.num_test, args.data_seed
    )
    stage1 = train_stage(args.stage1_config, args.opts, "stage 1, the base detector")
    print(
        "\n[demo] FeatSR stages 2 and 3, and the control (the same split into small and large "
        "predictors without SR), from the frozen trunk's cached outputs",
        flush=True,
    )
    settings = StudySettings(
        stage2_config=args.stage2_config,
        stage3_config=args.stage3_config,
        weights=os.path.join(stage1.OUTPUT_DIR, "model_final.pth"),
        out_dir=args.output,
        arms=("control", "extractor"),
        seeds=(args.seed,),
        num_train_images=args.num_train_images,
        caps=(),
        sliced=False,
        cost_images=0,
        opts=args.opts,
    )
    run_study(settings)
    compare(stage1, args.output, args.seed, args.num_vis_images)
    print(f"\n[demo] done in {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage1-config", default=STAGE1_CONFIG, help="the base detector")
    parser.add_argument("--stage2-config", default=STAGE2_CONFIG, help="FeatSR from stage 1")
    parser.add_argument("--stage3-config", default=STAGE3_CONFIG, help="FeatSR from stage 2")
    parser.add_argument("--output", default="output/featsr_demo", help="FeatSR and control runs")
    parser.add_argument("--seed", type=int, default=0, help="seed of both runs")
    parser.add_argument(
        "--num-train-images", type=int, default=DEMO_TRAIN_IMAGES,
        help="training images cached for stages 2 and 3",
    )  # fmt: skip
    parser.add_argument("--num-train", type=int, default=1500, help="synthetic training images")
    parser.add_argument("--num-test", type=int, default=600, help="synthetic test images")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic dataset")
    parser.add_argument(
        "--num-vis-images", type=int, default=6, help="images in the control-vs-FeatSR picture"
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[], help="config overrides for every stage"
    )
    main(parser.parse_args())
