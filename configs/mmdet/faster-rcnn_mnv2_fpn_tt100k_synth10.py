# The CPU demo's base detector (stage 1 of FeatSR): Faster R-CNN on mmdet's MobileNetV2 with an FPN
# from P3, torchvision's ImageNet weights (shipped offline), slim heads, the demo's synthetic
# TT100K (ten classes, 320 px, no flips: the dataset base). Mirrors
# configs/faster_rcnn_MNV2_FPN_synth.yaml (Detectron2).
_base_ = [
    "mmdet::_base_/models/faster-rcnn_r50_fpn.py",
    "mmdet::_base_/default_runtime.py",
    "./_base_/datasets/tt100k_synth10.py",
]
custom_imports = dict(imports=["featsr_d2.mmdet"], allow_failed_imports=False)  # featsr://
model = dict(
    # The base's preprocessing is the one torchvision's weights expect: RGB, ImageNet mean and std.
    backbone=dict(
        _delete_=True,
        type="MobileNetV2",
        # layer3, layer5, layer7: strides 8, 16, 32 (Detectron2's stage3 .. stage5).
        out_indices=(2, 4, 6),
        # Detectron2's FREEZE_AT 3 (stem, stage2, stage3) and frozen batch norms.
        frozen_stages=3,
        norm_cfg=dict(type="BN", requires_grad=False),
        norm_eval=True,
        init_cfg=dict(type="Pretrained", checkpoint="featsr://imagenet/mobilenet_v2"),
    ),
    # For speed on 2 CPU cores the pyramid starts at stride 8 (P3 .. P6) with 128 channels.
    neck=dict(in_channels=[32, 96, 320], out_channels=128, num_outs=4),
    rpn_head=dict(
        in_channels=128,
        feat_channels=128,
        # One size per level, 16 px on P3 to 128 on P6.
        anchor_generator=dict(scales=[2], strides=[8, 16, 32, 64]),
    ),
    roi_head=dict(
        bbox_roi_extractor=dict(
            out_channels=128,
            featmap_strides=[8, 16, 32],
            # Detectron2's level rule (canonical box 224 on P4) on a pyramid from P3.
            finest_scale=112,
        ),
        bbox_head=dict(in_channels=128, fc_out_channels=256, num_classes=10),
    ),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=600, max_per_img=300),
        rcnn=dict(sampler=dict(num=64)),
    ),
    # 100 proposals at test time: at most 8 signs per image, and FeatSR's generator runs on each
    # small one.
    test_cfg=dict(rpn=dict(nms_pre=600, max_per_img=100)),
)
train_dataloader = dict(batch_size=4)
train_cfg = dict(type="IterBasedTrainLoop", max_iters=1000, val_interval=1000)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=100),
    dict(type="MultiStepLR", by_epoch=False, begin=0, end=1000, milestones=[750, 900]),
]
optim_wrapper = dict(
    type="OptimWrapper", optimizer=dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4)
)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=250))
log_processor = dict(by_epoch=False)
# Seeded, as the Detectron2 demo.
randomness = dict(seed=0)
work_dir = "output/mmdet/faster-rcnn_mnv2_fpn_tt100k_synth10"
