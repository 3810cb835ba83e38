"""FeatSR's SR feature generator (Noh et al., ICCV 2019, section 4.2 and Figure 5).

The input is the RoI feature of the base layer concatenated with the RoI feature of the sub
(former) layer pooled to the same size. B residual blocks refine it, each adding to its input a
residual made by two convolutions; at the end only the base-layer channels are sliced out as the SR
feature.

The paper does not give the convolutions' kernel, width or activation: we use 3x3 convolutions with
a ReLU between the two, the first narrowing to ``hidden_channels`` (256 by default in configs,
``MODEL.FEATSR.GENERATOR.HIDDEN_CHANNELS``: a C4 generator at the input's full width, 1536
channels, would hold 170M parameters), and initialize the second convolution of each block to zero
so that the generator starts as the identity on the base feature (training then starts from the
base detector's behaviour).

With an FPN, the sub layer of each pyramid level is its own bottom-up stage (e.g. res2, res3, res4
for P3, P4, P5), and their widths differ. The generator then holds one 1x1 convolution per sub
layer that maps its RoI features to the base width before the concatenation (our addition: the
paper's C4 generator reads a single sub layer); with a single sub width there is none.

Cost (none of it changes what is computed, to float rounding): the last block computes only the
base channels it keeps (its last convolution's other output channels would be sliced away), and
``chunk_size`` RoIs go through the blocks at a time, so that the peak memory is bounded whatever the
number of proposals. ``block="bottleneck"`` is a lighter generator with Fig. 5's structure: each
residual is a 1x1 convolution to ``hidden_channels``, a kxk one, and a 1x1 back to the input's width
(zero-initialized, so it too starts as the identity).
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BLOCKS", "SRFeatureGenerator"]


BLOCKS = ("basic", "bottleneck")


class _ResidualBlock(nn.Module):
    """``x + residual(x)``: "basic" is kxk conv, ReLU, kxk conv; "bottleneck" is 1x1 conv, ReLU,
    kxk conv, ReLU, 1x1 conv. The last convolution starts at zero (the block starts as the
    identity)."""

    def __init__(self, channels: int, hidden: int, kernel_size: int, block: str = "basic"):
        super().__init__()
        pad = kernel_size // 2
        if block == "basic":
            self.conv1 = nn.Conv2d(channels, hidden, kernel_size, padding=pad)
            self.conv2 = nn.Conv2d(hidden, channels, kernel_size, padding=pad)
            convs = [self.conv1, self.conv2]
        else:
            self.conv1 = nn.Conv2d(channels, hidden, 1)
            self.conv2 = nn.Conv2d(hidden, hidden, kernel_size, padding=pad)
            self.conv3 = nn.Conv2d(hidden, channels, 1)
            convs = [self.conv1, self.conv2, self.conv3]
        for conv in convs[:-1]:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(convs[-1].weight)
        nn.init.zeros_(convs[-1].bias)
        self._num_convs = len(convs)

    def forward(self, x: torch.Tensor, keep: int | None = None) -> torch.Tensor:
        """``x + residual(x)``; with ``keep``, only its first ``keep`` channels are computed."""
        convs = [getattr(self, f"conv{i}") for i in range(1, self._num_convs + 1)]
        h = x
        for conv in convs[:-1]:
            h = torch.relu(conv(h))
        last = convs[-1]
        if keep is None:
            return x + last(h)
        return x[:, :keep] + F.conv2d(h, last.weight[:keep], last.bias[:keep], padding=last.padding)


class SRFeatureGenerator(nn.Module):
    """Maps (base RoI feature, sub RoI feature) to the super-resolved base RoI feature."""

    def __init__(
        self,
        *,
        base_channels: int,
        sub_channels: int | Sequence[int],
        num_blocks: int = 4,
        hidden_channels: int = 0,
        kernel_size: int = 3,
        block: str = "basic",
        chunk_size: int = 0,
    ):
        """
        Args:
            base_channels: channels of the base-layer RoI feature (and of the output).
            sub_channels: channels of the sub-layer RoI feature, or of each sub layer (one
                width: no projection; several: each is projected to ``base_channels`` by
                :meth:`project_sub` before the blocks).
            num_blocks: B, the number of residual blocks.
            hidden_channels: width of the first convolution of each block; 0 means the input's
                width (base + sub channels).
            kernel_size: the convolutions' kernel size (odd).
            block: "basic" (two kxk convolutions) or "bottleneck" (1x1, kxk, 1x1) residuals.
            chunk_size: RoIs refined at a time (0: all at once).
        """
        super().__init__()
        if num_blocks < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"need num_blocks >= 1 and an odd kernel, got {num_blocks}, {kernel_size}"
            )
        if block not in BLOCKS or chunk_size < 0:
            raise ValueError(
                f"block must be one of {BLOCKS} and chunk_size >= 0, got {block!r}, {chunk_size}"
            )
        widths = [sub_channels] if isinstance(sub_channels, int) else list(sub_channels)
        if not widths or min(widths) < 1 or base_channels < 1:
            raise ValueError(f"need positive widths, got base {base_channels}, sub {widths}")
        if len(set(widths)) > 1:
            self.sub_projections = nn.ModuleList(nn.Conv2d(c, base_channels, 1) for c in widths)
            self.sub_channels = base_channels
        else:
            self.sub_projections = None
            self.sub_channels = widths[0]
        width = base_channels + self.sub_channels
        hidden = hidden_channels or width
        self.base_channels = base_channels
        self.blocks = nn.Sequential(
            *(_ResidualBlock(width, hidden, kernel_size, block) for _ in range(num_blocks))
        )
        self.block = block
        self.chunk_size = chunk_size

    def project_sub(self, index: int, sub: torch.Tensor) -> torch.Tensor:
        """RoI features of sub layer ``index`` at the width :meth:`forward` takes."""
        return sub if self.sub_projections is None else self.sub_projections[index](sub)

    def forward(self, base: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
        """
        Args:
            base: (N, base_channels, S, S) base-layer RoI features.
            sub: (N, sub_channels, S, S) sub-layer RoI features pooled to the same size (after
                :meth:`project_sub` when the sub layers' widths differ).
        Returns:
            (N, base_channels, S, S) super-resolved features.
        """
        if base.shape[0] != sub.shape[0] or base.shape[2:] != sub.shape[2:]:
            raise ValueError(
                f"base {tuple(base.shape)} and sub {tuple(sub.shape)} RoI features differ"
            )
        if base.shape[1] != self.base_channels or sub.shape[1] != self.sub_channels:
            raise ValueError(
                f"expected {self.base_channels} base and {self.sub_channels} sub channels, got "
                f"{base.shape[1]} and {sub.shape[1]}"
            )
        x = torch.cat([base, sub], dim=1)
        step = self.chunk_size
        if step and x.shape[0] > step:
            return torch.cat([self._refine(x[i : i + step]) for i in range(0, x.shape[0], step)])
        return self._refine(x)

    def _refine(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks[:-1]:
            x = block(x)
        return self.blocks[-1](x, keep=self.base_channels)

    def extra_repr(self) -> str:
        return (
            f"base_channels={self.base_channels}, sub_channels={self.sub_channels}, "
            f"block={self.block}, chunk_size={self.chunk_size}"
        )
