"""Configurations shared by tests of several packages (pytest puts tests/ on sys.path)."""

import os
import threading

import pytest
import torch
from detectron2.config import get_cfg
from torch import nn

from featsr_d2.config import add_featsr_config, get_featsr_cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TDSR_SYNTH = os.path.join(REPO, "configs", "tdsr", "tdsr_dbpn_x4_synth.yaml")

FPN = {
    "MODEL.BACKBONE.NAME": "FeatSRMobileNetV2FPN",
    "MODEL.MNV2.OUT_FEATURES": ["stage2", "stage3", "stage4", "stage5"],
    "MODEL.FPN.IN_FEATURES": ["stage2", "stage3", "stage4", "stage5"],
    "MODEL.FPN.OUT_CHANNELS": 32,
    "MODEL.RPN.IN_FEATURES": ["p2", "p3", "p4", "p5", "p6"],
    "MODEL.ANCHOR_GENERATOR.SIZES": [[16], [32], [64], [128], [256]],
    "MODEL.ROI_HEADS.NAME": "FeatSRStandardROIHeads",
    "MODEL.ROI_HEADS.IN_FEATURES": ["p2", "p3", "p4", "p5"],
    "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead",
    "MODEL.ROI_BOX_HEAD.NUM_FC": 2,
    "MODEL.ROI_BOX_HEAD.FC_DIM": 64,
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 7,
}
LAYOUTS = {"C4": {}, "FPN": FPN}


def tiny_featsr_cfg(layout="C4", **overrides):
    """A FeatSR model with tiny G and D on CPU: R18-C4 or MobileNetV2-FPN."""
    cfg = get_featsr_cfg()
    opts = {
        "MODEL.DEVICE": "cpu",
        "MODEL.WEIGHTS": "",
        "MODEL.META_ARCHITECTURE": "FeatSRRCNN",
        "MODEL.BACKBONE.NAME": "FeatSRResNetBackbone",
        "MODEL.RESNETS.DEPTH": 18,
        "MODEL.RESNETS.RES2_OUT_CHANNELS": 64,
        "MODEL.RESNETS.OUT_FEATURES": ["res3", "res4"],
        "MODEL.RPN.IN_FEATURES": ["res4"],
        "MODEL.RPN.POST_NMS_TOPK_TRAIN": 64,
        "MODEL.RPN.POST_NMS_TOPK_TEST": 64,
        "MODEL.ANCHOR_GENERATOR.SIZES": [[16, 32, 64]],
        "MODEL.ROI_HEADS.NAME": "FeatSRRes5ROIHeads",
        "MODEL.ROI_HEADS.IN_FEATURES": ["res4"],
        "MODEL.ROI_HEADS.NUM_CLASSES": 45,
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 32,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0,
        "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 8,
        "MODEL.FEATSR.GENERATOR.NUM_BLOCKS": 2,
        "MODEL.FEATSR.GENERATOR.HIDDEN_CHANNELS": 16,
        "MODEL.FEATSR.DISCRIMINATOR.HIDDEN_DIM": 32,
        "MODEL.FEATSR.DISCRIMINATOR.POOL_SIZE": 2,
        "INPUT.MIN_SIZE_TRAIN": (128,),
        "INPUT.MAX_SIZE_TRAIN": 128,
        "INPUT.MIN_SIZE_TEST": 128,
        "INPUT.MAX_SIZE_TEST": 128,
    }
    opts.update(LAYOUTS[layout])
    opts.update(overrides)
    for key, value in opts.items():
        cfg.merge_from_list([key, str(value) if isinstance(value, list) else value])
    return cfg


# The demo detector at 128 px with few proposals, BatchNorm in the backbone (to check that its
# statistics do not move), no pretrained backbone.
TDSR_DETECTOR_OPTS = [
    "MODEL.MNV2.NORM", "BN", "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128",
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128", "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "64", "MODEL.RPN.POST_NMS_TOPK_TEST", "64", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
    "MODEL.ROI_HEADS.NUM_CLASSES", "45",  # the tiny set's type45 classes (the demo has ten)
]  # fmt: skip
TINY_DBPN = [
    "MODEL.SR.DBPN.FEAT",
    16,
    "MODEL.SR.DBPN.BASE_FILTER",
    8,
    "MODEL.SR.DBPN.NUM_STAGES",
    2,
]


def tiny_tdsr_cfg(tiny_tt100k, output_dir, *opts, detector_opts=()):
    """TDSR on the tiny synthetic TT100K (the ``tiny_tt100k`` fixture): a tiny D-DBPN in front of
    the demo detector at 128 px, no weights, outputs in ``output_dir``."""
    train_name, test_name, _ = tiny_tt100k
    cfg = get_featsr_cfg(TDSR_SYNTH)
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu", "MODEL.SR.WEIGHTS", "", "MODEL.TDSR.DETECTOR_WEIGHTS", "",
        "MODEL.TDSR.DETECTOR_OPTS", [*TDSR_DETECTOR_OPTS, *detector_opts], *TINY_DBPN,
        "DATASETS.TRAIN", (train_name,), "DATASETS.TEST", (test_name,),
        "DATALOADER.NUM_WORKERS", 0, "SOLVER.IMS_PER_BATCH", 2, "SOLVER.MAX_ITER", 2,
        "SOLVER.STEPS", (), "SOLVER.CHECKPOINT_PERIOD", 1, "INPUT.SR.PATCH_SIZE", 64,
        "TEST.TT100K.NUM_VIS_IMAGES", 0, "TEST.TT100K.TYPES", "type45",
        "OUTPUT_DIR", str(output_dir), *opts,
    ])  # fmt: skip
    return cfg


# MobileNetV2: our stages, their (channels, stride), and where torchvision's features[:k] ends each.
MNV2_STAGES = ["stage2", "stage3", "stage4", "stage5"]
MNV2_EXPECTED = {"stage2": (24, 4), "stage3": (32, 8), "stage4": (96, 16), "stage5": (320, 32)}
MNV2_TORCHVISION_END = {"stage2": 4, "stage3": 7, "stage4": 14, "stage5": 18}


def mnv2_cfg(name="FeatSRMobileNetV2", **mnv2):
    """A config with the MobileNetV2 backbone ``name`` returning every stage."""
    cfg = get_cfg()
    add_featsr_config(cfg)
    cfg.MODEL.BACKBONE.NAME = name
    cfg.MODEL.MNV2.OUT_FEATURES = MNV2_STAGES
    cfg.MODEL.FPN.IN_FEATURES = MNV2_STAGES
    for key, value in mnv2.items():
        cfg.MODEL.MNV2[key] = value
    return cfg


def randomize_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights, norm affines and running statistics, so that a wrong mapping shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    return model


def call_guarding_fifo(fn, fifo: str, seconds: float = 20):
    """``fn()`` in a thread; if it is still blocked after ``seconds`` (reading the FIFO ``fifo``),
    unblock it by opening the FIFO for writing, and fail the test: a hang becomes a failure."""
    result = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as e:  # handed to the test
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # the reader gets EOF
        thread.join(seconds)
        pytest.fail(f"blocked on the FIFO {fifo} for {seconds} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")
