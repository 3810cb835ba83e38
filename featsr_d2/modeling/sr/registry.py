"""The registry of image super-resolution networks: a Detectron2 config (``MODEL.SR``) builds one
by name.

``SR_NETWORK_REGISTRY`` maps ``MODEL.SR.NAME`` to a callable that takes the config and returns the
network: featsr_d2 registers a builder per network of :mod:`featsr_d2.core.sr` (``DBPN``,
``CAJNN``, ``RRDBNet``, ``Bicubic``), which reads that network's node (``MODEL.SR.DBPN``, ...) and
the keys every network takes (``SCALE``, ``SELF_ENSEMBLE``, ``RESIDUAL``). Another project
registers its own builder, or a class with a ``@configurable`` ``__init__`` (``cls(cfg)``
builds it), subclassing :class:`~featsr_d2.core.sr.network.SRNetwork`. ``build_sr_network(cfg)``
builds ``cfg.MODEL.SR.NAME``; it loads no weights (the checkpointer does:
:mod:`featsr_d2.checkpoint.sr_weights`).
"""

from __future__ import annotations

import torch
from detectron2.utils.registry import Registry

from featsr_d2.core.sr import bicubic, cajnn, dbpn, rrdbnet
from featsr_d2.core.sr.network import SRNetwork

__all__ = ["SR_NETWORK_REGISTRY", "build_sr_network"]

SR_NETWORK_REGISTRY = Registry("SR_NETWORK")
SR_NETWORK_REGISTRY.__doc__ = """
Registry of image super-resolution networks. A registered object is called with the config and
returns an :class:`SRNetwork` mapping RGB images in [0, 1] of shape (N, 3, h, w) to
(N, 3, s*h, s*w), s = ``MODEL.SR.SCALE``.
"""


def _common_args(cfg) -> dict:
    """The arguments every network takes."""
    return {
        "scale": cfg.MODEL.SR.SCALE,
        "self_ensemble": cfg.MODEL.SR.SELF_ENSEMBLE,
        "residual": cfg.MODEL.SR.RESIDUAL,
    }


# Registry keys are the builders' names: the networks' (MODEL.SR.NAME).
@SR_NETWORK_REGISTRY.register()
def DBPN(cfg) -> dbpn.DBPN:
    """D-DBPN from ``MODEL.SR`` and ``MODEL.SR.DBPN``."""
    d = cfg.MODEL.SR.DBPN
    return dbpn.DBPN(
        **_common_args(cfg), feat=d.FEAT, base_filter=d.BASE_FILTER, num_stages=d.NUM_STAGES
    )


@SR_NETWORK_REGISTRY.register()
def CAJNN(cfg) -> cajnn.CAJNN:
    """CAJNN from ``MODEL.SR`` and ``MODEL.SR.CAJNN``."""
    c = cfg.MODEL.SR.CAJNN
    return cajnn.CAJNN(
        **_common_args(cfg),
        num_feat=c.NUM_FEAT,
        num_blocks=c.NUM_BLOCKS,
        growth=c.GROWTH,
        dilations=tuple(c.DILATIONS),
    )


@SR_NETWORK_REGISTRY.register()
def RRDBNet(cfg) -> rrdbnet.RRDBNet:
    """RRDBNet (ESRGAN / Real-ESRGAN) from ``MODEL.SR`` and ``MODEL.SR.RRDB``."""
    r = cfg.MODEL.SR.RRDB
    return rrdbnet.RRDBNet(
        **_common_args(cfg), num_feat=r.NUM_FEAT, num_blocks=r.NUM_BLOCKS, growth=r.GROWTH
    )


@SR_NETWORK_REGISTRY.register()
def Bicubic(cfg) -> bicubic.Bicubic:
    """MATLAB bicubic upscaling by ``MODEL.SR.SCALE``."""
    return bicubic.Bicubic(**_common_args(cfg))


def build_sr_network(cfg) -> SRNetwork:
    """Build ``cfg.MODEL.SR.NAME`` on ``cfg.MODEL.DEVICE``, as initialized: it loads no weights
    (:func:`featsr_d2.checkpoint.sr_weights.load_initial_sr_weights` loads those the config
    names)."""
    return SR_NETWORK_REGISTRY.get(cfg.MODEL.SR.NAME)(cfg).to(torch.device(cfg.MODEL.DEVICE))
