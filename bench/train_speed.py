#!/usr/bin/env python
"""Training-iteration time of the CPU demo config against the same detector with the base config's
heads (FPN from p2, FREEZE_AT 2, 512 RoIs per image, 1024-d box head), measured in one run on the
same batches. Needs the synthetic TT100K (``make demo`` writes it, or
``python -m featsr_d2.core.synthetic``).

    python bench/train_speed.py [--iters 20] [--warmup 3] [--json out.json]
"""

import argparse
import itertools
import json
import os
import time

import torch
from detectron2.utils.events import EventStorage

import featsr_d2  # noqa: F401  (registers datasets and backbones)
from featsr_d2.config import get_featsr_cfg
from featsr_d2.engine import FeatSRTrainer
from featsr_d2.utils.file_io import atomic_write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "configs", "faster_rcnn_MNV2_FPN_synth.yaml")
REFERENCE_OPTS = [
    "MODEL.MNV2.OUT_FEATURES", ["stage2", "stage3", "stage4", "stage5"],
    "MODEL.MNV2.FREEZE_AT", 2,
    "MODEL.FPN.IN_FEATURES", ["stage2", "stage3", "stage4", "stage5"],
    "MODEL.ANCHOR_GENERATOR.SIZES", [[16], [32], [64], [128], [256]],
    "MODEL.RPN.IN_FEATURES", ["p2", "p3", "p4", "p5", "p6"],
    "MODEL.ROI_HEADS.IN_FEATURES", ["p2", "p3", "p4", "p5"],
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 512,
    "MODEL.ROI_BOX_HEAD.FC_DIM", 1024,
]  # fmt: skip


def seconds_per_iter(cfg, batches, warmup):
    torch.manual_seed(0)
    model = FeatSRTrainer.build_model(cfg)
    model.train()
    optimizer = FeatSRTrainer.build_optimizer(cfg, model)
    times = []
    with EventStorage():
        for k, batch in enumerate(batches):
            start = time.perf_counter()
            losses = model(batch)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            if k >= warmup:
                times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]  # median


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()

    demo = get_featsr_cfg(DEMO, ["MODEL.WEIGHTS", ""])
    reference = get_featsr_cfg(DEMO, ["MODEL.WEIGHTS", ""])
    for key, value in zip(REFERENCE_OPTS[::2], REFERENCE_OPTS[1::2]):
        reference.merge_from_list([key, str(value)])
    loader = FeatSRTrainer.build_train_loader(demo)
    batches = list(itertools.islice(iter(loader), args.warmup + args.iters))

    t_demo = seconds_per_iter(demo, batches, args.warmup)
    t_ref = seconds_per_iter(reference, batches, args.warmup)
    figures = {
        "threads": torch.get_num_threads(),
        "batch": demo.SOLVER.IMS_PER_BATCH,
        "image_size": demo.INPUT.MIN_SIZE_TRAIN[0],
        "demo_s_per_iter": round(t_demo, 3),
        "reference_s_per_iter": round(t_ref, 3),
        "demo_over_reference": round(t_demo / t_ref, 3),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        atomic_write_json(args.json, figures, indent=2)


if __name__ == "__main__":
    main()
