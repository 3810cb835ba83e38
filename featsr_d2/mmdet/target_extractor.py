"""FeatSR's SR target extractor on MMDetection's backbones and neck (Noh et al., ICCV 2019, section
4.1): walkers that run the modules of mmdet's ``ResNet`` (``style='pytorch'``, stride in the 3x3,
and ``style='caffe'``, stride in the 1x1; the plain and the deep stem), ``MobileNetV2`` and ``FPN``
(lateral and output convolutions, the max-pooled extra levels), with their own weights, through
the core's version of each layer (:mod:`featsr_d2.core.featsr.extractor_layers`: dilated
convolutions, strided layers at stride 1 followed by max pooling over the windows ``{2o - 1, 2o}``
with ``aligned``, doubled pooling windows) on the 1.0x image. The maps come out with the names,
channels and sizes of the detector's own on the 1.0x image: :func:`extract_targets` returns what
``extract_feat`` returns (the FPN's levels, or the backbone's ``out_indices`` outputs for C4), and
no parameter of its own.

mmdet keeps convolution, normalization and activation as separate modules (``conv1`` / ``bn1`` /
``relu`` in ResNet, ``ConvModule``'s ``conv`` / ``norm`` / ``activate``): the walkers hand the
norm and the activation to :func:`~featsr_d2.core.featsr.extractor_layers.atrous_conv`, which
pools after the norm and before the activation.

What the walkers do not know is refused, by :func:`check_extractor_support` when the detector is
built and again where the walk meets it: deformable convolutions, plugins, SE layers, the
``avg_down`` shortcut (ResNetV1d: an average pooling), extra FPN convolutions (RetinaNet's),
ConvModules with another order or explicit padding, convolutions that are not ``nn.Conv2d``.

:func:`backbone_stages` lists the backbone's stages with their strides and widths, read from the
modules; :func:`bottom_up_stages` those that FeatSR's sub layers come from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.models.backbones import MobileNetV2, ResNet
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck
from mmdet.models.layers import InvertedResidual
from mmdet.models.necks import FPN
from torch import nn

from featsr_d2.core.featsr.extractor_layers import atrous_conv, atrous_max_pool

__all__ = [
    "BottomUpStage",
    "backbone_stages",
    "bottom_up_stages",
    "check_extractor_support",
    "extract_targets",
    "stage_targets",
]


@dataclass(frozen=True)
class BottomUpStage:
    """A bottom-up stage of a backbone: its module's attribute name (e.g. ``layer2``), its stride
    and its output channels."""

    name: str
    stride: int
    channels: int


class ExtractorUnsupported(TypeError):
    """The SR target extractor has no version of a module of this detector."""


def _refuse(what: str) -> None:
    raise ExtractorUnsupported(f"FeatSR's SR target extractor does not know {what}")


# ------------------------------------------------------------------------------------------------
# Layers


def _check_conv(conv: nn.Module, where: str) -> None:
    if type(conv) is not nn.Conv2d:
        _refuse(f"the convolution {type(conv).__name__} at {where} (only nn.Conv2d)")


def _check_conv_module(module: nn.Module, where: str) -> None:
    if not isinstance(module, ConvModule):
        _refuse(f"{type(module).__name__} at {where} (a ConvModule was expected)")
    if tuple(module.order) != ("conv", "norm", "act"):
        _refuse(f"the ConvModule order {module.order} at {where}")
    if module.with_explicit_padding or module.with_spectral_norm:
        _refuse(f"explicit padding or spectral norm at {where}")
    _check_conv(module.conv, where)


def _conv_module(module: ConvModule, x: torch.Tensor, kw: dict) -> torch.Tensor:
    """``module(x)`` (conv, norm, activation) as the extractor runs it."""
    return atrous_conv(
        module.conv,
        x,
        norm=module.norm if module.with_norm else None,
        activation=module.activate if module.with_activation else None,
        **kw,
    )


def _max_pool(pool: nn.MaxPool2d, x: torch.Tensor, aligned: bool) -> torch.Tensor:
    size, stride, padding = (
        v if isinstance(v, int) else v[0] for v in (pool.kernel_size, pool.stride, pool.padding)
    )
    return atrous_max_pool(x, size, stride, padding, aligned=aligned)


def _check_max_pool(pool: nn.Module, where: str) -> None:
    if not isinstance(pool, nn.MaxPool2d):
        _refuse(f"the pooling {type(pool).__name__} at {where}")
    square = all(isinstance(v, int) or v[0] == v[1] for v in (pool.kernel_size, pool.stride))
    if pool.dilation not in (1, (1, 1)) or pool.ceil_mode or not square:
        _refuse(f"a dilated, ceil-mode or non-square max pooling at {where}")


# ------------------------------------------------------------------------------------------------
# ResNet


def _check_block(block: nn.Module, where: str) -> None:
    if isinstance(block, Bottleneck):
        if block.with_dcn or block.with_plugins:
            _refuse(f"deformable convolutions or plugins (at {where})")
        convs = (block.conv1, block.conv2, block.conv3)
    elif isinstance(block, BasicBlock):  # mmdet's has neither deformable convolutions nor plugins
        convs = (block.conv1, block.conv2)
    else:
        _refuse(f"the residual block {type(block).__name__} at {where}")
    for conv in convs:
        _check_conv(conv, where)
    if block.downsample is not None:
        layers = list(block.downsample)
        if len(layers) != 2:
            _refuse(f"the shortcut {layers} at {where} (avg_down: ResNetV1d's average pooling)")
        _check_conv(layers[0], f"{where}.downsample")


def _block(block: nn.Module, x: torch.Tensor, kw: dict) -> torch.Tensor:
    """A Bottleneck's or BasicBlock's ``forward`` as the extractor runs it."""
    relu = block.relu
    if isinstance(block, Bottleneck):
        out = atrous_conv(block.conv1, x, norm=block.norm1, activation=relu, **kw)
        out = atrous_conv(block.conv2, out, norm=block.norm2, activation=relu, **kw)
        out = atrous_conv(block.conv3, out, norm=block.norm3, **kw)
    else:
        out = atrous_conv(block.conv1, x, norm=block.norm1, activation=relu, **kw)
        out = atrous_conv(block.conv2, out, norm=block.norm2, **kw)
    if block.downsample is None:
        identity = x
    else:
        conv, norm = block.downsample
        identity = atrous_conv(conv, x, norm=norm, **kw)
    return relu(out + identity)


def _check_resnet(resnet: ResNet) -> None:
    if resnet.deep_stem:
        layers = list(resnet.stem)
        for i in range(0, len(layers), 3):
            _check_conv(layers[i], f"stem.{i}")
    else:
        _check_conv(resnet.conv1, "conv1")
    _check_max_pool(resnet.maxpool, "maxpool")
    for name in resnet.res_layers:
        for i, block in enumerate(getattr(resnet, name)):
            _check_block(block, f"{name}.{i}")


def _resnet_stages(resnet: ResNet, x: torch.Tensor, kw: dict) -> list[torch.Tensor]:
    """Every stage's output of ``resnet.forward`` (not only ``out_indices``'), as the extractor
    computes them."""
    if resnet.deep_stem:  # (conv, norm, ReLU) three times
        layers = list(resnet.stem)
        for i in range(0, len(layers), 3):
            conv, norm, relu = layers[i : i + 3]
            x = atrous_conv(conv, x, norm=norm, activation=relu, **kw)
    else:
        x = atrous_conv(resnet.conv1, x, norm=resnet.norm1, activation=resnet.relu, **kw)
    x = _max_pool(resnet.maxpool, x, kw["aligned"])
    stages = []
    for name in resnet.res_layers:
        for block in getattr(resnet, name):
            x = _block(block, x, kw)
        stages.append(x)
    return stages


def _resnet_stage_specs(resnet: ResNet) -> list[BottomUpStage]:
    specs, stride = [], 4  # the stem: a stride-2 convolution and a stride-2 max pooling
    for name, layer_stride in zip(resnet.res_layers, resnet.strides):
        stride *= layer_stride
        last = getattr(resnet, name)[-1]
        channels = (last.conv3 if isinstance(last, Bottleneck) else last.conv2).out_channels
        specs.append(BottomUpStage(name, stride, channels))
    return specs


# ------------------------------------------------------------------------------------------------
# MobileNetV2


def _check_mobilenet_v2(net: MobileNetV2) -> None:
    _check_conv_module(net.conv1, "conv1")
    for name in net.layers:
        layer = getattr(net, name)
        if isinstance(layer, ConvModule):
            _check_conv_module(layer, name)
            continue
        for i, block in enumerate(layer):
            if not isinstance(block, InvertedResidual) or block.with_se:
                _refuse(f"{type(block).__name__} (or an SE layer) at {name}.{i}")
            convs = ["depthwise_conv", "linear_conv"]
            if block.with_expand_conv:
                convs.insert(0, "expand_conv")
            for conv in convs:
                _check_conv_module(getattr(block, conv), f"{name}.{i}.{conv}")


def _inverted_residual(block: InvertedResidual, x: torch.Tensor, kw: dict) -> torch.Tensor:
    out = _conv_module(block.expand_conv, x, kw) if block.with_expand_conv else x
    out = _conv_module(block.depthwise_conv, out, kw)
    out = _conv_module(block.linear_conv, out, kw)
    return x + out if block.with_res_shortcut else out  # drop_path is the identity in eval


def _mobilenet_v2_stages(net: MobileNetV2, x: torch.Tensor, kw: dict) -> list[torch.Tensor]:
    """The output of each of ``net.layers`` (``layer1`` .. ``layer7``, ``conv2``) as the
    extractor computes it."""
    x = _conv_module(net.conv1, x, kw)
    stages = []
    for name in net.layers:
        layer = getattr(net, name)
        if isinstance(layer, ConvModule):
            x = _conv_module(layer, x, kw)
        else:
            for block in layer:
                x = _inverted_residual(block, x, kw)
        stages.append(x)
    return stages


def _mobilenet_v2_stage_specs(net: MobileNetV2) -> list[BottomUpStage]:
    """Every layer of ``net.layers``: ``layer1`` .. ``layer7`` and ``conv2`` (the 1x1
    convolution to 1280 channels that feeds ImageNet's classifier)."""
    specs, stride = [], net.conv1.conv.stride[0]
    for name in net.layers:
        layer = getattr(net, name)
        if isinstance(layer, ConvModule):
            channels = layer.conv.out_channels
        else:
            stride *= layer[0].depthwise_conv.conv.stride[0]
            channels = layer[-1].linear_conv.conv.out_channels
        specs.append(BottomUpStage(name, stride, channels))
    return specs


# ------------------------------------------------------------------------------------------------
# FPN


def _check_fpn(fpn: FPN) -> None:
    if type(fpn) is not FPN:  # not its subclasses (PAFPN, ...), whose forward differs
        _refuse(f"the neck {type(fpn).__name__} (mmdet's FPN only)")
    if fpn.add_extra_convs:
        _refuse(f"FPN's extra convolutions (add_extra_convs={fpn.add_extra_convs!r})")
    if fpn.upsample_cfg.get("mode", "nearest") != "nearest":
        _refuse(f"FPN's upsampling {fpn.upsample_cfg}")
    for i, (lateral, output) in enumerate(zip(fpn.lateral_convs, fpn.fpn_convs)):
        _check_conv_module(lateral, f"neck.lateral_convs.{i}")
        _check_conv_module(output, f"neck.fpn_convs.{i}")


def _fpn(fpn: FPN, inputs: Sequence[torch.Tensor], aligned: bool) -> tuple[torch.Tensor, ...]:
    """``FPN.forward`` as the extractor computes it: the lateral 1x1 convolutions unchanged, the
    3x3 output convolutions dilated, each extra level's 1x1 stride-2 max pooling over 2x2."""
    kw = {"fused": False, "aligned": aligned}
    laterals = [
        _conv_module(conv, inputs[i + fpn.start_level], kw)
        for i, conv in enumerate(fpn.lateral_convs)
    ]
    for i in range(len(laterals) - 1, 0, -1):
        if "scale_factor" in fpn.upsample_cfg:
            up = F.interpolate(laterals[i], **fpn.upsample_cfg)
        else:
            up = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], **fpn.upsample_cfg)
        laterals[i - 1] = laterals[i - 1] + up
    outs = [_conv_module(fpn.fpn_convs[i], lateral, kw) for i, lateral in enumerate(laterals)]
    while len(outs) < fpn.num_outs:
        outs.append(atrous_max_pool(outs[-1], 1, 2, 0, aligned=aligned))
    return tuple(outs)


# ------------------------------------------------------------------------------------------------
# The detector's trunk


def check_extractor_support(backbone: nn.Module, neck: nn.Module | None) -> None:
    """Raises :class:`ExtractorUnsupported` (a TypeError), naming the module, when the extractor
    cannot walk ``backbone`` (mmdet's ResNet or MobileNetV2) or ``neck`` (None or mmdet's FPN)."""
    if isinstance(backbone, ResNet):
        _check_resnet(backbone)
    elif isinstance(backbone, MobileNetV2):
        _check_mobilenet_v2(backbone)
    else:
        _refuse(
            f"the backbone {type(backbone).__name__}: it walks mmdet's ResNet (style pytorch or "
            "caffe) and MobileNetV2"
        )
    if neck is not None:
        _check_fpn(neck)


def backbone_stages(backbone: nn.Module) -> list[BottomUpStage]:
    """Every stage of the backbone in order (the modules ``out_indices`` counts: ResNet's
    ``res_layers``, MobileNetV2's ``layers``), with its stride and width."""
    check_extractor_support(backbone, None)
    if isinstance(backbone, ResNet):
        return _resnet_stage_specs(backbone)
    return _mobilenet_v2_stage_specs(backbone)


def bottom_up_stages(backbone: nn.Module) -> list[BottomUpStage]:
    """The stages a sub layer may come from, in order: ResNet's every ``res_layers`` stage;
    MobileNetV2's last layer at each stride, without ``conv2`` (``layer1`` (stride 2),
    ``layer2`` (4), ``layer3`` (8), ``layer5`` (16), ``layer7`` (32): Detectron2's stem-level
    layer and stage2 .. stage5)."""
    stages = backbone_stages(backbone)
    if isinstance(backbone, ResNet):
        return stages
    last = {s.stride: s for s in stages if s.name != "conv2"}
    return list(last.values())


def stage_targets(
    backbone: nn.Module, images: torch.Tensor, *, fused: bool = False, aligned: bool = True
) -> dict[str, torch.Tensor]:
    """The output of every stage of ``backbone`` (ResNet's ``res_layers``, MobileNetV2's
    ``layers``), by module name, as the SR target extractor computes them on the 1.0x ``images``
    (``fused``, ``aligned``: see :func:`extract_targets`)."""
    check_extractor_support(backbone, None)
    kw = {"fused": fused, "aligned": aligned}
    if isinstance(backbone, ResNet):
        return dict(zip(backbone.res_layers, _resnet_stages(backbone, images, kw)))
    return dict(zip(backbone.layers, _mobilenet_v2_stages(backbone, images, kw)))


def extract_targets(
    backbone: nn.Module,
    neck: nn.Module | None,
    images: torch.Tensor,
    *,
    fused: bool = False,
    aligned: bool = True,
) -> tuple[torch.Tensor, ...]:
    """What ``neck(backbone(images))`` (or ``backbone(images)`` without a neck) returns, as the SR
    target extractor computes it on the 1.0x ``images``: the same maps and sizes, the relative
    receptive field of the 0.5x images.

    Args:
        fused: run the backbone's strided layers as the fused dilated convolution + max pool op
            (the same result in less memory; their norms must fold into an affine: frozen, or in
            eval mode).
        aligned: place the pooling windows where the backbone's units sit on the 0.5x image
            (``{2o - 1, 2o}``); False is the previous placement ``{2o, 2o + 1}``.
    """
    if neck is not None:
        _check_fpn(neck)
    stages = list(stage_targets(backbone, images, fused=fused, aligned=aligned).values())
    outs = tuple(stages[i] for i in backbone.out_indices)
    return outs if neck is None else _fpn(neck, outs, aligned)
