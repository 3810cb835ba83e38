#!/usr/bin/env python
"""`make demo`: FeatSR on the embedded default data, on CPU, against a fair control.

1. Generates the demo's synthetic TT100K (ten classes) under $DETECTRON2_DATASETS/tt100k_synth10
   if absent.
2. Stage 1: trains the MobileNetV2-FPN Faster R-CNN base detector with tools/train_net.py and
   evaluates it with the official TT100K protocol.
3. FeatSR's stages 2 and 3 from it, with the supervision its config ships
   (configs/featsr_MNV2_FPN_synth.yaml, the one the FeatSR study's confirmation supports), as the
   study runs them (tools/featsr_study.py, one seed): the backbone and RPN are frozen, so their
   outputs are cached once and the heads train from the cache; the control arm gets the same split
   into small and large predictors, the same images and iterations, without SR (G stays the
   identity).
4. Prints the base detector, the control and FeatSR side by side (COCO AP, the TT100K table), FeatSR
   minus control on small signs with a paired bootstrap interval over the test images, and draws
   zoomed crops of the small signs where the control and FeatSR disagree.

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
from featsr_d2.core.synthetic import generate_synthetic_tt100k
from featsr_d2.core.tt100k import load_annotations, load_results
from featsr_d2.core.tt100k_categories import DEMO_CATEGORIES
from featsr_d2.engine.featsr_study import ARMS, StudySettings, run_study
from featsr_d2.evaluation.compare import match_all, save_sign_comparison_png, small_sign_differences
from featsr_d2.evaluation.featsr_study_report import PRIMARY_METRIC

TOOLS = os.path.dirname(os.path.abspath(__file__))
TRAIN_NET = os.path.join(TOOLS, "train_net.py")
CONFIGS = os.path.join(os.path.dirname(TOOLS), "configs")
STAGE1_CONFIG = os.path.join(CONFIGS, "faster_rcnn_MNV2_FPN_synth.yaml")
STAGE2_CONFIG = os.path.join(CONFIGS, "featsr_MNV2_FPN_synth.yaml")
STAGE3_CONFIG = os.path.join(CONFIGS, "featsr_MNV2_FPN_synth_stage3.yaml")
# Training images cached for stages 2 and 3, as the FeatSR study's.
DEMO_TRAIN_IMAGES = 400


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


def shipped_arm(stage2_config: str, opts: list[str]) -> str:
    """The study arm of the supervision (and extractor placement) that the FeatSR config ships."""
    f = get_featsr_cfg(stage2_config, opts).MODEL.FEATSR
    arm = f.SUPERVISION if f.SUPERVISION in ARMS else None
    if f.SUPERVISION == "extractor" and not f.EXTRACTOR_ALIGNED:
        arm = "extractor_unaligned"
    if arm is None or arm == "control":
        raise ValueError(f"{stage2_config}: the demo compares a FeatSR supervision with the "
                         f"control, not MODEL.FEATSR.SUPERVISION {f.SUPERVISION!r}")  # fmt: skip
    return arm


def compare(stage1, out_dir: str, arm: str, seed: int, report: dict, num_signs: int) -> None:
    """Prints the study's table, FeatSR minus control on small signs, and draws zoomed crops of
    the small signs where the control and FeatSR disagree."""
    with open(os.path.join(out_dir, "table.md")) as f:
        print("\n" + f.read())
    primary = report["differences"][arm][PRIMARY_METRIC]
    label = report["metrics"][PRIMARY_METRIC]["label"]
    print(f"[demo] FeatSR ({arm} supervision) minus control, {label}: {primary['estimate']:+.1f} "
          f"points, 95% interval [{primary['low']:+.1f}, {primary['high']:+.1f}] over "
          f"{report['settings']['num_images']} test images: "
          f"{report['differences'][arm]['verdict']}")  # fmt: skip
    dataset = stage1.DATASETS.TEST[0]
    meta = MetadataCatalog.get(dataset)
    gt = load_annotations(os.path.join(meta.image_root, "annotations.json"))
    img_ids = list(dict.fromkeys(str(d["image_id"]) for d in DatasetCatalog.get(dataset)))
    runs = os.path.join(out_dir, "runs")
    results = {
        name: load_results(os.path.join(runs, row, f"seed{seed}", "tt100k_results.json"))
        for name, row in (("control", "control"), ("FeatSR", arm))
    }
    min_score = stage1.TEST.TT100K.MIN_SCORE
    kwargs = {"img_ids": img_ids, "min_score": min_score, "iou": stage1.TEST.TT100K.IOU}
    matches = match_all(gt, results, types=stage1.TEST.TT100K.TYPES, **kwargs)
    signs = small_sign_differences(matches["control"], matches["FeatSR"])
    gained = sum(found for _, _, found in signs)
    print(
        f"[demo] small signs (< 32 px) found at score >= {min_score:g} by FeatSR only: {gained}; "
        f"by the control only: {len(signs) - gained}"
    )
    if signs:
        files = {i: os.path.join(meta.image_root, gt["imgs"][i]["path"]) for i in img_ids}
        path = os.path.join(out_dir, "control_vs_featsr_small.png")
        # The signs FeatSR alone finds, then those the control alone finds, in proportion.
        shown = signs[: num_signs - num_signs * (len(signs) - gained) // max(len(signs), 1)]
        shown += [s for s in signs if not s[2]][: num_signs - len(shown)]
        title = (
            f"small signs where the control and FeatSR ({arm}) disagree (score >= {min_score:g})"
        )
        save_sign_comparison_png(path, matches, files, shown, title=title)
        print(f"[demo] {len(shown)} of them, zoomed: {path}")
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
    arm = shipped_arm(args.stage2_config, args.opts)
    settings = StudySettings(
        stage2_config=args.stage2_config,
        stage3_config=args.stage3_config,
        weights=os.path.join(stage1.OUTPUT_DIR, "model_final.pth"),
        out_dir=args.output,
        arms=("control", arm),
        seeds=(args.seed,),
        num_train_images=args.num_train_images,
        caps=(),
        sliced=False,
        cost_images=0,
        opts=args.opts,
    )
    report = run_study(settings)
    compare(stage1, args.output, arm, args.seed, report, args.num_signs)
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
        "--num-signs", type=int, default=12, help="signs in the control-vs-FeatSR picture"
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[], help="config overrides for every stage"
    )
    main(parser.parse_args())
