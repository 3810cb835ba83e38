"""Image super-resolution networks, registered in ``SR_NETWORK_REGISTRY`` when this package is
imported: ``DBPN`` (D-DBPN, TDSR's SR network), ``CAJNN``, ``RRDBNet`` (ESRGAN / Real-ESRGAN; the
shipped Real-ESRGAN x4plus weights are ``featsr://realesrgan/x4plus``) and ``Bicubic``
(MATLAB-compatible, no parameters).

Every network maps RGB images in [0, 1] of shape (N, 3, h, w) to (N, 3, s*h, s*w); see
:mod:`featsr_d2.modeling.sr.registry`. Build one from a config with ``build_sr_network(cfg)`` after
``featsr_d2.config.add_featsr_config(cfg)``.
"""

from featsr_d2.modeling.sr.bicubic import Bicubic
from featsr_d2.modeling.sr.cajnn import CAJNN
from featsr_d2.modeling.sr.dbpn import DBPN
from featsr_d2.modeling.sr.registry import (
    SR_NETWORK_REGISTRY,
    SRNetwork,
    build_sr_network,
)
from featsr_d2.modeling.sr.rrdbnet import RRDB, RRDBNet
from featsr_d2.modeling.sr.self_ensemble import self_ensemble_x8

__all__ = [
    "CAJNN",
    "DBPN",
    "RRDB",
    "SR_NETWORK_REGISTRY",
    "Bicubic",
    "RRDBNet",
    "SRNetwork",
    "build_sr_network",
    "self_ensemble_x8",
]
