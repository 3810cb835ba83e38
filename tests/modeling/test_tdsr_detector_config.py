"""TDSR's detector config: ``MODEL.TDSR.DETECTOR_CONFIG`` is relative to the config file that sets
it (whatever the working directory, which these tests leave alone), a value given by ``opts`` to
the working directory; the file is read once, when the run's config is made, into the run's config
(``MODEL.TDSR.RESOLVED_DETECTOR``), and building the model reads no file."""

import os
import shutil

import pytest
import torch
from common import REPO, TDSR_SYNTH, TINY_DBPN
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from featsr_d2 import config as featsr_config
from featsr_d2.config import add_featsr_config, get_detector_cfg, get_featsr_cfg

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

    # Given by opts: relative to the working directory, made absolute when read; a missing file
    # is named clearly when the config is made (before the change: when the model was built).
    relative = os.path.relpath(tmp_path / "detectors" / "mine.yaml")
    cfg = get_featsr_cfg(leaf, ["MODEL.TDSR.DETECTOR_CONFIG", relative])
    assert cfg.MODEL.TDSR.DETECTOR_CONFIG == str(tmp_path / "detectors" / "mine.yaml")
    assert cfg.MODEL.TDSR.RESOLVED_DETECTOR_FROM == cfg.MODEL.TDSR.DETECTOR_CONFIG
    with pytest.raises(FileNotFoundError, match=r"no/such/detector\.yaml does not exist.*folder"):
        get_featsr_cfg(leaf, ["MODEL.TDSR.DETECTOR_CONFIG", "no/such/detector.yaml"])


def test_read_once_when_the_config_is_made(tmp_path, monkeypatch):
    detector = write(tmp_path / "detector.yaml", f'_BASE_: "{DETECTOR}"\n')
    calls = []
    merge = featsr_config.merge_config_file  # the one reader of config files

    def counting(cfg, path, *args, **kwargs):
        calls.append(path)
        return merge(cfg, path, *args, **kwargs)

    monkeypatch.setattr(featsr_config, "merge_config_file", counting)
    cfg = get_featsr_cfg(TDSR_SYNTH, ["MODEL.DEVICE", "cpu", "MODEL.SR.WEIGHTS", "", *TINY_DBPN,
                                      "MODEL.TDSR.DETECTOR_CONFIG", detector])  # fmt: skip
    assert calls == [TDSR_SYNTH, detector]
    os.remove(detector)  # the run's config holds it: nothing reads the file again
    first, second = get_detector_cfg(cfg), get_detector_cfg(cfg)
    assert isinstance(build_model(cfg).detector, torch.nn.Module)
    assert calls == [TDSR_SYNTH, detector]
    first.MODEL.ROI_HEADS.NUM_CLASSES = 3  # a copy each time
    assert second.MODEL.ROI_HEADS.NUM_CLASSES != 3 and not second.is_frozen()
    cfg.MODEL.TDSR.DETECTOR_OPTS = ["MODEL.ROI_HEADS.NUM_CLASSES", "7"]  # overrides apply later
    assert get_detector_cfg(cfg).MODEL.ROI_HEADS.NUM_CLASSES == 7


@pytest.mark.parametrize("zoo", [False, True])
def test_the_detector_cfg_is_the_files_with_its_overrides(zoo):
    """What get_detector_cfg gives is the detector's file with DETECTOR_OPTS, as read directly:
    the demo detector, or Detectron2's RetinaNet (its anchors an evaluated expression)."""
    opts = ["INPUT.MIN_SIZE_TEST", "96", "MODEL.RESNETS.DEPTH", "18"]
    detector = DETECTOR
    if zoo:
        from detectron2 import model_zoo

        detector = model_zoo.get_config_file("COCO-Detection/retinanet_R_50_FPN_1x.yaml")
    tdsr = ["MODEL.TDSR.DETECTOR_CONFIG", detector, "MODEL.TDSR.DETECTOR_OPTS", opts]
    cfg = get_featsr_cfg(TDSR_SYNTH, [*tdsr, "MODEL.DEVICE", "cpu"])
    direct = get_featsr_cfg(detector, [*opts, "MODEL.DEVICE", "cpu"])
    assert get_detector_cfg(cfg) == direct  # every key, value and type
    assert get_detector_cfg(cfg).INPUT.MIN_SIZE_TEST == 96


def test_a_runs_config_yaml_describes_its_detector(tmp_path):
    """Reloaded from the config.yaml a run writes, the config keeps the detector it was made with,
    even once the file is gone; naming another detector file reads that one."""
    detector = write(tmp_path / "detector.yaml", f'_BASE_: "{DETECTOR}"\n')
    cfg = get_featsr_cfg(TDSR_SYNTH, ["MODEL.TDSR.DETECTOR_CONFIG", detector])
    saved = write(tmp_path / "run" / "config.yaml", cfg.dump())
    os.remove(detector)
    reloaded = get_featsr_cfg(saved)
    assert reloaded.MODEL.TDSR.RESOLVED_DETECTOR == cfg.MODEL.TDSR.RESOLVED_DETECTOR
    assert get_detector_cfg(reloaded) == get_detector_cfg(cfg)
    other = write(
        tmp_path / "other.yaml", f'_BASE_: "{DETECTOR}"\nMODEL:\n  RPN:\n    NMS_THRESH: 0.5\n'
    )
    switched = get_featsr_cfg(saved, ["MODEL.TDSR.DETECTOR_CONFIG", other])
    assert switched.MODEL.TDSR.RESOLVED_DETECTOR_FROM == other
    assert get_detector_cfg(switched).MODEL.RPN.NMS_THRESH == 0.5


def test_a_config_made_by_hand_is_resolved_before_building(tmp_path):
    """A config made without get_featsr_cfg (Detectron2's get_cfg and merge_from_file) names its
    detector file, which build_model does not read: it says how to read it first."""
    from detectron2.config import get_cfg

    cfg = add_featsr_config(get_cfg())
    cfg.merge_from_file(TDSR_SYNTH)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.SR.WEIGHTS", "", *TINY_DBPN])
    cfg.MODEL.TDSR.DETECTOR_CONFIG = DETECTOR
    with pytest.raises(ValueError, match="resolve_tdsr_detector"):
        build_model(cfg)
    featsr_config.resolve_tdsr_detector(cfg)
    assert type(build_model(cfg).detector).__name__ == "GeneralizedRCNN"
    shutil.copy(DETECTOR, tmp_path / "copy.yaml")
    cfg.MODEL.TDSR.DETECTOR_CONFIG = str(tmp_path / "copy.yaml")  # changed after reading: stale
    with pytest.raises(ValueError, match="was not read into this config"):
        get_detector_cfg(cfg)


def test_the_model_zoo_retinanet_is_a_tdsr_detector(one_thread):
    """Issue 22.12: Detectron2's RetinaNet config (its anchors are a !!python/object/apply:eval
    expression) loads as MODEL.TDSR.DETECTOR_CONFIG without any opt-in; TDSR trains a step through
    the one-stage detector on CPU and infers."""
    from detectron2 import model_zoo

    retinanet = model_zoo.get_config_file("COCO-Detection/retinanet_R_50_FPN_1x.yaml")
    small = ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
             "MODEL.RETINANET.NUM_CLASSES", "3", "MODEL.WEIGHTS", ""]  # fmt: skip
    cfg = get_featsr_cfg(TDSR_SYNTH, [
        "MODEL.DEVICE", "cpu", "MODEL.SR.WEIGHTS", "", *TINY_DBPN,
        "MODEL.TDSR.DETECTOR_CONFIG", retinanet, "MODEL.TDSR.DETECTOR_OPTS", small,
    ])  # fmt: skip
    model = build_model(cfg)
    assert type(model.detector).__name__ == "RetinaNet"
    gen = torch.Generator().manual_seed(0)
    hr = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=gen)
    instances = Instances((64, 64))
    instances.gt_boxes = Boxes(torch.tensor([[8.0, 8.0, 40.0, 36.0]]))
    instances.gt_classes = torch.tensor([1])
    x = {"image": hr, "lr_image": hr[:, ::4, ::4].contiguous(), "height": 64, "width": 64}
    model.train()
    with EventStorage():
        losses = model([dict(x, instances=instances)])
    assert set(losses) == {"loss_rec", "loss_cls", "loss_box_reg"}
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.detector.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.sr.parameters())
    model.eval()
    with torch.no_grad():
        (out,) = model([x])
    assert out["instances"].image_size == (64, 64) and out["instances"].has("scores")
