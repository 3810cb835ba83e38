"""TDSR's detector config: ``MODEL.TDSR.DETECTOR_CONFIG`` is relative to the config file that sets
it (whatever the working directory, which these tests leave alone), a value given by ``opts`` to
the working directory; the file is parsed once."""

import os

import pytest
from common import REPO, TDSR_SYNTH

from featsr_d2 import config as featsr_config
from featsr_d2.config import get_featsr_cfg
from featsr_d2.modeling.meta_arch.task_driven_sr import get_detector_cfg

DETECTOR = os.path.join(REPO, "configs", "faster_rcnn_MNV2_FPN_synth.yaml")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_relative_to_the_file_that_sets_it(tmp_path):
    assert os.getcwd() != str(tmp_path / "configs")
    write(tmp_path / "detectors" / "mine.yaml", f'_BASE_: "{DETECTOR}"\nMODEL:\n  DEVICE: "cuda"\n')
    leaf = write(
        tmp_path / "configs" / "tdsr.yaml",
        f'_BASE_: "{TDSR_SYNTH}"\nMODEL:\n  TDSR:\n    DETECTOR_CONFIG: "../detectors/mine.yaml"\n',
    )
    cfg = get_featsr_cfg(leaf, ["MODEL.DEVICE", "cpu"])
    assert cfg.MODEL.TDSR.DETECTOR_CONFIG == str(tmp_path / "detectors" / "mine.yaml")
    det = get_detector_cfg(cfg)
    assert det.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" and det.MODEL.DEVICE == "cpu"

    # Set by a base file: relative to the base (the repository's configs/tdsr/).
    inherits = write(tmp_path / "other" / "leaf.yaml", f'_BASE_: "{TDSR_SYNTH}"\n')
    assert get_featsr_cfg(inherits).MODEL.TDSR.DETECTOR_CONFIG == DETECTOR

    # Given by opts: relative to the working directory, and a missing file is named clearly.
    cfg = get_featsr_cfg(leaf, ["MODEL.TDSR.DETECTOR_CONFIG", "no/such/detector.yaml"])
    assert cfg.MODEL.TDSR.DETECTOR_CONFIG == "no/such/detector.yaml"
    with pytest.raises(FileNotFoundError, match=r"no/such/detector\.yaml does not exist.*folder"):
        get_detector_cfg(cfg)


def test_parsed_once(tmp_path, monkeypatch):
    detector = write(tmp_path / "detector.yaml", f'_BASE_: "{DETECTOR}"\n')
    calls = []
    merge = featsr_config.merge_config_file  # the one reader of config files

    def counting(cfg, path, *args, **kwargs):
        if path == detector:
            calls.append(path)
        return merge(cfg, path, *args, **kwargs)

    cfg = get_featsr_cfg(TDSR_SYNTH, ["MODEL.TDSR.DETECTOR_CONFIG", detector])
    monkeypatch.setattr(featsr_config, "merge_config_file", counting)
    first, second = get_detector_cfg(cfg), get_detector_cfg(cfg)
    assert len(calls) == 1
    first.MODEL.ROI_HEADS.NUM_CLASSES = 3  # a copy each time
    assert second.MODEL.ROI_HEADS.NUM_CLASSES != 3 and not second.is_frozen()
    cfg.MODEL.TDSR.DETECTOR_OPTS = ["MODEL.ROI_HEADS.NUM_CLASSES", "7"]  # other overrides: parsed
    assert get_detector_cfg(cfg).MODEL.ROI_HEADS.NUM_CLASSES == 7 and len(calls) == 2
