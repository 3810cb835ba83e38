# TDSR 4x on the demo's synthetic TT100K (ten classes, 320 px): the paper's recipe
# (tdsr_dbpn_x4_voc.py) through the frozen CPU demo detector (MobileNetV2-FPN Faster R-CNN,
# ../faster-rcnn_mnv2_fpn_tt100k_synth10.py: train it first), as Detectron2's
# configs/tdsr/tdsr_dbpn_x4_synth.yaml, from the SR-FT model of srft_dbpn_x4_synth10.py.
# L = 1.0 * MSE(x_h, S(x_l)) + 0.01 * the detector's losses; LR inputs: MATLAB-bicubic 1/4 of the
# 320 px image (80 px). Evaluated by the official TT100K protocol on the SR images
# (FeatSRTT100KMetric, every class). Batch 6, Adam 1e-4, divided by 10 at 100k of 200k.
_base_ = "../faster-rcnn_mnv2_fpn_tt100k_synth10.py"

model = dict(
    _delete_=True,
    type="FeatSRTaskDrivenSR",
    detector={{_base_.model}},
    sr=dict(type="DBPN", scale=4, feat=256, base_filter=64, num_stages=7),
    alpha=1.0,
    beta=0.01,
    reconstruction_loss="MSE",
    sr_checkpoint="work_dirs/srft_dbpn_x4_synth10/iter_100000.pth",
    detector_checkpoint="output/mmdet/faster-rcnn_mnv2_fpn_tt100k_synth10/iter_1000.pth",
)

train_pipeline = [
    dict(type="LoadImageFromFile", backend_args={{_base_.backend_args}}),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", scale=(320, 320), keep_ratio=True),
    dict(type="FeatSRMakeLRImage", scale=4, degradations=["bicubic"]),
    dict(type="FeatSRPackLRDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile", backend_args={{_base_.backend_args}}),
    dict(type="Resize", scale=(320, 320), keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="FeatSRMakeLRImage", scale=4, degradations=["bicubic"], seed=0),
    dict(
        type="FeatSRPackLRDetInputs",
        meta_keys=(
            "img_id",
            "img_path",
            "ori_shape",
            "img_shape",
            "scale_factor",
            "tt100k_objects",
        ),
    ),
]
train_dataloader = dict(batch_size=6, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(_delete_=True, type="IterBasedTrainLoop", max_iters=200000, val_interval=10000)
optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="Adam", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0),
)
param_scheduler = [
    dict(type="MultiStepLR", by_epoch=False, begin=0, end=200000, milestones=[100000], gamma=0.1)
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=10000, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=6)
# Not the detector's work dir, which this config would inherit: the default one.
work_dir = "work_dirs/tdsr_dbpn_x4_synth10"
