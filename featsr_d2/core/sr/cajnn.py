"""CAJNN, the context-aware joint compression-artifact reduction and super-resolution network
(Xiang, Lin and Allebach, 2020, section III-A); ``MODEL.SR.NAME`` ``CAJNN`` in a config.

What the paper fixes, implemented as written:

- feature extraction: one 3x3 convolution, 3 -> n_f = 64 channels (f^L);
- context-aware feature extractor: ASPP of three 3x3 convolutions with dilations 1, 3 and 4 applied
  to f^L, concatenated and merged by a 1x1 convolution to 64 channels (eq. 2, f^L');
- reconstruction: 20 RRDBs (ESRGAN's block, :mod:`featsr_d2.core.sr.rrdbnet`);
- upsampling: 3x3 convolution then PixelShuffle; enhancement: two 3x3 convolutions;
- output: the enhanced image plus the bilinearly upsampled input (eq. 5).

What the paper leaves open, chosen here to match its Table I model size (14.8M parameters) and
documented:

- **upsampler**: the paper's text has one 3x3 convolution to c*s^2 channels shuffled straight into a
  3-channel image (eq. 3). Read literally, with any width of the two enhancement convolutions that
  follow, the network has about 14.5M parameters; a single convolution to 64*s^2 channels gives
  15.1M. The 14.8M of Table I is matched by the standard sub-pixel upsampler of EDSR/RCAN: per
  factor 2 of the scale (one factor 3 at 3x) a 3x3 convolution 64 -> 64*r^2 followed by
  PixelShuffle(r) and LeakyReLU(0.2); the enhancement is then a 3x3 convolution 64 -> 64 with
  LeakyReLU(0.2) and a 3x3 convolution 64 -> 3. At 4x this gives **14,847,491** parameters
  (14.8M); scales 2, 3, 4 and 8 are supported;
- activations: LeakyReLU(0.2) (as in the RRDBs) after each ASPP branch; none after the 1x1 merge;
- a parameter-free skip around the RRDB trunk (f^L' + trunk(f^L')), as ESRGAN's generator has;
  ESRGAN's 3x3 convolution after the trunk is left out (with it the model would have 14.9M);
- bilinear upsampling of eq. 5 uses ``align_corners=False``;
- initialization: ESRGAN's (Kaiming-normal scaled by 0.1 in the RRDBs; 0.1-scaled on the last
  enhancement convolution, so that training starts near the bilinear upsampling of eq. 5). With
  ``MODEL.SR.RESIDUAL`` that convolution starts at zero: the untrained network is exactly eq. 5's
  bilinear skip (kept: residual mode does not replace it by bicubic).

Warm start (``MODEL.SR.WARM_START``): from a trained RRDBNet; what loads from where is
:mod:`featsr_d2.checkpoint.cajnn_warm_start`'s (the ASPP's part is :meth:`ASPP.identity_`).

Training as in the paper (``configs/sr/cajnn_x4_jpeg.yaml``): 4x bicubic downscaling then JPEG with
a random quality in [10, 100]; 128x128 HR patches (32x32 LR), batch 36, flips and 90-degree
rotations; Adam, cosine annealing from 2e-4 to 1e-7 restarted every 250k iterations, 1M in total.
The paper names MSE, L1 and Charbonnier as possible losses without saying which it used; the
config uses Charbonnier (``MODEL.SR.LOSS``).
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from featsr_d2.core.sr.network import SRNetwork
from featsr_d2.core.sr.rrdbnet import RRDB, init_conv_

__all__ = ["ASPP", "CAJNN", "SubPixelUpsampler"]

logger = logging.getLogger(__name__)


class ASPP(nn.Module):
    """Atrous spatial pyramid of 3x3 convolutions (one per dilation) merged by a 1x1 convolution
    (CAJNN eq. 2)."""

    def __init__(self, channels: int, dilations=(1, 3, 4)):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, 1, padding=d, dilation=d) for d in dilations
        )
        self.merge = nn.Conv2d(channels * len(dilations), channels, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat([self.lrelu(b(x)) for b in self.branches], 1))

    @torch.no_grad()
    def identity_(self) -> None:
        """Make the module the identity: branch 0 = x, branch 1 = -x (their centre taps),
        merge = (lrelu(x) - lrelu(-x)) / 1.2 = x for LeakyReLU(0.2); the other branches keep
        their weights and get a zero merge weight."""
        if len(self.branches) < 2:
            raise ValueError("an identity ASPP needs at least two branches")
        c = self.merge.out_channels
        eye = torch.eye(c, dtype=self.merge.weight.dtype, device=self.merge.weight.device)
        for branch, sign in zip(self.branches[:2], (1.0, -1.0)):
            branch.weight.zero_()
            branch.bias.zero_()
            branch.weight[:, :, 1, 1] = sign * eye
        slope = self.lrelu.negative_slope
        self.merge.weight.zero_()
        self.merge.bias.zero_()
        self.merge.weight[:, :c, 0, 0] = eye / (1.0 + slope)
        self.merge.weight[:, c : 2 * c, 0, 0] = -eye / (1.0 + slope)


class SubPixelUpsampler(nn.Sequential):
    """3x3 convolution + PixelShuffle(r) + LeakyReLU(0.2), per factor r (2, or 3 at 3x) of the
    scale."""

    def __init__(self, channels: int, scale: int):
        if scale == 3:
            factors = [3]
        elif scale >= 2 and scale & (scale - 1) == 0:
            factors = [2] * int(math.log2(scale))
        else:
            raise ValueError(f"CAJNN supports scales 2, 3, 4 and 8, got {scale}")
        layers: list[nn.Module] = []
        for r in factors:
            layers += [
                nn.Conv2d(channels, channels * r * r, 3, 1, 1),
                nn.PixelShuffle(r),
                nn.LeakyReLU(negative_slope=0.2, inplace=True),
            ]
        super().__init__(*layers)


class CAJNN(SRNetwork):
    """CAJNN; see the module docstring for what follows the paper and what was chosen."""

    supported_scales = (2, 3, 4, 8)
    has_own_skip = True  # eq. 5's bilinear upsampling of the input

    def __init__(
        self,
        *,
        scale: int = 4,
        num_feat: int = 64,
        num_blocks: int = 20,
        growth: int = 32,
        dilations: tuple[int, ...] = (1, 3, 4),
        self_ensemble: bool = False,
        residual: bool = False,
    ):
        """
        Args:
            scale: 2, 3, 4 or 8.
            num_feat: feature channels n_f.
            num_blocks: RRDBs in the reconstruction trunk.
            growth: growth channels of the RRDBs' dense blocks.
            dilations: dilation rates of the ASPP branches.
            self_ensemble: x8 self-ensemble in eval mode.
            residual: zero the last enhancement convolution, so that the untrained network is
                exactly its bilinear skip (eq. 5), which it keeps in either mode.
        """
        super().__init__(scale=scale, self_ensemble=self_ensemble, residual=residual)
        self.conv_first = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.aspp = ASPP(num_feat, tuple(dilations))
        self.trunk = nn.Sequential(*(RRDB(num_feat, growth) for _ in range(num_blocks)))
        self.upsample = SubPixelUpsampler(num_feat, scale)
        self.enhance1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.enhance2 = nn.Conv2d(num_feat, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        init_conv_(self.enhance2, 0.1)
        self.zero_output_layer_()

    def output_layer(self) -> nn.Module:
        return self.enhance2

    def skip(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 5's bilinear upsampling of the input (``align_corners=False``)."""
        return F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)

    def sr_forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.aspp(self.conv_first(x))
        feat = feat + self.trunk(feat)
        residual = self.enhance2(self.lrelu(self.enhance1(self.upsample(feat))))
        return self.skip(x) + residual
