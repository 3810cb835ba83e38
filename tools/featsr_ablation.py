#!/usr/bin/env python
"""FeatSR's comparison on the synthetic TT100K: the base detector, FeatSR, and Table 4's ablations.

From one stage-1 detector (the demo's, trained if absent), every variant goes through the paper's
phases with the same solvers, for each seed: stage 2 (``featsr_MNV2_FPN_synth.yaml``), then
stage 3 from its weights (``featsr_MNV2_FPN_synth_stage3.yaml``):

- ``base``: the Faster R-CNN detector trained further with stage 2's, then stage 3's solver (no
  FeatSR parts);
- ``featsr``: the SR target extractor's supervision (``SUPERVISION extractor``);
- ``naive``: targets from the plain backbone on the 1.0x image (``SUPERVISION naive``);
- ``no_supervision``: no content loss (``SUPERVISION none``, Table 4's "SR without supervision").

Each run is ``tools/train_net.py`` in its own process (one OpenMP thread each, ``--jobs`` at a
time), resumed if it stopped and skipped if its detections exist; the stage-3 runs start once the
stage-2 runs are done. The table is then computed from
the saved detections with the official TT100K protocol, per size bin, at each ``--min-scores``,
and written as Markdown and JSON (atomically) to ``--output``::

    python tools/featsr_ablation.py --seeds 0 1 --jobs 2
"""

import argparse
import os
import subprocess
import sys
import time

from detectron2.data import DatasetCatalog, MetadataCatalog

import featsr_d2  # noqa: F401  (registers the datasets)
from featsr_d2.engine.setup import get_featsr_cfg
from featsr_d2.evaluation.compare import compare_models, format_comparison_markdown
from featsr_d2.evaluation.tt100k import load_annotations, load_results
from featsr_d2.utils.file_io import atomic_write, atomic_write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE1_CONFIG = os.path.join(ROOT, "configs", "faster_rcnn_MNV2_FPN_synth.yaml")
STAGE2_CONFIG = os.path.join(ROOT, "configs", "featsr_MNV2_FPN_synth.yaml")
STAGE3_CONFIG = os.path.join(ROOT, "configs", "featsr_MNV2_FPN_synth_stage3.yaml")
VARIANTS = {
    "base": None,
    "featsr": "extractor",
    "naive": "naive",
    "no_supervision": "none",
}
SOLVER_KEYS = ("BASE_LR", "WARMUP_ITERS", "STEPS", "MAX_ITER", "CHECKPOINT_PERIOD")


def results_file(output_dir: str, dataset: str) -> str:
    return os.path.join(output_dir, "inference", dataset, "tt100k_results.json")


def _solver(config_file: str, iters: int) -> tuple[list[str], int]:
    """The solver options of ``config_file``, scaled to ``iters`` iterations (0: as it is; the
    steps, warm-up and checkpoint period scale too), and the number of iterations."""
    cfg = get_featsr_cfg(config_file)
    if iters:
        factor = iters / cfg.SOLVER.MAX_ITER
        cfg.SOLVER.MAX_ITER = iters
        cfg.SOLVER.STEPS = tuple(round(s * factor) for s in cfg.SOLVER.STEPS)
        cfg.SOLVER.WARMUP_ITERS = round(cfg.SOLVER.WARMUP_ITERS * factor)
        cfg.SOLVER.CHECKPOINT_PERIOD = max(1, round(cfg.SOLVER.CHECKPOINT_PERIOD * factor))
    solver = []
    for key in SOLVER_KEYS:
        value = getattr(cfg.SOLVER, key)
        solver += [
            f"SOLVER.{key}",
            str(tuple(value) if isinstance(value, (list, tuple)) else value),
        ]
    return solver, cfg.SOLVER.MAX_ITER


def run_commands(args, stage1_weights: str) -> tuple[list[dict[tuple[str, int], tuple]], list[int]]:
    """The train_net commands and output folders of every (variant, seed), one dict per phase
    (stage 2, then stage 3 from stage 2's weights), and each phase's number of iterations."""
    phases, iterations = [], []
    for phase, config, iters in (
        ("stage2", STAGE2_CONFIG, args.iters),
        ("stage3", STAGE3_CONFIG, args.stage3_iters),
    ):
        solver, n = _solver(config, iters)
        iterations.append(n)
        runs = {}
        for seed in args.seeds:
            for variant, supervision in VARIANTS.items():
                out = os.path.join(args.output, f"{variant}_seed{seed}", phase)
                weights = (
                    os.path.join(phases[0][(variant, seed)][1], "model_final.pth")
                    if phases
                    else stage1_weights
                )
                cmd = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--resume"]
                if supervision is None:
                    cmd += ["--config-file", STAGE1_CONFIG, *solver]
                else:
                    cmd += ["--config-file", config, *solver]
                    cmd += ["MODEL.FEATSR.SUPERVISION", supervision]
                cmd += ["MODEL.WEIGHTS", weights, "SEED", str(seed), "OUTPUT_DIR", out]
                runs[(variant, seed)] = (cmd, out)
        phases.append(runs)
    return phases, iterations


def run_all(runs, dataset: str, jobs: int) -> None:
    """Runs the missing runs, ``jobs`` at a time, each with one OpenMP thread."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    pending = [
        (key, cmd, out)
        for key, (cmd, out) in runs.items()
        if not os.path.exists(results_file(out, dataset))
    ]
    print(f"[ablation] {len(runs) - len(pending)} of {len(runs)} runs done; {len(pending)} to run")
    active: list[tuple] = []
    while pending or active:
        while pending and len(active) < jobs:
            key, cmd, out = pending.pop(0)
            os.makedirs(out, exist_ok=True)
            log = open(os.path.join(out, "ablation_stdout.log"), "a")  # noqa: SIM115
            print(f"[ablation] start {key[0]} seed {key[1]} -> {out}", flush=True)
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            active.append((key, out, proc, log, time.perf_counter()))
        time.sleep(2)
        for item in list(active):
            key, out, proc, log, start = item
            if proc.poll() is None:
                continue
            log.close()
            active.remove(item)
            minutes = (time.perf_counter() - start) / 60
            if proc.returncode != 0:
                raise SystemExit(
                    f"[ablation] {key[0]} seed {key[1]} failed (exit {proc.returncode}) after "
                    f"{minutes:.1f} min; see {os.path.join(out, 'ablation_stdout.log')}. "
                    "Re-running this command resumes it."
                )
            print(f"[ablation] done {key[0]} seed {key[1]} in {minutes:.1f} min", flush=True)


def ensure_stage1(weights: str) -> None:
    if os.path.exists(weights):
        return
    print(f"[ablation] {weights} is missing: training the stage-1 detector (make demo's)")
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--resume"]
    cmd += ["--config-file", STAGE1_CONFIG, "OUTPUT_DIR", os.path.dirname(weights)]
    subprocess.run(cmd, check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--output", default=os.path.join("output", "featsr_ablation"))
    parser.add_argument(
        "--stage1-weights",
        default=os.path.join("output", "faster_rcnn_MNV2_FPN_synth", "model_final.pth"),
        help="the stage-1 detector all variants start from (trained by the demo config if absent)",
    )
    parser.add_argument(
        "--iters",
        type=int,
        default=0,
        help="stage-2 iterations (default: the config's); the "
        "schedule's steps, warm-up and checkpoint period scale with it",
    )
    parser.add_argument(
        "--stage3-iters", type=int, default=0, help="stage-3 iterations (default: the config's)"
    )
    parser.add_argument("--min-scores", type=float, nargs="+", default=[0.5, 0.2])
    parser.add_argument("--table-only", action="store_true", help="tabulate finished runs only")
    args = parser.parse_args(argv)

    stage1 = get_featsr_cfg(STAGE1_CONFIG)
    dataset = stage1.DATASETS.TEST[0]
    phases, iters = run_commands(args, args.stage1_weights)
    if not args.table_only:
        ensure_stage1(args.stage1_weights)
        for runs in phases:
            run_all(runs, dataset, args.jobs)
    runs = phases[-1]

    gt = load_annotations(os.path.join(MetadataCatalog.get(dataset).image_root, "annotations.json"))
    img_ids = list(dict.fromkeys(str(d["image_id"]) for d in DatasetCatalog.get(dataset)))
    report = {"dataset": dataset, "seeds": args.seeds, "min_scores": {}}
    sections = [
        f"Dataset `{dataset}`, seeds {args.seeds}: every variant starts from the same "
        f"{stage1.SOLVER.MAX_ITER}-iteration stage-1 detector and trains the same stage-2 and "
        f"stage-3 schedules ({iters[0]} and {iters[1]} iterations).\n"
    ]
    for min_score in args.min_scores:
        per_run = {}
        for (variant, seed), (_, out) in runs.items():
            path = results_file(out, dataset)
            if os.path.exists(path):
                per_run[(variant, seed)] = load_results(path)
        metrics = compare_models(gt, per_run, img_ids=img_ids, min_score=min_score)
        report["min_scores"][str(min_score)] = {f"{v}/seed{s}": m for (v, s), m in metrics.items()}
        sections.append(f"\n#### score >= {min_score:g}\n\n" + format_comparison_markdown(metrics))
    os.makedirs(args.output, exist_ok=True)
    markdown = "".join(sections)
    atomic_write(os.path.join(args.output, "table.md"), lambda f: f.write(markdown))
    atomic_write_json(os.path.join(args.output, "table.json"), report, indent=2)
    print(markdown)
    print(f"[ablation] wrote {os.path.join(args.output, 'table.md')} and table.json")
    return report


if __name__ == "__main__":
    main()
    sys.exit(0)
