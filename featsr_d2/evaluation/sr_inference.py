"""Running an SR network over images, the one way: the SR benchmark (:mod:`.sr_metrics`) and the SR
trainer's samples use it.

The network is put in eval mode for the call (its mode is restored after) and runs without
gradients. Large images can be processed in tiles: the LR image is cut into ``tile`` x ``tile``
pieces, each run with ``tile_pad`` pixels of context on every side (where the image has them), and
the central part of each output is pasted into the result. With a context at least as wide as the
network's receptive field (in LR pixels), the result equals the whole-image one; tiling is off by
default (``tile=0``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from featsr_d2.utils.image import rgb_to_tensor, tensor_to_rgb

__all__ = ["super_resolve", "super_resolve_tensor"]


def _tiled(model: nn.Module, x: torch.Tensor, tile: int, tile_pad: int) -> torch.Tensor:
    n, _, h, w = x.shape
    out = None
    scale = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            py0, px0 = max(y0 - tile_pad, 0), max(x0 - tile_pad, 0)
            py1, px1 = min(y1 + tile_pad, h), min(x1 + tile_pad, w)
            piece = model(x[:, :, py0:py1, px0:px1])
            ph, pw = py1 - py0, px1 - px0
            if (
                piece.shape[-2] % ph
                or piece.shape[-1] % pw
                or piece.shape[-2] // ph != (piece.shape[-1] // pw)
            ):
                raise ValueError(
                    f"the network made {tuple(piece.shape[-2:])} from a {ph}x{pw} tile: tiling "
                    "needs one integer scale"
                )
            if scale is None:
                scale = piece.shape[-2] // ph
                out = piece.new_empty((n, piece.shape[1], h * scale, w * scale))
            s = scale
            out[:, :, y0 * s : y1 * s, x0 * s : x1 * s] = piece[
                :, :, (y0 - py0) * s : (y1 - py0) * s, (x0 - px0) * s : (x1 - px0) * s
            ]
    return out


@torch.no_grad()
def super_resolve_tensor(
    model: nn.Module, x: torch.Tensor, *, tile: int = 0, tile_pad: int = 16
) -> torch.Tensor:
    """``model`` (in eval mode for the call) on a float (N, 3, h, w) RGB batch in [0, 1]: its
    (N, 3, s*h, s*w) output, not clamped.

    Args:
        tile: side of the LR tiles; 0 (or an image no larger than a tile) runs the whole image.
        tile_pad: context, in LR pixels, around each tile.
    """
    if tile < 0 or tile_pad < 0:
        raise ValueError(f"tile and tile_pad must be non-negative, got {tile}, {tile_pad}")
    was_training = model.training
    model.eval()
    try:
        if tile == 0 or (x.shape[-2] <= tile and x.shape[-1] <= tile):
            return model(x)
        return _tiled(model, x, tile, tile_pad)
    finally:
        model.train(was_training)


def super_resolve(
    model: nn.Module,
    lr: np.ndarray,
    device: str | torch.device = "cpu",
    *,
    tile: int = 0,
    tile_pad: int = 16,
) -> np.ndarray:
    """``model`` (eval mode) on one RGB uint8 image -> RGB uint8 output (clamped and rounded);
    ``tile`` and ``tile_pad`` as for :func:`super_resolve_tensor`."""
    out = super_resolve_tensor(model, rgb_to_tensor(lr).to(device), tile=tile, tile_pad=tile_pad)
    return tensor_to_rgb(out[0])
