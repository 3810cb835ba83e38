"""Set-up-time validation of every config key featsr_d2 adds, and of Detectron2's ``SOLVER`` keys
that its trainers use, from two tables.

:data:`RULES` holds one :class:`Rule` per key (its full name, what is allowed, in words, and the
check); :func:`validate_config` runs them all and raises one :class:`ConfigValueError` that lists
every bad key with its value and its allowed range, before any model, data or training exists.
``tests/test_config_validation.py`` checks that every key :func:`featsr_d2.add_featsr_config` adds
has a rule: a new key needs a line here, e.g. ``integer("MODEL.FEATSR.NEW_KEY", 1, 3)``.
:data:`SOLVER_RULES` does the same for the Detectron2 keys that ``FeatSRTrainer``, ``TDSRTrainer``,
``SRTrainer`` and the study's heads trainer read (Detectron2 checks none of them: a batch of 0
images hangs after "Starting training", 0 iterations fail naming no key).

Types are already checked by yacs when a file or an override is merged (the value must have the
default's type); the rules add ranges, finiteness (YAML's ``.nan`` is a float), choices and list
shapes. A key absent from the config (a config built without some node) is not checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from featsr_d2.core.featsr.supervision import SUPERVISIONS

__all__ = ["ConfigValueError", "RULES", "Rule", "SOLVER_RULES", "validate_config"]


class ConfigValueError(ValueError):
    """One or more config values outside their allowed ranges."""


@dataclass(frozen=True)
class Rule:
    key: str  # full dotted name, e.g. "MODEL.FEATSR.SMALL_SIZE"
    allowed: str  # what is allowed, in words, for the message
    check: Callable[[Any], bool]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool):
    def ok(v: float) -> bool:
        if low is not None and (v <= low if low_open else v < low):
            return False
        if high is not None and (v >= high if high_open else v > high):
            return False
        return True

    if low is not None and high is not None:
        text = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        text = f"{'>' if low_open else '>='} {low:g}"
    elif high is not None:
        text = f"{'<' if high_open else '<='} {high:g}"
    else:
        text = "any value"
    return ok, text


def integer(key: str, low: int | None = None, high: int | None = None, *, odd=False) -> Rule:
    """An int in ``[low, high]`` (either bound may be None), optionally odd."""
    ok, text = _bounds(low, high, False, False)
    kind = "an odd integer" if odd else "an integer"
    return Rule(
        key,
        f"{kind} {text}" if text != "any value" else kind,
        lambda v: _is_int(v) and ok(v) and (not odd or v % 2 == 1),
    )


def number(
    key: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Rule:
    """A finite number within the bounds (closed unless ``*_open``)."""
    ok, text = _bounds(low, high, low_open, high_open)
    return Rule(key, f"a finite number {text}", lambda v: _is_number(v) and ok(v))


def boolean(key: str) -> Rule:
    return Rule(key, "true or false", lambda v: isinstance(v, bool))


def string(key: str, *, nonempty: bool = False) -> Rule:
    return Rule(
        key,
        "a non-empty string" if nonempty else "a string (may be empty)",
        lambda v: isinstance(v, str) and (bool(v) or not nonempty),
    )


def choice(key: str, options: Sequence[str]) -> Rule:
    return Rule(key, f"one of {list(options)}", lambda v: v in options)


def string_list(key: str, *, options: Sequence[str] | None = None, min_len: int = 0) -> Rule:
    what = f"a list of {list(options)}" if options else "a list of strings"
    if min_len:
        what += f" with at least {min_len} item(s)"
    return Rule(
        key,
        what,
        lambda v: (
            isinstance(v, (list, tuple))
            and len(v) >= min_len
            and all(isinstance(x, str) and (options is None or x in options) for x in v)
        ),
    )


def number_list(
    key: str,
    lengths: Sequence[int] | None,
    low: float | None = None,
    high: float | None = None,
    *,
    integers: bool = False,
    high_open: bool = False,
) -> Rule:
    ok, text = _bounds(low, high, False, high_open)
    is_item = _is_int if integers else _is_number
    sizes = " or ".join(str(n) for n in lengths) + " " if lengths else ""
    return Rule(
        key,
        f"a list of {sizes}{'integers' if integers else 'finite numbers'} {text}",
        lambda v: (
            isinstance(v, (list, tuple))
            and (lengths is None or len(v) in lengths)
            and all(is_item(x) and ok(x) for x in v)
        ),
    )


def _sr_degradations(v: Any) -> bool:
    options = ("blur", "bicubic", "noise", "jpeg")
    return (
        isinstance(v, (list, tuple))
        and "bicubic" in v
        and len(set(v)) == len(v)
        and all(x in options for x in v)
    )


def _even_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) % 2 == 0


RULES: tuple[Rule, ...] = (
    # MODEL.MNV2
    number("MODEL.MNV2.WIDTH_MULT", 0, None, low_open=True),
    string_list(
        "MODEL.MNV2.OUT_FEATURES", options=("stage2", "stage3", "stage4", "stage5"), min_len=1
    ),
    choice("MODEL.MNV2.NORM", ("FrozenBN", "BN", "SyncBN", "GN", "")),
    integer("MODEL.MNV2.FREEZE_AT", 0, 5),
    # MODEL.FEATSR
    integer("MODEL.FEATSR.SMALL_SIZE", 1),
    integer("MODEL.FEATSR.TARGET_MIN_SIZE", 0),
    integer("MODEL.FEATSR.STAGE", 2, 3),
    choice("MODEL.FEATSR.SUPERVISION", tuple(SUPERVISIONS)),
    string_list("MODEL.FEATSR.SUB_FEATURES"),
    string("MODEL.FEATSR.RES5_HEADS", nonempty=True),
    number("MODEL.FEATSR.CONTENT_WEIGHT", 0),
    number("MODEL.FEATSR.ADVERSARIAL_WEIGHT", 0),
    number("MODEL.FEATSR.DETECTION_WEIGHT", 0),
    number("MODEL.FEATSR.DISCRIMINATOR_LR", 0, None, low_open=True),
    boolean("MODEL.FEATSR.FUSED_EXTRACTOR"),
    boolean("MODEL.FEATSR.EXTRACTOR_ALIGNED"),
    integer("MODEL.FEATSR.GENERATOR.NUM_BLOCKS", 1),
    integer("MODEL.FEATSR.GENERATOR.HIDDEN_CHANNELS", 0),
    integer("MODEL.FEATSR.GENERATOR.KERNEL_SIZE", 1, odd=True),
    choice("MODEL.FEATSR.GENERATOR.BLOCK", ("basic", "bottleneck")),
    integer("MODEL.FEATSR.GENERATOR.CHUNK_SIZE", 0),
    integer("MODEL.FEATSR.MAX_SMALL_PER_IMAGE", -1),
    integer("MODEL.FEATSR.MAX_PAIRS_PER_IMAGE", -1),
    integer("MODEL.FEATSR.DISCRIMINATOR.HIDDEN_DIM", 1),
    integer("MODEL.FEATSR.DISCRIMINATOR.POOL_SIZE", 0),
    # DATASETS.TT100K, TEST.TT100K
    choice("DATASETS.TT100K.ON_BAD_RECORD", ("error", "skip")),
    number("TEST.TT100K.IOU", 0, 1, high_open=True),
    number("TEST.TT100K.MIN_SCORE", 0, 1),
    choice("TEST.TT100K.TYPES", ("type45", "all")),
    boolean("TEST.TT100K.SAVE_PLOTS"),
    integer("TEST.TT100K.NUM_VIS_IMAGES", 0),
    # MODEL.SR
    string("MODEL.SR.NAME", nonempty=True),
    integer("MODEL.SR.SCALE", 1),
    string("MODEL.SR.WEIGHTS"),
    string("MODEL.SR.WARM_START"),
    boolean("MODEL.SR.SELF_ENSEMBLE"),
    boolean("MODEL.SR.RESIDUAL"),
    choice("MODEL.SR.LOSS", ("L1", "MSE", "Charbonnier")),
    number("MODEL.SR.CHARBONNIER_EPS", 0, None, low_open=True),
    integer("MODEL.SR.DBPN.FEAT", 1),
    integer("MODEL.SR.DBPN.BASE_FILTER", 1),
    integer("MODEL.SR.DBPN.NUM_STAGES", 1),
    integer("MODEL.SR.CAJNN.NUM_FEAT", 1),
    integer("MODEL.SR.CAJNN.NUM_BLOCKS", 1),
    integer("MODEL.SR.CAJNN.GROWTH", 1),
    number_list("MODEL.SR.CAJNN.DILATIONS", (3,), 1, integers=True),
    integer("MODEL.SR.RRDB.NUM_FEAT", 1),
    integer("MODEL.SR.RRDB.NUM_BLOCKS", 1),
    integer("MODEL.SR.RRDB.GROWTH", 1),
    # DATASETS.SR, INPUT.SR
    string_list("DATASETS.SR.TRAIN"),
    string_list("DATASETS.SR.TEST"),
    integer("INPUT.SR.PATCH_SIZE", 0),
    boolean("INPUT.SR.AUGMENT"),
    Rule(
        "INPUT.SR.DEGRADATIONS",
        "a list of distinct steps among ['blur', 'bicubic', 'noise', 'jpeg'], 'bicubic' included",
        _sr_degradations,
    ),
    number_list("INPUT.SR.BLUR_SIGMA", (1, 2), 0),
    number_list("INPUT.SR.NOISE_SIGMA", (1, 2), 0),
    number_list("INPUT.SR.JPEG_QUALITY", (1, 2), 1, 100, integers=True),
    integer("INPUT.SR.SEED", 0),
    # SOLVER.SR, TEST.SR
    number_list("SOLVER.SR.BETAS", (2,), 0, 1, high_open=True),
    integer("SOLVER.SR.RESTART_PERIOD", 1),
    number("SOLVER.SR.MIN_LR", 0),
    integer("TEST.SR.CROP_BORDER", -1),
    boolean("TEST.SR.Y_CHANNEL"),
    number_list("TEST.SR.JPEG_QUALITIES", None, 0, 100, integers=True),
    integer("TEST.SR.SAMPLE_PERIOD", 0),
    integer("TEST.SR.NUM_SAMPLES", 0),
    integer("TEST.SR.SAMPLE_CROP", 0),
    # MODEL.TDSR
    string("MODEL.TDSR.DETECTOR_CONFIG"),
    string("MODEL.TDSR.RESOLVED_DETECTOR"),
    string("MODEL.TDSR.RESOLVED_DETECTOR_FROM"),
    string("MODEL.TDSR.DETECTOR_WEIGHTS"),
    Rule("MODEL.TDSR.DETECTOR_OPTS", "a list of KEY VALUE pairs (even length)", _even_list),
    number("MODEL.TDSR.ALPHA", 0),
    number("MODEL.TDSR.BETA", 0),
    boolean("MODEL.TDSR.RETURN_SR_IMAGE"),
)


def _increasing_steps(v: Any) -> bool:
    return (
        isinstance(v, (list, tuple))
        and all(_is_int(x) and x >= 1 for x in v)
        and all(a < b for a, b in zip(v, v[1:]))
    )


# Detectron2's keys that featsr_d2's trainers read (the optimizer, the schedule, the loop).
SOLVER_RULES: tuple[Rule, ...] = (
    integer("SOLVER.IMS_PER_BATCH", 1),
    integer("SOLVER.MAX_ITER", 1),
    number("SOLVER.BASE_LR", 0, None, low_open=True),
    number("SOLVER.BASE_LR_END", 0),
    number("SOLVER.MOMENTUM", 0, 1),
    number("SOLVER.WEIGHT_DECAY", 0),
    number("SOLVER.WEIGHT_DECAY_NORM", 0),
    number("SOLVER.BIAS_LR_FACTOR", 0),
    number("SOLVER.GAMMA", 0, None, low_open=True),
    Rule("SOLVER.STEPS", "a list of increasing integers >= 1 (may be empty)", _increasing_steps),
    integer("SOLVER.NUM_DECAYS", 1),
    integer("SOLVER.WARMUP_ITERS", 0),
    number("SOLVER.WARMUP_FACTOR", 0, 1),
    choice("SOLVER.WARMUP_METHOD", ("linear", "constant")),
    integer("SOLVER.CHECKPOINT_PERIOD", 1),
    integer("SOLVER.REFERENCE_WORLD_SIZE", 0),
)


def _lookup(cfg, key: str) -> tuple[bool, Any]:
    node = cfg
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node:
            return False, None
        node = node[part]
    return True, node


def validate_config(cfg, rules: Sequence[Rule] = RULES + SOLVER_RULES) -> None:
    """Check every key of ``rules`` present in ``cfg``.

    Raises:
        ConfigValueError: listing each bad key as ``KEY = value: must be <allowed>``.
    """
    problems = []
    for rule in rules:
        present, value = _lookup(cfg, rule.key)
        if present and not rule.check(value):
            problems.append(f"  {rule.key} = {value!r}: must be {rule.allowed}")
    if problems:
        raise ConfigValueError(
            "Config values outside their allowed ranges (fix the config file or the command-line "
            "override):\n" + "\n".join(problems)
        )
