"""Config keys of TDSR, the task-driven SR meta-architecture
(:class:`featsr_d2.modeling.meta_arch.task_driven_sr.TaskDrivenSR`).

``add_tdsr_config(cfg)`` adds ``MODEL.TDSR``, each key with a one-line comment. The rest of a TDSR
run is configured by keys that already exist, not repeated here:

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

from detectron2.config import CfgNode as CN

__all__ = ["add_tdsr_config"]


def add_tdsr_config(cfg):
    """Add the ``MODEL.TDSR`` keys to ``cfg`` in place and return it; a second call changes
    nothing."""
    _C = cfg
    if "TDSR" in _C.MODEL:
        return cfg

    # TDSR (Haris et al., ICONIP 2021): an SR network trained through a frozen detector (eq. 3).
    _C.MODEL.TDSR = CN()
    # The frozen detector's featsr_d2/Detectron2 config file (its own yaml, e.g. a Faster R-CNN).
    _C.MODEL.TDSR.DETECTOR_CONFIG = ""
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
