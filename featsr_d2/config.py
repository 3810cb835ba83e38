"""featsr_d2's config: every key it adds to Detectron2's defaults, each under its own node with a
one-line comment, and the one way to build a config.

- :func:`add_featsr_config` adds them all: FeatSR's (``MODEL.FEATSR``, ``MODEL.MNV2``), the TT100K
  datasets' and protocol's (``DATASETS.TT100K``, ``TEST.TT100K``), the SR networks' and their
  training's (:func:`add_sr_config`) and TDSR's (:func:`add_tdsr_config`);
- :func:`get_featsr_cfg` builds a config: Detectron2's defaults, those keys, a file read with safe
  YAML (:func:`featsr_d2.config_files.merge_config_file`), overrides, every key featsr_d2 adds
  checked against its allowed range (:func:`featsr_d2.config_validation.validate_config`), and a
  TDSR detector's config file read into the run's config (:func:`resolve_tdsr_detector`;
  :func:`get_detector_cfg` gives it back without reading a file);
- :func:`enable_featsr` turns any Detectron2 Faster R-CNN (or Mask R-CNN) config into FeatSR's.

The config layer is this module, :mod:`featsr_d2.config_files` and
:mod:`featsr_d2.config_validation` (which reads the table of FeatSR's supervision modes,
:mod:`featsr_d2.core.featsr.supervision`); it imports nothing else of featsr_d2 but the core, and
every part of the package above the core may import it (``tests/test_import_layers.py``).
"""

import os
import re

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from featsr_d2.config_files import merge_config_file
from featsr_d2.config_validation import validate_config

__all__ = [
    "FEATSR_STAGES",
    "ROI_ALIGN_TYPES",
    "add_featsr_config",
    "add_sr_config",
    "add_tdsr_config",
    "enable_featsr",
    "featsr_sub_features",
    "get_detector_cfg",
    "get_featsr_cfg",
    "get_sr_cfg",
    "resolve_tdsr_detector",
]


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
    # Stage 2's supervision (featsr_d2.core.featsr.supervision): "extractor" (ours), "naive" (plain
    # backbone on 1.0x), "none" (Table 4: no content loss, D still trained), "detection_only" (no SR
    # pairs: G learns from detection only), "identity" (the no-SR control: G frozen at identity).
    _C.MODEL.FEATSR.SUPERVISION = "extractor"
    # Sub (former) layer of each ROI_HEADS.IN_FEATURES level, a bottom-up feature; [] = the stage
    # before the base's (res4 -> res3; p_k -> res_(k-1) / stage_(k-1), at least res2 / stage2).
    _C.MODEL.FEATSR.SUB_FEATURES = []
    # C4: the registered Res5ROIHeads whose res5 FeatSRRes5ROIHeads builds (and replicates):
    # "Res5ROIHeads" (ResNet's) or "FeatSRMobileNetV2Res5ROIHeads" (MobileNetV2's stage5).
    _C.MODEL.FEATSR.RES5_HEADS = "Res5ROIHeads"
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
    # Place the extractor's pooling windows where the backbone's units sit on the 0.5x image
    # (windows {2o-1, 2o}); False: the previous placement {2o, 2o+1}, J-1 px off (J the stride).
    _C.MODEL.FEATSR.EXTRACTOR_ALIGNED = True
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

    # The official TT100K evaluation protocol (featsr_d2.core.tt100k_protocol).
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


def add_sr_config(cfg):
    """Add the SR keys to ``cfg`` in place and return it. Safe to call more than once (all nodes
    are added together, so one present means all are).

    The nodes, each key with a one-line comment:

    - ``MODEL.SR``: the network (``NAME``, ``SCALE``, weights, self-ensemble, training loss) and one
      sub-node per network family (``DBPN``, ``CAJNN``, ``RRDB``);
    - ``DATASETS.SR``: folders of high-resolution images (or the bundled photographs);
    - ``INPUT.SR``: training patches, augmentation and the degradation pipeline;
    - ``SOLVER.SR``: what Detectron2's ``SOLVER`` lacks for SR training (Adam's betas, the cosine
      schedule with restarts); the rest of ``SOLVER`` (``BASE_LR``, ``MAX_ITER``, ``IMS_PER_BATCH``,
      ``CHECKPOINT_PERIOD``, ``STEPS``, ``GAMMA``, ``WARMUP_*``, ``LR_SCHEDULER_NAME``) is used as
      Detectron2 defines it;
    - ``TEST.SR``: the evaluation protocol and the sample images written while training.
    """
    _C = cfg
    if "SR" in _C.MODEL:
        return cfg

    # Image super-resolution network (featsr_d2.modeling.sr): RGB in [0, 1] in, RGB out.
    _C.MODEL.SR = CN()
    # Registered name in SR_NETWORK_REGISTRY: "DBPN", "CAJNN", "RRDBNet" or "Bicubic".
    _C.MODEL.SR.NAME = "DBPN"
    # Upscaling factor (DBPN: 2, 4, 8; CAJNN: 2, 3, 4, 8; RRDBNet: 1, 2, 4; Bicubic: any).
    _C.MODEL.SR.SCALE = 4
    # Weights: "" (initialization), a .pth state dict or checkpoint, or featsr://realesrgan/x4plus.
    _C.MODEL.SR.WEIGHTS = ""
    # Partial start when WEIGHTS is "": another network's weights (CAJNN: an RRDBNet, e.g. x4plus).
    _C.MODEL.SR.WARM_START = ""
    # Average the 8 flips/rotations of the input at inference (EDSR's x8 self-ensemble).
    _C.MODEL.SR.SELF_ENSEMBLE = False
    # Residual mode: output = bicubic(x) + network(x) (CAJNN: its bilinear skip), last layer zeroed.
    _C.MODEL.SR.RESIDUAL = False
    # Training loss between output and ground truth: "L1", "MSE" or "Charbonnier".
    _C.MODEL.SR.LOSS = "L1"
    # Epsilon of the Charbonnier loss sqrt((x - y)^2 + eps^2), images in [0, 1].
    _C.MODEL.SR.CHARBONNIER_EPS = 1e-3

    # D-DBPN (Haris et al., CVPR 2018), the SR network of TDSR.
    _C.MODEL.SR.DBPN = CN()
    # Channels of the first 3x3 feature-extraction convolution.
    _C.MODEL.SR.DBPN.FEAT = 256
    # Channels of the projection units (the 1x1 convolution after the 3x3 one reduces to it).
    _C.MODEL.SR.DBPN.BASE_FILTER = 64
    # Number of up-projection stages (D-DBPN: 7, with 6 down-projections between them).
    _C.MODEL.SR.DBPN.NUM_STAGES = 7

    # CAJNN (Xiang et al., 2020): ASPP + RRDB trunk + PixelShuffle + enhancement + bilinear skip.
    _C.MODEL.SR.CAJNN = CN()
    # Feature channels n_f.
    _C.MODEL.SR.CAJNN.NUM_FEAT = 64
    # Number of RRDBs in the reconstruction trunk.
    _C.MODEL.SR.CAJNN.NUM_BLOCKS = 20
    # Growth channels of the dense blocks inside an RRDB (ESRGAN's gc).
    _C.MODEL.SR.CAJNN.GROWTH = 32
    # Dilation rates of the three ASPP branches.
    _C.MODEL.SR.CAJNN.DILATIONS = [1, 3, 4]

    # RRDBNet (ESRGAN / Real-ESRGAN generator), e.g. for the shipped Real-ESRGAN x4plus weights.
    _C.MODEL.SR.RRDB = CN()
    # Feature channels.
    _C.MODEL.SR.RRDB.NUM_FEAT = 64
    # Number of RRDBs (Real-ESRGAN x4plus: 23).
    _C.MODEL.SR.RRDB.NUM_BLOCKS = 23
    # Growth channels of the dense blocks.
    _C.MODEL.SR.RRDB.GROWTH = 32

    # High-resolution image sources for SR training and evaluation.
    _C.DATASETS.SR = CN()
    # Training images: folders, image files, or "bundled:train" (photos shipped by packages).
    _C.DATASETS.SR.TRAIN = ["bundled:train"]
    # Evaluation images: folders, image files, or "bundled:test" (disjoint from bundled:train).
    _C.DATASETS.SR.TEST = ["bundled:test"]

    # Training patches and degradations (featsr_d2.data.sr_dataset, featsr_d2.core.degradations).
    _C.INPUT.SR = CN()
    # HR training patch side, a multiple of MODEL.SR.SCALE (TDSR: crop after resizing; 0 = none).
    _C.INPUT.SR.PATCH_SIZE = 128
    # Random horizontal flips and 90/180/270-degree rotations of the training patches.
    _C.INPUT.SR.AUGMENT = True
    # Degradation steps in order, among "blur", "bicubic" (required), "noise", "jpeg".
    _C.INPUT.SR.DEGRADATIONS = ["bicubic"]
    # Gaussian blur sigma in HR pixels: [sigma] fixed or [low, high] drawn uniformly.
    _C.INPUT.SR.BLUR_SIGMA = [1.0]
    # Gaussian noise sigma on the 0..255 scale: [sigma] fixed or [low, high] drawn uniformly.
    _C.INPUT.SR.NOISE_SIGMA = [10.0]
    # JPEG quality: [q] fixed or [low, high] drawn uniformly from the integers (both inclusive).
    _C.INPUT.SR.JPEG_QUALITY = [10, 100]
    # Seed of patch sampling and degradations: batch k depends only on it and k (exact resume).
    _C.INPUT.SR.SEED = 0

    # Adam and the learning-rate schedule of SR training (with Detectron2's SOLVER keys).
    _C.SOLVER.SR = CN()
    # Adam's (beta1, beta2).
    _C.SOLVER.SR.BETAS = [0.9, 0.999]
    # Period in iterations of SOLVER.LR_SCHEDULER_NAME "CosineRestartsLR" (SGDR, T_mult 1).
    _C.SOLVER.SR.RESTART_PERIOD = 250000
    # Learning rate at the end of each cosine period of "CosineRestartsLR".
    _C.SOLVER.SR.MIN_LR = 1e-7

    # SR evaluation (tools/eval_sr.py) and the samples written while training.
    _C.TEST.SR = CN()
    # Pixels cropped from every border before PSNR/SSIM; -1 means MODEL.SR.SCALE.
    _C.TEST.SR.CROP_BORDER = -1
    # Measure PSNR/SSIM on the Y channel (BT.601, as MATLAB's rgb2ycbcr) instead of RGB.
    _C.TEST.SR.Y_CHANNEL = True
    # JPEG qualities of the evaluation inputs after downscaling; 0 means no compression.
    _C.TEST.SR.JPEG_QUALITIES = [10, 20, 40]
    # Save sample images and their PSNR every this many training iterations (0 disables).
    _C.TEST.SR.SAMPLE_PERIOD = 1000
    # Number of DATASETS.SR.TEST images used as training samples.
    _C.TEST.SR.NUM_SAMPLES = 4
    # Centre crop (HR pixels) of each sample image, to keep sampling cheap; 0 keeps it whole.
    _C.TEST.SR.SAMPLE_CROP = 192
    return cfg


def add_tdsr_config(cfg):
    """Add the ``MODEL.TDSR`` keys of TDSR, the task-driven SR meta-architecture
    (:class:`featsr_d2.modeling.meta_arch.task_driven_sr.TaskDrivenSR`), to ``cfg`` in place and
    return it; a second call changes nothing.

    The rest of a TDSR run is configured by keys that already exist, not repeated here:

    - the SR network, its scale and its starting weights: ``MODEL.SR`` (``NAME``, ``SCALE``,
      ``WEIGHTS``, ``LOSS`` = L_rec, and the per-network nodes);
    - the degradation that makes the LR input from the HR image: ``INPUT.SR.DEGRADATIONS`` (bicubic,
      optionally blur before it and noise / JPEG after it) with ``INPUT.SR.BLUR_SIGMA``,
      ``NOISE_SIGMA``, ``JPEG_QUALITY`` and ``SEED``;
    - the optimizer: Adam (``SOLVER.BASE_LR``, ``SOLVER.SR.BETAS``, ``SOLVER.WEIGHT_DECAY``) with
      Detectron2's ``SOLVER`` schedule keys;
    - the datasets and the data loader: ``DATASETS``, ``DATALOADER`` of the TDSR config; the images'
      format, resizing, flips and crops: ``INPUT`` of the *detector's* config (the detector's own
      augmentations, as the paper), changeable through ``MODEL.TDSR.DETECTOR_OPTS``.
    """
    _C = cfg
    if "TDSR" in _C.MODEL:
        return cfg

    # TDSR (Haris et al., ICONIP 2021): an SR network trained through a frozen detector (eq. 3).
    _C.MODEL.TDSR = CN()
    # The frozen detector's featsr_d2/Detectron2 config file (its own yaml, e.g. a Faster R-CNN).
    _C.MODEL.TDSR.DETECTOR_CONFIG = ""
    # That file as read when the run's config was made (YAML; get_featsr_cfg sets it, not by hand).
    _C.MODEL.TDSR.RESOLVED_DETECTOR = ""
    # The absolute path RESOLVED_DETECTOR was read from (set with it).
    _C.MODEL.TDSR.RESOLVED_DETECTOR_FROM = ""
    # The detector's trained weights; "" leaves it as built (only sensible in tests).
    _C.MODEL.TDSR.DETECTOR_WEIGHTS = ""
    # KEY VALUE overrides applied to the detector's config (its INPUT drives the data pipeline).
    _C.MODEL.TDSR.DETECTOR_OPTS = []
    # alpha, the weight of the reconstruction loss L_rec(x_h, S(x_l)) (MODEL.SR.LOSS, MSE in TDSR).
    _C.MODEL.TDSR.ALPHA = 1.0
    # beta, the weight of the detector's training losses L_task; 0 trains SR-FT (no detector pass).
    _C.MODEL.TDSR.BETA = 0.01
    # At inference, also return the SR image ("sr_image", RGB in [0, 1]) with each detection result.
    _C.MODEL.TDSR.RETURN_SR_IMAGE = False
    return cfg


def _read_cfg(config_file: str | None, opts) -> CN:
    """Detectron2's defaults with featsr_d2's keys, ``config_file`` (safe YAML) and ``opts``."""
    cfg = get_cfg()
    add_featsr_config(cfg)
    if config_file:
        merge_config_file(cfg, config_file)
    cfg.merge_from_list(list(opts or []))
    return cfg


def get_featsr_cfg(
    config_file: str | None = None,
    opts: list[str] | None = None,
    *,
    featsr_stage: int | None = None,
):
    """A config with featsr_d2's keys, merged from ``config_file`` (safe YAML) and ``opts``, turned
    into FeatSR's model of ``featsr_stage`` (:func:`enable_featsr`) when given, its featsr_d2 keys
    validated, a TDSR detector's config read into it (:func:`resolve_tdsr_detector`); not
    frozen."""
    cfg = _read_cfg(config_file, opts)
    if featsr_stage is not None:
        enable_featsr(cfg, stage=featsr_stage)
    validate_config(cfg)
    return resolve_tdsr_detector(cfg)


def resolve_tdsr_detector(cfg):
    """Read the TDSR detector's config file (``MODEL.TDSR.DETECTOR_CONFIG``) into ``cfg`` in place:
    ``MODEL.TDSR.RESOLVED_DETECTOR`` holds it as YAML (featsr_d2's keys, the file and its
    ``_BASE_`` chain merged and validated, without ``DETECTOR_OPTS``, which
    :func:`get_detector_cfg` applies), ``RESOLVED_DETECTOR_FROM`` and ``DETECTOR_CONFIG`` the
    file's absolute path. :func:`get_featsr_cfg` calls it, so a run's ``config.yaml`` holds its
    detector and building the model reads no file. A config that already holds the detector read
    from that path (a run's ``config.yaml``) keeps it; nothing to do without ``DETECTOR_CONFIG``.
    Returns ``cfg``.

    A relative path set in a config file was made absolute against that file's folder when the
    file was read (:func:`featsr_d2.config_files.merge_config_file`); one set by ``opts`` (or by
    hand) is relative to the working directory of this call.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is a TDSR config, not a detector's.
    """
    tdsr = cfg.MODEL.TDSR
    if not tdsr.DETECTOR_CONFIG:
        return cfg
    path = os.path.abspath(tdsr.DETECTOR_CONFIG)
    if tdsr.RESOLVED_DETECTOR and tdsr.RESOLVED_DETECTOR_FROM == path:
        tdsr.DETECTOR_CONFIG = path
        return cfg
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"MODEL.TDSR.DETECTOR_CONFIG: the detector config {tdsr.DETECTOR_CONFIG} does not "
            f"exist (working directory {os.getcwd()}). In a config file a relative path is "
            "relative to the folder of the file that sets it; given as an override (opts), to the "
            "working directory."
        )
    detector = _read_cfg(path, ())
    if detector.MODEL.META_ARCHITECTURE == "TaskDrivenSR":
        raise ValueError(f"{path} is a TDSR config, not a detector's")
    validate_config(detector)
    tdsr.DETECTOR_CONFIG = path
    tdsr.RESOLVED_DETECTOR = detector.dump()
    tdsr.RESOLVED_DETECTOR_FROM = path
    return cfg


def get_detector_cfg(cfg):
    """The frozen detector's config of a TDSR config: ``MODEL.TDSR.RESOLVED_DETECTOR`` (the file
    :func:`resolve_tdsr_detector` read) merged with ``MODEL.TDSR.DETECTOR_OPTS``, validated, on the
    TDSR config's ``MODEL.DEVICE``; a new config each call, not frozen. Reads no file.

    Raises:
        ValueError: no detector config is named, or the named one was not read into ``cfg``.
    """
    tdsr = cfg.MODEL.TDSR
    if not tdsr.DETECTOR_CONFIG:
        raise ValueError("MODEL.TDSR.DETECTOR_CONFIG must name the detector's config file")
    if not tdsr.RESOLVED_DETECTOR or tdsr.RESOLVED_DETECTOR_FROM != os.path.abspath(
        tdsr.DETECTOR_CONFIG
    ):
        raise ValueError(
            f"MODEL.TDSR.DETECTOR_CONFIG {tdsr.DETECTOR_CONFIG} was not read into this config: "
            "make the config with featsr_d2.config.get_featsr_cfg, or call "
            "featsr_d2.config.resolve_tdsr_detector(cfg) after setting it"
        )
    detector = get_cfg()
    add_featsr_config(detector)
    defaults = detector.clone()
    detector.merge_from_other_cfg(CN.load_cfg(tdsr.RESOLVED_DETECTOR))
    _restore_tuples(detector, defaults)
    detector.merge_from_list(list(tdsr.DETECTOR_OPTS))
    validate_config(detector)
    detector.MODEL.DEVICE = cfg.MODEL.DEVICE
    return detector


def _restore_tuples(cfg, defaults) -> None:
    """YAML has no tuples: merging a dumped config gives back a tuple where the default is one
    (yacs converts), but not the tuples inside it (e.g. ``ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS``);
    those are made tuples again, as in the default."""

    def like(value, default):
        if isinstance(default, tuple) and isinstance(value, (list, tuple)):
            return tuple(like(v, default[0] if default else None) for v in value)
        return value

    for key, default in defaults.items():
        if isinstance(default, CN):
            _restore_tuples(cfg[key], default)
        else:
            cfg[key] = like(cfg[key], default)


def get_sr_cfg(config_file: str | None = None, opts: list[str] | None = None):
    """The config of the image-SR tools (``tools/train_sr.py``, ``tools/eval_sr.py``):
    :func:`get_featsr_cfg` of ``config_file`` and ``opts`` (its SR keys are
    :func:`add_sr_config`'s); not frozen."""
    return get_featsr_cfg(config_file, opts)


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
    "FeatSRMobileNetV2Res5ROIHeads": "FeatSRRes5ROIHeads",
    "FeatSRRes5ROIHeads": "FeatSRRes5ROIHeads",
    "StandardROIHeads": "FeatSRStandardROIHeads",
    "FeatSRStandardROIHeads": "FeatSRStandardROIHeads",
}
# The Detectron2 pooler types FeatSR's heads pool with, and RoIAlign's ``aligned`` for each.
ROI_ALIGN_TYPES = {"ROIAlign": False, "ROIAlignV2": True}
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
    MobileNetV2), or a Mask R-CNN / keypoint R-CNN one (FeatSR refines the box branch; the mask and
    keypoint heads run beside it, as Detectron2's heads run them), into FeatSR's model of the
    paper's phase ``stage`` (2: generator, discriminator and small predictor; 3: both predictors),
    in place, keeping everything else of the config.

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
    if model.ROI_HEADS.NAME not in _FEATSR_HEADS:
        raise ValueError(
            f"FeatSR extends Res5ROIHeads (C4) and StandardROIHeads (FPN, DC5), not "
            f"MODEL.ROI_HEADS.NAME {model.ROI_HEADS.NAME!r}"
        )
    heads = _FEATSR_HEADS[model.ROI_HEADS.NAME]
    if heads == "FeatSRRes5ROIHeads" and model.KEYPOINT_ON:
        raise ValueError(
            "Res5ROIHeads (C4) has no keypoint head: set MODEL.KEYPOINT_ON False, or use an FPN "
            "or DC5 config (StandardROIHeads) for keypoints"
        )
    if heads == "FeatSRStandardROIHeads" and model.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES:
        raise ValueError(
            "FeatSR heads train the mask and keypoint heads on the sampled proposals: set "
            "MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES False"
        )
    if model.ROI_BOX_HEAD.POOLER_TYPE not in ROI_ALIGN_TYPES:
        raise ValueError(
            f"FeatSR pools with RoIAlign: MODEL.ROI_BOX_HEAD.POOLER_TYPE must be one of "
            f"{tuple(ROI_ALIGN_TYPES)}, not {model.ROI_BOX_HEAD.POOLER_TYPE!r}"
        )
    if model.BACKBONE.NAME not in _FEATSR_BACKBONES:
        raise ValueError(
            f"FeatSR's SR target extractor knows the backbones {sorted(_FEATSR_BACKBONES)}, not "
            f"MODEL.BACKBONE.NAME {model.BACKBONE.NAME!r}"
        )
    backbone, node = _FEATSR_BACKBONES[model.BACKBONE.NAME]
    model.META_ARCHITECTURE = "FeatSRRCNN"
    model.BACKBONE.NAME = backbone
    if heads == "FeatSRRes5ROIHeads" and model.ROI_HEADS.NAME != heads:
        model.FEATSR.RES5_HEADS = model.ROI_HEADS.NAME  # FeatSR's C4 heads build its res5
    model.ROI_HEADS.NAME = heads
    model.FEATSR.STAGE = stage
    outputs = list(model[node].OUT_FEATURES)
    missing = [f for f in featsr_sub_features(cfg) if f not in outputs]
    order = lambda name: (_split_stage(name) or ("", 0))[1]  # noqa: E731
    model[node].OUT_FEATURES = sorted(dict.fromkeys(outputs + missing), key=order)
    return cfg
