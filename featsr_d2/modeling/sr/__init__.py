"""Image super-resolution networks from a Detectron2 config: ``SR_NETWORK_REGISTRY`` (``DBPN``,
``CAJNN``, ``RRDBNet``, ``Bicubic``; registered when this package is imported),
``build_sr_network(cfg)`` and the reconstruction loss ``build_sr_loss(cfg)``, after
``featsr_d2.config.add_featsr_config(cfg)``. The networks themselves are
:mod:`featsr_d2.core.sr` (D-DBPN, TDSR's SR network; CAJNN; RRDBNet, ESRGAN / Real-ESRGAN, whose
shipped x4plus weights are ``featsr://realesrgan/x4plus``; MATLAB-compatible Bicubic).
"""

from featsr_d2.modeling.sr.losses import build_sr_loss
from featsr_d2.modeling.sr.registry import SR_NETWORK_REGISTRY, build_sr_network

__all__ = ["SR_NETWORK_REGISTRY", "build_sr_loss", "build_sr_network"]
