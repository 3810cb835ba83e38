"""The degradation pipeline a config names (``INPUT.SR.*``, ``MODEL.SR.SCALE``), of the steps of
:mod:`featsr_d2.core.degradations`."""

from __future__ import annotations

from featsr_d2.core.degradations import (
    BicubicDownscale,
    Compose,
    Degradation,
    GaussianBlur,
    GaussianNoise,
    JPEGCompression,
)

__all__ = ["build_sr_degradation"]

_STEP_NAMES = ("blur", "bicubic", "noise", "jpeg")


def build_sr_degradation(cfg) -> Compose:
    """The pipeline of ``cfg.INPUT.SR.DEGRADATIONS`` (names among "blur", "bicubic", "noise",
    "jpeg", in order; "bicubic" exactly once, downscaling by ``cfg.MODEL.SR.SCALE``)."""
    names = [n.lower() for n in cfg.INPUT.SR.DEGRADATIONS]
    unknown = [n for n in names if n not in _STEP_NAMES]
    if unknown or names.count("bicubic") != 1:
        raise ValueError(
            f"INPUT.SR.DEGRADATIONS must name steps among {_STEP_NAMES} with 'bicubic' exactly "
            f"once, got {list(cfg.INPUT.SR.DEGRADATIONS)}"
        )
    steps: list[Degradation] = []
    for name in names:
        if name == "bicubic":
            steps.append(BicubicDownscale(cfg.MODEL.SR.SCALE))
        elif name == "blur":
            steps.append(GaussianBlur(list(cfg.INPUT.SR.BLUR_SIGMA)))
        elif name == "noise":
            steps.append(GaussianNoise(list(cfg.INPUT.SR.NOISE_SIGMA)))
        else:
            steps.append(JPEGCompression(list(cfg.INPUT.SR.JPEG_QUALITY)))
    return Compose(steps)
