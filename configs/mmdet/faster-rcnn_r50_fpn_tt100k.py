# The FeatSR paper's TT100K base detector with an FPN instead of C4 (stage 1 of FeatSR): mmdet's
# Faster R-CNN R50-FPN, 45 classes, the images and their sizes as the TT100K dataset base sets them.
# Mirrors configs/faster_rcnn_R50_FPN_tt100k.yaml (Detectron2).
_base_ = [
    "mmdet::_base_/models/faster-rcnn_r50_fpn.py",
    "mmdet::_base_/schedules/schedule_1x.py",
    "mmdet::_base_/default_runtime.py",
    "./_base_/datasets/tt100k.py",
]
model = dict(
    # TT100K signs are small (long side from about 6 px at 1600 px input): anchors from 16 px on P2.
    rpn_head=dict(anchor_generator=dict(scales=[4])),
    roi_head=dict(bbox_head=dict(num_classes=45)),
)
# The paper gives no schedule; ours (the Detectron2 config's): about 55 epochs of the 6,105
# training images at 8 images per iteration (batch_size 8 on one GPU; 8 / N on N GPUs).
train_dataloader = dict(batch_size=8)
train_cfg = dict(_delete_=True, type="IterBasedTrainLoop", max_iters=42000, val_interval=10000)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type="MultiStepLR", by_epoch=False, begin=0, end=42000, milestones=[30000, 38000]),
]
optim_wrapper = dict(optimizer=dict(lr=0.01))
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=5000))
log_processor = dict(by_epoch=False)
work_dir = "output/mmdet/faster-rcnn_r50_fpn_tt100k"
