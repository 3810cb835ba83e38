"""FeatSR's evidence study: does feature-level SR help small objects here, and which supervision is
best? (``tools/featsr_study.py``; the design and the reading are in docs/RESULTS.md.)

Every arm starts from one stage-1 detector and runs the paper's phases (stage 2, then stage 3, the
final predictor phase) with the same images in the same order and the same proposal sampling for a
given seed, so that arms are paired:

- ``control``: the split into a small and a large predictor without SR (``SUPERVISION identity``:
  G stays the identity), which the paper credits with part of its gain;
- ``extractor``, ``naive``, ``none``: Table 4's supervisions (ours, the plain backbone on the 1.0x
  image, no content loss);
- ``bottleneck``: the extractor arm with the lighter generator (``GENERATOR.BLOCK bottleneck``),
  for the cost issue's choice of default;
- rows without training: ``base`` (the stage-1 detector; a FeatSR model with
  ``MAX_SMALL_PER_IMAGE 0`` is it bit for bit), ``extractor_K<k>`` (the extractor arm's models with
  at most k small proposals per image through G), and ``sliced`` (the base detector with sliced
  inference on the 2x image: :class:`~featsr_d2.evaluation.sliced_inference.SlicedDetector`).

The backbone and RPN are frozen in stages 2 and 3, so their outputs are computed once per image and
the heads train from that cache (:mod:`featsr_d2.engine.feature_cache`). Each run's outcome is
written atomically under ``OUT/runs/<arm>/seed<k>/``; a rerun skips what is done. The table, the
intervals and the picture come from :mod:`featsr_d2.evaluation.featsr_study_report`; the cost
switches (the K caps, the bottleneck generator) are also compared with the extractor arm itself, in
``OUT/cost_switches/``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode, pairwise_iou

from featsr_d2.checkpoint import AtomicDetectionCheckpointer
from featsr_d2.config import get_featsr_cfg
from featsr_d2.data.tt100k import load_annotations, load_results
from featsr_d2.data.tt100k_categories import SIZE_BINS
from featsr_d2.engine.feature_cache import (
    CachedHeadsTrainer,
    CachedImage,
    cache_features,
    collate_cached,
    predict_cached,
)
from featsr_d2.evaluation.featsr_study_report import build_study_report, write_study_report
from featsr_d2.evaluation.sliced_inference import SlicedDetector
from featsr_d2.evaluation.tt100k_evaluator import build_tt100k_evaluator
from featsr_d2.utils.file_io import atomic_write_json
from featsr_d2.utils.output_lock import hold_output_dir

__all__ = ["ARMS", "StudySettings", "run_study"]

logger = logging.getLogger(__name__)

# Trained arms: config overrides of both phases.
ARMS: dict[str, list[str]] = {
    "control": ["MODEL.FEATSR.SUPERVISION", "identity"],
    "extractor": ["MODEL.FEATSR.SUPERVISION", "extractor"],
    "naive": ["MODEL.FEATSR.SUPERVISION", "naive"],
    "none": ["MODEL.FEATSR.SUPERVISION", "none"],
    "bottleneck": ["MODEL.FEATSR.SUPERVISION", "extractor", "MODEL.FEATSR.GENERATOR.BLOCK",
                   "bottleneck"],
}  # fmt: skip
SMALL_LONG_SIDE = SIZE_BINS["small"][1]  # the TT100K protocol's small bin, by the long side


@dataclass
class StudySettings:
    """What :func:`run_study` runs (``tools/featsr_study.py`` documents each option)."""

    stage2_config: str
    stage3_config: str
    weights: str
    out_dir: str
    arms: Sequence[str] = ("control", "extractor", "naive", "none", "bottleneck")
    seeds: Sequence[int] = (0, 1, 2)
    stage2_iters: int | None = None
    stage3_iters: int | None = None
    num_train_images: int | None = 400
    num_test_images: int | None = None
    caps: Sequence[int] = (8, 16)
    sliced: bool = True
    cost_images: int = 30
    bootstrap_samples: int = 1000
    opts: Sequence[str] = field(default_factory=list)


def _cfg(settings: StudySettings, stage: int, arm: str, weights: str = ""):
    config = settings.stage2_config if stage == 2 else settings.stage3_config
    # Arms send every small proposal through G (the caps are rows of their own), whatever the
    # config's default cap.
    opts = ["MODEL.FEATSR.MAX_SMALL_PER_IMAGE", -1, *settings.opts, *ARMS[arm]]
    opts += ["MODEL.WEIGHTS", weights]
    iters = settings.stage2_iters if stage == 2 else settings.stage3_iters
    cfg = get_featsr_cfg(config, opts)
    if iters is not None:  # the phase's schedule, scaled to the iterations asked for
        cfg.defrost()
        scale = iters / cfg.SOLVER.MAX_ITER
        steps = (round(s * scale) for s in cfg.SOLVER.STEPS)
        cfg.SOLVER.STEPS = tuple(s for s in steps if 0 < s < iters)
        cfg.SOLVER.WARMUP_ITERS = min(cfg.SOLVER.WARMUP_ITERS, max(iters // 4, 1))
        cfg.SOLVER.MAX_ITER = iters
        cfg.freeze()
    return cfg


def _check_fixed_input(cfg) -> None:
    """The cache is exact only without augmentation: one training size, no flip."""
    sizes = cfg.INPUT.MIN_SIZE_TRAIN
    if (
        cfg.INPUT.RANDOM_FLIP != "none"
        or len(sizes) != 1
        or (
            sizes[0] != cfg.INPUT.MIN_SIZE_TEST
            or cfg.INPUT.MAX_SIZE_TRAIN != cfg.INPUT.MAX_SIZE_TEST
        )
    ):
        raise ValueError(
            "the FeatSR study caches the frozen trunk's outputs per image, which is exact only "
            "without augmentation: set INPUT.RANDOM_FLIP none, one INPUT.MIN_SIZE_TRAIN equal to "
            f"INPUT.MIN_SIZE_TEST and MAX_SIZE_TRAIN = MAX_SIZE_TEST (got flip "
            f"{cfg.INPUT.RANDOM_FLIP!r}, MIN_SIZE_TRAIN {tuple(sizes)}, MIN_SIZE_TEST "
            f"{cfg.INPUT.MIN_SIZE_TEST}, MAX_SIZE_TRAIN {cfg.INPUT.MAX_SIZE_TRAIN}, MAX_SIZE_TEST "
            f"{cfg.INPUT.MAX_SIZE_TEST})"
        )


def _load(cfg, weights: str, model=None):
    """``cfg``'s model with ``weights``, which must hold what the phase freezes."""
    model = build_model(cfg) if model is None else model
    why = f"the study's phase-{cfg.MODEL.FEATSR.STAGE} models start from {weights}"
    AtomicDetectionCheckpointer(model, require_weights=(model.frozen_weight_prefixes(), why)).load(
        weights
    )
    return model


def _test_inputs(cfg, num_images: int | None) -> tuple[list[dict], list[dict]]:
    """The test dataset's dicts and mapped inputs, with its ground truth carried on the input
    scale (``gt_boxes``, ``gt_classes``) for the diagnostics."""
    dicts = DatasetCatalog.get(cfg.DATASETS.TEST[0])[:num_images]
    mapper = DatasetMapper(cfg, is_train=False)
    inputs = []
    for d in dicts:
        x = mapper(copy.deepcopy(d))
        sy, sx = x["image"].shape[-2] / d["height"], x["image"].shape[-1] / d["width"]
        boxes = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS)
                 for a in d["annotations"]]  # fmt: skip
        boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        boxes *= torch.tensor([sx, sy, sx, sy])
        x["gt_boxes"] = boxes
        classes = [a["category_id"] for a in d["annotations"]]
        x["gt_classes"] = torch.tensor(classes, dtype=torch.long)
        inputs.append(x)
    return dicts, inputs


def _train_inputs(cfg, num_images: int | None):
    dicts = [d for d in DatasetCatalog.get(cfg.DATASETS.TRAIN[0]) if d.get("annotations")]
    dicts = dicts[:num_images]
    mapper = DatasetMapper(cfg, is_train=True)
    return len(dicts), lambda i: mapper(copy.deepcopy(dicts[i]))


def _with_test_gt(cache: list[CachedImage], inputs: list[dict]) -> list[CachedImage]:
    for c, x in zip(cache, inputs):
        c.gt_boxes, c.gt_classes = x["gt_boxes"], x["gt_classes"]
    return cache


def _small(c: CachedImage) -> torch.Tensor:
    wh = c.gt_boxes[:, 2:] - c.gt_boxes[:, :2]
    return wh.max(dim=1).values < SMALL_LONG_SIDE


@torch.no_grad()
def small_gt_diagnostics(model, cache: Sequence[CachedImage], *, small_path: bool) -> dict:
    """Per image: small ground-truth boxes classified correctly by the heads (the small path or
    the large predictor), their number, and (small path) G's mean relative change on them."""
    model.eval()
    heads = model.roi_heads
    correct, total, changes = [], [], []
    for c in cache:
        mask = _small(c)
        total.append(int(mask.sum()))
        if not mask.any():
            correct.append(0)
            continue
        features, _, _, _, _ = collate_cached([c], with_pairs=False)
        boxes = [Boxes(c.gt_boxes[mask])]
        scores = heads.classify_boxes(features, boxes, small_path=small_path)
        correct.append(int((scores.argmax(dim=1) == c.gt_classes[mask]).sum()))
        if small_path:
            changes.append(heads.generator_change(features, boxes))
    change = float(torch.cat(changes).mean()) if changes else None
    return {"correct": correct, "total": total, "generator_change": change}


def proposal_recall_small(cache: Sequence[CachedImage], iou: float = 0.5) -> dict:
    """Share of small ground truth covered by a proposal at IoU >= ``iou`` (the RPN's ceiling on
    what any head can find)."""
    found = total = 0
    for c in cache:
        mask = _small(c)
        if not mask.any():
            continue
        overlap = pairwise_iou(Boxes(c.gt_boxes[mask]), Boxes(c.proposal_boxes))
        found += int((overlap.max(dim=1).values >= iou).sum()) if overlap.numel() else 0
        total += int(mask.sum())
    return {"recall": found / max(total, 1), "num_small_gt": total, "iou": iou}


def _evaluate(cfg, dicts, instances, out_dir: str) -> dict:
    """TT100K results of ``instances`` (one per dict), written to ``out_dir``."""
    evaluator = build_tt100k_evaluator(
        cfg, cfg.DATASETS.TEST[0], out_dir, save_plots=False, distributed=False
    )
    evaluator.reset()
    for d, inst in zip(dicts, instances):
        evaluator.process([{"image_id": d["image_id"]}], [{"instances": inst}])
    evaluator.evaluate()
    return load_results(os.path.join(out_dir, "tt100k_results.json"))


def _done(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, "run.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _record(run_dir: str, cfg, dicts, instances, diagnostics: dict, extra: dict) -> dict:
    os.makedirs(run_dir, exist_ok=True)
    _evaluate(cfg, dicts, instances, run_dir)
    run = {
        "gt_box_small": {"correct": diagnostics["correct"], "total": diagnostics["total"]},
        "generator_change": diagnostics["generator_change"],
        **extra,
    }
    atomic_write_json(os.path.join(run_dir, "run.json"), run)
    return run


@torch.no_grad()
def _time_models(models: dict[str, torch.nn.Module], inputs: Sequence[dict]) -> dict[str, float]:
    """Seconds per image of each model's full inference, interleaved image by image."""
    for m in models.values():
        m.eval()
    seconds = dict.fromkeys(models, 0.0)
    for m in models.values():  # warm-up
        m([inputs[0]])
    for x in inputs:
        for name, m in models.items():
            start = time.perf_counter()
            m([x])
            seconds[name] += time.perf_counter() - start
    return {k: v / len(inputs) for k, v in seconds.items()}


def _arm_model(settings, arm: str, seed: int, caches) -> tuple:
    """Trains (or loads) one arm's final model; returns it and its training facts."""
    run_dir = os.path.join(settings.out_dir, "runs", arm, f"seed{seed}")
    final = os.path.join(run_dir, "model_final.pth")
    cfg3 = _cfg(settings, 3, arm)
    if os.path.exists(final):
        model = build_model(cfg3)
        AtomicDetectionCheckpointer(model, require_all_weights=True).load(final)
        return cfg3, model, {}
    start = time.perf_counter()
    cfg2 = _cfg(settings, 2, arm, settings.weights)
    model2 = _load(cfg2, settings.weights)
    label = f"[study] {arm} seed {seed} stage 2"
    losses2 = CachedHeadsTrainer(cfg2, model2, caches["train"], seed=seed).train(label=label)
    model3 = build_model(cfg3)
    model3.load_state_dict(model2.state_dict())
    label = f"[study] {arm} seed {seed} stage 3"
    losses3 = CachedHeadsTrainer(cfg3, model3, caches["train"], seed=seed).train(label=label)
    os.makedirs(run_dir, exist_ok=True)
    AtomicDetectionCheckpointer(model3, run_dir).save("model_final")
    facts = {
        "train_seconds": time.perf_counter() - start,
        "losses_stage2": losses2,
        "losses_stage3": losses3,
        "stage2_iters": cfg2.SOLVER.MAX_ITER,
        "stage3_iters": cfg3.SOLVER.MAX_ITER,
    }
    return cfg3, model3, facts


def run_study(settings: StudySettings) -> dict:
    """Runs (or resumes) the study and writes ``table.md``, ``table.json`` and
    ``difference_from_control.png`` to ``settings.out_dir``, which it holds meanwhile (a second
    study into it stops at once: :mod:`featsr_d2.utils.output_lock`); returns the report."""
    with hold_output_dir(settings.out_dir):
        return _run_study(settings)


def _run_study(settings: StudySettings) -> dict:
    for arm in settings.arms:
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r}: choose among {sorted(ARMS)}")
    if "control" not in settings.arms:
        raise ValueError("the study compares every arm with 'control': keep it among the arms")
    if not os.path.isfile(settings.weights):
        raise FileNotFoundError(
            f"stage-1 weights {settings.weights} not found: train the base detector first "
            "(python tools/train_net.py --config-file configs/faster_rcnn_MNV2_FPN_synth.yaml, or "
            "make demo) or pass --weights"
        )
    study_start = time.perf_counter()
    os.makedirs(settings.out_dir, exist_ok=True)
    atomic_write_json(os.path.join(settings.out_dir, "settings.json"), _settings_json(settings))
    cfg2 = _cfg(settings, 2, "extractor", settings.weights)
    _check_fixed_input(cfg2)

    # The frozen trunk's outputs, once.
    start = time.perf_counter()
    trunk = _load(cfg2, settings.weights)
    num_train, train_inputs = _train_inputs(cfg2, settings.num_train_images)
    test_dicts, test_inputs = _test_inputs(cfg2, settings.num_test_images)
    cache_dir = os.path.join(settings.out_dir, "cache")
    caches = {
        "train": cache_features(trunk, train_inputs, os.path.join(cache_dir, "train"),
                                num_images=num_train, with_pairs=True),
        "test": _with_test_gt(cache_features(trunk, test_inputs, os.path.join(cache_dir, "test"),
                                             with_pairs=False), test_inputs),
    }  # fmt: skip
    cache_seconds = time.perf_counter() - start
    logger.info("[study] cache of %d train and %d test images ready in %.0f s", num_train,
                len(test_dicts), cache_seconds)  # fmt: skip

    runs: dict[str, list[dict]] = {}
    notes: dict = {"cache_seconds": round(cache_seconds), "num_train_images": num_train,
                   "num_test_images": len(test_dicts)}  # fmt: skip

    # Stage 1 as it is: the base row and the diagnostics.
    cfg_base = cfg2
    base = copy.deepcopy(trunk)
    base.roi_heads.max_small_per_image = 0  # the stage-1 detector, bit for bit
    base_dir = os.path.join(settings.out_dir, "runs", "base", "seed0")
    run = _done(base_dir)
    if run is None:
        diag = small_gt_diagnostics(base, caches["test"], small_path=False)
        diag["generator_change"] = None
        recall = proposal_recall_small(caches["test"])
        run = _record(base_dir, cfg_base, test_dicts, predict_cached(base, caches["test"]), diag,
                      {"proposal_recall_small": recall})  # fmt: skip
    notes["stage1_proposal_recall_small"] = run["proposal_recall_small"]
    correct, total = sum(run["gt_box_small"]["correct"]), sum(run["gt_box_small"]["total"])
    notes["stage1_gt_box_small_accuracy"] = correct / max(total, 1)
    runs["base"] = [_as_record(base_dir, run, 0)]

    # The trained arms (and the models whose inference is timed, unless an earlier run did).
    cost_path = os.path.join(settings.out_dir, "cost.json")
    timed: dict[str, torch.nn.Module] = {}
    for arm in settings.arms:
        runs[arm] = []
        for seed in settings.seeds:
            run_dir = os.path.join(settings.out_dir, "runs", arm, f"seed{seed}")
            run = _done(run_dir)
            cap_dirs = {k: os.path.join(settings.out_dir, "runs", f"{arm}_K{k}", f"seed{seed}")
                        for k in settings.caps} if arm == "extractor" else {}  # fmt: skip
            timing = (
                seed == settings.seeds[0]
                and settings.cost_images > 0
                and not os.path.exists(cost_path)
            )
            need_model = run is None or any(_done(d) is None for d in cap_dirs.values()) or timing
            if need_model:
                cfg3, model, facts = _arm_model(settings, arm, seed, caches)
            if run is None:
                diag = small_gt_diagnostics(model, caches["test"], small_path=True)
                run = _record(run_dir, cfg3, test_dicts, predict_cached(model, caches["test"]),
                              diag, facts)  # fmt: skip
                logger.info("[study] %s seed %d done: G's change %.4f", arm, seed,
                            run["generator_change"])  # fmt: skip
            runs[arm].append(_as_record(run_dir, run, seed))
            for k, cap_dir in cap_dirs.items():
                cap_run = _done(cap_dir)
                if cap_run is None:
                    model.roi_heads.max_small_per_image = k
                    diag = small_gt_diagnostics(model, caches["test"], small_path=True)
                    cap_run = _record(
                        cap_dir,
                        cfg3,
                        test_dicts,
                        predict_cached(model, caches["test"]),
                        diag,
                        {"cap": k},
                    )
                    model.roi_heads.max_small_per_image = cfg3.MODEL.FEATSR.MAX_SMALL_PER_IMAGE
                runs.setdefault(f"{arm}_K{k}", []).append(_as_record(cap_dir, cap_run, seed))
            if timing:
                timed[arm] = _live(model, trunk)
                for k in cap_dirs:
                    capped = copy.deepcopy(timed[arm])
                    capped.roi_heads.max_small_per_image = k
                    timed[f"{arm}_K{k}"] = capped

    # Sliced inference with the base detector.
    if settings.sliced:
        sliced_dir = os.path.join(settings.out_dir, "runs", "sliced", "seed0")
        run = _done(sliced_dir)
        live_base = _live(base, trunk)
        sliced = SlicedDetector(live_base)
        if run is None:
            start = time.perf_counter()
            found = []
            for i, x in enumerate(test_inputs):
                found.append(sliced([x])[0]["instances"])
                if (i + 1) % 100 == 0:
                    logger.info("[study] sliced inference: %d / %d images (%.0f s)", i + 1,
                                len(test_inputs), time.perf_counter() - start)  # fmt: skip
            passes = sliced.num_passes(*test_inputs[0]["image"].shape[-2:])
            run = _record(sliced_dir, cfg_base, test_dicts, found,
                          {"correct": [0] * len(test_dicts), "total": [0] * len(test_dicts),
                           "generator_change": None},
                          {"passes_per_image": passes,
                           "seconds": time.perf_counter() - start})  # fmt: skip
        runs["sliced"] = [_as_record(sliced_dir, run, 0)]
        if settings.cost_images > 0 and not os.path.exists(cost_path):
            timed["sliced"] = sliced

    # Inference cost relative to the base detector, on the same images, interleaved.
    if settings.cost_images > 0 and os.path.exists(cost_path):  # measured by an earlier run
        with open(cost_path) as f:
            seconds = json.load(f)
    elif settings.cost_images > 0 and timed:
        models = {"base": _live(base, trunk), **timed}
        seconds = _time_models(models, test_inputs[: settings.cost_images])
        atomic_write_json(cost_path, seconds)
    if settings.cost_images > 0 and os.path.exists(cost_path):
        notes["seconds_per_image_base"] = seconds["base"]
        for name, records in runs.items():
            if name in seconds:
                for r in records:
                    r["cost"] = seconds[name] / seconds["base"]
        runs["base"][0]["cost"] = 1.0

    # this invocation's time: a resumed run skips what an earlier one finished
    notes["total_minutes"] = round((time.perf_counter() - study_start) / 60, 1)
    notes["settings"] = _settings_json(settings)
    root = MetadataCatalog.get(cfg2.DATASETS.TEST[0]).image_root
    gt = load_annotations(os.path.join(root, "annotations.json"))
    img_ids = [str(d["image_id"]) for d in test_dicts]
    report = build_study_report(
        gt, img_ids, runs, control="control",
        types=cfg2.TEST.TT100K.TYPES, iou=cfg2.TEST.TT100K.IOU,
        min_score=cfg2.TEST.TT100K.MIN_SCORE, num_samples=settings.bootstrap_samples,
        notes=notes,
    )  # fmt: skip
    write_study_report(report, settings.out_dir)
    switches = {k: v for k, v in runs.items() if k == "extractor" or k.startswith("extractor_K")}
    if "extractor" in switches and "bottleneck" in runs:
        switches["bottleneck"] = runs["bottleneck"]
    if len(switches) > 1:  # the cost switches against the full FeatSR (the cost issue's choice)
        reference = build_study_report(
            gt, img_ids, switches, control="extractor", types=cfg2.TEST.TT100K.TYPES,
            iou=cfg2.TEST.TT100K.IOU, min_score=cfg2.TEST.TT100K.MIN_SCORE,
            num_samples=settings.bootstrap_samples,
            notes={"reference": "the extractor arm (every small proposal through G, basic blocks)"},
        )  # fmt: skip
        write_study_report(reference, os.path.join(settings.out_dir, "cost_switches"))
    logger.info("[study] done in %.1f min: %s", notes["total_minutes"],
                os.path.join(settings.out_dir, "table.md"))  # fmt: skip
    return report


def _settings_json(settings: StudySettings) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}


def _live(model, trunk) -> torch.nn.Module:
    """``model``'s heads on the frozen trunk's backbone and RPN, for live inference."""
    live = copy.deepcopy(model)
    live.backbone = trunk.backbone
    live.proposal_generator = trunk.proposal_generator
    return live.eval()


def _as_record(run_dir: str, run: dict, seed: int) -> dict:
    return {
        "seed": seed,
        "results": load_results(os.path.join(run_dir, "tt100k_results.json")),
        "gt_box_small": run["gt_box_small"],
        "generator_change": run["generator_change"],
        "cost": None,
    }
