"""D-DBPN, the dense Deep Back-Projection Network (Haris, Shakhnarovich and Ukita, CVPR 2018), the
SR network of TDSR (Haris et al., "Task-Driven Super Resolution", 2021, section 4.1).

Architecture (``MODEL.SR.NAME`` ``DBPN`` in a config; every convolution has a bias and is followed
by a PReLU with one shared slope, except the reconstruction):

- feature extraction: 3x3 convolution 3 -> ``feat`` (256), then 1x1 convolution -> ``base_filter``
  (64);
- back-projection: ``num_stages`` (7) up-projection units interleaved with ``num_stages - 1`` (6)
  down-projection units. An up-projection maps LR features L to HR: ``H0 = deconv(L)``,
  ``L0 = conv(H0)``, ``H1 = deconv(L0 - L)``, output ``H0 + H1``; a down-projection maps HR to LR:
  ``L0 = conv(H)``, ``H0 = deconv(L0)``, ``L1 = conv(H0 - H)``, output ``L0 + L1``. The projection
  convolutions and deconvolutions are 6x6 stride 2 padding 2 at 2x, 8x8 stride 4 padding 2 at 4x,
  and 12x12 stride 8 padding 2 at 8x (TDSR section 4.1 quotes the 4x and 8x settings);
- dense connections: from the second down-projection and the third up-projection on, a unit takes
  the concatenation of all earlier outputs of the other resolution (newest first) and reduces it
  with a 1x1 convolution (+ PReLU) to ``base_filter`` channels first;
- reconstruction: 3x3 convolution over the concatenation of all ``num_stages`` HR outputs -> 3.

At 4x this has 10,426,358 parameters (the published D-DBPN's 10.4M); 2x: 5,953,526;
8x: 23,205,878. Input and output are RGB in [0, 1]. By default there is no residual to an
interpolated input, as in the authors' default; ``residual=True`` (``MODEL.SR.RESIDUAL``, the
authors' ``--residual``) adds the MATLAB-bicubic upsampling of the input and zeroes the
reconstruction convolution, so the untrained network is bicubic upsampling. Weights are initialized
Kaiming-normal with zero biases, as the authors' code does.
"""

from __future__ import annotations

import torch
from torch import nn

from featsr_d2.core.sr.network import SRNetwork
from featsr_d2.core.sr.rrdbnet import init_conv_

__all__ = ["DBPN", "DownProjection", "UpProjection", "projection_geometry"]

# scale -> (kernel, stride, padding) of the projection units.
_PROJECTION = {2: (6, 2, 2), 4: (8, 4, 2), 8: (12, 8, 2)}


def projection_geometry(scale: int) -> tuple[int, int, int]:
    """(kernel, stride, padding) of DBPN's projection units at ``scale``."""
    if scale not in _PROJECTION:
        raise ValueError(f"DBPN supports scales {sorted(_PROJECTION)}, got {scale}")
    return _PROJECTION[scale]


def _conv(cin: int, cout: int, k: int, s: int, p: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, p), nn.PReLU())


def _deconv(cin: int, cout: int, k: int, s: int, p: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, k, s, p), nn.PReLU())


class UpProjection(nn.Module):
    """LR features -> HR features by back-projection; with ``num_inputs > 1`` the input is the
    concatenation of that many LR feature maps, reduced by a 1x1 convolution first."""

    def __init__(self, channels: int, scale: int, num_inputs: int = 1):
        super().__init__()
        k, s, p = projection_geometry(scale)
        self.reduce = _conv(channels * num_inputs, channels, 1, 1, 0) if num_inputs > 1 else None
        self.up1 = _deconv(channels, channels, k, s, p)
        self.down = _conv(channels, channels, k, s, p)
        self.up2 = _deconv(channels, channels, k, s, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reduce is not None:
            x = self.reduce(x)
        h0 = self.up1(x)
        l0 = self.down(h0)
        return self.up2(l0 - x) + h0


class DownProjection(nn.Module):
    """HR features -> LR features by back-projection; see :class:`UpProjection`."""

    def __init__(self, channels: int, scale: int, num_inputs: int = 1):
        super().__init__()
        k, s, p = projection_geometry(scale)
        self.reduce = _conv(channels * num_inputs, channels, 1, 1, 0) if num_inputs > 1 else None
        self.down1 = _conv(channels, channels, k, s, p)
        self.up = _deconv(channels, channels, k, s, p)
        self.down2 = _conv(channels, channels, k, s, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reduce is not None:
            x = self.reduce(x)
        l0 = self.down1(x)
        h0 = self.up(l0)
        return self.down2(h0 - x) + l0


class DBPN(SRNetwork):
    """D-DBPN; see the module docstring."""

    supported_scales = tuple(sorted(_PROJECTION))

    def __init__(
        self,
        *,
        scale: int = 4,
        feat: int = 256,
        base_filter: int = 64,
        num_stages: int = 7,
        self_ensemble: bool = False,
        residual: bool = False,
    ):
        """
        Args:
            scale: 2, 4 or 8.
            feat: channels of the first 3x3 feature convolution.
            base_filter: channels of the projection units.
            num_stages: up-projection units (D-DBPN: 7); there is one down-projection fewer.
            self_ensemble: x8 self-ensemble in eval mode.
            residual: output = bicubic(x) + network(x), the reconstruction starting at zero.
        """
        super().__init__(scale=scale, self_ensemble=self_ensemble, residual=residual)
        if num_stages < 2:
            raise ValueError(f"num_stages must be at least 2, got {num_stages}")
        self.feat0 = _conv(3, feat, 3, 1, 1)
        self.feat1 = _conv(feat, base_filter, 1, 1, 0)
        # Up-projection t (1-based) sees the outputs of down-projections 1..t-1 (and feat1 for t=1,
        # 2); down-projection t sees the outputs of up-projections 1..t.
        self.up_units = nn.ModuleList(
            UpProjection(base_filter, scale, num_inputs=max(1, t - 1))
            for t in range(1, num_stages + 1)
        )
        self.down_units = nn.ModuleList(
            DownProjection(base_filter, scale, num_inputs=1 if t == 1 else t)
            for t in range(1, num_stages)
        )
        self.reconstruction = nn.Conv2d(num_stages * base_filter, 3, 3, 1, 1)
        init_conv_(self)
        self.zero_output_layer_()

    def output_layer(self) -> nn.Module:
        return self.reconstruction

    def sr_forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feat1(self.feat0(x))
        highs: list[torch.Tensor] = []  # HR outputs, newest first
        lows: list[torch.Tensor] = []  # LR outputs of the down-projections, newest first
        for t, up in enumerate(self.up_units, start=1):
            if t <= 2:
                h = up(lows[0] if lows else x)
            else:
                h = up(torch.cat(lows, 1))
            highs.insert(0, h)
            if t <= len(self.down_units):
                down = self.down_units[t - 1]
                lows.insert(0, down(highs[0] if t == 1 else torch.cat(highs, 1)))
        return self.reconstruction(torch.cat(highs, 1))
