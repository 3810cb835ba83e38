"""CAJNN's warm start from a trained RRDBNet (ESRGAN / Real-ESRGAN): which tensors load from
which, and the loading itself.

Our departure from the CAJNN paper's 1M iterations on DIV2K + Flickr2K, which this machine cannot
afford (``MODEL.SR.WARM_START``, applied by
:func:`featsr_d2.checkpoint.sr_weights.load_initial_sr_weights`): CAJNN's trunk has the shapes of
ESRGAN's, so a trained RRDBNet (the Real-ESRGAN x4plus weights shipped in ncnn format,
``featsr://realesrgan/x4plus``, 23 blocks) initializes what matches in shape *and* role:

- ``conv_first`` from ``conv_first`` (3 -> 64, the layer that feeds the trunk);
- trunk block i from ``body.i`` for the first ``min(20, 23)`` blocks;
- ``enhance1`` from ``conv_hr`` (the 64 -> 64 convolution + LeakyReLU on HR features before the
  last layer);
- the ASPP is set to pass its input through unchanged, so the trunk sees the features it was
  trained on: the dilation-1 branch is the identity, the dilation-3 branch minus the identity, the
  merge ``(a - b) / 1.2`` of them (LeakyReLU(0.2): ``lrelu(f) - lrelu(-f) = 1.2 f``) and zero on
  the dilation-4 branch, which keeps its random weights and so its gradient.

Not loaded: ``conv_body`` (CAJNN has no convolution after the trunk), the upsampling convolutions
(RRDBNet: nearest x2 + 64 -> 64, CAJNN: 64 -> 256 + PixelShuffle; the shapes differ) and
``conv_last``, which makes the whole image where ``enhance2`` makes a residual over the bilinear
skip (it keeps its own initialization, zero in residual mode). Everything loaded and skipped is
logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

from featsr_d2.core.sr.cajnn import CAJNN

__all__ = ["rrdbnet_warm_start_map", "warm_start_cajnn"]

logger = logging.getLogger(__name__)


def rrdbnet_warm_start_map(
    target_shapes: Mapping[str, torch.Size], source_shapes: Mapping[str, torch.Size]
) -> tuple[dict[str, str], list[str]]:
    """Which CAJNN tensors load from which RRDBNet tensors (see the module docstring).

    Args:
        target_shapes: CAJNN's state-dict key -> shape.
        source_shapes: the RRDBNet's state-dict key -> shape.

    Returns:
        (CAJNN key -> RRDBNet key for every tensor that loads, notes on what did not).
    """
    groups = [("conv_first", "conv_first"), ("enhance1", "conv_hr")]
    trunk = sorted({int(k.split(".")[1]) for k in target_shapes if k.startswith("trunk.")})
    groups += [(f"trunk.{i}", f"body.{i}") for i in trunk]
    mapping: dict[str, str] = {}
    notes = []
    for dst, src in groups:
        keys = [k for k in target_shapes if k.startswith(dst + ".")]
        pairs = {k: src + k[len(dst) :] for k in keys}
        missing = [s for s in pairs.values() if s not in source_shapes]
        if missing:
            notes.append(f"{dst}: the source has no {src}")
            continue
        bad = [k for k, s in pairs.items() if tuple(target_shapes[k]) != tuple(source_shapes[s])]
        if bad:
            notes.append(f"{dst}: shapes differ from {src} ({bad[0]})")
            continue
        mapping.update(pairs)
    return mapping, notes


@torch.no_grad()
def warm_start_cajnn(
    model: CAJNN, state: Mapping[str, torch.Tensor], source: str = "state dict"
) -> list[str]:
    """Initialize what matches in ``model`` from an RRDBNet state dict (see the module docstring)
    and set its ASPP to the identity; log what loaded and what did not.

    Returns:
        the keys of ``model`` that were loaded.

    Raises:
        ValueError: nothing of the trunk loads (not an RRDBNet of this width).
    """
    own = model.state_dict()
    mapping, notes = rrdbnet_warm_start_map(
        {k: v.shape for k, v in own.items()}, {k: v.shape for k, v in state.items()}
    )
    blocks = sorted({int(k.split(".")[1]) for k in mapping if k.startswith("trunk.")})
    if not blocks:
        raise ValueError(
            f"CAJNN warm start from {source}: no trunk block matches ({'; '.join(notes[:3])}); "
            "MODEL.SR.WARM_START must name an RRDBNet of the same width and growth, "
            "e.g. featsr://realesrgan/x4plus"
        )
    for dst, src in mapping.items():
        own[dst].copy_(state[src].to(own[dst].dtype))
    model.aspp.identity_()
    others = sorted({k.rsplit(".", 1)[0] for k in mapping if not k.startswith("trunk.")})
    logger.info(
        "CAJNN warm start from %s: loaded %d tensors (%d parameters): %d trunk blocks "
        "(from body.%d-%d), %s; ASPP set to the identity; not loaded: %s",
        source, len(mapping), sum(own[k].numel() for k in mapping), len(blocks), blocks[0],
        blocks[-1], ", ".join(others) or "nothing else",
        "; ".join(notes + ["upsampler, enhance2 (no counterpart of that shape and role)"]),
    )  # fmt: skip
    return sorted(mapping)
