"""featsr_d2.enable_featsr and ``tools/train_net.py --featsr-stage``: FeatSR from Detectron2's own
model-zoo Faster R-CNN configs (C4, DC5, FPN, ResNeXt-FPN), a training step and an inference on CPU
at a small size, and Mask R-CNN's with its mask head; clear refusals for configs FeatSR cannot
serve."""

import math
import os

import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

from featsr_d2 import enable_featsr
from featsr_d2.config import featsr_sub_features, get_featsr_cfg
from featsr_d2.engine.setup import argument_parser

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.usefixtures("one_thread")

ZOO = {
    "C4": "COCO-Detection/faster_rcnn_R_50_C4_1x.yaml",
    "DC5": "COCO-Detection/faster_rcnn_R_50_DC5_1x.yaml",
    "FPN": "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml",
    "X101-FPN": "COCO-Detection/faster_rcnn_X_101_32x8d_FPN_3x.yaml",
}
# The sub layer of each base level (README, "Use it in your own project").
SUBS = {
    "C4": (["res4"], ["res3"]),
    "DC5": (["res5"], ["res4"]),
    "FPN": (["p2", "p3", "p4", "p5"], ["res2", "res2", "res3", "res4"]),
    "X101-FPN": (["p2", "p3", "p4", "p5"], ["res2", "res2", "res3", "res4"]),
}
# Keep the tests fast: few proposals and a tiny generator and discriminator.
SMALL = [
    "MODEL.DEVICE", "cpu",
    "MODEL.WEIGHTS", "",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "64",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
    "MODEL.FEATSR.SMALL_SIZE", "48",
    "MODEL.FEATSR.GENERATOR.NUM_BLOCKS", "1",
    "MODEL.FEATSR.GENERATOR.HIDDEN_CHANNELS", "16",
    "MODEL.FEATSR.DISCRIMINATOR.HIDDEN_DIM", "16",
]  # fmt: skip


def zoo_cfg(layout: str, stage: int = 2, extra=()):
    return get_featsr_cfg(
        model_zoo.get_config_file(ZOO[layout]), [*SMALL, *extra], featsr_stage=stage
    )


def sample(height: int, width: int, with_gt: bool = True) -> dict:
    """One image of exactly this (padded) size, with a small and a large box near its far
    corner (what misaligned 0.5x maps would lose first)."""
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(0)) * 255
    item = {"image": image, "height": height, "width": width}
    if with_gt:
        instances = Instances((height, width))
        h, w = height - 1, width - 1
        instances.gt_boxes = Boxes(
            torch.tensor([[w - 30, h - 26, w - 4, h - 4], [w - 90, h - 80, w - 20, h - 10]])
        )
        instances.gt_classes = torch.tensor([1, 2])
        item["instances"] = instances
    return item


def train_step(model, item) -> dict:
    model.train()
    with EventStorage():
        losses = model([item])
    sum(losses.values()).backward()
    return losses


@pytest.mark.parametrize("layout", sorted(ZOO))
def test_model_zoo_faster_rcnn_becomes_featsr_and_trains_and_infers(layout):
    cfg = zoo_cfg(layout)
    base, subs = SUBS[layout]
    assert cfg.MODEL.META_ARCHITECTURE == "FeatSRRCNN"
    assert list(cfg.MODEL.ROI_HEADS.IN_FEATURES) == base
    assert featsr_sub_features(cfg) == subs
    reference = get_cfg()
    reference.merge_from_file(model_zoo.get_config_file(ZOO[layout]))
    for key in ("RESNETS.DEPTH", "RESNETS.NUM_GROUPS", "ANCHOR_GENERATOR.SIZES", "RPN.IN_FEATURES"):
        node, name = key.split(".")
        assert cfg.MODEL[node][name] == reference.MODEL[node][name], key  # the user's model
    torch.manual_seed(0)
    model = build_model(cfg)
    losses = train_step(model, sample(128, 160))
    assert {"loss_cls_small", "loss_sr_content", "loss_discriminator"} <= set(losses)
    assert all(math.isfinite(v.item()) for v in losses.values())
    assert any(p.grad is not None for p in model.roi_heads.featsr.generator.parameters())
    model.eval()
    with torch.no_grad():
        (out,) = model([sample(128, 160, with_gt=False)])
    assert out["instances"].image_size == (128, 160)


def test_stage3_from_a_model_zoo_config():
    cfg = zoo_cfg("FPN", stage=3)
    assert cfg.MODEL.FEATSR.STAGE == 3
    model = build_model(cfg)
    losses = train_step(model, sample(128, 160))
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_cls_small", "loss_box_reg_small"}
    assert all(p.grad is None for p in model.roi_heads.featsr.generator.parameters())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"META_ARCHITECTURE": "RetinaNet"}, "two-stage Faster R-CNN"),
        ({"ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES": True}, "TRAIN_ON_PRED_BOXES"),
        ({"ROI_BOX_HEAD.POOLER_TYPE": "ROIPool"}, "RoIAlign"),
        ({"BACKBONE.NAME": "build_retinanet_resnet_fpn_backbone"}, "SR target extractor"),
        ({"ROI_HEADS.NAME": "CascadeROIHeads"}, "Res5ROIHeads"),
    ],
)
def test_configs_featsr_cannot_serve_are_refused_with_the_reason(change, message):
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(ZOO["FPN"]))
    for key, value in change.items():
        node = cfg.MODEL
        *path, name = key.split(".")
        for part in path:
            node = node[part]
        node[name] = value
    with pytest.raises(ValueError, match=message):
        enable_featsr(cfg)
    with pytest.raises(ValueError, match="stage"):
        enable_featsr(get_cfg(), stage=1)


def test_model_zoo_mask_rcnn_becomes_featsr_with_its_mask_head():
    """Mask R-CNN (FPN): FeatSR's heads keep the mask head; a training step gives its loss beside
    FeatSR's, inference gives masks. Keypoints on C4 (Res5ROIHeads has no keypoint head) are
    refused."""
    mask_rcnn = model_zoo.get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml")
    cfg = get_featsr_cfg(mask_rcnn, SMALL, featsr_stage=2)
    assert cfg.MODEL.MASK_ON and cfg.MODEL.META_ARCHITECTURE == "FeatSRRCNN"
    assert cfg.MODEL.ROI_HEADS.NAME == "FeatSRStandardROIHeads"
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.roi_heads.mask_on and isinstance(model.roi_heads.mask_head, torch.nn.Module)
    item = sample(128, 160)
    boxes = item["instances"].gt_boxes.tensor.tolist()
    item["instances"].gt_masks = PolygonMasks(
        [[[x0, y0, x1, y0, x1, y1, x0, y1]] for x0, y0, x1, y1 in boxes]
    )
    losses = train_step(model, item)
    assert {"loss_mask", "loss_cls_small", "loss_sr_content"} <= set(losses)
    assert all(math.isfinite(v.item()) for v in losses.values())
    assert any(p.grad is not None for p in model.roi_heads.mask_head.parameters())
    model.eval()
    with torch.no_grad():
        (out,) = model([sample(128, 160, with_gt=False)])
    assert out["instances"].has("pred_masks")
    assert out["instances"].pred_masks.shape[-2:] == (128, 160)

    c4 = get_cfg()
    c4.merge_from_file(model_zoo.get_config_file(ZOO["C4"]))
    c4.MODEL.KEYPOINT_ON = True
    with pytest.raises(ValueError, match="keypoint"):
        enable_featsr(c4)


def test_retinanet_model_zoo_config_is_refused():
    with pytest.raises(ValueError, match="RetinaNet"):
        get_featsr_cfg(
            model_zoo.get_config_file("COCO-Detection/retinanet_R_50_FPN_1x.yaml"), featsr_stage=2
        )


def test_mobilenet_v2_c4_detector_becomes_featsr_c4_on_its_res5():
    """The MobileNetV2-C4 detector (stage 1) becomes FeatSRRCNN with FeatSR's C4 heads, whose res5
    and its replica in the small predictor are MobileNetV2's stage5: the model of the shipped
    stage-2 config, key for key; it trains and infers."""
    configs = os.path.join(REPO, "configs")
    cfg = get_featsr_cfg(os.path.join(configs, "faster_rcnn_MNV2_C4_synth.yaml"), SMALL)
    enable_featsr(cfg, stage=2)
    assert cfg.MODEL.META_ARCHITECTURE == "FeatSRRCNN"
    assert cfg.MODEL.BACKBONE.NAME == "FeatSRMobileNetV2"
    assert cfg.MODEL.ROI_HEADS.NAME == "FeatSRRes5ROIHeads"
    assert cfg.MODEL.FEATSR.RES5_HEADS == "FeatSRMobileNetV2Res5ROIHeads"
    assert list(cfg.MODEL.MNV2.OUT_FEATURES) == ["stage3", "stage4"]
    assert featsr_sub_features(cfg) == ["stage3"]
    once = cfg.dump()
    enable_featsr(cfg, stage=2)
    assert cfg.dump() == once
    torch.manual_seed(0)
    model = build_model(cfg)
    assert type(model).__name__ == "FeatSRRCNN"
    heads = model.roi_heads
    assert type(heads).__name__ == "FeatSRRes5ROIHeads"
    for res5 in (heads.res5, heads.featsr.small_head):
        assert [type(b).__name__ for b in res5] == ["InvertedResidual"] * 4
    shipped = build_model(get_featsr_cfg(os.path.join(configs, "featsr_MNV2_C4_synth.yaml"), SMALL))
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(model) == shapes(shipped)
    losses = train_step(model, sample(128, 160))
    assert {"loss_cls_small", "loss_sr_content", "loss_discriminator"} <= set(losses)
    assert all(math.isfinite(v.item()) for v in losses.values())
    model.eval()
    with torch.no_grad():
        (out,) = model([sample(128, 160, with_gt=False)])
    assert out["instances"].image_size == (128, 160)


def test_enable_featsr_is_idempotent_and_keeps_explicit_sub_layers():
    cfg = zoo_cfg("C4")
    once = cfg.dump()
    enable_featsr(cfg, stage=2)
    assert cfg.dump() == once
    cfg = zoo_cfg("FPN", extra=["MODEL.FEATSR.SUB_FEATURES", "['res2', 'res3', 'res4', 'res5']"])
    assert featsr_sub_features(cfg) == ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FEATSR.SUB_FEATURES = ["res2"]
    with pytest.raises(ValueError, match="one bottom-up feature per"):
        featsr_sub_features(cfg)


def test_train_net_featsr_stage_flag():
    args = argument_parser().parse_args(
        ["--config-file", model_zoo.get_config_file(ZOO["DC5"]), "--featsr-stage", "3"]
    )
    assert args.featsr_stage == 3
    with pytest.raises(SystemExit):
        argument_parser().parse_args(["--featsr-stage", "1"])


def test_readme_drop_in_snippet_runs_as_written(tmp_path, monkeypatch):
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = readme.split("## Use it in your own project", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "enable_featsr" in code
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert type(namespace["model"]).__name__ == "FeatSRRCNN"
    assert namespace["model"].roi_heads.sub_features == ["res2", "res2", "res3", "res4"]
