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

from featsr_d2.checkpoint import AtomicDetectionCheckpointer
from featsr_d2.config import get_featsr_cfg
from featsr_d2.modeling.backbone.mobilenet_v2 import InvertedResidual
from featsr_d2.modeling.roi_heads import FeatSRMobileNetV2Res5ROIHeads, FeatSRRes5ROIHeads

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGE1 = os.path.join(REPO, "configs", "faster_rcnn_MNV2_C4_synth.yaml")
STAGE2 = os.path.join(REPO, "configs", "featsr_MNV2_C4_synth.yaml")
STAGE3 = os.path.join(REPO, "configs", "featsr_MNV2_C4_synth_stage3.yaml")
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


def test_featsr_heads_refuse_a_res5_heads_name_that_is_not_a_stage1_res5roiheads():
    for name in ("StandardROIHeads", "FeatSRRes5ROIHeads"):
        with pytest.raises(ValueError, match="MODEL.FEATSR.RES5_HEADS must name"):
            build_model(tiny_cfg(STAGE2, "MODEL.FEATSR.RES5_HEADS", name))


def test_featsr_stage2_trains_only_g_d_and_the_small_predictor(tiny_tt100k):
    train_name, _, _ = tiny_tt100k
    cfg = tiny_cfg(STAGE2)
    model = build_model(cfg)
    heads = model.roi_heads
    assert type(heads) is FeatSRRes5ROIHeads
    assert heads.sub_features == ["stage3"]
    assert_mnv2_stage5(heads.res5)
    assert_mnv2_stage5(heads.featsr.small_head)  # the small predictor replicates res5
    assert heads.featsr.small_head is not heads.res5
    losses = train_step(model, batch(cfg, train_name))
    assert set(losses) == {
        "loss_cls_small",
        "loss_box_reg_small",
        "loss_sr_content",
        "loss_sr_adversarial",
        "loss_discriminator",
    }
    assert trained_modules(model) == {"roi_heads.featsr"}
    trained = {n.split(".")[2] for n, p in model.named_parameters() if p.grad is not None}
    assert trained == {"generator", "discriminator", "small_head", "small_predictor"}
    assert not heads.res5.training and not heads.box_predictor.training  # frozen: eval mode


def test_featsr_stage3_trains_only_both_predictors(tiny_tt100k):
    train_name, _, _ = tiny_tt100k
    cfg = tiny_cfg(STAGE3)
    model = build_model(cfg)
    losses = train_step(model, batch(cfg, train_name))
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_cls_small", "loss_box_reg_small"}
    trained = {
        ".".join(n.split(".")[1:3]) if n.startswith("roi_heads.featsr.") else n.split(".")[1]
        for n, p in model.named_parameters()
        if p.grad is not None
    }
    assert trained == {"res5", "box_predictor", "featsr.small_head", "featsr.small_predictor"}


def test_stage2_loads_the_stage1_detector_and_copies_res5_into_the_small_predictor(tmp_path):
    torch.manual_seed(1)
    stage1 = build_model(tiny_cfg(STAGE1))
    AtomicDetectionCheckpointer(stage1, str(tmp_path)).save("stage1")
    weights = str(tmp_path / "stage1.pth")
    torch.manual_seed(2)
    model = build_model(tiny_cfg(STAGE2))
    # As the trainer and the study load it: what stage 2 freezes must all be in the file.
    why = "stage 2 starts from the stage-1 detector"
    AtomicDetectionCheckpointer(model, require_weights=(model.frozen_weight_prefixes(), why)).load(
        weights
    )
    state = model.state_dict()
    for key, value in stage1.state_dict().items():
        assert torch.equal(state[key], value), key
    heads = model.roi_heads
    for large, small in heads._REPLICAS.items():
        large_state = heads.get_submodule(large.rstrip(".")).state_dict()
        small_state = heads.get_submodule(small.rstrip(".")).state_dict()
        assert large_state.keys() == small_state.keys() and large_state
        for key in large_state:
            assert torch.equal(large_state[key], small_state[key]), small + key
            assert large_state[key].data_ptr() != small_state[key].data_ptr()  # copies
    # What a stage-1 detector lacks: G, D and the small predictor (copied above).
    new = {k for k in state if k not in stage1.state_dict()}
    assert new and all(k.startswith(("roi_heads.featsr.generator.",
                                     "roi_heads.featsr.discriminator.",
                                     "roi_heads.featsr.small_")) for k in new)  # fmt: skip
