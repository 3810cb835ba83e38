"""Image super-resolution networks: every one maps RGB images in [0, 1] of shape (N, 3, h, w) to
(N, 3, s*h, s*w) (:mod:`featsr_d2.core.sr.network`). ``DBPN`` (D-DBPN, TDSR's SR network),
``CAJNN``, ``RRDBNet`` (ESRGAN / Real-ESRGAN) and ``Bicubic`` (MATLAB-compatible, no parameters);
the "JPEG removal then bicubic" baseline (:mod:`~featsr_d2.core.sr.deblock`), the x8
self-ensemble, the reconstruction losses by name, a network run over a list of images
(:func:`super_resolve`) and the SR entries of a checkpoint (:func:`sr_state_dict`). Built from
plain arguments; Detectron2 configs build them by name (:mod:`featsr_d2.modeling.sr`), and so do
MMDetection configs (:mod:`featsr_d2.mmdet.sr_networks`).
"""

from featsr_d2.core.sr.bicubic import Bicubic
from featsr_d2.core.sr.cajnn import CAJNN
from featsr_d2.core.sr.dbpn import DBPN
from featsr_d2.core.sr.losses import charbonnier_loss, reconstruction_loss
from featsr_d2.core.sr.network import SRNetwork
from featsr_d2.core.sr.rrdbnet import RRDB, RRDBNet
from featsr_d2.core.sr.self_ensemble import self_ensemble_x8
from featsr_d2.core.sr.super_resolve import super_resolve
from featsr_d2.core.sr.weights import sr_state_dict

__all__ = [
    "CAJNN",
    "DBPN",
    "RRDB",
    "Bicubic",
    "RRDBNet",
    "SRNetwork",
    "charbonnier_loss",
    "reconstruction_loss",
    "self_ensemble_x8",
    "sr_state_dict",
    "super_resolve",
]
