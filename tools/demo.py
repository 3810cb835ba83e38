#!/usr/bin/env python
"""`make demo`: FeatSR's three phases on the embedded default data, on CPU, compared with the base.

1. Generates the synthetic TT100K under $DETECTRON2_DATASETS/tt100k_synth if absent.
2. Stage 1: trains the MobileNetV2-FPN Faster R-CNN base detector and evaluates it with the official
   TT100K protocol.
3. Stage 2: loads it into FeatSR (frozen backbone, RPN and large predictor; SR target extractor,
   generator, discriminator and small predictor trained), trains and evaluates.
4. Stage 3: fine-tunes both predictors (generator and discriminator frozen; the large predictor on
   large proposals only), trains and evaluates: the paper's final FeatSR model.
5. Prints the three side by side in the FeatSR paper's Table 1 layout and draws the test images
   where the base and the final FeatSR differ on small signs (found by one, missed by the other).

Each stage resumes if a previous run stopped; a finished stage only re-evaluates.
"""

import argparse
import os
import subprocess
import sys
import time

from detectron2.data import DatasetCatalog, MetadataCatalog

import featsr_d2  # noqa: F401  (registers datasets, backbones and heads)
from featsr_d2.data.builtin import DEMO_CATEGORIES
from featsr_d2.data.synthetic import generate_synthetic_tt100k
from featsr_d2.engine import get_featsr_cfg
from featsr_d2.evaluation.compare import (
    compare_models,
    format_comparison,
    match_all,
    save_comparison_png,
    small_object_differences,
)
from featsr_d2.evaluation.tt100k import load_annotations, load_results

TOOLS = os.path.dirname(os.path.abspath(__file__))
TRAIN_NET = os.path.join(TOOLS, "train_net.py")
CONFIGS = os.path.join(os.path.dirname(TOOLS), "configs")
STAGE1_CONFIG = os.path.join(CONFIGS, "faster_rcnn_MNV2_FPN_synth.yaml")
STAGE2_CONFIG = os.path.join(CONFIGS, "featsr_MNV2_FPN_synth.yaml")
STAGE3_CONFIG = os.path.join(CONFIGS, "featsr_MNV2_FPN_synth_stage3.yaml")


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


def results_of(cfg) -> dict:
    dataset = cfg.DATASETS.TEST[0]
    return load_results(os.path.join(cfg.OUTPUT_DIR, "inference", dataset, "tt100k_results.json"))


def compare(stage1, stage2, stage3, out_dir: str, num_images: int) -> None:
    dataset = stage1.DATASETS.TEST[0]
    meta = MetadataCatalog.get(dataset)
    gt = load_annotations(os.path.join(meta.image_root, "annotations.json"))
    img_ids = list(dict.fromkeys(str(d["image_id"]) for d in DatasetCatalog.get(dataset)))
    results = {
        "base": results_of(stage1),
        "FeatSR stage 2": results_of(stage2),
        "FeatSR": results_of(stage3),
    }
    min_score = stage1.TEST.TT100K.MIN_SCORE
    kwargs = {"img_ids": img_ids, "min_score": min_score, "iou": stage1.TEST.TT100K.IOU}
    metrics = compare_models(gt, results, types=stage1.TEST.TT100K.TYPES, **kwargs)
    print(
        f"\n[demo] {dataset}, score >= {min_score:g}, the base detector, FeatSR after stage 2 and "
        "the final FeatSR (stage 3):\n"
    )
    print(format_comparison(metrics))

    results = {"base": results["base"], "FeatSR": results["FeatSR"]}
    matches = match_all(gt, results, types=stage1.TEST.TT100K.TYPES, **kwargs)
    differences = small_object_differences(matches["base"], matches["FeatSR"])
    gained = sum(d[1] for d in differences)
    lost = sum(d[2] for d in differences)
    print(
        f"\n[demo] small signs (< 32 px) found by FeatSR only: {gained}; by the base only: {lost}; "
        f"in {len(differences)} images"
    )
    if differences:
        files = {i: os.path.join(meta.image_root, gt["imgs"][i]["path"]) for i in img_ids}
        path = os.path.join(out_dir, "base_vs_featsr_small.png")
        shown = [d[0] for d in differences[:num_images]]
        save_comparison_png(
            path,
            matches,
            files,
            shown,
            title=f"small signs where base and FeatSR differ (score >= {min_score:g})",
        )
        print(f"[demo] the {len(shown)} images with the most differences: {path}")
    print(
        "[demo] per-model TT100K results, curves and detection pictures: "
        + ", ".join(
            os.path.join(c.OUTPUT_DIR, "inference", dataset) for c in (stage1, stage2, stage3)
        )
    )


def main(args):
    start = time.perf_counter()
    stage1_cfg = get_featsr_cfg(args.stage1_config, args.opts)
    ensure_synthetic_dataset(
        stage1_cfg.DATASETS.TRAIN[0], args.num_train, args.num_test, args.data_seed
    )
    stage1 = train_stage(args.stage1_config, args.opts, "stage 1, the base detector")
    weights = os.path.join(stage1.OUTPUT_DIR, "model_final.pth")
    stage2 = train_stage(
        args.stage2_config, [*args.opts, "MODEL.WEIGHTS", weights], "stage 2, FeatSR's G and D"
    )
    weights = os.path.join(stage2.OUTPUT_DIR, "model_final.pth")
    stage3 = train_stage(
        args.stage3_config, [*args.opts, "MODEL.WEIGHTS", weights], "stage 3, both predictors"
    )
    compare(stage1, stage2, stage3, stage3.OUTPUT_DIR, args.num_vis_images)
    print(f"\n[demo] done in {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage1-config", default=STAGE1_CONFIG, help="the base detector")
    parser.add_argument("--stage2-config", default=STAGE2_CONFIG, help="FeatSR from stage 1")
    parser.add_argument("--stage3-config", default=STAGE3_CONFIG, help="FeatSR from stage 2")
    parser.add_argument("--num-train", type=int, default=1500, help="synthetic training images")
    parser.add_argument("--num-test", type=int, default=600, help="synthetic test images")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic dataset")
    parser.add_argument(
        "--num-vis-images", type=int, default=6, help="images in the base-vs-FeatSR picture"
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[], help="config overrides for both stages"
    )
    main(parser.parse_args())
