# FeatSR stage 2 on TT100K, the paper's setting (R50-C4, small proposals below 32x32): G, D and the
# small predictor train; backbone, RPN and the large predictor are frozen. From the stage-1
# detector faster-rcnn_r50-caffe-c4_tt100k.py; stage 3 is featsr_r50-caffe-c4_tt100k_stage3.py.
# Mirrors configs/featsr_R50_tt100k.yaml (Detectron2). G reads res4 with res3 (layer2).
_base_ = "./faster-rcnn_r50-caffe-c4_tt100k.py"
custom_imports = dict(imports=["featsr_d2.mmdet"], allow_failed_imports=False)
model = dict(
    type="FeatSRFasterRCNN",
    # Every weight comes from load_from: no ImageNet initialization to fetch first.
    backbone=dict(init_cfg=None),
    roi_head=dict(
        type="FeatSRStandardRoIHead",
        shared_head=dict(init_cfg=None),
        stage=2,
        small_size=32,
        target_min_size=16,
    ),
)
# Refused unless it holds the backbone, RPN and large predictor (FeatSRFasterRCNN).
load_from = "output/mmdet/faster-rcnn_r50-caffe-c4_tt100k/iter_42000.pth"
# SGD for G and the small predictor, Adam for D (featsr_d2.mmdet.optim_wrapper).
optim_wrapper = dict(
    _delete_=True,
    constructor="FeatSROptimWrapperConstructor",
    detector=dict(
        type="OptimWrapper", optimizer=dict(type="SGD", lr=0.001, momentum=0.9, weight_decay=1e-4)
    ),
    discriminator=dict(
        type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-4, betas=(0.5, 0.999))
    ),
)
# The paper gives no stage-2 schedule; ours: a third of stage 1 at a tenth of its rate. D's rate
# is constant.
param_scheduler = dict(
    _delete_=True,
    detector=[
        dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=1000),
        dict(type="MultiStepLR", by_epoch=False, begin=0, end=14000, milestones=[10000]),
    ],
    discriminator=[],
)
train_cfg = dict(max_iters=14000)
model_wrapper_cfg = dict(type="FeatSRDistributedDataParallel")  # both optimizers under DDP
work_dir = "output/mmdet/featsr_r50-caffe-c4_tt100k"
