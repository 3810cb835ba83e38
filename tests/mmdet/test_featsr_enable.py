"""featsr_d2.mmdet.enable_featsr on MMDetection's own configs: a Faster R-CNN (FPN, C4, DC5,
ResNeXt) becomes FeatSR's trainable model of either stage, keeping the rest of the config; what
FeatSR cannot serve is refused with the reason."""

import pytest
from featsr_mmdet import build, data, mmdet_config, tiny

pytestmark = pytest.mark.usefixtures("one_thread")

FASTER_RCNN = {
    "R50-FPN": "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py",
    "R50-C4": "faster_rcnn/faster-rcnn_r50-caffe_c4-1x_coco.py",
    "R50-DC5": "faster_rcnn/faster-rcnn_r50-caffe-dc5_1x_coco.py",
    "X101-FPN": "faster_rcnn/faster-rcnn_x101-32x4d_fpn_1x_coco.py",
}


@pytest.mark.parametrize("stage", [2, 3])
@pytest.mark.parametrize("layout", sorted(FASTER_RCNN))
def test_faster_rcnn_configs_become_featsr(layout, stage):
    from mmengine.optim import build_optim_wrapper

    from featsr_d2.mmdet import enable_featsr

    cfg = mmdet_config(FASTER_RCNN[layout])
    before = cfg.copy()
    assert enable_featsr(cfg, stage) is cfg
    m = cfg.model
    assert (m.type, m.roi_head.type, m.roi_head.stage) == (
        "FeatSRFasterRCNN", "FeatSRStandardRoIHead", stage
    )  # fmt: skip
    # Everything else is kept: the trunk, the head's parts, the schedule, the data.
    for key in ("backbone", "rpn_head", "train_cfg", "test_cfg", "data_preprocessor"):
        assert m[key] == before.model[key], key
    assert m.roi_head.bbox_head == before.model.roi_head.bbox_head
    assert cfg.train_dataloader == before.train_dataloader
    assert cfg.optim_wrapper.detector == before.optim_wrapper
    assert cfg.param_scheduler == dict(detector=before.param_scheduler, discriminator=[])
    assert cfg.model_wrapper_cfg.type == "FeatSRDistributedDataParallel"
    assert cfg.custom_imports.imports == ["featsr_d2.mmdet"]
    assert enable_featsr(cfg, stage) is cfg and cfg.custom_imports.imports == ["featsr_d2.mmdet"]
    if layout == "X101-FPN":
        return  # building it is the R50-FPN's case with grouped convolutions: done below
    model = build(tiny(cfg))
    wrappers = build_optim_wrapper(model, cfg.optim_wrapper)
    names = ["detector", "discriminator"] if stage == 2 else ["detector"]
    assert sorted(wrappers.keys()) == names
    model._frozen_weights_loaded = True  # random weights stand for the previous phase's
    log = model.train_step(data(), wrappers)
    assert "loss_cls_small" in log and ("loss_sr_content" in log) == (stage == 2)


def test_resnext_becomes_featsr_with_its_grouped_convolutions():
    from featsr_d2.mmdet import enable_featsr

    cfg = enable_featsr(mmdet_config(FASTER_RCNN["X101-FPN"]))
    cfg.model.backbone.update(depth=50, groups=2, base_width=4, base_channels=8, stem_channels=8)
    cfg.model.neck.in_channels = [32, 64, 128, 256]
    model = build(tiny(cfg))
    assert type(model.backbone).__name__ == "ResNeXt" and model.backbone.layer1[0].conv2.groups == 2
    assert model.sub_layers == ["layer1", "layer2", "layer3"]


REFUSED = {
    "cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py": "a cascade of box heads",
    "mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py": "a mask head",
    "retinanet/retinanet_r50_fpn_1x_coco.py": "not 'RetinaNet'",
    "fast_rcnn/fast-rcnn_r50_fpn_1x_coco.py": "not 'FastRCNN'",
    "double_heads/dh-faster-rcnn_r50_fpn_1x_coco.py": "roi_head.type 'DoubleHeadRoIHead'",
    "hrnet/faster-rcnn_hrnetv2p-w18-1x_coco.py": "not the backbone 'HRNetV2p'|backbone 'HRNet'",
    "regnet/faster-rcnn_regnetx-3.2GF_fpn_1x_coco.py": "backbone 'RegNet'",
    "dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py": "deformable convolutions",
    "pafpn/faster-rcnn_r50_pafpn_1x_coco.py": "not the neck 'PAFPN'",
    "faster_rcnn/faster-rcnn_r50_fpn_amp-1x_coco.py": "mixed precision",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_featsr_cannot_serve_is_refused_with_the_reason(name):
    from featsr_d2.mmdet import enable_featsr

    with pytest.raises(ValueError, match=REFUSED[name]):
        enable_featsr(mmdet_config(name))


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda m: m.pop("rpn_head"), "no rpn_head"),
        (lambda m: m.roi_head.bbox_roi_extractor.roi_layer.update(type="RoIPool"),
         "with roi_layer RoIAlign, not 'SingleRoIExtractor' with 'RoIPool'"),
        (lambda m: m.roi_head.bbox_roi_extractor.roi_layer.update(pool_mode="max"),
         "average mode"),
        (lambda m: m.neck.update(add_extra_convs="on_input"), "extra convolutions"),
        (lambda m: m.backbone.update(type="ResNetV1d"), "ResNetV1d's average-pooled shortcut"),
    ],
)  # fmt: skip
def test_refusals_name_the_part(change, reason):
    from featsr_d2.mmdet import enable_featsr

    cfg = mmdet_config(FASTER_RCNN["R50-FPN"])
    change(cfg.model)
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        enable_featsr(cfg)
    with pytest.raises(ValueError, match="stage must be one of"):
        enable_featsr(mmdet_config(FASTER_RCNN["R50-FPN"]), stage=1)


def test_what_only_the_built_modules_show_is_refused_when_the_detector_is_built():
    """Weight-standardized convolutions (GN+WS) pass the config check; the extractor's walk of
    the built backbone refuses them."""
    from featsr_d2.mmdet import enable_featsr
    from featsr_d2.mmdet.target_extractor import ExtractorUnsupported

    cfg = enable_featsr(mmdet_config("gn+ws/faster-rcnn_r50_fpn_gn-ws-all_1x_coco.py"))
    cfg.model.backbone.init_cfg = None
    with pytest.raises(ExtractorUnsupported, match="ConvWS2d at conv1"):
        build(cfg)
