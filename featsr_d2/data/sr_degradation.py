"""The degradation pipeline a config names (``INPUT.SR.*``, ``MODEL.SR.SCALE``), of the steps of
:mod:`featsr_d2.core.degradations`."""

from __future__ import annotations

from featsr_d2.core.degradations import Compose, build_degradation

__all__ = ["build_sr_degradation"]


def build_sr_degradation(cfg) -> Compose:
    """The pipeline of ``cfg.INPUT.SR.DEGRADATIONS`` (names among "blur", "bicubic", "noise",
    "jpeg", in order; "bicubic" exactly once, downscaling by ``cfg.MODEL.SR.SCALE``)."""
    return build_degradation(
        list(cfg.INPUT.SR.DEGRADATIONS),
        scale=cfg.MODEL.SR.SCALE,
        blur_sigma=list(cfg.INPUT.SR.BLUR_SIGMA),
        noise_sigma=list(cfg.INPUT.SR.NOISE_SIGMA),
        jpeg_quality=list(cfg.INPUT.SR.JPEG_QUALITY),
        setting="INPUT.SR.DEGRADATIONS",
    )
