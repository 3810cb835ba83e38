"""FeatSR's super-resolution target extractor (Noh et al., ICCV 2019, section 4.1).

The extractor runs the backbone's own layers, with the backbone's own weights (it has no parameters
of its own), on the 1.0x image so that its features have the relative receptive field that the
backbone's features have on the 0.5x image:

- every convolution with a filter larger than 1 runs with twice its dilation (and twice its
  padding, so sizes are kept);
- a strided convolution runs at stride 1 and is followed by max pooling with a window and stride
  equal to the stride (Figure 4(c));
- a pooling layer runs with a doubled filter at its own stride.

The maps come out with the same names, channels and sizes as the backbone's on the 1.0x image.

**Where the pooling windows sit** (``aligned``, ``MODEL.FEATSR.EXTRACTOR_ALIGNED``, default on).
The paper's point is the same *relative* receptive field as the 0.5x image's, which includes where
it is, not only its extent. A 3x3 stride-2 layer (padding 1) centres its output unit ``o`` on input
cell ``2o``; on the 0.5x image one cell is two 1.0x pixels, so each strided layer of the backbone
on the 0.5x image moves its units by one cell of the *extractor's* grid up-left of where RoIAlign
places them. The aligned extractor pools the windows ``{2o - 1, 2o}`` (one row and column of
-inf padding at the top-left; the output sizes are those of the backbone on the 1.0x image), and a
doubled pooling layer gets one more cell of padding at the top-left (``2p + 1`` instead of ``2p``),
so that its units move the same way. Then every target T^1.0 sits where the F^0.5 it is paired with
sits (measured: ``tests/modeling/test_target_extractor_geometry.py``). The previous placement
(windows ``{2o, 2o + 1}``, ceil mode), whose targets sit J - 1 pixels (J the map's stride) from
their F^0.5, stays reachable with ``aligned=False`` so that the FeatSR study can measure it.

Where a convolution carries a normalization (Detectron2's ``Conv2d(norm=...)``) the pooling follows
the normalization: BN is part of the convolution layer, and max pooling does not commute with a
negative BN scale. Activations come after the pooling, which is equivalent because ReLU and ReLU6
are non-decreasing.

:class:`FeatSRResNet` and :class:`FeatSRFPN` add ``extract_targets`` to Detectron2's ResNet and FPN;
MobileNetV2 has it natively. The builders ``FeatSRResNetBackbone`` and ``FeatSRResNetFPNBackbone``
build them from the usual ``MODEL.RESNETS`` / ``MODEL.FPN`` keys.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, ResNet, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, BottleneckBlock
from torch import nn

from featsr_d2.config import featsr_sub_features
from featsr_d2.core.layers.dilated_conv_maxpool import dilated_conv_maxpool2d, norm_to_affine

__all__ = [
    "FeatSRFPN",
    "FeatSRResNet",
    "FeatSRResNetBackbone",
    "FeatSRResNetFPNBackbone",
    "atrous_conv",
    "atrous_max_pool",
    "featsr_passthrough",
    "strided_max_pool",
]


def atrous_conv(
    conv: nn.Conv2d, x: torch.Tensor, *, fused: bool = False, aligned: bool = True
) -> torch.Tensor:
    """Apply ``conv`` (a Detectron2 ``Conv2d``, its norm and activation included, or a plain
    ``nn.Conv2d``) as the target extractor does: dilation and padding doubled when the filter is
    larger than 1, stride 1 followed by max pooling when the layer is strided
    (:func:`strided_max_pool`; ``aligned`` places its windows).

    With ``fused``, a strided layer runs as one
    :func:`~featsr_d2.core.layers.dilated_conv_maxpool2d` call (convolution, the norm as a
    per-channel affine, and the pooling, without the full-resolution intermediate) when its norm
    folds into an affine; the result is the same.
    Without a compiled ``featsr_d2._C`` that op runs its unfused reference.
    """
    kernel = conv.kernel_size
    dilation, padding = conv.dilation, conv.padding
    if max(kernel) > 1:
        dilation = tuple(2 * d for d in dilation)
        padding = tuple(2 * p for p in padding)
    norm = getattr(conv, "norm", None)
    strided = max(conv.stride) > 1
    affine = norm_to_affine(norm) if fused and strided and norm is not None else None
    if fused and strided and conv.stride[0] == conv.stride[1] and (norm is None or affine):
        stride = conv.stride[0]
        scale, shift = affine if affine is not None else (None, None)
        y = dilated_conv_maxpool2d(
            x,
            conv.weight,
            conv.bias,
            padding,
            dilation,
            pool=stride,
            scale=scale,
            shift=shift,
            groups=conv.groups,
            ceil_mode=not aligned,
            pool_offset=_pool_offset(stride) if aligned else 0,
        )
    else:
        y = F.conv2d(x, conv.weight, conv.bias, 1, padding, dilation, conv.groups)
        if norm is not None:
            y = norm(y)
        if strided:
            y = strided_max_pool(y, conv.stride, aligned=aligned)
    activation = getattr(conv, "activation", None)
    if activation is not None:
        y = activation(y)
    return y


def _pool_offset(stride: int) -> int:
    """Cells of -inf padding before the first window of an aligned strided layer's pooling."""
    if stride != 2:
        raise ValueError(
            f"the aligned SR target extractor knows stride-2 layers, not stride {stride}: set "
            "MODEL.FEATSR.EXTRACTOR_ALIGNED False for this backbone"
        )
    return 1


def strided_max_pool(y: torch.Tensor, stride: tuple[int, int], *, aligned: bool) -> torch.Tensor:
    """The max pooling that follows a strided layer run at stride 1: windows of ``stride`` cells,
    ``{2o - 1, 2o}`` for stride 2 when ``aligned`` (the backbone's placement on the 0.5x image)
    and ``{2o, 2o + 1}`` (the previous behaviour) otherwise; ``ceil(size / stride)`` outputs, the
    backbone's on the 1.0x image."""
    if not aligned:
        return F.max_pool2d(y, kernel_size=stride, stride=stride, ceil_mode=True)
    offsets = tuple(_pool_offset(s) for s in stride)
    out = F.max_pool2d(y, kernel_size=stride, stride=stride, padding=offsets)
    h, w = (-(-size // s) for size, s in zip(y.shape[-2:], stride))
    return out[..., :h, :w]


def atrous_max_pool(
    x: torch.Tensor, kernel_size: int, stride: int, padding: int, *, aligned: bool = True
) -> torch.Tensor:
    """The target extractor's version of ``F.max_pool2d(x, kernel_size, stride, padding)``: a
    doubled filter at the same stride, with the output size of the original. ``aligned`` gives
    the window one more cell of padding at the top-left (``2 * padding + stride // 2``), which
    moves its units as the original pooling moves them on the 0.5x image."""
    if not aligned:
        return F.max_pool2d(x, 2 * kernel_size, stride, 2 * padding, ceil_mode=True)
    pad = 2 * padding + _pool_offset(stride)
    if pad > kernel_size or kernel_size > 2 * padding + 2:
        raise ValueError(
            f"the aligned SR target extractor cannot place a {kernel_size}x{kernel_size} pooling "
            f"with padding {padding}: set MODEL.FEATSR.EXTRACTOR_ALIGNED False for this backbone"
        )
    out = F.max_pool2d(x, 2 * kernel_size, stride, pad)
    h, w = ((size + 2 * padding - kernel_size) // stride + 1 for size in x.shape[-2:])
    return out[..., :h, :w]


def _stem_targets(stem: nn.Module, x: torch.Tensor, fused: bool, aligned: bool) -> torch.Tensor:
    if not isinstance(stem, BasicStem):
        raise TypeError(f"the target extractor does not know the stem {type(stem).__name__}")
    x = F.relu_(atrous_conv(stem.conv1, x, fused=fused, aligned=aligned))
    return atrous_max_pool(x, 3, 2, 1, aligned=aligned)  # BasicStem's max pool


def _block_targets(block: nn.Module, x: torch.Tensor, fused: bool, aligned: bool) -> torch.Tensor:
    kw = {"fused": fused, "aligned": aligned}
    if isinstance(block, BottleneckBlock):
        out = F.relu_(atrous_conv(block.conv1, x, **kw))
        out = F.relu_(atrous_conv(block.conv2, out, **kw))
        out = atrous_conv(block.conv3, out, **kw)
    elif isinstance(block, BasicBlock):
        out = F.relu_(atrous_conv(block.conv1, x, **kw))
        out = atrous_conv(block.conv2, out, **kw)
    else:
        raise TypeError(
            f"the target extractor does not know the block {type(block).__name__} (deformable "
            "blocks are not supported)"
        )
    shortcut = x if block.shortcut is None else atrous_conv(block.shortcut, x, **kw)
    return F.relu_(out + shortcut)


class FeatSRResNet(ResNet):
    """Detectron2's ResNet with FeatSR's SR target extractor (:meth:`extract_targets`).

    ``fused_targets`` (an attribute, default False; ``MODEL.FEATSR.FUSED_EXTRACTOR`` in configs)
    runs the extractor's strided layers with the fused dilated convolution + max pool op;
    ``aligned_targets`` (default True; ``MODEL.FEATSR.EXTRACTOR_ALIGNED``) places its pooling
    windows as the backbone's units sit on the 0.5x image (the module docstring).
    """

    fused_targets: bool = False
    aligned_targets: bool = True

    def extract_targets(
        self, x: torch.Tensor, *, aligned: bool | None = None
    ) -> dict[str, torch.Tensor]:
        """The features of :meth:`forward`, with the receptive field of the 0.5x image.

        Args:
            x: the 1.0x images, (N, C, H, W).
            aligned: the pooling windows' placement; None: ``aligned_targets``.
        """
        aligned = self.aligned_targets if aligned is None else aligned
        outputs = {}
        x = _stem_targets(self.stem, x, self.fused_targets, aligned)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name, stage in zip(self.stage_names, self.stages):
            for block in stage:
                x = _block_targets(block, x, self.fused_targets, aligned)
            if name in self._out_features:
                outputs[name] = x
        return outputs


class FeatSRFPN(FPN):
    """Detectron2's FPN with FeatSR's SR target extractor; its bottom-up network must have
    ``extract_targets`` too. The lateral 1x1 convolutions are unchanged, the 3x3 output convolutions
    are dilated, and the p6 max pool (kernel 1, stride 2) gets a 2x2 window.

    ``passthrough`` names bottom-up features (e.g. "res2") that :meth:`forward` returns beside the
    pyramid, unchanged and without extra computation: the FeatSR heads' sub layers. They are in
    :meth:`output_shape` too; the targets are the pyramid's only.
    """

    def __init__(self, *args, passthrough: Sequence[str] = (), **kwargs):
        """
        Args:
            passthrough: bottom-up features to return beside the pyramid levels.
            args, kwargs: the arguments of Detectron2's :class:`FPN`.
        """
        super().__init__(*args, **kwargs)
        available = self.bottom_up.output_shape()
        missing = [f for f in passthrough if f not in available]
        if missing:
            raise ValueError(
                f"FeatSR sub layers {missing} are not outputs of the bottom-up network (it has "
                f"{sorted(available)}): add them to its OUT_FEATURES (MODEL.RESNETS / MODEL.MNV2; "
                "featsr_d2.enable_featsr does)"
            )
        self.passthrough = tuple(passthrough)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.passthrough:
            return super().forward(x)
        captured = {}
        handle = self.bottom_up.register_forward_hook(lambda _m, _i, out: captured.update(out))
        try:
            results = super().forward(x)
        finally:
            handle.remove()
        results.update({f: captured[f] for f in self.passthrough})
        return results

    def output_shape(self) -> dict[str, ShapeSpec]:
        shapes = super().output_shape()
        bottom_up = self.bottom_up.output_shape()
        shapes.update({f: bottom_up[f] for f in self.passthrough})
        return shapes

    def extract_targets(
        self, x: torch.Tensor, *, aligned: bool | None = None
    ) -> dict[str, torch.Tensor]:
        """The pyramid's maps as the SR target extractor computes them (its bottom-up network's
        ``extract_targets``, then the FPN's own layers); ``aligned`` as the bottom-up network's
        (None: its ``aligned_targets``)."""
        aligned = self.bottom_up.aligned_targets if aligned is None else aligned
        bottom_up = self.bottom_up.extract_targets(x, aligned=aligned)
        prev = atrous_conv(self.lateral_convs[0], bottom_up[self.in_features[-1]])
        results = [atrous_conv(self.output_convs[0], prev)]
        for idx in range(1, len(self.lateral_convs)):
            lateral = atrous_conv(self.lateral_convs[idx], bottom_up[self.in_features[-idx - 1]])
            prev = lateral + F.interpolate(prev, scale_factor=2.0, mode="nearest")
            if self._fuse_type == "avg":
                prev = prev / 2
            results.insert(0, atrous_conv(self.output_convs[idx], prev))
        if self.top_block is not None:
            if not isinstance(self.top_block, LastLevelMaxPool):
                raise TypeError(
                    f"the target extractor does not know the FPN top block "
                    f"{type(self.top_block).__name__}"
                )
            source = self.top_block.in_feature
            if source in bottom_up:
                top_in = bottom_up[source]
            else:
                top_in = results[self._out_features.index(source)]
            results.append(atrous_max_pool(top_in, 1, 2, 0, aligned=aligned))
        return dict(zip(self._out_features, results))


def featsr_passthrough(cfg) -> list[str]:
    """The bottom-up features a FeatSR model's FPN returns beside its pyramid (the heads' sub
    layers); none for another meta-architecture (a stage-1 detector on a FeatSR backbone)."""
    if cfg.MODEL.META_ARCHITECTURE != "FeatSRRCNN":
        return []
    return list(dict.fromkeys(featsr_sub_features(cfg)))


def _as_featsr_resnet(
    resnet: ResNet, freeze_at: int, fused_targets: bool, aligned_targets: bool
) -> FeatSRResNet:
    featsr_resnet = FeatSRResNet(
        resnet.stem,
        [list(stage) for stage in resnet.stages],
        out_features=resnet._out_features,
        freeze_at=freeze_at,
    )
    featsr_resnet.fused_targets = fused_targets
    featsr_resnet.aligned_targets = aligned_targets
    return featsr_resnet


# Registry keys are the builders' names, prefixed FeatSR so that no other plugin collides.
@BACKBONE_REGISTRY.register()
def FeatSRResNetBackbone(cfg, input_shape: ShapeSpec) -> FeatSRResNet:
    """Detectron2's ResNet (``MODEL.RESNETS``; e.g. C4 with OUT_FEATURES ["res4"]) with
    ``extract_targets``."""
    return _as_featsr_resnet(
        build_resnet_backbone(cfg, input_shape),
        cfg.MODEL.BACKBONE.FREEZE_AT,
        cfg.MODEL.FEATSR.FUSED_EXTRACTOR,
        cfg.MODEL.FEATSR.EXTRACTOR_ALIGNED,
    )


@BACKBONE_REGISTRY.register()
def FeatSRResNetFPNBackbone(cfg, input_shape: ShapeSpec) -> FeatSRFPN:
    """Detectron2's ResNet-FPN (``MODEL.RESNETS``, ``MODEL.FPN``, p6 by max pooling) with
    ``extract_targets``."""
    return FeatSRFPN(
        bottom_up=FeatSRResNetBackbone(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
        passthrough=featsr_passthrough(cfg),
    )
