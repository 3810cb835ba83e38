"""Weights of an image SR network (``SR_NETWORK_REGISTRY``): reading them, and the initial weights
a config names, ``MODEL.SR.WEIGHTS`` (the network's own weights, strictly) or else
``MODEL.SR.WARM_START`` (weights of another network mapped onto it: CAJNN from an RRDBNet,
:mod:`featsr_d2.checkpoint.cajnn_warm_start`).

``build_sr_network`` builds a network without loading anything; the trainers, the tools and
:class:`featsr_d2.checkpoint.tdsr_checkpointer.TDSRCheckpointer` call
:func:`load_initial_sr_weights` when a run does not continue from its own checkpoint.
"""

from __future__ import annotations

import logging

import torch
from detectron2.utils.file_io import PathManager
from torch import nn

from featsr_d2.checkpoint.cajnn_warm_start import warm_start_cajnn
from featsr_d2.checkpoint.pickle_weights import WeightsFileError
from featsr_d2.core.sr.cajnn import CAJNN
from featsr_d2.core.sr.weights import sr_state_dict

__all__ = ["load_initial_sr_weights", "load_sr_weights", "read_sr_state_dict"]

logger = logging.getLogger(__name__)


def read_sr_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The SR network state dict in ``path``: a state dict, a checkpoint with a ``"model"`` entry
    (what :class:`featsr_d2.engine.sr_trainer.SRTrainer` writes), the SR stage (``sr.*``) of a
    ``TaskDrivenSR`` checkpoint (:func:`featsr_d2.core.sr.weights.sr_state_dict`), or a
    ``featsr://realesrgan/...`` name."""
    try:
        with PathManager.open(path, "rb") as f:
            data = torch.load(f, map_location="cpu", weights_only=True)
    except (OSError, FileNotFoundError):
        raise
    except Exception as e:  # torch.load raises anything on an empty or foreign file
        reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise WeightsFileError(
            f"{path}: not a readable SR checkpoint ({type(e).__name__}: {reason}). Is it empty or "
            "truncated (a killed copy), or a file of another kind? MODEL.SR.WEIGHTS takes a .pth "
            "written by tools/train_sr.py or tools/train_net.py, or featsr://realesrgan/x4plus."
        ) from e
    try:  # the SR network's entries, whichever trainer wrote the file
        return sr_state_dict(data, path)
    except ValueError as e:
        raise WeightsFileError(str(e)) from None


def load_sr_weights(model: nn.Module, path: str) -> None:
    """Load ``path`` (see :func:`read_sr_state_dict`) into ``model`` strictly.

    Raises:
        RuntimeError: keys or shapes do not match the network exactly.
    """
    model.load_state_dict(read_sr_state_dict(path), strict=True)
    logger.info("Loaded SR weights %s into %s", path, type(model).__name__)


def load_initial_sr_weights(model: nn.Module, *, weights: str = "", warm_start: str = "") -> None:
    """Load ``weights`` (``MODEL.SR.WEIGHTS``) into ``model`` strictly when set; otherwise, when
    ``warm_start`` (``MODEL.SR.WARM_START``) is set, initialize the parts of the network that map
    from those weights (CAJNN: from an RRDBNet, :func:`warm_start_cajnn`); otherwise do nothing.

    Raises:
        ValueError: ``warm_start`` is set for a network without a warm start.
    """
    if weights:
        load_sr_weights(model, weights)
    elif warm_start:
        if not isinstance(model, CAJNN):
            raise ValueError(
                f"MODEL.SR.WARM_START is set but {type(model).__name__} has no warm start (CAJNN "
                "has one); clear the key or use MODEL.SR.WEIGHTS for weights of the same network"
            )
        warm_start_cajnn(model, read_sr_state_dict(warm_start), warm_start)
