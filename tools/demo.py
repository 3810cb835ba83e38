#!/usr/bin/env python
"""`make demo`: the main job on the embedded default data, on CPU.

Generates the synthetic TT100K under $DETECTRON2_DATASETS/tt100k_synth if absent, trains the
MobileNetV2-FPN Faster R-CNN baseline (resuming if a previous run stopped), evaluates it with the
official TT100K protocol, prints the table and writes the accuracy-recall curve and detection
pictures as PNGs.
"""

import os
import time

from detectron2.data import MetadataCatalog
from detectron2.engine import default_argument_parser

import featsr_d2  # noqa: F401  (registers datasets, backbones and heads)
from featsr_d2.data.synthetic import generate_synthetic_tt100k
from featsr_d2.engine import FeatSRTrainer, setup

DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "configs",
    "faster_rcnn_MNV2_FPN_synth.yaml",
)


def ensure_synthetic_dataset(dataset_name: str, num_train: int, num_test: int, seed: int) -> None:
    root = MetadataCatalog.get(dataset_name).image_root
    if os.path.exists(os.path.join(root, "annotations.json")):
        print(f"[demo] using the synthetic TT100K in {root}")
        return
    print(f"[demo] generating the synthetic TT100K in {root}")
    generate_synthetic_tt100k(
        root, num_train=num_train, num_test=num_test, seed=seed, workers=os.cpu_count() or 1
    )


def main(args):
    cfg = setup(args)
    ensure_synthetic_dataset(cfg.DATASETS.TRAIN[0], args.num_train, args.num_test, args.data_seed)
    start = time.perf_counter()
    trainer = FeatSRTrainer(cfg)
    trainer.resume_or_load(resume=True)  # a finished run only re-evaluates
    results = trainer.train()  # evaluates on DATASETS.TEST at the end
    minutes = (time.perf_counter() - start) / 60
    out = os.path.join(cfg.OUTPUT_DIR, "inference", cfg.DATASETS.TEST[0])
    print(f"\n[demo] trained and evaluated in {minutes:.1f} min; results: {results}")
    print(f"[demo] TT100K results, curve and detection pictures: {out}")
    return results


if __name__ == "__main__":
    parser = default_argument_parser()
    parser.set_defaults(config_file=DEFAULT_CONFIG)
    parser.add_argument("--num-train", type=int, default=600, help="synthetic training images")
    parser.add_argument("--num-test", type=int, default=150, help="synthetic test images")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic dataset")
    main(parser.parse_args())
