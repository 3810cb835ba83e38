# The detector TDSR trains through on the synthetic TT100K (tdsr_dbpn_x4_synth10.py): MMDetection's
# Faster R-CNN R50-FPN on the demo's ten classes at 320 px, trained first:
#   python tools/mmdet_train.py configs/mmdet/tdsr/faster-rcnn_r50_fpn_tt100k_synth10.py
# Anchors from 16 px (scale 4 on strides 4..64) for the small signs, as the Detectron2 TT100K
# configs; no flips (signs are not mirror-symmetric). ImageNet weights: torchvision://resnet50.
_base_ = [
    "mmdet::_base_/models/faster-rcnn_r50_fpn.py",
    "../_base_/datasets/tt100k_synth10.py",
    "mmdet::_base_/schedules/schedule_1x.py",
    "mmdet::_base_/default_runtime.py",
]

model = dict(
    rpn_head=dict(anchor_generator=dict(scales=[4])),
    roi_head=dict(bbox_head=dict(num_classes=10)),
)
