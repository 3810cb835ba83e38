"""The MMDetection path computes what the Detectron2 path computes, for the same weights and
inputs: the backbones and their SR target extractors (ResNet in both styles, FPN, MobileNetV2 from
the same torchvision weights; aligned and previous placement, fused and not), and for FeatSR's
R50-FPN, R50-C4 and R50-DC5 models built from each side's configs (DC5: ``enable_featsr`` on both
sides' own model-zoo configs), the sub layers, G's pooled inputs, G, D, the SR pairs and the
losses of eqs. 4-6.

Detectron2's modules are renamed into mmdet's with the mappings below (the frameworks' own
layouts, not featsr_d2's): Detectron2 ``resK.i.convJ`` (its norm ``.norm``) is mmdet's
``layer(K-1).i.convJ`` / ``bnJ``, the shortcut mmdet's ``downsample.0`` / ``.1``, the stem
``conv1`` / ``bn1``; FPN's ``fpn_lateralK`` / ``fpn_outputK`` are ``lateral_convs.(K-2).conv`` /
``fpn_convs.(K-2).conv``.
"""

import re

import pytest
import torch
import torchvision
from common import randomize_weights
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model
from detectron2.structures import Boxes
from featsr_mmdet import build, load_config, mmdet_config, tiny
from test_enable_featsr import zoo_cfg

from featsr_d2.checkpoint.torchvision_mobilenet_v2 import convert_torchvision_mobilenet_v2
from featsr_d2.config import get_featsr_cfg
from featsr_d2.core.featsr import half_resolution

pytestmark = pytest.mark.usefixtures("one_thread")

# Tiny Detectron2 ResNets: stem 8, res2 32 channels (mmdet: base_channels=8, stem_channels=8).
D2_TINY_RESNET = [
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "8",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "32",
    "MODEL.RESNETS.WIDTH_PER_GROUP", "8",
]  # fmt: skip


def d2_to_mmdet(key: str) -> str:
    """A Detectron2 ResNet / FPN state-dict key as mmdet's ResNet / FPN names it."""
    rules = [
        (r"stem\.conv1\.norm\.", "bn1."),
        (r"stem\.conv1\.", "conv1."),
        (r"res(\d)\.(\d+)\.conv(\d)\.norm\.", lambda m: f"layer{int(m[1]) - 1}.{m[2]}.bn{m[3]}."),
        (r"res(\d)\.(\d+)\.conv(\d)\.", lambda m: f"layer{int(m[1]) - 1}.{m[2]}.conv{m[3]}."),
        (r"res(\d)\.(\d+)\.shortcut\.norm\.",
         lambda m: f"layer{int(m[1]) - 1}.{m[2]}.downsample.1."),
        (r"res(\d)\.(\d+)\.shortcut\.", lambda m: f"layer{int(m[1]) - 1}.{m[2]}.downsample.0."),
        (r"fpn_lateral(\d)\.", lambda m: f"lateral_convs.{int(m[1]) - 2}.conv."),
        (r"fpn_output(\d)\.", lambda m: f"fpn_convs.{int(m[1]) - 2}.conv."),
    ]  # fmt: skip
    for pattern, replacement in rules:
        new, count = re.subn("^" + pattern, replacement, key)
        if count:
            return new
    raise KeyError(key)


def copy_d2_trunk(d2_backbone, mm_model) -> None:
    """Detectron2's (FPN or plain) ResNet weights into mmdet's backbone (and neck)."""
    fpn = hasattr(d2_backbone, "bottom_up")
    backbone, neck = {}, {}
    for key, value in d2_backbone.state_dict().items():
        if fpn and key.startswith("bottom_up."):
            backbone[d2_to_mmdet(key[len("bottom_up.") :])] = value
        elif fpn:
            neck[d2_to_mmdet(key)] = value
        else:
            backbone[d2_to_mmdet(key)] = value
    for module, state in ((mm_model.backbone, backbone), (getattr(mm_model, "neck", None), neck)):
        if module is None:
            continue
        result = module.load_state_dict(state, strict=False)
        assert not result.unexpected_keys, result.unexpected_keys
        assert all(k.endswith("num_batches_tracked") for k in result.missing_keys), result


def _mmdet_resnet_fpn(style: str):
    from mmdet.models.backbones import ResNet
    from mmdet.models.necks import FPN
    from torch import nn

    resnet = ResNet(
        depth=50, base_channels=8, stem_channels=8, style=style, out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type="BN", requires_grad=False), norm_eval=True,
    )  # fmt: skip
    fpn = FPN(in_channels=[32, 64, 128, 256], out_channels=16, num_outs=5)
    return nn.ModuleDict({"backbone": resnet, "neck": fpn}).eval()


def assert_maps_equal(got, expected, what: str) -> None:
    assert len(got) == len(expected), what
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape, (what, i, a.shape, b.shape)
        torch.testing.assert_close(
            a, b, rtol=1e-4, atol=1e-5, msg=lambda m, i=i: f"{what} {i}: {m}"
        )


@pytest.mark.parametrize("style", ["pytorch", "caffe"])
def test_resnet_fpn_and_its_extractor_equal_detectron2s(style):
    from featsr_d2.mmdet.target_extractor import extract_targets, stage_targets

    cfg = get_featsr_cfg(None, [
        "MODEL.DEVICE", "cpu", *D2_TINY_RESNET, "MODEL.BACKBONE.NAME", "FeatSRResNetFPNBackbone",
        "MODEL.RESNETS.OUT_FEATURES", '["res2", "res3", "res4", "res5"]',
        "MODEL.RESNETS.STRIDE_IN_1X1", str(style == "caffe"),
        "MODEL.FPN.IN_FEATURES", '["res2", "res3", "res4", "res5"]', "MODEL.FPN.OUT_CHANNELS", "16",
    ])  # fmt: skip
    d2 = randomize_weights(build_backbone(cfg, ShapeSpec(channels=3))).eval()
    mm = _mmdet_resnet_fpn(style)
    copy_d2_trunk(d2, mm)
    x = torch.randn(1, 3, 96, 128)
    stages = ["res2", "res3", "res4", "res5"]
    pyramid = ["p2", "p3", "p4", "p5", "p6"]
    with torch.no_grad():
        d2_out = d2(x)
        assert_maps_equal(mm["neck"](mm["backbone"](x)), [d2_out[p] for p in pyramid], "FPN")
        for aligned in (True, False):
            for fused in (True, False):
                d2.bottom_up.fused_targets = fused
                d2_t = d2.extract_targets(x, aligned=aligned)
                d2_b = d2.bottom_up.extract_targets(x, aligned=aligned)
                what = f"aligned={aligned} fused={fused}"
                got = extract_targets(mm["backbone"], mm["neck"], x, fused=fused, aligned=aligned)
                assert_maps_equal(got, [d2_t[p] for p in pyramid], f"FPN targets, {what}")
                got = stage_targets(mm["backbone"], x, fused=fused, aligned=aligned)
                assert_maps_equal(list(got.values()), [d2_b[s] for s in stages], f"C_k, {what}")


def test_mobilenet_v2_and_its_extractor_equal_detectron2s_from_torchvision_weights():
    from mmdet.models.backbones import MobileNetV2

    from featsr_d2.mmdet.mobilenet_v2_weights import convert_torchvision_mobilenet_v2_to_mmdet
    from featsr_d2.mmdet.target_extractor import stage_targets

    torchvision_net = randomize_weights(torchvision.models.mobilenet_v2(weights=None)).eval()
    state = torchvision_net.state_dict()
    cfg = get_featsr_cfg(None, [
        "MODEL.DEVICE", "cpu", "MODEL.BACKBONE.NAME", "FeatSRMobileNetV2", "MODEL.MNV2.FREEZE_AT",
        "0", "MODEL.MNV2.OUT_FEATURES", '["stage2", "stage3", "stage4", "stage5"]',
    ])  # fmt: skip
    d2 = build_backbone(cfg, ShapeSpec(channels=3)).eval()
    d2.load_state_dict(convert_torchvision_mobilenet_v2(state))
    mm = MobileNetV2(out_indices=(1, 2, 4, 6, 7))
    mm.eval()  # (mmdet's MobileNetV2.train returns None)
    result = mm.load_state_dict(convert_torchvision_mobilenet_v2_to_mmdet(state))
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        outs = mm(x)
        # Every torchvision layer landed where it belongs: torchvision's own features.
        torch.testing.assert_close(outs[-1], torchvision_net.features(x))
        names = ["stage2", "stage3", "stage4", "stage5"]
        d2_out = d2(x)
        assert_maps_equal(list(outs[:4]), [d2_out[n] for n in names], "MobileNetV2")
        layers = ["layer2", "layer3", "layer5", "layer7"]
        for aligned in (True, False):
            for fused in (True, False):
                d2.fused_targets = fused
                d2_t = d2.extract_targets(x, aligned=aligned)
                got = stage_targets(mm, x, fused=fused, aligned=aligned)
                what = f"MobileNetV2 targets, aligned={aligned} fused={fused}"
                assert_maps_equal([got[n] for n in layers], [d2_t[n] for n in names], what)


# ------------------------------------------------------------------------------------------------
# FeatSR's models

D2_FEATSR = {
    "R50-DC5": [
        "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", "4", "MODEL.FEATSR.GENERATOR.HIDDEN_CHANNELS", "8",
        "MODEL.FEATSR.DISCRIMINATOR.POOL_SIZE", "2", "MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIAlignV2",
        "MODEL.ROI_BOX_HEAD.FC_DIM", "32",
    ],
    "R50-FPN": [
        *D2_TINY_RESNET, "MODEL.RESNETS.STRIDE_IN_1X1", "False", "MODEL.FPN.OUT_CHANNELS", "16",
        "MODEL.ROI_BOX_HEAD.FC_DIM", "32", "MODEL.FEATSR.GENERATOR.HIDDEN_CHANNELS", "8",
        "MODEL.FEATSR.DISCRIMINATOR.POOL_SIZE", "2",
    ],
    "R50-C4": [
        "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", "4", "MODEL.FEATSR.GENERATOR.HIDDEN_CHANNELS", "8",
        "MODEL.FEATSR.DISCRIMINATOR.POOL_SIZE", "2", "MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIAlignV2",
    ],
}  # fmt: skip


def _mmdet_featsr(layout: str):
    """FeatSR's tiny mmdet model of ``layout``: the shipped R50-FPN and R50-C4 configs, and
    ``enable_featsr`` on MMDetection's own DC5 config."""
    from featsr_d2.mmdet import enable_featsr

    shipped = {"R50-FPN": "featsr_r50_fpn_tt100k.py", "R50-C4": "featsr_r50-caffe-c4_tt100k.py"}
    if layout in shipped:
        return build(tiny(load_config(shipped[layout]))).eval()
    cfg = enable_featsr(mmdet_config("faster_rcnn/faster-rcnn_r50-caffe-dc5_1x_coco.py"))
    return build(tiny(cfg)).eval()


# Boxes on every level, small and large at 0.5x and 1.0x, one past the border.
BOXES = torch.tensor([
    [10.0, 10.0, 30.0, 34.0], [40.0, 20.0, 110.0, 90.0], [5.0, 60.0, 60.0, 125.0],
    [70.0, 70.0, 78.0, 80.0], [2.0, 3.0, 127.0, 126.0], [90.0, 4.0, 140.0, 30.0],
    [20.0, 40.0, 52.0, 70.0], [50.0, 50.0, 66.0, 66.0],
])  # fmt: skip


@pytest.mark.parametrize("layout", ["R50-FPN", "R50-C4", "R50-DC5"])
def test_featsr_sub_layers_g_d_pairs_and_losses_equal_detectron2s(layout):
    from mmdet.structures.bbox import bbox2roi

    d2 = build_model(zoo_cfg(layout.split("-")[1], 2, D2_FEATSR[layout])).eval()
    randomize_weights(d2.backbone)
    # G away from the identity it starts as, so that its output tells its weights apart.
    randomize_weights(d2.roi_heads.featsr.generator, seed=1)
    mm = _mmdet_featsr(layout)
    head = mm.roi_head
    copy_d2_trunk(d2.backbone, mm)
    for part in ("generator", "discriminator"):
        getattr(head.featsr, part).load_state_dict(getattr(d2.roi_heads.featsr, part).state_dict())
    assert head.aligned == d2.roi_heads.aligned and head.roi_output_size == (
        d2.roi_heads.pooler_resolution
    )
    heads = d2.roi_heads
    images = torch.randn(1, 3, 128, 160)
    half = half_resolution(images, 32)
    boxes = BOXES.clone()
    with torch.no_grad():
        # The sub layers and the pyramid (or C4's res4).
        features = d2.backbone(images)
        x, sub = mm.extract_feat_and_sub(images)
        assert_maps_equal(
            list(sub), [features[f] for f in dict.fromkeys(heads.sub_features)], "sub"
        )
        assert_maps_equal(list(x[: len(heads.in_features)]), heads._base_maps(features)[0], "base")
        # G's pooled inputs, G and D.
        base, sub_pooled, _ = heads._pool_generator_inputs(features, [Boxes(boxes)])
        mm_base, mm_sub, _ = head.generator_inputs(x, sub, bbox2roi([boxes]))
        assert_maps_equal([mm_base, mm_sub], [base, sub_pooled], "G's inputs")
        sr = heads.featsr(base, sub_pooled)
        assert_maps_equal([head.featsr(mm_base, mm_sub)], [sr], "G")
        assert sr.sub(base).abs().max() > 1e-3  # G is not the identity here
        torch.testing.assert_close(head.featsr.discriminator(sr), heads.featsr.discriminator(sr))
        # The SR pairs of the 0.5x images against the extractor's targets.
        lr = d2.backbone(half)
        targets = d2.backbone.extract_targets(images)
        mm_lr, mm_lr_sub = mm.extract_feat_and_sub(half)
        mm_targets = mm.extract_targets(images)
        expected = heads.sr_pair_features([Boxes(boxes)], lr, targets)
        got = head.sr_pair_features([boxes], mm_lr, mm_lr_sub, mm_targets)
        assert len(expected[0]) >= 3  # some pairs
        assert_maps_equal(list(got), list(expected), "SR pairs")
    torch.manual_seed(0)
    d2_losses = heads._sr_pair_losses([Boxes(boxes)], lr, targets)
    mm_losses = head._sr_pair_losses([boxes], mm_lr, mm_lr_sub, mm_targets)
    assert set(d2_losses) == set(mm_losses) == {
        "loss_sr_content", "loss_sr_adversarial", "loss_discriminator"
    }  # fmt: skip
    for key, value in d2_losses.items():
        torch.testing.assert_close(mm_losses[key], value, rtol=1e-4, atol=1e-6)
