"""MobileNetV2 (:paper:`MobileNetV2`) as a Detectron2 backbone: torchvision's layout and weights.

The network is torchvision's ``mobilenet_v2`` (inverted residual blocks with linear bottlenecks, the
same t/c/n/s table, ReLU6, the width multiplier rounded by ``_make_divisible``) rebuilt from
Detectron2 layers, so that every Detectron2 normalization (``MODEL.MNV2.NORM``) and the
``FREEZE_AT`` convention apply, and grouped into stages that end where the resolution halves, as in
Detectron2's ResNet:

==========  ========================  ======  ================  ==============================
name        torchvision ``features``  stride  channels (x1.0)   content
==========  ========================  ======  ================  ==============================
``stem``    ``0``                     2       32                3x3 conv, stride 2
``stage2``  ``1`` .. ``3``            4       24                16-ch block, two 24-ch blocks
``stage3``  ``4`` .. ``6``            8       32                three 32-ch blocks
``stage4``  ``7`` .. ``13``           16      96                four 64-ch, three 96-ch blocks
``stage5``  ``14`` .. ``17``          32      320               three 160-ch, one 320-ch block
==========  ========================  ======  ================  ==============================

``stage5`` ends with the 320-channel block. torchvision's last layer, ``features.18`` (a 1x1 conv
to 1280 channels feeding the ImageNet classifier), is left out: it widens the globally pooled
vector for the classifier, costs 412k parameters and a 1280-channel map at stride 32, and gives
detection heads (which FPN projects to 256 channels anyway) nothing the 320-channel map lacks.

Pixel format of the ImageNet weights: torchvision trained them on RGB images scaled to [0, 1] and
normalized by the ImageNet mean and std. In Detectron2's 0-255 units that is::

    INPUT.FORMAT: "RGB"
    MODEL.PIXEL_MEAN: [123.675, 116.28, 103.53]
    MODEL.PIXEL_STD: [58.395, 57.12, 57.375]

(Detectron2's defaults, BGR with std 1, suit its Caffe2 ResNets, not these weights.)

Normalization (``MODEL.MNV2.NORM``): "FrozenBN" (default: ImageNet statistics and affine fixed),
"BN", "SyncBN", "GN" or "" (none; the convolutions then get a bias). MobileNetV2's channel counts
(16, 24, 144, ...) are not all multiples of 32, so "GN" uses ``gcd(32, channels)`` groups instead
of Detectron2's fixed 32. The ImageNet weights are batch-norm statistics: load them with
"FrozenBN", "BN" or "SyncBN" and ``WIDTH_MULT`` 1.0 only.

Freezing (``MODEL.MNV2.FREEZE_AT``), as ``MODEL.BACKBONE.FREEZE_AT`` for Detectron2's ResNet:
0 trains everything; 1 freezes the stem; N in 2..5 freezes the stem and stage2 .. stageN. A frozen
block's parameters get ``requires_grad=False`` and its BN/SyncBN layers become
``FrozenBatchNorm2d``.

The parameter names map one to one onto torchvision's
(:mod:`featsr_d2.checkpoint.torchvision_mobilenet_v2` converts torchvision's checkpoints). FeatSR's
target extractor and the registered backbones (``FeatSRMobileNetV2``, ``FeatSRMobileNetV2FPN``)
are in :mod:`featsr_d2.modeling.backbone.mobilenet_v2_target_extractor`.
"""

import math
from collections.abc import Sequence
from typing import NamedTuple

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import CNNBlockBase, Conv2d, FrozenBatchNorm2d, ShapeSpec, get_norm
from detectron2.modeling import Backbone
from torch import nn

__all__ = [
    "MobileNetV2Backbone",
    "InvertedResidual",
    "MobileNetV2Stem",
    "BlockSpec",
    "block_specs",
    "make_divisible",
    "make_stage",
]

STAGE_NAMES = ("stage2", "stage3", "stage4", "stage5")
NORMS = ("FrozenBN", "BN", "SyncBN", "GN", "")

_STEM_CHANNELS = 32
# torchvision's inverted residual table, with the stage each row belongs to.
# t: expansion ratio, c: output channels (before the width multiplier), n: blocks, s: first stride.
_INVERTED_RESIDUAL_SETTING = (
    # t, c, n, s, stage
    (1, 16, 1, 1, "stage2"),
    (6, 24, 2, 2, "stage2"),
    (6, 32, 3, 2, "stage3"),
    (6, 64, 4, 2, "stage4"),
    (6, 96, 3, 1, "stage4"),
    (6, 160, 3, 2, "stage5"),
    (6, 320, 1, 1, "stage5"),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never going down by more than 10%
    (the TensorFlow MobileNet rule that torchvision's ``_make_divisible`` implements)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class BlockSpec(NamedTuple):
    """One inverted residual block as torchvision builds it, and where it lies in our stages."""

    features_index: int  # the block's index in torchvision's ``features``
    stage: str
    index_in_stage: int
    in_channels: int
    out_channels: int
    stride: int
    expand_ratio: int


def block_specs(width_mult: float) -> list[BlockSpec]:
    """Every inverted residual block, in order, as torchvision builds them."""
    specs = []
    in_channels = make_divisible(_STEM_CHANNELS * width_mult)
    per_stage = dict.fromkeys(STAGE_NAMES, 0)
    for t, c, n, s, stage in _INVERTED_RESIDUAL_SETTING:
        out_channels = make_divisible(c * width_mult)
        for i in range(n):
            specs.append(
                BlockSpec(
                    features_index=len(specs) + 1,
                    stage=stage,
                    index_in_stage=per_stage[stage],
                    in_channels=in_channels,
                    out_channels=out_channels,
                    stride=s if i == 0 else 1,
                    expand_ratio=t,
                )
            )
            per_stage[stage] += 1
            in_channels = out_channels
    return specs


def _norm_layer(norm: str, channels: int) -> nn.Module | None:
    if norm == "GN":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    return get_norm(norm, channels)


def _conv_norm(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    norm: str,
    stride: int = 1,
    groups: int = 1,
    relu6: bool = True,
) -> Conv2d:
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=(kernel_size - 1) // 2,
        groups=groups,
        bias=not norm,
        norm=_norm_layer(norm, out_channels),
        activation=F.relu6 if relu6 else None,
    )
    weight_init.c2_msra_fill(conv)
    return conv


class _FreezableBlock(CNNBlockBase):
    def freeze(self):
        """As :meth:`CNNBlockBase.freeze`, and the frozen norms keep no ``num_batches_tracked``
        buffer, so that the state dict has the same keys whether NORM is "FrozenBN" or a frozen
        "BN"."""
        super().freeze()
        for module in self.modules():
            if isinstance(module, FrozenBatchNorm2d):
                module.num_batches_tracked = None
        return self


class MobileNetV2Stem(_FreezableBlock):
    """The first layer: a 3x3 stride-2 conv, norm, ReLU6 (torchvision's ``features.0``)."""

    def __init__(self, in_channels: int, out_channels: int, *, norm: str):
        super().__init__(in_channels, out_channels, 2)
        self.conv = _conv_norm(in_channels, out_channels, 3, stride=2, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class InvertedResidual(_FreezableBlock):
    """An inverted residual block with a linear bottleneck: 1x1 expansion to ``expand_ratio`` times
    the input channels (absent when the ratio is 1), 3x3 depthwise conv, 1x1 projection without
    activation, and an identity shortcut when the stride is 1 and the channel count is kept."""

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int, expand_ratio: int, norm: str
    ):
        super().__init__(in_channels, out_channels, stride)
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = int(round(in_channels * expand_ratio))
        self.expand = _conv_norm(in_channels, hidden, 1, norm=norm) if expand_ratio != 1 else None
        self.depthwise = _conv_norm(hidden, hidden, 3, stride=stride, groups=hidden, norm=norm)
        self.project = _conv_norm(hidden, out_channels, 1, norm=norm, relu6=False)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        return x + out if self.use_residual else out


def make_stage(stage: str, *, width_mult: float, norm: str) -> list[InvertedResidual]:
    """The inverted residual blocks of ``stage`` (one of "stage2".."stage5"), in order, as
    torchvision builds them; the backbone's stages, and the C4 heads' ``res5`` (stage5)."""
    if stage not in STAGE_NAMES:
        raise ValueError(f"stage must be one of {STAGE_NAMES}, got {stage!r}")
    return [
        InvertedResidual(
            s.in_channels, s.out_channels, stride=s.stride, expand_ratio=s.expand_ratio, norm=norm
        )
        for s in block_specs(width_mult)
        if s.stage == stage
    ]


class MobileNetV2Backbone(Backbone):
    """MobileNetV2 features with Detectron2's backbone interface; see the module docstring for the
    stages, the normalization, freezing and the pixel format of the ImageNet weights.

    Stages after the last one named in ``out_features`` are not built (as in Detectron2's ResNet).
    Output sizes are ``ceil(input / stride)``; any input size works (an FPN on top needs multiples
    of 32, which its ``size_divisibility`` asks for).
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int = 3,
        width_mult: float = 1.0,
        out_features: Sequence[str] = ("stage5",),
        norm: str = "FrozenBN",
        freeze_at: int = 0,
    ):
        """
        Args:
            in_channels: channels of the input image.
            width_mult: channel width multiplier (1.0 for the ImageNet weights).
            out_features: names among "stage2".."stage5" whose outputs ``forward`` returns.
            norm: one of "FrozenBN", "BN", "SyncBN", "GN", "" (none).
            freeze_at: 0 trains everything, 1 freezes the stem, N in 2..5 the stem and
                stage2..stageN.
        """
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        out_features = list(out_features)
        unknown = [f for f in out_features if f not in STAGE_NAMES]
        if not out_features or unknown or len(set(out_features)) != len(out_features):
            raise ValueError(
                f"out_features must be distinct names among {STAGE_NAMES}, got {out_features}"
            )
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if not 0 <= freeze_at <= len(STAGE_NAMES) + 1:
            raise ValueError(f"freeze_at must be in 0..{len(STAGE_NAMES) + 1}, got {freeze_at}")

        self.stem = MobileNetV2Stem(
            in_channels, make_divisible(_STEM_CHANNELS * width_mult), norm=norm
        )
        num_stages = max(STAGE_NAMES.index(f) for f in out_features) + 1
        self.stage_names = STAGE_NAMES[:num_stages]
        self._out_feature_strides = {}
        self._out_feature_channels = {}
        stride = self.stem.stride
        for name in self.stage_names:
            blocks = make_stage(name, width_mult=width_mult, norm=norm)
            self.add_module(name, nn.Sequential(*blocks))
            stride *= math.prod(b.stride for b in blocks)
            self._out_feature_strides[name] = stride
            self._out_feature_channels[name] = blocks[-1].out_channels
        self._out_features = out_features
        self.freeze(freeze_at)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        return {
            "in_channels": input_shape.channels,
            "width_mult": cfg.MODEL.MNV2.WIDTH_MULT,
            "out_features": cfg.MODEL.MNV2.OUT_FEATURES,
            "norm": cfg.MODEL.MNV2.NORM,
            "freeze_at": cfg.MODEL.MNV2.FREEZE_AT,
        }

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            x: images of shape (N, C, H, W).

        Returns:
            the features named in ``out_features``, each of shape (N, channels, ceil(H / stride),
            ceil(W / stride)).
        """
        if x.dim() != 4:
            raise ValueError(f"MobileNetV2Backbone takes (N, C, H, W) input, got {tuple(x.shape)}")
        outputs = {}
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def freeze(self, freeze_at: int = 0) -> "MobileNetV2Backbone":
        """Freeze the stem (``freeze_at >= 1``) and stage2 .. stage``freeze_at``: their parameters
        stop requiring gradients and their BN layers become ``FrozenBatchNorm2d``.

        Returns:
            this backbone.
        """
        if freeze_at >= 1:
            self.stem.freeze()
        for index, name in enumerate(self.stage_names, start=2):
            if freeze_at >= index:
                for block in getattr(self, name).children():
                    block.freeze()
        return self
