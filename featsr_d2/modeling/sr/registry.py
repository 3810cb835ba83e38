"""The registry of image super-resolution networks and the base class they share.

Input convention, for every registered network:

- ``forward(x)`` takes a float tensor of shape (N, 3, h, w): **RGB, values in [0, 1]**, no mean
  subtraction or other normalization (networks that want one do it inside);
- it returns a float tensor of shape (N, 3, scale * h, scale * w) in the same convention, not
  clamped (clamp and quantize to 8 bits before measuring PSNR/SSIM, as the SR papers do).

Networks subclass :class:`SRNetwork`, implement ``sr_forward`` and register with
``@SR_NETWORK_REGISTRY.register()``. ``build_sr_network(cfg)`` builds ``cfg.MODEL.SR.NAME`` through
its ``@configurable`` ``from_config`` and loads ``cfg.MODEL.SR.WEIGHTS`` when set. With
``MODEL.SR.SELF_ENSEMBLE`` the network averages the 8 flips and rotations of its input in eval
mode (:mod:`featsr_d2.modeling.sr.self_ensemble`); training is unaffected.
"""

from __future__ import annotations

import logging

import torch
from detectron2.utils.registry import Registry
from torch import nn

from featsr_d2.modeling.sr.self_ensemble import self_ensemble_x8

__all__ = ["SR_NETWORK_REGISTRY", "SRNetwork", "build_sr_network", "load_sr_weights"]

logger = logging.getLogger(__name__)

SR_NETWORK_REGISTRY = Registry("SR_NETWORK")
SR_NETWORK_REGISTRY.__doc__ = """
Registry of image super-resolution networks. A registered class is built with ``cls(cfg)``
(``@configurable``) and maps RGB images in [0, 1] of shape (N, 3, h, w) to (N, 3, s*h, s*w),
s = ``MODEL.SR.SCALE``.
"""


class SRNetwork(nn.Module):
    """Base of the SR networks: input checks and the optional x8 self-ensemble.

    Attributes:
        scale: the upscaling factor.
        self_ensemble: in eval mode, average the outputs of the 8 dihedral transforms of the input.
    """

    #: Scales a subclass supports (None: any positive integer).
    supported_scales: tuple[int, ...] | None = None

    def __init__(self, *, scale: int, self_ensemble: bool = False):
        super().__init__()
        if self.supported_scales is not None and scale not in self.supported_scales:
            raise ValueError(
                f"{type(self).__name__} supports scales {self.supported_scales}, got {scale}"
            )
        if scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.scale = int(scale)
        self.self_ensemble = bool(self_ensemble)

    @staticmethod
    def common_args(cfg) -> dict:
        """The ``from_config`` arguments every network takes."""
        return {"scale": cfg.MODEL.SR.SCALE, "self_ensemble": cfg.MODEL.SR.SELF_ENSEMBLE}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (N, 3, h, w) RGB in [0, 1].

        Returns:
            (N, 3, scale * h, scale * w) RGB, not clamped.
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images of shape (N, 3, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"expected a float tensor in [0, 1], got {x.dtype}")
        if x.shape[0] == 0:
            n, c, h, w = x.shape
            return x.new_zeros((0, c, h * self.scale, w * self.scale))
        if self.self_ensemble and not self.training:
            return self_ensemble_x8(self.sr_forward, x)
        return self.sr_forward(x)

    def sr_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network itself, on a validated non-empty batch; every SR network defines it."""
        raise TypeError(f"{type(self).__name__} does not define sr_forward")

    def extra_repr(self) -> str:
        return f"scale={self.scale}, self_ensemble={self.self_ensemble}"


def load_sr_weights(model: nn.Module, path: str) -> None:
    """Load ``path`` into ``model`` strictly: a state dict, a checkpoint with a ``"model"`` entry
    (what :class:`featsr_d2.engine.sr_trainer.SRTrainer` writes), the SR stage (``sr.*``) of a
    ``TaskDrivenSR`` checkpoint, or a ``realesrgan://`` name.

    Raises:
        RuntimeError: keys or shapes do not match the network exactly.
    """
    from detectron2.utils.file_io import PathManager

    from featsr_d2.modeling.sr import ncnn_import  # noqa: F401  (registers realesrgan://)

    with PathManager.open(path, "rb") as f:
        data = torch.load(f, map_location="cpu", weights_only=True)
    state = data["model"] if isinstance(data, dict) and "model" in data else data
    if any(k.startswith("detector.") for k in state):  # a TaskDrivenSR checkpoint: its SR stage
        state = {k[len("sr.") :]: v for k, v in state.items() if k.startswith("sr.")}
    model.load_state_dict(state, strict=True)
    logger.info("Loaded SR weights %s into %s", path, type(model).__name__)


def build_sr_network(cfg) -> SRNetwork:
    """Build ``cfg.MODEL.SR.NAME`` on ``cfg.MODEL.DEVICE`` and load ``cfg.MODEL.SR.WEIGHTS``
    when set."""
    name = cfg.MODEL.SR.NAME
    model = SR_NETWORK_REGISTRY.get(name)(cfg)
    if cfg.MODEL.SR.WEIGHTS:
        load_sr_weights(model, cfg.MODEL.SR.WEIGHTS)
    return model.to(torch.device(cfg.MODEL.DEVICE))
