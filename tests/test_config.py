"""Every config loads; featsr_d2's keys are added once, each documented, defaults untouched."""

import glob
import os
import re

import pytest
from detectron2.config import get_cfg

from featsr_d2 import add_featsr_config
from featsr_d2.config import get_featsr_cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True))


def is_sr_config(path: str) -> bool:
    return os.path.relpath(path, os.path.join(REPO, "configs")).startswith("sr" + os.sep)


def test_configs_found():
    names = {os.path.relpath(p, os.path.join(REPO, "configs")) for p in CONFIGS}
    assert {"faster_rcnn_R50_tt100k.yaml", "faster_rcnn_MNV2_FPN_synth.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, REPO))
def test_every_config_loads(path):
    cfg = get_featsr_cfg(path)  # unknown keys raise inside merge_from_file
    assert cfg.MODEL.META_ARCHITECTURE
    if os.path.basename(path).startswith("Base-"):
        return
    if is_sr_config(path):  # image-SR training: folders of HR images
        assert cfg.MODEL.SR.NAME and cfg.DATASETS.SR.TEST
    else:
        assert cfg.DATASETS.TRAIN and cfg.DATASETS.TEST


def test_leaf_configs_change_something():
    """A leaf that repeats its base exactly would be a copy, not a config."""
    for path in CONFIGS:
        if os.path.basename(path).startswith("Base-"):
            continue
        with open(path) as f:
            base = re.search(r'^_BASE_: "(.+)"', f.read(), re.M)
        assert base, f"{path} has no _BASE_"
        base_cfg = get_featsr_cfg(os.path.join(os.path.dirname(path), base.group(1)))
        assert get_featsr_cfg(path) != base_cfg, path


def test_add_featsr_config_is_idempotent_and_leaves_defaults_alone():
    cfg = get_cfg()
    add_featsr_config(cfg)
    cfg.MODEL.MNV2.WIDTH_MULT = 0.5
    add_featsr_config(cfg)  # a second call keeps what was set
    assert cfg.MODEL.MNV2.WIDTH_MULT == 0.5
    fresh = get_cfg()
    assert "MNV2" not in fresh.MODEL and "TT100K" not in fresh.TEST


def test_every_new_key_has_a_comment():
    with open(os.path.join(REPO, "featsr_d2", "config.py")) as f:
        lines = f.read().splitlines()
    keys = 0
    for i, line in enumerate(lines):
        if re.match(r"\s*_C(\.\w+)+ = (?!CN\(\))", line):
            keys += 1
            assert lines[i - 1].strip().startswith("#"), f"config.py:{i + 1} has no comment: {line}"
    cfg = get_cfg()
    add_featsr_config(cfg)
    added = sum(
        len(cfg[a][b]) for a, b in (("MODEL", "MNV2"), ("DATASETS", "TT100K"), ("TEST", "TT100K"))
    )
    assert keys >= added > 0
