# FeatSR stage 2 of the CPU demo: MobileNetV2-FPN on the synthetic TT100K, from the demo's stage-1
# weights (faster-rcnn_mnv2_fpn_tt100k_synth10.py); stage 3 is
# featsr_mnv2_fpn_tt100k_synth10_stage3.py. G reads each pyramid level with the bottom-up stage
# before it: P3 layer2 (stride 4), P4 layer3, P5 layer5. Mirrors configs/featsr_MNV2_FPN_synth.yaml.
_base_ = "./faster-rcnn_mnv2_fpn_tt100k_synth10.py"
model = dict(
    type="FeatSRFasterRCNN",
    backbone=dict(init_cfg=None),  # every weight comes from load_from
    roi_head=dict(
        type="FeatSRStandardRoIHead",
        stage=2,
        # The demo's supervision, the one place to change it (extractor, naive, none,
        # detection_only, identity): MODEL.FEATSR.SUPERVISION of configs/featsr_MNV2_FPN_synth.yaml,
        # naive, the one the Detectron2 study confirmed (docs/RESULTS.md).
        supervision="naive",
        small_size=32,
        target_min_size=16,
        # Sized for 2 CPU cores: 16 SR pairs per image (foreground first), G's residual blocks at
        # half the FPN's 128 channels.
        max_pairs_per_image=16,
        # At inference, the 8 small proposals of highest objectness per image go through G (the
        # Detectron2 study measured AP-S -0.0 [-0.4, +0.4] against all of them, docs/RESULTS.md).
        max_small_per_image=8,
        generator=dict(num_blocks=2, hidden_channels=64),
        discriminator=dict(hidden_dim=256),
    ),
)
load_from = "output/mmdet/faster-rcnn_mnv2_fpn_tt100k_synth10/iter_1000.pth"
optim_wrapper = dict(
    _delete_=True,
    constructor="FeatSROptimWrapperConstructor",
    detector=dict(
        type="OptimWrapper", optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4)
    ),
    discriminator=dict(
        type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-4, betas=(0.5, 0.999))
    ),
)
# 150 iterations at 0.002 left G where it started in Detectron2's demo; 0.01 moves it.
param_scheduler = dict(
    _delete_=True,
    detector=[
        dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=25),
        dict(type="MultiStepLR", by_epoch=False, begin=0, end=800, milestones=[600]),
    ],
    discriminator=[],
)
train_cfg = dict(max_iters=800, val_interval=800)
default_hooks = dict(checkpoint=dict(interval=200))
model_wrapper_cfg = dict(type="FeatSRDistributedDataParallel")  # both optimizers under DDP
work_dir = "output/mmdet/featsr_mnv2_fpn_tt100k_synth10"
