"""Every config key featsr_d2 adds to Detectron2's defaults, each under its own node."""

from detectron2.config import CfgNode as CN

from featsr_d2.modeling.meta_arch.tdsr_config import add_tdsr_config
from featsr_d2.modeling.sr.config import add_sr_config


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

    # FeatSR: feature-level super-resolution of small RoIs (Noh et al., ICCV 2019).
    _C.MODEL.FEATSR = CN()
    # Proposals with sqrt(area) below this (input pixels) are "small": 32 TT100K, 96 VOC and COCO.
    _C.MODEL.FEATSR.SMALL_SIZE = 32
    # SR training pairs: targets whose sqrt(area) on the 1.0x image is below this are discarded.
    _C.MODEL.FEATSR.TARGET_MIN_SIZE = 16
    # Targets of the content loss: "extractor" (ours), "naive" (plain backbone on 1.0x), "none".
    _C.MODEL.FEATSR.SUPERVISION = "extractor"
    # The sub (former) layer whose RoI feature the generator also reads (C4 heads).
    _C.MODEL.FEATSR.SUB_FEATURE = "res3"
    # Weight of the content loss (eq. 4) in the generator's objective.
    _C.MODEL.FEATSR.CONTENT_WEIGHT = 1.0
    # Weight of the adversarial loss (eq. 5) in the generator's objective.
    _C.MODEL.FEATSR.ADVERSARIAL_WEIGHT = 0.01
    # Weight of the small predictor's classification and localization losses.
    _C.MODEL.FEATSR.DETECTION_WEIGHT = 1.0
    # Freeze the backbone and the RPN (the paper's stage 2).
    _C.MODEL.FEATSR.FREEZE_BASE = True
    # Learning rate of the discriminator's own optimizer (Adam).
    _C.MODEL.FEATSR.DISCRIMINATOR_LR = 1e-4
    # Run the SR target extractor's strided layers as one fused dilated conv + max pool op
    # (featsr_d2._C; the unfused F.conv2d + F.max_pool2d reference when not compiled).
    _C.MODEL.FEATSR.FUSED_EXTRACTOR = True
    _C.MODEL.FEATSR.GENERATOR = CN()
    # B, the number of residual blocks of the SR feature generator.
    _C.MODEL.FEATSR.GENERATOR.NUM_BLOCKS = 4
    # Width of each block's first convolution; 0 keeps the input's width (base + sub channels).
    _C.MODEL.FEATSR.GENERATOR.HIDDEN_CHANNELS = 256
    # Kernel size of the generator's convolutions.
    _C.MODEL.FEATSR.GENERATOR.KERNEL_SIZE = 3
    _C.MODEL.FEATSR.DISCRIMINATOR = CN()
    # Width of the two hidden layers of the three-layer MLP discriminator.
    _C.MODEL.FEATSR.DISCRIMINATOR.HIDDEN_DIM = 1024
    # RoI features are average-pooled to this size before the MLP (0 keeps the RoI's size).
    _C.MODEL.FEATSR.DISCRIMINATOR.POOL_SIZE = 4

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

    # Image super-resolution networks and their training (MODEL.SR, DATASETS.SR, INPUT.SR, ...).
    add_sr_config(cfg)
    # Task-driven SR in front of a frozen detector (MODEL.TDSR).
    add_tdsr_config(cfg)
    return cfg
