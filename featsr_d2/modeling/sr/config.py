"""Config keys of the image super-resolution networks and of their training and evaluation.

``add_sr_config(cfg)`` adds, each key with a one-line comment:

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

import logging

import torch
from detectron2.config import CfgNode as CN

from featsr_d2.config_files import merge_config_file
from featsr_d2.config_validation import validate_config

__all__ = ["add_sr_config", "cpu_without_cuda", "get_sr_cfg"]

logger = logging.getLogger(__name__)


def add_sr_config(cfg):
    """Add the SR keys to ``cfg`` in place and return it. Safe to call more than once (all nodes
    are added together, so one present means all are)."""
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

    # Training patches and degradations (featsr_d2.data.sr_dataset, featsr_d2.data.degradations).
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


def get_sr_cfg(config_file: str | None = None, opts: list[str] | None = None):
    """featsr_d2's config with the SR keys, merged from ``config_file`` and ``opts``; not
    frozen. Works whether or not ``add_featsr_config`` already adds the SR keys."""
    from featsr_d2.engine import get_featsr_cfg

    cfg = get_featsr_cfg()
    add_sr_config(cfg)
    if config_file:
        merge_config_file(cfg, config_file)  # safe YAML only
    cfg.merge_from_list(list(opts or []))
    validate_config(cfg)
    return cfg


def cpu_without_cuda(cfg):
    """Set ``cfg.MODEL.DEVICE`` to "cpu" (saying so) when it names CUDA and no CUDA device is
    available, so that the SR tools run on any machine by default; returns ``cfg``."""
    if str(cfg.MODEL.DEVICE).startswith("cuda") and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE is %s but no CUDA device is available: using cpu",
                       cfg.MODEL.DEVICE)  # fmt: skip
        was_frozen = cfg.is_frozen()
        cfg.defrost()
        cfg.MODEL.DEVICE = "cpu"
        if was_frozen:
            cfg.freeze()
    return cfg
