"""MobileNetV2-C4 (the paper's layout on MobileNetV2): the stage-1 heads whose res5 is stage5, and
FeatSR's C4 heads on them, built from the shipped configs on CPU without weights."""

import copy
import math
import os

import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from featsr_d2.config import get_featsr_cfg
from featsr_d2.modeling.backbone.mobilenet_v2 import InvertedResidual
from featsr_d2.modeling.roi_heads import FeatSRMobileNetV2Res5ROIHeads

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGE1 = os.path.join(REPO, "configs", "faster_rcnn_MNV2_C4_synth.yaml")
pytestmark = pytest.mark.usefixtures("one_thread")

# The shipped architecture at 128 px with few RoIs and a tiny G and D; the tiny set's 45 classes.
TINY = [
    "MODEL.DEVICE", "cpu",
    "MODEL.WEIGHTS", "",
    "MODEL.ROI_HEADS.NUM_CLASSES", 45,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", 32,
    "MODEL.RPN.POST_NMS_TOPK_TEST", 32,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16,
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
    "MODEL.FEATSR.SMALL_SIZE", 48,
    "MODEL.FEATSR.GENERATOR.HIDDEN_CHANNELS", 16,
    "MODEL.FEATSR.DISCRIMINATOR.HIDDEN_DIM", 16,
    "INPUT.MIN_SIZE_TRAIN", (128,),
    "INPUT.MAX_SIZE_TRAIN", 128,
    "INPUT.MIN_SIZE_TEST", 128,
    "INPUT.MAX_SIZE_TEST", 128,
]  # fmt: skip


def tiny_cfg(config_file, *opts):
    return get_featsr_cfg(config_file, [*TINY, *opts])


def batch(cfg, train_name) -> list[dict]:
    """An image with ground truth and one without."""
    with_gt = next(d for d in DatasetCatalog.get(train_name) if d["annotations"])
    mapper = DatasetMapper(cfg, is_train=True)
    empty = dict(copy.deepcopy(with_gt), annotations=[])
    return [mapper(copy.deepcopy(with_gt)), mapper(empty)]


def train_step(model, inputs) -> dict:
    model.train()
    with EventStorage():
        losses = model(inputs)
    assert all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    return losses


def trained_modules(model) -> set[str]:
    """The modules (two levels under the model) whose parameters got a gradient."""
    return {
        ".".join(name.split(".")[:2]) for name, p in model.named_parameters() if p.grad is not None
    }


def assert_mnv2_stage5(module, width=(96, 320)):
    blocks = list(module.children())
    assert len(blocks) == 4 and all(isinstance(b, InvertedResidual) for b in blocks)
    assert [b.stride for b in blocks] == [2, 1, 1, 1]
    assert (blocks[0].in_channels, blocks[-1].out_channels) == width


def test_stage1_heads_build_from_the_config_train_and_infer(tiny_tt100k):
    train_name, _, _ = tiny_tt100k
    cfg = tiny_cfg(STAGE1)
    model = build_model(cfg)
    heads = model.roi_heads
    assert type(heads) is FeatSRMobileNetV2Res5ROIHeads
    assert list(model.backbone.output_shape()) == ["stage4"]
    assert not hasattr(model.backbone, "stage5")  # stage5 runs per RoI, in the heads
    assert_mnv2_stage5(heads.res5)
    assert heads.pooler.output_size == (14, 14)
    assert heads.box_predictor.cls_score.in_features == 320
    # RoIAlign 14x14 at 1/16, res5 (stride 2): 7x7x320 per RoI.
    with torch.no_grad():
        assert heads.res5(torch.zeros(3, 96, 14, 14)).shape == (3, 320, 7, 7)

    losses = train_step(model, batch(cfg, train_name))
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    # FREEZE_AT 3: stem, stage2 and stage3 frozen; stage4, the RPN and the heads train.
    assert trained_modules(model) == {
        "backbone.stage4",
        "proposal_generator.rpn_head",
        "roi_heads.res5",
        "roi_heads.box_predictor",
    }

    model.eval()
    inputs = batch(cfg, train_name)  # the second has no ground truth
    with torch.no_grad():
        outputs = model(inputs)
    assert [o["instances"].image_size for o in outputs] == [
        (x["height"], x["width"]) for x in inputs
    ]
    assert all(len(o["instances"]) > 0 for o in outputs)  # score threshold 0


def test_stage1_heads_refuse_a_map_res5_cannot_read():
    cfg = tiny_cfg(STAGE1, "MODEL.MNV2.OUT_FEATURES", ["stage3"], "MODEL.RPN.IN_FEATURES",
                   ["stage3"], "MODEL.ROI_HEADS.IN_FEATURES", ["stage3"])  # fmt: skip
    with pytest.raises(ValueError, match=r"reads the 96 channels of stage4.*'stage3' has 32"):
        build_model(cfg)
