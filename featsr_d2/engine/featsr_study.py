"""FeatSR's evidence study: does feature-level SR help small objects here, and which supervision is
best? (``tools/featsr_study.py``; the design and the reading are in docs/RESULTS.md.)

Every arm starts from one stage-1 detector and runs the paper's phases (stage 2, then stage 3, the
final predictor phase) with the same images in the same order and the same proposal sampling for a
given seed, so that arms are paired (:data:`ARMS`):

- ``control``: the split into a small and a large predictor without SR (``SUPERVISION identity``:
  G stays the identity), which the paper credits with part of its gain;
- ``extractor``, ``naive``, ``none``: Table 4's supervisions (ours, the plain backbone on the 1.0x
  image, no content loss), the extractor with its pooling windows aligned (the default);
- ``extractor_unaligned``: the extractor with the previous placement of its pooling windows
  (``MODEL.FEATSR.EXTRACTOR_ALIGNED False``), whose targets sit J - 1 px from their F^0.5;
- ``extractor_rescaled`` (beyond the paper): the aligned extractor's targets multiplied per level
  and channel by RMS(F^1.0) / RMS(T^1.0) over the training cache
  (:func:`~featsr_d2.engine.feature_cache.channel_scales`), which separates the targets' magnitude
  (max pooling makes T larger than F^1.0) from their position;
- ``bottleneck``: the extractor arm with the lighter generator (issue 11's cost switch);
- rows without training: ``base`` (the stage-1 detector; a FeatSR model with
  ``MAX_SMALL_PER_IMAGE 0`` is it bit for bit), ``<arm>_K<k>`` (an arm's models with at most k
  small proposals per image through G, ``caps``), and ``sliced`` (the base detector with sliced
  inference on the 2x image: :class:`~featsr_d2.evaluation.sliced_inference.SlicedDetector`).

**Schedules.** Each trained arm runs at every factor of ``schedules``: the stage-2 and stage-3
iterations (the configs', or ``stage2_iters`` / ``stage3_iters``) times k, the learning-rate steps
scaled alike. Row ``<arm>`` is factor 1, ``<arm>_x<k>`` factor k; each schedule's rows are compared
with that schedule's control, in ``OUT/table.md`` (factor 1; with the base and sliced rows) and
``OUT/x<k>/table.md``. ``OUT/summary.md`` puts the primary endpoint of every arm and schedule side
by side, with the targets' statistics.

The backbone and RPN are frozen in stages 2 and 3, so their outputs are computed once per image and
the heads train from that cache (:mod:`featsr_d2.engine.feature_cache`), which holds the
extractor's targets for each placement an arm needs. Each run's outcome is written atomically under
``OUT/runs/<row>/seed<k>/``; a rerun skips what is done. The tables, intervals and pictures come
from :mod:`featsr_d2.evaluation.featsr_study_report`.
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
import torch.nn.functional as F
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode, pairwise_iou

from featsr_d2.checkpoint import AtomicDetectionCheckpointer
from featsr_d2.config import get_featsr_cfg
from featsr_d2.core.featsr.supervision import supervision as supervision_mode
from featsr_d2.core.tt100k import load_annotations, load_results
from featsr_d2.core.tt100k_categories import SIZE_BINS
from featsr_d2.data.rng_state import isolated_rng
from featsr_d2.engine.feature_cache import (
    CachedHeadsTrainer,
    CachedImage,
    cache_features,
    channel_scales,
    collate_cached,
    placement_name,
    predict_cached,
)
from featsr_d2.evaluation.featsr_study_report import (
    PRIMARY_METRIC,
    build_study_report,
    write_study_report,
)
from featsr_d2.evaluation.sliced_inference import SlicedDetector
from featsr_d2.evaluation.tt100k_evaluator import build_tt100k_evaluator
from featsr_d2.utils.file_io import atomic_write_json, atomic_write_text
from featsr_d2.utils.output_lock import hold_output_dir

__all__ = ["ARMS", "Arm", "StudySettings", "row_name", "run_study"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Arm:
    """A trained arm: its supervision (``MODEL.FEATSR.SUPERVISION``), the extractor's placement
    (``MODEL.FEATSR.EXTRACTOR_ALIGNED``), other config overrides of both phases, and whether its
    targets are rescaled to F^1.0's per-channel scale (not in the paper)."""

    supervision: str
    aligned: bool = True
    opts: tuple[str, ...] = ()
    rescaled: bool = False

    def overrides(self) -> list[str]:
        return ["MODEL.FEATSR.SUPERVISION", self.supervision,
                "MODEL.FEATSR.EXTRACTOR_ALIGNED", str(self.aligned), *self.opts]  # fmt: skip

    def placement(self) -> str | None:
        """The cached extractor placement the arm trains on, or None (it runs no extractor)."""
        if not supervision_mode(self.supervision).needs_extractor:
            return None
        return placement_name(self.aligned)


ARMS: dict[str, Arm] = {
    "control": Arm("identity"),
    "extractor": Arm("extractor"),
    "extractor_unaligned": Arm("extractor", aligned=False),
    "extractor_rescaled": Arm("extractor", rescaled=True),
    "naive": Arm("naive"),
    "none": Arm("none"),
    "bottleneck": Arm("extractor", opts=("MODEL.FEATSR.GENERATOR.BLOCK", "bottleneck")),
}
# The study's design (issue 21): Table 4's supervisions, the extractor's two placements and the
# rescaled targets, against the control.
DEFAULT_ARMS = (
    "control", "extractor", "extractor_unaligned", "extractor_rescaled", "naive", "none"
)  # fmt: skip
# Direct paired comparisons between arms at each schedule: (row, reference, what it measures).
CONTRASTS = (
    ("extractor", "extractor_unaligned", "the alignment of the extractor's targets"),
    ("extractor_rescaled", "extractor", "the targets' magnitude (beyond the paper)"),
    ("naive", "extractor", "Table 4: naive targets against the paper's"),
    ("extractor", "none", "Table 4: the paper's targets against no content loss"),
)
SMALL_LONG_SIDE = SIZE_BINS["small"][1]  # the TT100K protocol's small bin, by the long side


@dataclass
class StudySettings:
    """What :func:`run_study` runs (``tools/featsr_study.py`` documents each option)."""

    stage2_config: str
    stage3_config: str
    weights: str
    out_dir: str
    arms: Sequence[str] = DEFAULT_ARMS
    seeds: Sequence[int] = (0, 1, 2)
    schedules: Sequence[int] = (1,)
    stage2_iters: int | None = None
    stage3_iters: int | None = None
    num_train_images: int | None = 400
    num_test_images: int | None = None
    caps: Sequence[int] = ()
    capped_arm: str = "extractor"
    sliced: bool = True
    cost_images: int = 30
    bootstrap_samples: int = 1000
    opts: Sequence[str] = field(default_factory=list)


def row_name(arm: str, schedule: int) -> str:
    """The table row of ``arm`` trained at ``schedule`` times the phases' iterations."""
    return arm if schedule == 1 else f"{arm}_x{schedule}"


def _cfg(settings: StudySettings, stage: int, arm: str, schedule: int = 1, weights: str = ""):
    config = settings.stage2_config if stage == 2 else settings.stage3_config
    # Arms send every small proposal through G (the caps are rows of their own), whatever the
    # config's default cap.
    opts = ["MODEL.FEATSR.MAX_SMALL_PER_IMAGE", -1, *settings.opts, *ARMS[arm].overrides()]
    opts += ["MODEL.WEIGHTS", weights]
    cfg = get_featsr_cfg(config, opts)
    iters = settings.stage2_iters if stage == 2 else settings.stage3_iters
    iters = schedule * (iters or cfg.SOLVER.MAX_ITER)
    if iters != cfg.SOLVER.MAX_ITER:  # the phase's schedule, scaled to the iterations asked for
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


@torch.no_grad()
def target_statistics(
    model, cache: Sequence[CachedImage], scales: dict[str, torch.Tensor] | None = None
) -> dict[str, dict[str, float]]:
    """How each kind of target relates to what the predictors know, on the SR pairs of the cached
    images' ground-truth boxes: per target (``naive`` F^1.0, the extractor's placements, and
    ``rescaled`` when ``scales`` are given), the mean cosine of its RoI feature with F^0.5's (G's
    input) and with F^1.0's (the space the predictors were trained on), and its RMS over
    F^1.0's."""
    heads = model.roi_heads
    sums: dict[str, dict[str, float]] = {}
    for c in cache:
        if not c.gt_boxes.numel() or c.sr_targets is None:
            continue
        features, _, _, lr_features, _ = collate_cached([c], with_pairs=True, placement=None)
        boxes = [Boxes(c.gt_boxes)]
        lr, _, plain = heads.sr_pair_features(boxes, lr_features, features)
        if not len(plain):
            continue
        kinds = {"naive": plain}
        for placement in c.sr_targets:
            _, _, _, _, maps = collate_cached([c], with_pairs=True, placement=placement)
            kinds[placement] = heads.sr_pair_features(boxes, lr_features, maps)[2]
            if scales is not None and placement == "aligned":
                _, _, _, _, maps = collate_cached(
                    [c], with_pairs=True, placement=placement, target_scale=scales
                )
                kinds["rescaled"] = heads.sr_pair_features(boxes, lr_features, maps)[2]
        for kind, t in kinds.items():
            s = sums.setdefault(kind, {"cos_lr": 0.0, "cos_plain": 0.0, "sq": 0.0, "sq_plain": 0.0,
                                       "n": 0})  # fmt: skip
            t, p, q = t.flatten(1), plain.flatten(1), lr.flatten(1)
            s["cos_lr"] += float(F.cosine_similarity(t, q).sum())
            s["cos_plain"] += float(F.cosine_similarity(t, p).sum())
            s["sq"] += float(t.square().sum())
            s["sq_plain"] += float(p.square().sum())
            s["n"] += len(t)
    return {
        kind: {
            "pairs": s["n"],
            "cos_to_lr": s["cos_lr"] / s["n"],
            "cos_to_plain": s["cos_plain"] / s["n"],
            "rms_over_plain": (s["sq"] / s["sq_plain"]) ** 0.5,
        }
        for kind, s in sums.items()
    }


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


@dataclass
class _Study:
    """What the steps of :func:`run_study` share: the settings, the frozen trunk, the caches and
    the test set, the runs recorded so far (row -> one record per seed), the models whose
    inference is timed, and the notes of the report."""

    settings: StudySettings
    cfg: object  # the stage-2 config of the extractor arm: datasets, input, evaluation
    trunk: torch.nn.Module
    caches: dict[str, list[CachedImage]]
    test_dicts: list[dict]
    test_inputs: list[dict]
    scales: dict[str, torch.Tensor] | None
    base: torch.nn.Module | None = None  # the stage-1 detector as a FeatSR model with K = 0
    runs: dict[str, list[dict]] = field(default_factory=dict)
    timed: dict[str, torch.nn.Module] = field(default_factory=dict)
    notes: dict = field(default_factory=dict)

    def run_dir(self, row: str, seed: int) -> str:
        return os.path.join(self.settings.out_dir, "runs", row, f"seed{seed}")

    @property
    def cost_path(self) -> str:
        return os.path.join(self.settings.out_dir, "cost.json")

    def timing(self) -> bool:
        """Whether this invocation times inference (no earlier one did)."""
        return self.settings.cost_images > 0 and not os.path.exists(self.cost_path)


def _check_settings(settings: StudySettings) -> None:
    for arm in settings.arms:
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r}: choose among {sorted(ARMS)}")
    if "control" not in settings.arms:
        raise ValueError("the study compares every arm with 'control': keep it among the arms")
    if settings.caps and settings.capped_arm not in settings.arms:
        raise ValueError(f"the caps {list(settings.caps)} apply to {settings.capped_arm!r}, "
                         f"which is not among the arms {list(settings.arms)}")  # fmt: skip
    if not settings.schedules or any(k < 1 for k in settings.schedules):
        raise ValueError(f"schedules must be factors >= 1, got {list(settings.schedules)}")
    if not os.path.isfile(settings.weights):
        raise FileNotFoundError(
            f"stage-1 weights {settings.weights} not found: train the base detector first "
            "(python tools/train_net.py --config-file configs/faster_rcnn_MNV2_FPN_synth.yaml, or "
            "make demo) or pass --weights"
        )


def _prepare(settings: StudySettings) -> _Study:
    """The frozen trunk and the caches of the training and test images, once."""
    cfg = _cfg(settings, 2, "extractor", weights=settings.weights)
    _check_fixed_input(cfg)
    start = time.perf_counter()
    trunk = _load(cfg, settings.weights)
    # The extractor's targets of the placements the arms train on (none for naive and the control).
    placements = sorted({p for a in settings.arms if (p := ARMS[a].placement())})
    num_train, train_inputs = _train_inputs(cfg, settings.num_train_images)
    test_dicts, test_inputs = _test_inputs(cfg, settings.num_test_images)
    cache_dir = os.path.join(settings.out_dir, "cache")
    caches = {
        "train": cache_features(trunk, train_inputs, os.path.join(cache_dir, "train"),
                                num_images=num_train, with_pairs=True, placements=placements),
        "test": _with_test_gt(cache_features(trunk, test_inputs, os.path.join(cache_dir, "test"),
                                             with_pairs=False), test_inputs),
    }  # fmt: skip
    seconds = time.perf_counter() - start
    logger.info("[study] cache of %d train and %d test images ready in %.0f s", num_train,
                len(test_dicts), seconds)  # fmt: skip
    rescaled = any(ARMS[a].rescaled for a in settings.arms)
    scales = channel_scales(caches["train"], "aligned") if rescaled else None
    study = _Study(settings, cfg, trunk, caches, test_dicts, test_inputs, scales)
    study.notes.update({"cache_seconds": round(seconds), "num_train_images": num_train,
                        "num_test_images": len(test_dicts)})  # fmt: skip
    study.notes["targets"] = target_statistics(trunk, caches["train"][:100], scales)
    return study


def _base_row(study: _Study) -> None:
    """Stage 1 as it is: the base row and the diagnostics of the stage-1 detector."""
    base = copy.deepcopy(study.trunk)
    base.roi_heads.max_small_per_image = 0  # the stage-1 detector, bit for bit
    run_dir = study.run_dir("base", 0)
    run = _done(run_dir)
    if run is None:
        test = study.caches["test"]
        diag = small_gt_diagnostics(base, test, small_path=False)
        diag["generator_change"] = None
        run = _record(run_dir, study.cfg, study.test_dicts, predict_cached(base, test), diag,
                      {"proposal_recall_small": proposal_recall_small(test)})  # fmt: skip
    study.notes["stage1_proposal_recall_small"] = run["proposal_recall_small"]
    correct, total = sum(run["gt_box_small"]["correct"]), sum(run["gt_box_small"]["total"])
    study.notes["stage1_gt_box_small_accuracy"] = correct / max(total, 1)
    study.runs["base"] = [_as_record(run_dir, run, 0)]
    study.base = base


def _arm_model(study: _Study, arm: str, seed: int, schedule: int) -> tuple:
    """Trains (or loads) one arm's final model; returns its config, the model and its training
    facts (empty when loaded)."""
    settings = study.settings
    run_dir = study.run_dir(row_name(arm, schedule), seed)
    final = os.path.join(run_dir, "model_final.pth")
    cfg3 = _cfg(settings, 3, arm, schedule)
    if os.path.exists(final):
        model = build_model(cfg3)
        AtomicDetectionCheckpointer(model, require_all_weights=True).load(final)
        return cfg3, model, {}
    start = time.perf_counter()
    cfg2 = _cfg(settings, 2, arm, schedule, settings.weights)
    # What the stage-1 weights do not hold (D, G's residual branches) is initialized from the
    # seed alone: every arm of a seed starts alike, whatever ran before it in this process.
    with isolated_rng(seed):
        model2 = _load(cfg2, settings.weights)
    scale = study.scales if ARMS[arm].rescaled else None
    label = f"[study] {row_name(arm, schedule)} seed {seed} stage 2"
    train = study.caches["train"]
    losses2 = CachedHeadsTrainer(cfg2, model2, train, seed=seed, target_scale=scale).train(
        label=label
    )
    model3 = build_model(cfg3)
    model3.load_state_dict(model2.state_dict())
    label = f"[study] {row_name(arm, schedule)} seed {seed} stage 3"
    losses3 = CachedHeadsTrainer(cfg3, model3, train, seed=seed).train(label=label)
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


def _evaluate_model(study: _Study, row: str, seed: int, cfg, model, facts: dict) -> dict:
    """Records ``model``'s detections and diagnostics on the test cache as run ``row``/``seed``."""
    test = study.caches["test"]
    diag = small_gt_diagnostics(model, test, small_path=True)
    run = _record(study.run_dir(row, seed), cfg, study.test_dicts, predict_cached(model, test),
                  diag, facts)  # fmt: skip
    logger.info("[study] %s seed %d done: G's change %.4f", row, seed, run["generator_change"])
    return run


def _trained_rows(study: _Study, arm: str, schedule: int) -> None:
    """One arm at one schedule, every seed: trained (or resumed), evaluated, its capped rows and
    (first seed, factor 1) the model whose inference is timed."""
    settings = study.settings
    row = row_name(arm, schedule)
    caps = settings.caps if arm == settings.capped_arm and schedule == 1 else ()
    for seed in settings.seeds:
        run = _done(study.run_dir(row, seed))
        cap_rows = {k: f"{row}_K{k}" for k in caps}
        timing = seed == settings.seeds[0] and schedule == 1 and study.timing()
        missing_caps = [k for k, r in cap_rows.items() if _done(study.run_dir(r, seed)) is None]
        if run is None or missing_caps or timing:
            cfg3, model, facts = _arm_model(study, arm, seed, schedule)
        if run is None:
            run = _evaluate_model(study, row, seed, cfg3, model, facts)
        study.runs.setdefault(row, []).append(_as_record(study.run_dir(row, seed), run, seed))
        for k, cap_row in cap_rows.items():
            cap_dir = study.run_dir(cap_row, seed)
            if k in missing_caps:
                model.roi_heads.max_small_per_image = k
                _evaluate_model(study, cap_row, seed, cfg3, model, {"cap": k})
                model.roi_heads.max_small_per_image = -1
            study.runs.setdefault(cap_row, []).append(_as_record(cap_dir, _done(cap_dir), seed))
        if timing:
            study.timed[row] = _live(model, study.trunk)
            for k, cap_row in cap_rows.items():
                capped = copy.deepcopy(study.timed[row])
                capped.roi_heads.max_small_per_image = k
                study.timed[cap_row] = capped


def _sliced_row(study: _Study) -> None:
    """The base detector with sliced inference on the 2x image."""
    run_dir = study.run_dir("sliced", 0)
    run = _done(run_dir)
    sliced = SlicedDetector(_live(study.base, study.trunk))
    if run is None:
        start = time.perf_counter()
        found = []
        inputs = study.test_inputs
        for i, x in enumerate(inputs):
            found.append(sliced([x])[0]["instances"])
            if (i + 1) % 100 == 0:
                logger.info("[study] sliced inference: %d / %d images (%.0f s)", i + 1,
                            len(inputs), time.perf_counter() - start)  # fmt: skip
        passes = sliced.num_passes(*inputs[0]["image"].shape[-2:])
        none = [0] * len(study.test_dicts)
        run = _record(run_dir, study.cfg, study.test_dicts, found,
                      {"correct": none, "total": none, "generator_change": None},
                      {"passes_per_image": passes,
                       "seconds": time.perf_counter() - start})  # fmt: skip
    study.runs["sliced"] = [_as_record(run_dir, run, 0)]
    if study.timing():
        study.timed["sliced"] = sliced


def _costs(study: _Study) -> None:
    """Inference time of the timed models relative to the base detector's, on the same images,
    interleaved (measured once; later invocations re-read ``cost.json``)."""
    settings = study.settings
    if settings.cost_images <= 0:
        return
    if study.timing() and study.timed:
        models = {"base": _live(study.base, study.trunk), **study.timed}
        seconds = _time_models(models, study.test_inputs[: settings.cost_images])
        atomic_write_json(study.cost_path, seconds)
    if not os.path.exists(study.cost_path):
        return
    with open(study.cost_path) as f:
        seconds = json.load(f)
    study.notes["seconds_per_image_base"] = seconds["base"]
    for name, records in study.runs.items():
        for r in records:
            r["cost"] = seconds[name] / seconds["base"] if name in seconds else None
    study.runs["base"][0]["cost"] = 1.0


def _reports(study: _Study, minutes: float) -> dict[int, dict]:
    """Each schedule's table against its control (factor 1 in ``OUT``, factor k in ``OUT/x<k>``,
    each with the untrained rows) and ``OUT/summary.md``; returns the reports by factor."""
    settings, cfg = study.settings, study.cfg
    study.notes["total_minutes"] = minutes  # this invocation's: a resumed run skips what is done
    study.notes["settings"] = _settings_json(settings)
    root = MetadataCatalog.get(cfg.DATASETS.TEST[0]).image_root
    gt = load_annotations(os.path.join(root, "annotations.json"))
    img_ids = [str(d["image_id"]) for d in study.test_dicts]
    protocol = {"types": cfg.TEST.TT100K.TYPES, "iou": cfg.TEST.TT100K.IOU,
                "min_score": cfg.TEST.TT100K.MIN_SCORE,
                "num_samples": settings.bootstrap_samples}  # fmt: skip
    untrained = {k: v for k, v in study.runs.items() if k in ("base", "sliced")}
    reports = {}
    for schedule in settings.schedules:
        rows = {row_name(a, schedule) for a in settings.arms}
        rows |= {f"{row_name(settings.capped_arm, schedule)}_K{k}" for k in settings.caps}
        runs = {k: v for k, v in study.runs.items() if k in rows}
        control = row_name("control", schedule)
        runs = {control: runs.pop(control), **untrained, **runs}
        report = build_study_report(gt, img_ids, runs, control=control, notes=study.notes,
                                    **protocol)  # fmt: skip
        out = settings.out_dir if schedule == 1 else os.path.join(settings.out_dir, f"x{schedule}")
        write_study_report(report, out)
        reports[schedule] = report
    if len(settings.caps) and settings.capped_arm in settings.arms:
        arm = settings.capped_arm
        switches = {k: v for k, v in study.runs.items() if k == arm or k.startswith(f"{arm}_K")}
        if "bottleneck" in study.runs and arm == "extractor":
            switches["bottleneck"] = study.runs["bottleneck"]
        reference = build_study_report(
            gt, img_ids, switches, control=arm, **protocol,
            notes={"reference": f"the {arm} arm (every small proposal through G)"},
        )  # fmt: skip
        write_study_report(reference, os.path.join(settings.out_dir, "cost_switches"))
    atomic_write_text(
        os.path.join(settings.out_dir, "summary.md"), _summary(reports, settings, study.notes)
    )
    _contrasts(study, gt, img_ids, protocol)
    return reports


def _contrasts(study: _Study, gt: dict, img_ids: list[str], protocol: dict) -> None:
    """``OUT/contrasts.md`` and ``.json``: the primary endpoint of the direct paired comparisons
    between arms of one schedule (:data:`CONTRASTS`), and of each arm at a longer schedule against
    itself at the first (whether more iterations move it)."""
    settings = study.settings
    first, pairs = settings.schedules[0], []
    for row, reference, meaning in CONTRASTS:
        if row in settings.arms and reference in settings.arms:
            pairs += [(row_name(row, k), row_name(reference, k), meaning)
                      for k in settings.schedules]  # fmt: skip
    for arm in settings.arms:
        pairs += [(row_name(arm, k), row_name(arm, first), f"{arm}: x{k} against x{first}")
                  for k in settings.schedules[1:]]  # fmt: skip
    lines = ["# FeatSR study: direct paired comparisons", "",
             f"Δ{PRIMARY_METRIC} (points), 95% paired bootstrap interval over the test images, "
             "signs over seed pairs, verdict.", "",
             "| row − reference | what it measures | Δ | signs | verdict |",
             "|---|---|---|---|---|"]  # fmt: skip
    out = {}
    for row, reference, meaning in pairs:
        runs = {reference: study.runs[reference], row: study.runs[row]}
        report = build_study_report(gt, img_ids, runs, control=reference, **protocol)
        d = report["differences"][row]
        p = d[PRIMARY_METRIC]
        out[f"{row} - {reference}"] = {"meaning": meaning, **p, "verdict": d["verdict"]}
        lines.append(f"| {row} − {reference} | {meaning} | {p['estimate']:+.1f} [{p['low']:+.1f}, "
                     f"{p['high']:+.1f}] | {p['signs']} | {d['verdict']} |")  # fmt: skip
    atomic_write_json(os.path.join(settings.out_dir, "contrasts.json"), out)
    atomic_write_text(os.path.join(settings.out_dir, "contrasts.md"), "\n".join(lines) + "\n")


def _summary(reports: dict[int, dict], settings: StudySettings, notes: dict) -> str:
    """The primary endpoint of every arm at every schedule against that schedule's control, and
    the targets' statistics."""
    schedules = sorted(reports)
    lines = ["# FeatSR study: every arm against the control of its schedule", "",
             f"Δ{PRIMARY_METRIC} (points) with its 95% paired bootstrap interval over the test "
             "images, the signs over seed pairs and the verdict; x<k>: k times the phases' "
             "iterations. `base` and `sliced` are not trained: each column compares them with that "
             "schedule's control.", "",
             "| arm | " + " | ".join(f"x{k}" for k in schedules) + " |",
             "|---|" + "---|" * len(schedules)]  # fmt: skip
    arms = [a for a in settings.arms if a != "control"] + ["base"]
    arms += ["sliced"] if settings.sliced else []
    for arm in arms:
        cells = []
        for k in schedules:
            row = arm if arm in ("base", "sliced") else row_name(arm, k)
            d = reports[k]["differences"].get(row)
            p = None if d is None else d[PRIMARY_METRIC]
            if p is None or p["low"] is None:
                cells.append("n/a")
                continue
            cells.append(f"{p['estimate']:+.1f} [{p['low']:+.1f}, {p['high']:+.1f}] "
                         f"({p['signs']}) {d['verdict']}")  # fmt: skip
        label = f"{arm} (beyond the paper)" if arm in ARMS and ARMS[arm].rescaled else arm
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    targets = notes.get("targets")
    if targets:
        lines += ["", "## The targets, on the SR pairs of 100 training images' ground truth", "",
                  "| target | pairs | cos to F^0.5 (G's input) | cos to F^1.0 | RMS / F^1.0's |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for kind, t in targets.items():
            lines.append(f"| {kind} | {t['pairs']} | {t['cos_to_lr']:.3f} | "
                         f"{t['cos_to_plain']:.3f} | {t['rms_over_plain']:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def run_study(settings: StudySettings) -> dict:
    """Runs (or resumes) the study; writes each schedule's ``table.md``, ``table.json`` and
    ``difference_from_control.png`` (factor 1 in ``settings.out_dir``, factor k in ``x<k>/``) and
    ``summary.md``; returns the factor-1 report (the first schedule's when 1 is not run). Holds
    ``settings.out_dir`` meanwhile: a second study into it stops at once
    (:mod:`featsr_d2.utils.output_lock`)."""
    _check_settings(settings)
    with hold_output_dir(settings.out_dir):
        return _run_study(settings)


def _run_study(settings: StudySettings) -> dict:
    start = time.perf_counter()
    os.makedirs(settings.out_dir, exist_ok=True)
    atomic_write_json(os.path.join(settings.out_dir, "settings.json"), _settings_json(settings))
    study = _prepare(settings)
    _base_row(study)
    for schedule in settings.schedules:
        for arm in settings.arms:
            _trained_rows(study, arm, schedule)
    if settings.sliced:
        _sliced_row(study)
    _costs(study)
    minutes = round((time.perf_counter() - start) / 60, 1)
    reports = _reports(study, minutes)
    logger.info("[study] done in %.1f min: %s", minutes,
                os.path.join(settings.out_dir, "summary.md"))  # fmt: skip
    return reports.get(1, reports[settings.schedules[0]])


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
