#!/usr/bin/env python
"""What FeatSR costs over its base detector, measured in one run on the same images and batches.

- Inference: time per image and peak memory of FeatSR (stage 2's model) against the base detector
  it was built from (stage 1's). At inference FeatSR's only extra work is the generator and the
  small predictor on small proposals, so the fraction of small proposals is reported too.
- Inference of the cost switches: at most K small proposals per image through the generator
  (``MODEL.FEATSR.MAX_SMALL_PER_IMAGE``, ``--caps``) and the bottleneck generator
  (``MODEL.FEATSR.GENERATOR.BLOCK bottleneck``), timed with the others.
- Training: a stage-2 iteration (0.5x backbone pass, SR target extractor, G, D and the small
  predictor, the discriminator's own optimizer step) and a stage-3 iteration (both predictors)
  against a stage-1 iteration, and the stage-2 iteration with the unfused extractor
  (``MODEL.FEATSR.FUSED_EXTRACTOR False``).

Times are medians over interleaved calls (one call of each model in turn, so that load on the
machine hits them alike); peak memory is the rise of the process's peak resident set size during
one call, each in a fresh process. The demo's configs on the synthetic TT100K, with the stage-1
weights of ``make demo`` when they exist (random weights otherwise, which the output says).

    python bench/featsr_cost.py [--images 16] [--iters 12] [--threads 2] [--caps 0 16 64]
        [--json out.json]
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import time

import torch
from detectron2.data import build_detection_test_loader
from detectron2.utils.events import EventStorage

import featsr_d2  # noqa: F401  (registers datasets, backbones and heads)
from featsr_d2.checkpoint import AtomicDetectionCheckpointer
from featsr_d2.config import get_featsr_cfg
from featsr_d2.engine import FeatSRTrainer
from featsr_d2.utils.file_io import atomic_write_json
from featsr_d2.utils.memory import measure_peak_rss_rise

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE1 = os.path.join(REPO, "configs", "faster_rcnn_MNV2_FPN_synth.yaml")
STAGE2 = os.path.join(REPO, "configs", "featsr_MNV2_FPN_synth.yaml")
STAGE3 = os.path.join(REPO, "configs", "featsr_MNV2_FPN_synth_stage3.yaml")
WEIGHTS = os.path.join(REPO, "output", "faster_rcnn_MNV2_FPN_synth", "model_final.pth")
KINDS = {
    "base": (STAGE1, []),
    "featsr": (STAGE2, []),
    "featsr_unfused": (STAGE2, ["MODEL.FEATSR.FUSED_EXTRACTOR", "False"]),
    "featsr_stage3": (STAGE3, []),
}
# Timed at inference only (the switches change nothing in training).
BOTTLENECK = (STAGE2, ["MODEL.FEATSR.GENERATOR.BLOCK", "bottleneck"])


def build(kind: str, weights: str, spec=None):
    config, opts = spec or KINDS[kind]
    cfg = get_featsr_cfg(config, ["MODEL.WEIGHTS", weights, *opts])
    torch.manual_seed(0)
    model = FeatSRTrainer.build_model(cfg)
    if weights:  # stage-1 weights into every model: the parts they lack keep their initialization
        AtomicDetectionCheckpointer(model).load(weights)
    return cfg, model


class Stepper:
    """One training iteration of a model, with its optimizers (and FeatSR's discriminator's)."""

    def __init__(self, cfg, model):
        self.model = model.train()
        self.optimizer = FeatSRTrainer.build_optimizer(cfg, model)
        self.optimizer_d = FeatSRTrainer.build_discriminator_optimizer(cfg, model)

    def __call__(self, batch):
        losses = self.model(batch)
        self.optimizer.zero_grad()
        sum(losses.values()).backward()
        self.optimizer.step()
        if self.optimizer_d is not None:
            self.optimizer_d.step()
            self.optimizer_d.zero_grad(set_to_none=True)


def interleaved_medians(fns: dict, inputs, warmup: int) -> dict[str, float]:
    times = {name: [] for name in fns}
    for k, x in enumerate(inputs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(x)
            if k >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def test_inputs(cfg, n: int):
    loader = build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])
    return [batch for batch in itertools.islice(iter(loader), n)]


def train_batches(cfg, n: int):
    return list(itertools.islice(iter(FeatSRTrainer.build_train_loader(cfg)), n))


def small_fraction(model, inputs) -> float:
    """The fraction of proposals the FeatSR head routes to the generator and small predictor."""
    heads = model.roi_heads
    counts = [0, 0]
    original = heads._small_masks

    def counting(boxes):
        masks = original(boxes)
        counts[0] += int(sum(m.sum() for m in masks))
        counts[1] += sum(len(m) for m in masks)
        return masks

    heads._small_masks = counting
    with torch.no_grad():
        for x in inputs:
            model(x)
    del heads._small_masks
    return counts[0] / max(counts[1], 1)


def peak_in_subprocess(mode: str, kind: str, args) -> int:
    cmd = [sys.executable, os.path.abspath(__file__), "--_peak", mode, kind]
    cmd += ["--threads", str(args.threads), "--weights", args.weights]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rise"]


def measure_peak(mode: str, kind: str, weights: str) -> int:
    """In this (fresh) process: the peak RSS rise of one inference batch of 4 images or one
    training iteration, after a first call that loads kernels and fills caches."""
    cfg, model = build(kind, weights)
    if mode == "infer":
        model.eval()
        batches = test_inputs(cfg, 8)
        batch = [x for b in batches for x in b]
        with torch.no_grad():
            model(batch[:4])
            with measure_peak_rss_rise() as peak:
                model(batch[4:])
    else:
        step = Stepper(cfg, model)
        batches = train_batches(cfg, 2)
        with EventStorage():
            step(batches[0])
            with measure_peak_rss_rise() as peak:
                step(batches[1])
    return peak["bytes"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16, help="test images timed")
    parser.add_argument("--iters", type=int, default=12, help="training iterations timed")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", default=WEIGHTS if os.path.exists(WEIGHTS) else "")
    parser.add_argument(
        "--caps",
        type=int,
        nargs="*",
        default=[0, 16, 64],
        help="MODEL.FEATSR.MAX_SMALL_PER_IMAGE values timed at inference",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        help="also profile this many stage-2 iterations and print the top operators",
    )
    parser.add_argument("--json", help="write the figures here too (atomically)")
    parser.add_argument("--_peak", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args._peak:
        print(json.dumps({"peak_rise": measure_peak(*args._peak, args.weights)}))
        return
    if not args.weights:
        print("[bench] no stage-1 weights (run `make demo`): timing randomly initialized models")

    models = {kind: build(kind, args.weights) for kind in KINDS}
    cfg_base = models["base"][0]
    inputs = test_inputs(cfg_base, args.warmup + args.images)
    infer = {k: models[k][1].eval() for k in ("base", "featsr")}
    for cap in args.caps:
        spec = (STAGE2, ["MODEL.FEATSR.MAX_SMALL_PER_IMAGE", str(cap)])
        infer[f"featsr_k{cap}"] = build("", args.weights, spec)[1].eval()
    infer["featsr_bottleneck"] = build("", args.weights, BOTTLENECK)[1].eval()
    with torch.no_grad():
        t_infer = interleaved_medians(infer, inputs, args.warmup)
    fraction = small_fraction(infer["featsr"], inputs[args.warmup :])

    batches = train_batches(cfg_base, args.warmup + args.iters)
    steppers = {k: Stepper(cfg, m) for k, (cfg, m) in models.items()}
    with EventStorage():
        t_train = interleaved_medians(steppers, batches, args.warmup)

    if args.profile:
        with EventStorage(), torch.profiler.profile(record_shapes=False) as prof:
            for batch in batches[: args.profile]:
                with torch.profiler.record_function("stage2_iteration"):
                    steppers["featsr"](batch)
        print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25), flush=True)

    print("[bench] peak memory, one fresh process per figure ...", flush=True)
    peak_infer = {k: peak_in_subprocess("infer", k, args) for k in ("base", "featsr")}
    peak_train = {k: peak_in_subprocess("train", k, args) for k in KINDS}

    figures = {
        "threads": args.threads,
        "weights": args.weights or "random",
        "image_size": cfg_base.INPUT.MIN_SIZE_TEST,
        "train_batch": cfg_base.SOLVER.IMS_PER_BATCH,
        "small_proposal_fraction": round(fraction, 3),
        "infer_s_per_image": {k: round(v, 4) for k, v in t_infer.items()},
        "infer_time_ratio": round(t_infer["featsr"] / t_infer["base"], 3),
        "infer_time_ratio_by_variant": {
            k: round(v / t_infer["base"], 3) for k, v in t_infer.items() if k != "base"
        },
        "infer_peak_mib": {k: round(v / 2**20, 1) for k, v in peak_infer.items()},
        "infer_peak_ratio": round(peak_infer["featsr"] / peak_infer["base"], 3),
        "train_s_per_iter": {k: round(v, 3) for k, v in t_train.items()},
        "stage2_over_stage1_iter": round(t_train["featsr"] / t_train["base"], 3),
        "stage3_over_stage1_iter": round(t_train["featsr_stage3"] / t_train["base"], 3),
        "stage2_unfused_over_fused_iter": round(t_train["featsr_unfused"] / t_train["featsr"], 3),
        "train_peak_mib": {k: round(v / 2**20, 1) for k, v in peak_train.items()},
        "stage2_over_stage1_peak": round(peak_train["featsr"] / peak_train["base"], 3),
        "stage2_unfused_over_fused_peak": round(
            peak_train["featsr_unfused"] / peak_train["featsr"], 3
        ),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        atomic_write_json(args.json, figures, indent=2)


if __name__ == "__main__":
    main()
