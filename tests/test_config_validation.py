"""Every key featsr_d2 adds is validated at set-up time, from one table, with its allowed range."""

import os

import pytest
from detectron2.config import get_cfg

from featsr_d2 import add_featsr_config
from featsr_d2.config import get_featsr_cfg
from featsr_d2.config_validation import RULES, ConfigValueError, validate_config


def _leaves(node, prefix=""):
    out = {}
    for key, value in node.items():
        if hasattr(value, "items"):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_every_featsr_key_has_exactly_one_rule():
    ours = set(_leaves(add_featsr_config(get_cfg()))) - set(_leaves(get_cfg()))
    ruled = [rule.key for rule in RULES]
    assert len(ruled) == len(set(ruled)), "a key with two rules"
    missing = sorted(ours - set(ruled))
    assert not missing, f"add a rule to featsr_d2/config_validation.py RULES for {missing}"
    stale = sorted(set(ruled) - ours)
    assert not stale, f"rules for keys that featsr_d2 no longer adds: {stale}"


def test_defaults_pass():
    validate_config(add_featsr_config(get_cfg()))


BAD = {
    # key: (value, fragment of the allowed range)
    "MODEL.FEATSR.SMALL_SIZE": (0, "an integer >= 1"),
    "MODEL.FEATSR.CONTENT_WEIGHT": (-1.0, "a finite number >= 0"),
    "MODEL.FEATSR.GENERATOR.HIDDEN_CHANNELS": (-8, "an integer >= 0"),
    "MODEL.FEATSR.GENERATOR.KERNEL_SIZE": (4, "an odd integer >= 1"),
    "MODEL.FEATSR.DISCRIMINATOR_LR": (0.0, "a finite number > 0"),
    "MODEL.FEATSR.RES5_HEADS": ("", "a non-empty string"),
    "TEST.TT100K.TYPES": ("typo45", "one of ['type45', 'all']"),
    "TEST.TT100K.IOU": (1.5, "a finite number in [0, 1)"),
    "TEST.TT100K.MIN_SCORE": (float("nan"), "a finite number in [0, 1]"),
    "DATASETS.TT100K.ON_BAD_RECORD": ("ignore", "one of ['error', 'skip']"),
    "MODEL.MNV2.OUT_FEATURES": (["stage6"], "a list of ['stage2', 'stage3', 'stage4', 'stage5']"),
    "INPUT.SR.JPEG_QUALITY": ([0, 100], "a list of 1 or 2 integers in [1, 100]"),
    "INPUT.SR.DEGRADATIONS": (["blur"], "'bicubic' included"),
    "MODEL.TDSR.DETECTOR_OPTS": (["MODEL.DEVICE"], "KEY VALUE pairs"),
}


@pytest.mark.parametrize("key", sorted(BAD))
def test_out_of_range_values_are_named_with_their_range(key):
    value, allowed = BAD[key]
    cfg = add_featsr_config(get_cfg())
    cfg.merge_from_list([key, value])
    with pytest.raises(ConfigValueError) as e:
        validate_config(cfg)
    message = str(e.value)
    assert f"{key} = {value!r}: must be" in message and allowed in message


def test_all_problems_reported_at_once_from_file_and_overrides(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("TEST:\n  TT100K:\n    IOU: .nan\nMODEL:\n  FEATSR:\n    SMALL_SIZE: -32\n")
    with pytest.raises(ConfigValueError) as e:
        get_featsr_cfg(str(config), ["MODEL.FEATSR.ADVERSARIAL_WEIGHT", "-0.01"])
    message = str(e.value)
    for key in ("TEST.TT100K.IOU", "MODEL.FEATSR.SMALL_SIZE", "MODEL.FEATSR.ADVERSARIAL_WEIGHT"):
        assert key in message


def test_setup_validates_before_anything_is_built(tmp_path):
    from featsr_d2.engine import argument_parser, setup

    args = argument_parser().parse_args(
        ["--config-file", "configs/faster_rcnn_MNV2_FPN_synth.yaml", "MODEL.FEATSR.SMALL_SIZE", "0",
         "OUTPUT_DIR", str(tmp_path / "out")]
    )  # fmt: skip
    cwd = os.getcwd()
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        with pytest.raises(ConfigValueError, match=r"MODEL\.FEATSR\.SMALL_SIZE = 0"):
            setup(args)
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "out").exists()  # failed before default_setup wrote anything


SOLVER_BAD = {
    # Detectron2's keys that featsr_d2's trainers read (issue 22.11): value, allowed range.
    "SOLVER.IMS_PER_BATCH": (0, "an integer >= 1"),  # hung after "Starting training"
    "SOLVER.MAX_ITER": (0, "an integer >= 1"),  # failed naming no key
    "SOLVER.BASE_LR": (float("nan"), "a finite number > 0"),
    "SOLVER.CHECKPOINT_PERIOD": (0, "an integer >= 1"),
    "SOLVER.STEPS": ((300, 200), "a list of increasing integers >= 1"),
    "SOLVER.GAMMA": (-0.1, "a finite number > 0"),
    "SOLVER.WARMUP_FACTOR": (2.0, "a finite number in [0, 1]"),
    "SOLVER.WARMUP_ITERS": (-1, "an integer >= 0"),
}


@pytest.mark.parametrize("key", sorted(SOLVER_BAD))
def test_the_solver_keys_the_trainers_use_are_range_checked(key):
    value, allowed = SOLVER_BAD[key]
    with pytest.raises(ConfigValueError) as e:
        get_featsr_cfg(None, [key, value])
    assert f"{key} = {value!r}: must be" in str(e.value) and allowed in str(e.value)
