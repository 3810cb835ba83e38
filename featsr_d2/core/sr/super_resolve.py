"""An SR network on a list of images: the SR stage of TDSR and of the SR pre-processors, in every
framework.

:func:`super_resolve` takes RGB float images in [0, 1] of shape (3, h, w), possibly of different
sizes, runs the network once per size group (one batch when all sizes agree, else one image at a
time, in order) and crops each output to the HR size it is given, so that an HR image of a side
that is not a multiple of the scale (the LR image was made from it padded:
:func:`featsr_d2.core.degradations.make_lr_image`) gets its own size back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["super_resolve"]


def super_resolve(
    network: nn.Module,
    images: Sequence[torch.Tensor],
    sizes: Sequence[tuple[int, int]] | None = None,
) -> list[torch.Tensor]:
    """``network`` on each RGB float (3, h, w) image: one (3, s*h, s*w) output per image
    (unclamped), cropped to ``sizes[k]`` (H, W) when given.

    Raises:
        ValueError: an output is smaller than its size, or ``sizes`` does not match ``images``.
    """
    if sizes is not None and len(sizes) != len(images):
        raise ValueError(f"{len(images)} images but {len(sizes)} sizes")
    if not images:
        return []
    if len({tuple(x.shape) for x in images}) == 1:
        outs = list(network(torch.stack(list(images))).unbind(0))
    else:
        outs = [network(x[None])[0] for x in images]
    if sizes is not None:
        for k, ((h, w), out) in enumerate(zip(sizes, outs)):
            if out.shape[-2] < h or out.shape[-1] < w:
                raise ValueError(
                    f"SR output {tuple(out.shape[-2:])} is smaller than the HR size {(h, w)}"
                )
            outs[k] = out[:, :h, :w]
    return outs
