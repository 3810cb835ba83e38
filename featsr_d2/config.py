"""Every config key featsr_d2 adds to Detectron2's defaults, each under its own node."""

import re

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
    # The paper's phase (section 4.3; stage 1 is the base detector): 2 trains G, D and the small
    # predictor; 3 fine-tunes both predictors. Backbone and RPN are frozen in both.
    _C.MODEL.FEATSR.STAGE = 2
    # SR targets: "extractor" (ours), "naive" (plain backbone on 1.0x), "none" (Table 4: no
    # content loss, D still trained), "detection_only" (no SR pairs: G learns from detection
    # only), "identity" (the no-SR control: G frozen at its identity start, D unused).
    _C.MODEL.FEATSR.SUPERVISION = "extractor"
    # Sub (former) layer of each ROI_HEADS.IN_FEATURES level, a bottom-up feature; [] = the stage
    # before the base's (res4 -> res3; p_k -> res_(k-1) / stage_(k-1), at least res2 / stage2).
    _C.MODEL.FEATSR.SUB_FEATURES = []
    # At inference, at most this many small proposals per image (the RPN's best) go through the
    # generator and the small predictor, the others through the large one; -1: all of them.
    _C.MODEL.FEATSR.MAX_SMALL_PER_IMAGE = -1
    # Stage 2: at most this many SR pairs per image, the first of the sampled proposals (the
    # sampler lists foreground first); -1 keeps every pair (the paper gives no cap).
    _C.MODEL.FEATSR.MAX_PAIRS_PER_IMAGE = -1
    # Weight of the content loss (eq. 4) in the generator's objective.
    _C.MODEL.FEATSR.CONTENT_WEIGHT = 1.0
    # Weight of the adversarial loss (eq. 5) in the generator's objective.
    _C.MODEL.FEATSR.ADVERSARIAL_WEIGHT = 0.01
    # Weight of the small predictor's classification and localization losses.
    _C.MODEL.FEATSR.DETECTION_WEIGHT = 1.0
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
    # Residual blocks: "basic" (two kxk convolutions) or "bottleneck" (1x1 to HIDDEN_CHANNELS, kxk,
    # 1x1 back): lighter, same structure.
    _C.MODEL.FEATSR.GENERATOR.BLOCK = "basic"
    # RoIs refined at a time, bounding the generator's peak memory (0: all at once).
    _C.MODEL.FEATSR.GENERATOR.CHUNK_SIZE = 256
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


# ------------------------------------------------------------------------------------------------
# FeatSR on any Detectron2 Faster R-CNN config.

# Backbone builder -> (its FeatSR builder, with the SR target extractor; its bottom-up config node).
_FEATSR_BACKBONES = {
    "build_resnet_backbone": ("FeatSRResNetBackbone", "RESNETS"),
    "FeatSRResNetBackbone": ("FeatSRResNetBackbone", "RESNETS"),
    "build_resnet_fpn_backbone": ("FeatSRResNetFPNBackbone", "RESNETS"),
    "FeatSRResNetFPNBackbone": ("FeatSRResNetFPNBackbone", "RESNETS"),
    "FeatSRMobileNetV2": ("FeatSRMobileNetV2", "MNV2"),
    "FeatSRMobileNetV2FPN": ("FeatSRMobileNetV2FPN", "MNV2"),
}
_FEATSR_HEADS = {
    "Res5ROIHeads": "FeatSRRes5ROIHeads",
    "FeatSRRes5ROIHeads": "FeatSRRes5ROIHeads",
    "StandardROIHeads": "FeatSRStandardROIHeads",
    "FeatSRStandardROIHeads": "FeatSRStandardROIHeads",
}
_ROI_ALIGN_POOLERS = ("ROIAlign", "ROIAlignV2", "FeatSRROIAlign", "FeatSRROIAlignV2")
FEATSR_STAGES = (2, 3)


def _split_stage(name: str) -> tuple[str, int] | None:
    """("res", 4) for "res4", ("p", 3) for "p3"; None for a name without a trailing index."""
    match = re.fullmatch(r"([A-Za-z_]+?)(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else None


def featsr_sub_features(cfg) -> list[str]:
    """The sub (former) layer of each ``MODEL.ROI_HEADS.IN_FEATURES`` level, in that order:
    ``MODEL.FEATSR.SUB_FEATURES`` when set, otherwise the bottom-up stage before the base's.

    The default follows the paper's C4 pair (base res4, sub res3): a base ``res_k`` (C4, DC5)
    reads ``res_(k-1)``; an FPN level ``p_k`` reads the bottom-up stage ``C_(k-1)`` (``res_(k-1)``
    or MobileNetV2's ``stage_(k-1)``), which has twice p_k's resolution, and p2 reads ``C_2`` at
    its own resolution (nothing finer has more than a stem's channels). Stages start at 2.
    """
    base = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
    explicit = list(cfg.MODEL.FEATSR.SUB_FEATURES)
    if explicit:
        if len(explicit) != len(base):
            raise ValueError(
                f"MODEL.FEATSR.SUB_FEATURES {explicit} must name one bottom-up feature per "
                f"MODEL.ROI_HEADS.IN_FEATURES level {base}"
            )
        return explicit
    subs = []
    for name in base:
        split = _split_stage(name)
        if split is None:
            raise ValueError(
                f"cannot choose the sub layer of the base feature {name!r}: set "
                "MODEL.FEATSR.SUB_FEATURES (one bottom-up feature per MODEL.ROI_HEADS.IN_FEATURES)"
            )
        prefix, index = split
        if prefix == "p":  # an FPN level: the bottom-up network's stage names
            bottom_up = (
                _split_stage(cfg.MODEL.FPN.IN_FEATURES[0]) if cfg.MODEL.FPN.IN_FEATURES else None
            )
            if bottom_up is None:
                raise ValueError(
                    f"cannot name the bottom-up stage under {name!r} from MODEL.FPN.IN_FEATURES "
                    f"{list(cfg.MODEL.FPN.IN_FEATURES)}: set MODEL.FEATSR.SUB_FEATURES"
                )
            prefix = bottom_up[0]
        subs.append(f"{prefix}{max(index - 1, 2)}")
    return subs


def enable_featsr(cfg, stage: int = 2):
    """Turn a Detectron2 Faster R-CNN config (C4, DC5 or FPN; ResNet, ResNeXt or featsr_d2's
    MobileNetV2) into FeatSR's model of the paper's phase ``stage`` (2: generator, discriminator
    and small predictor; 3: both predictors), in place, keeping everything else of the config.

    Adds featsr_d2's keys if missing, swaps in the FeatSR meta-architecture, backbone (the same
    network with the SR target extractor) and ROI heads, and makes the backbone output the sub
    layers (:func:`featsr_sub_features`). ``MODEL.WEIGHTS`` should then name the previous phase's
    weights. Raises ValueError, saying why, for a config FeatSR cannot serve.
    """
    add_featsr_config(cfg)
    if stage not in FEATSR_STAGES:
        raise ValueError(f"FeatSR's stage must be one of {FEATSR_STAGES}, got {stage!r}")
    model = cfg.MODEL
    if model.META_ARCHITECTURE not in ("GeneralizedRCNN", "FeatSRRCNN"):
        raise ValueError(
            f"FeatSR needs a two-stage Faster R-CNN (MODEL.META_ARCHITECTURE GeneralizedRCNN); "
            f"this config has {model.META_ARCHITECTURE!r}: its small RoIs are what FeatSR refines"
        )
    if model.PROPOSAL_GENERATOR.NAME != "RPN":
        raise ValueError(
            f"FeatSR needs RPN proposals (MODEL.PROPOSAL_GENERATOR.NAME RPN), not "
            f"{model.PROPOSAL_GENERATOR.NAME!r}"
        )
    if model.MASK_ON or model.KEYPOINT_ON:
        raise ValueError(
            "FeatSR's ROI heads predict boxes only: set MODEL.MASK_ON and KEYPOINT_ON False"
        )
    if model.ROI_HEADS.NAME not in _FEATSR_HEADS:
        raise ValueError(
            f"FeatSR extends Res5ROIHeads (C4) and StandardROIHeads (FPN, DC5), not "
            f"MODEL.ROI_HEADS.NAME {model.ROI_HEADS.NAME!r}"
        )
    if model.ROI_BOX_HEAD.POOLER_TYPE not in _ROI_ALIGN_POOLERS:
        raise ValueError(
            f"FeatSR pools with RoIAlign: MODEL.ROI_BOX_HEAD.POOLER_TYPE must be one of "
            f"{_ROI_ALIGN_POOLERS}, not {model.ROI_BOX_HEAD.POOLER_TYPE!r}"
        )
    if model.BACKBONE.NAME not in _FEATSR_BACKBONES:
        raise ValueError(
            f"FeatSR's SR target extractor knows the backbones {sorted(_FEATSR_BACKBONES)}, not "
            f"MODEL.BACKBONE.NAME {model.BACKBONE.NAME!r}"
        )
    backbone, node = _FEATSR_BACKBONES[model.BACKBONE.NAME]
    model.META_ARCHITECTURE = "FeatSRRCNN"
    model.BACKBONE.NAME = backbone
    model.ROI_HEADS.NAME = _FEATSR_HEADS[model.ROI_HEADS.NAME]
    model.FEATSR.STAGE = stage
    outputs = list(model[node].OUT_FEATURES)
    missing = [f for f in featsr_sub_features(cfg) if f not in outputs]
    order = lambda name: (_split_stage(name) or ("", 0))[1]  # noqa: E731
    model[node].OUT_FEATURES = sorted(dict.fromkeys(outputs + missing), key=order)
    return cfg
