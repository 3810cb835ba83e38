"""Every config key featsr_d2 adds to Detectron2's defaults, each under its own node."""

from detectron2.config import CfgNode as CN


def add_featsr_config(cfg):
    """Add featsr_d2's keys to ``cfg`` in place. Safe to call more than once: a second call on the
    same config changes nothing (all nodes are added together, so one present means all are)."""
    _C = cfg
    if "MNV2" in _C.MODEL:
        return cfg

    # MobileNetV2 backbone (torchvision layout, so torchvision ImageNet weights load directly).
    _C.MODEL.MNV2 = CN()
    # Channel width multiplier; 1.0 matches the published ImageNet weights.
    _C.MODEL.MNV2.WIDTH_MULT = 1.0
    # Output feature names among "stage2".."stage5" (strides 4, 8, 16, 32).
    _C.MODEL.MNV2.OUT_FEATURES = ["stage5"]
    # Normalization: "FrozenBN", "BN", "SyncBN", "GN" or "" (none).
    _C.MODEL.MNV2.NORM = "FrozenBN"
    # Freeze the stem (1) and the first N-1 stages (N up to 5); 0 trains everything.
    _C.MODEL.MNV2.FREEZE_AT = 2

    # Tsinghua-Tencent 100K datasets.
    _C.DATASETS.TT100K = CN()
    # What a bad annotation record does: "error" (raise, naming file and record) or "skip" (log it).
    _C.DATASETS.TT100K.ON_BAD_RECORD = "error"

    # The official TT100K evaluation protocol (featsr_d2.evaluation.tt100k).
    _C.TEST.TT100K = CN()
    # A detection matches a ground truth object when their IoU is strictly above this.
    _C.TEST.TT100K.IOU = 0.5
    # Detections scoring below this (scores in [0, 1]) are ignored by the table.
    _C.TEST.TT100K.MIN_SCORE = 0.5
    # Class set evaluated: "type45" (the official 45 classes) or "all".
    _C.TEST.TT100K.TYPES = "type45"
    # Save the accuracy-recall curve and detection pictures to OUTPUT_DIR/inference.
    _C.TEST.TT100K.SAVE_PLOTS = True
    # How many test images to draw with their detections (0 disables).
    _C.TEST.TT100K.NUM_VIS_IMAGES = 8
    return cfg
