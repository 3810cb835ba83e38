"""Image super-resolution networks: every one maps RGB images in [0, 1] of shape (N, 3, h, w) to
(N, 3, s*h, s*w) (:mod:`featsr_d2.core.sr.network`). ``DBPN`` (D-DBPN, TDSR's SR network),
``CAJNN``, ``RRDBNet`` (ESRGAN / Real-ESRGAN) and ``Bicubic`` (MATLAB-compatible, no parameters);
the "JPEG removal then bicubic" baseline (:mod:`~featsr_d2.core.sr.deblock`), the x8
self-ensemble and the Charbonnier loss. Built from plain arguments; Detectron2 configs build them
by name (:mod:`featsr_d2.modeling.sr`).
"""

from featsr_d2.core.sr.bicubic import Bicubic
from featsr_d2.core.sr.cajnn import CAJNN
from featsr_d2.core.sr.dbpn import DBPN
from featsr_d2.core.sr.losses import charbonnier_loss
from featsr_d2.core.sr.network import SRNetwork
from featsr_d2.core.sr.rrdbnet import RRDB, RRDBNet
from featsr_d2.core.sr.self_ensemble import self_ensemble_x8

__all__ = [
    "CAJNN",
    "DBPN",
    "RRDB",
    "Bicubic",
    "RRDBNet",
    "SRNetwork",
    "charbonnier_loss",
    "self_ensemble_x8",
]
