"""The SR target extractor's version of a backbone's layers (Noh et al., ICCV 2019, section 4.1):
what the extractor runs, with the backbone's own weights (it has no parameters of its own), on the
1.0x image so that its features have the relative receptive field that the backbone's features
have on the 0.5x image:

- every convolution with a filter larger than 1 runs with twice its dilation (and twice its
  padding, so sizes are kept): :func:`atrous_conv`;
- a strided convolution runs at stride 1 and is followed by max pooling with a window and stride
  equal to the stride (Figure 4(c)): :func:`atrous_conv`, :func:`strided_max_pool`;
- a pooling layer runs with a doubled filter at its own stride: :func:`atrous_max_pool`.

A walker over a backbone applies them layer by layer (Detectron2's ResNet and FPN, MobileNetV2:
:mod:`featsr_d2.modeling.backbone.target_extractor`); the maps come out with the same names,
channels and sizes as the backbone's on the 1.0x image.

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

Where a convolution carries a normalization the pooling follows the normalization: BN is part of
the convolution layer, and max pooling does not commute with a negative BN scale. Activations come
after the pooling, which is equivalent because ReLU and ReLU6 are non-decreasing.
"""

import torch
import torch.nn.functional as F
from torch import nn

from featsr_d2.core.layers.dilated_conv_maxpool import dilated_conv_maxpool2d, norm_to_affine

__all__ = ["atrous_conv", "atrous_max_pool", "strided_max_pool"]


def atrous_conv(
    conv: nn.Conv2d,
    x: torch.Tensor,
    *,
    norm: nn.Module | None = None,
    activation: nn.Module | None = None,
    fused: bool = False,
    aligned: bool = True,
) -> torch.Tensor:
    """Apply ``conv`` with its normalization and activation as the target extractor does:
    dilation and padding doubled when the filter is larger than 1, stride 1 followed by max
    pooling when the layer is strided (:func:`strided_max_pool`; ``aligned`` places its windows),
    the pooling after the norm and before the activation.

    ``norm`` and ``activation`` default to those ``conv`` carries as attributes ``norm`` and
    ``activation`` (Detectron2's ``Conv2d(norm=..., activation=...)``; none for a plain
    ``nn.Conv2d``); a backbone whose norm is a separate layer (torchvision's, mmdet's ResNet)
    passes it, and applies a ReLU after the call itself.

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
    norm = getattr(conv, "norm", None) if norm is None else norm
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
    activation = getattr(conv, "activation", None) if activation is None else activation
    if activation is not None:
        y = activation(y)
    return y


def _pool_offset(stride: int) -> int:
    """Cells of -inf padding before the first window of an aligned strided layer's pooling."""
    if stride != 2:
        raise ValueError(
            f"the aligned SR target extractor knows stride-2 layers, not stride {stride}: set "
            "aligned=False (MODEL.FEATSR.EXTRACTOR_ALIGNED False) for this backbone"
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
            f"with padding {padding}: set aligned=False (MODEL.FEATSR.EXTRACTOR_ALIGNED False) for "
            "this backbone"
        )
    out = F.max_pool2d(x, 2 * kernel_size, stride, pad)
    h, w = ((size + 2 * padding - kernel_size) // stride + 1 for size in x.shape[-2:])
    return out[..., :h, :w]
