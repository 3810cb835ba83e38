"""Image super-resolution networks, registered in ``SR_NETWORK_REGISTRY`` when this package is
imported: ``DBPN`` (D-DBPN, TDSR's SR network), ``CAJNN``, ``RRDBNet`` (ESRGAN / Real-ESRGAN, with
the shipped Real-ESRGAN x4plus weights) and ``Bicubic`` (MATLAB-compatible, no parameters).

Every network maps RGB images in [0, 1] of shape (N, 3, h, w) to (N, 3, s*h, s*w); see
:mod:`featsr_d2.modeling.sr.registry`. Build one from a config with ``build_sr_network(cfg)`` after
``featsr_d2.config.add_featsr_config(cfg)``.
"""

from featsr_d2.modeling.sr import ncnn_import  # noqa: F401  (registers the realesrgan:// scheme)
from featsr_d2.modeling.sr.bicubic import Bicubic
from featsr_d2.modeling.sr.cajnn import CAJNN
from featsr_d2.modeling.sr.dbpn import DBPN
from featsr_d2.modeling.sr.registry import (
    SR_NETWORK_REGISTRY,
    SRNetwork,
    build_sr_network,
    load_sr_weights,
    read_sr_state_dict,
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
    "load_sr_weights",
    "read_sr_state_dict",
    "self_ensemble_x8",
]
