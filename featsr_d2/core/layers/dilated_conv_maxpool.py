"""Dilated convolution (stride 1) + per-channel affine + ReLU + max pooling, fused.

FeatSR's target extractor replaces every stride-2 convolution of the backbone by the same
convolution at stride 1 with dilation 2, followed by 2x2 max pooling (Noh et al. 2019, Fig. 4c).
:func:`dilated_conv_maxpool2d` computes

    y = act(conv2d(x, weight, bias, stride=1, padding, dilation, groups))
    max_pool2d(F.pad(y, (pool_offset, 0, pool_offset, 0), value=-inf), pool, pool,
               ceil_mode=ceil_mode)
    act(v) = relu?(v * scale[c] + shift[c])   (the affine only when scale and shift are given)

Pooled row ``o`` covers the conv rows ``[o * pool - pool_offset, o * pool - pool_offset + pool)``
that exist (columns alike), ``0 <= pool_offset < pool``; the output has
``floor((conv + pool_offset) / pool)`` rows (the ceiling with ``ceil_mode=True``, which keeps the
partial last windows). The target extractor pools 2x2 with ``pool_offset=1``, floor mode: windows
{2o-1, 2o} centre every target unit where the backbone's stride-2 unit on the 0.5x image is
(windows {2o, 2o+1}, offset 0, are half a cell off), and the size is ceil(conv / 2), the
backbone's.

The op never materializes the full-resolution conv output: the compiled kernels work on tiles of
output rows (im2col + GEMM + immediate max-reduction), so the op's extra memory is a tile instead
of the whole pre-pool map. The affine (e.g. a FrozenBatchNorm's scale and shift) is applied per
element before the max, so a negative scale, which turns the max into a min, is handled exactly.
Without a compiled ``featsr_d2._C`` the reference above runs instead.

On CPU without autograd (FeatSR's target extractor runs under ``no_grad``) the op runs
:func:`dilated_conv_maxpool2d_tiled` instead of the compiled kernel: ATen's own convolution
(oneDNN) on bands of output rows, each pooled before the next, so the speed is ATen's and the extra
memory one band's (a small map is one band: the unfused chain itself). Our im2col + GEMM kernel
lost to oneDNN by up to 30% on ResNet-50's layers and on MobileNetV2's late depthwise ones
(docs/RESULTS_OPS.md); it keeps the autograd case, whose backward needs its per-tile
recomputation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.utils import _pair

from featsr_d2.core.layers import compiled

__all__ = [
    "DilatedConvMaxPool2d",
    "dilated_conv_maxpool2d",
    "dilated_conv_maxpool2d_reference",
    "dilated_conv_maxpool2d_tiled",
    "is_frozen_batch_norm",
    "norm_to_affine",
]

# A band's pre-pool rows are about this fraction of the whole pre-pool map, so that the tiled
# layer's extra memory (the band and oneDNN's workspace, which grows with the band's pixels times
# C_in / groups x kH x kW) stays a small part of the unfused one's; but at least one pooled row,
# and for cheap convolutions (C_in / groups x kH x kW below 64, e.g. depthwise) enough bytes that
# the calls' overhead does not show: _MIN_BAND_BYTES x 64 / (C_in / groups x kH x kW).
_TILE_FRACTION = 16
_MIN_BAND_BYTES = 8 << 20


_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _check_pool_offset(pool: int, pool_offset: int) -> None:
    if not 0 <= pool_offset < pool:
        raise ValueError(f"pool_offset must be in [0, pool) = [0, {pool}), got {pool_offset}")


def dilated_conv_maxpool2d_reference(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    pool: int = 2,
    *,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
    relu: bool = False,
    groups: int = 1,
    ceil_mode: bool = False,
    pool_offset: int = 0,
) -> Tensor:
    """The unfused definition of :func:`dilated_conv_maxpool2d` (``torch.nn.functional``)."""
    _check_pool_offset(pool, pool_offset)
    y = F.conv2d(x, weight, bias, 1, _pair(padding), _pair(dilation), groups)
    if scale is not None:
        y = y * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
    if relu:
        y = F.relu(y)
    if pool_offset:  # -inf rows / columns at the top / left: they never win a window's max
        y = F.pad(y, (pool_offset, 0, pool_offset, 0), value=float("-inf"))
    return F.max_pool2d(y, pool, pool, ceil_mode=ceil_mode)


def dilated_conv_maxpool2d_tiled(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    pool: int = 2,
    *,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
    relu: bool = False,
    groups: int = 1,
    ceil_mode: bool = False,
    pool_offset: int = 0,
    band_rows: int | None = None,
) -> Tensor:
    """:func:`dilated_conv_maxpool2d_reference` computed on bands of ``band_rows`` pooled output
    rows (default: about 1/16 of the pre-pool map a band; see ``_TILE_FRACTION``), each
    convolved by ATen from the input rows it reads and pooled before the next: the
    full-resolution conv output never exists. Not differentiable (no autograd graph is kept);
    equal to the reference up to float rounding."""
    _check_pool_offset(pool, pool_offset)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    kh, kw = weight.shape[2:]
    n, _, h, w = x.shape
    conv_h = h + 2 * ph - dh * (kh - 1)
    conv_w = w + 2 * pw - dw * (kw - 1)
    out_h = _out_size(h, ph, dh, kh, pool, ceil_mode, pool_offset)
    out_w = _out_size(w, pw, dw, kw, pool, ceil_mode, pool_offset)
    if conv_h < 1 or conv_w < 1 or out_h < 1 or out_w < 1:
        raise RuntimeError(
            f"the pooled output would be empty: input {h}x{w}, padding {ph},{pw}, dilation "
            f"{dh},{dw}, kernel {kh}x{kw}, pool {pool}, pool_offset {pool_offset}"
        )
    if band_rows is None:
        row_bytes = n * weight.shape[0] * pool * conv_w * x.element_size()
        taps = weight.shape[1] * kh * kw
        min_bytes = _MIN_BAND_BYTES * min(1.0, 64 / taps)
        band_rows = max(1, out_h // _TILE_FRACTION, int(min_bytes // max(row_bytes, 1)))
    if band_rows >= out_h:  # one band: the unfused chain, its affine and ReLU in place
        return _pool_band(F.conv2d(x, weight, bias, 1, (ph, pw), (dh, dw), groups), scale, shift,
                          relu, pool, ceil_mode, pool_offset, pool_offset)  # fmt: skip
    out = x.new_empty((n, weight.shape[0], out_h, out_w))
    for p0 in range(0, out_h, band_rows):
        p1 = min(p0 + band_rows, out_h)
        # The band's conv rows: its windows' rows that exist (only the first window of the
        # first band starts above the map, by pool_offset rows).
        r0, r1 = max(p0 * pool - pool_offset, 0), min(p1 * pool - pool_offset, conv_h)
        top, bottom = r0 - ph, r1 - 1 - ph + dh * (kh - 1)  # the input rows they read
        pad_top, pad_bottom = max(-top, 0), max(bottom - (h - 1), 0)
        band = x[:, :, top + pad_top : bottom - pad_bottom + 1]
        # Rows outside the image: the convolution's own zero padding (symmetric, so the extra
        # rows it makes at the other end are cut off), not a padded copy of the band.
        pad = max(pad_top, pad_bottom)
        y = F.conv2d(band, weight, bias, 1, (pad, pw), (dh, dw), groups)
        start = pad - pad_top
        y = y[:, :, start : start + r1 - r0]
        top_offset = pool_offset if p0 == 0 else 0
        out[:, :, p0:p1] = _pool_band(
            y, scale, shift, relu, pool, ceil_mode, top_offset, pool_offset
        )
    return out


def _pool_band(
    y: Tensor, scale, shift, relu: bool, pool: int, ceil_mode: bool, top: int, left: int
) -> Tensor:
    """Affine and ReLU in place on a band of conv output, then its max pool with windows
    starting ``top`` rows above and ``left`` columns left of the band."""
    if scale is not None:
        y.mul_(scale.view(1, -1, 1, 1)).add_(shift.view(1, -1, 1, 1))
    if relu:
        y = F.relu_(y)
    return _max_pool2d_shifted(y, pool, ceil_mode, top, left)


def _max_pool2d_shifted(y: Tensor, pool: int, ceil_mode: bool, top: int, left: int) -> Tensor:
    """``F.max_pool2d(F.pad(y, (left, 0, top, 0), value=-inf), pool, pool, ceil_mode=ceil_mode)``
    (the forward of the reference's pooling); without a padded copy of ``y`` when max_pool2d's
    own (symmetric) -inf padding can shift its windows, i.e. when ``2 * top`` and ``2 * left``
    are at most ``pool``: the surplus windows that padding adds at the bottom / right are cut
    off. Only the gradient of a window holding nothing but -inf differs from the reference's."""
    if top == left == 0:
        return F.max_pool2d(y, pool, pool, ceil_mode=ceil_mode)
    if 2 * max(top, left) > pool:
        return F.max_pool2d(
            F.pad(y, (left, 0, top, 0), value=float("-inf")), pool, pool, ceil_mode=ceil_mode
        )
    out_h = _pooled_size(y.shape[2] + top, pool, ceil_mode)
    out_w = _pooled_size(y.shape[3] + left, pool, ceil_mode)
    out = F.max_pool2d(y, pool, pool, (top, left), ceil_mode=ceil_mode)
    return out[:, :, :out_h, :out_w].contiguous()


def dilated_conv_maxpool2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    pool: int = 2,
    *,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
    relu: bool = False,
    groups: int = 1,
    ceil_mode: bool = False,
    pool_offset: int = 0,
) -> Tensor:
    """Fused stride-1 (dilated) conv2d, optional per-channel affine and ReLU, pool x pool max pool.

    Args:
        x: Tensor[N, C_in, H, W].
        weight: Tensor[C_out, C_in / groups, kH, kW] (e.g. a backbone conv's own weight).
        bias: optional Tensor[C_out].
        padding, dilation: of the convolution (int or pair); its stride is 1.
        pool: kernel size and stride of the max pooling.
        scale, shift: optional Tensor[C_out] each (together): ``v * scale + shift`` after the
            conv, before ReLU and pooling. :func:`norm_to_affine` gets them from a frozen BN.
        relu: apply ReLU after the affine, before pooling.
        groups: convolution groups.
        ceil_mode: pool partial windows at the bottom / right edge too (``F.max_pool2d``'s
            ``ceil_mode``).
        pool_offset: shift of the pooling windows up and left, in conv rows / columns,
            ``0 <= pool_offset < pool``: pooled row o covers conv rows
            ``[o * pool - pool_offset, o * pool - pool_offset + pool)`` that exist (the conv
            output padded with ``pool_offset`` rows and columns of -inf at the top and left).
            The target extractor's pool 2, offset 1 pools {2o-1, 2o}.

    Returns:
        Tensor[N, C_out, (H_conv + pool_offset) // pool, (W_conv + pool_offset) // pool]
        (rounded up in ceil mode), equal (up to float rounding) to
        :func:`dilated_conv_maxpool2d_reference`. Differentiable with respect to x, weight,
        bias, scale and shift.
    """
    padding = _pair(padding)
    dilation = _pair(dilation)
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(
            f"x and weight must be 4-D, got {tuple(x.shape)} and {tuple(weight.shape)}"
        )
    if (scale is None) != (shift is None):
        raise ValueError("scale and shift must be given together")
    _check_pool_offset(pool, pool_offset)
    if not compiled.compiled_for(x.device) or x.dtype not in _DTYPES:
        return dilated_conv_maxpool2d_reference(
            x, weight, bias, padding, dilation, pool, scale=scale, shift=shift, relu=relu,
            groups=groups, ceil_mode=ceil_mode, pool_offset=pool_offset,
        )  # fmt: skip
    if x.device.type == "cpu" and not _needs_grad(x, weight, bias, scale, shift):
        return dilated_conv_maxpool2d_tiled(
            x, weight, bias, padding, dilation, pool, scale=scale, shift=shift, relu=relu,
            groups=groups, ceil_mode=ceil_mode, pool_offset=pool_offset,
        )  # fmt: skip
    return torch.ops.featsr_d2.dilated_conv_maxpool2d(
        x, weight, bias, scale, shift, list(padding), list(dilation), groups, pool, relu,
        ceil_mode, pool_offset,
    )  # fmt: skip


def is_frozen_batch_norm(norm: nn.Module) -> bool:
    """Whether ``norm`` is a BatchNorm with fixed statistics, recognized by what it holds rather
    than by its class, so that no framework is imported: Detectron2's and torchvision's
    ``FrozenBatchNorm2d`` (and any module holding tensors ``weight``, ``bias``, ``running_mean``,
    ``running_var`` and a number ``eps``, computing ``(v - running_mean) / sqrt(running_var + eps)
    * weight + bias``) that is not one of PyTorch's own norms (those are told by their mode), and
    whose affine is not trainable or that is in eval mode (e.g. mmcv's ``SyncBatchNorm``, whose
    training mode uses batch statistics)."""
    if isinstance(norm, _NormBase):
        return False
    held = [getattr(norm, name, None) for name in ("weight", "bias", "running_mean", "running_var")]
    eps = getattr(norm, "eps", None)
    if not all(isinstance(t, Tensor) for t in held) or not isinstance(eps, (int, float)):
        return False
    trainable = any(isinstance(t, nn.Parameter) for t in held)
    return not (trainable and norm.training)


def norm_to_affine(norm: nn.Module | None) -> tuple[Tensor, Tensor] | None:
    """Per-channel (scale, shift) such that ``norm(v) == v * scale + shift``, or None.

    Handles a frozen BatchNorm (:func:`is_frozen_batch_norm`: Detectron2's or torchvision's
    ``FrozenBatchNorm2d``, ...) and ``nn.BatchNorm2d`` in eval mode (running statistics); returns
    None for anything else (e.g. a BN in training mode, GroupNorm), whose output depends on the
    whole pre-pool map and so cannot be fused.
    """
    if norm is None:
        return None
    if is_frozen_batch_norm(norm):
        scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
        return scale, norm.bias - norm.running_mean * scale
    if isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.running_var is not None:
        scale = (norm.running_var + norm.eps).rsqrt()
        shift = -norm.running_mean * scale
        if norm.affine:
            shift = shift * norm.weight + norm.bias
            scale = scale * norm.weight
        return scale, shift
    return None


class DilatedConvMaxPool2d(nn.Module):
    """A backbone convolution re-run at stride 1 with dilation, [+ norm] [+ ReLU], + max pool.

    The module borrows ``conv`` (and ``norm``): it reads their current weights at every call
    and does not register them as submodules, so the backbone keeps owning (and saving, and
    moving) them. ``norm`` is fused as a per-channel affine when :func:`norm_to_affine`
    supports it; any other norm runs unfused (conv, norm, ReLU, pool).

    Args:
        conv: an ``nn.Conv2d`` (Detectron2's ``Conv2d`` included; its own norm and activation
            are not applied, pass ``norm=conv.norm`` to apply the norm).
        dilation: dilation of the re-run convolution.
        padding: its padding; default ``conv.padding * dilation`` (keeps "same" convs same).
        pool: max-pool kernel and stride (the original stride, 2 in a ResNet).
        norm: optional norm applied before the pool.
        relu: apply ReLU before the pool (equal to applying it after: ReLU is non-decreasing).
        ceil_mode: pool partial edge windows too (keeps the backbone's sizes for odd inputs).
        pool_offset: shift of the pooling windows up and left (see
            :func:`dilated_conv_maxpool2d`); pool 2 with offset 1 and floor mode pools {2o-1, 2o}
            and keeps the backbone's sizes.
    """

    def __init__(
        self,
        conv: nn.Conv2d,
        *,
        dilation: int | tuple[int, int] = 2,
        padding: int | tuple[int, int] | None = None,
        pool: int = 2,
        norm: nn.Module | None = None,
        relu: bool = False,
        ceil_mode: bool = False,
        pool_offset: int = 0,
    ):
        super().__init__()
        _check_pool_offset(pool, pool_offset)
        self._borrowed = (conv, norm)  # a tuple: not registered as submodules
        self.dilation = _pair(dilation)
        if padding is None:
            padding = tuple(p * d for p, d in zip(_pair(conv.padding), self.dilation))
        self.padding = _pair(padding)
        self.pool = pool
        self.relu = relu
        self.ceil_mode = ceil_mode
        self.pool_offset = pool_offset

    @property
    def conv(self) -> nn.Conv2d:
        return self._borrowed[0]

    @property
    def norm(self) -> nn.Module | None:
        return self._borrowed[1]

    def forward(self, x: Tensor) -> Tensor:
        conv, norm = self._borrowed
        affine = norm_to_affine(norm)
        if norm is not None and affine is None:
            y = F.conv2d(x, conv.weight, conv.bias, 1, self.padding, self.dilation, conv.groups)
            y = norm(y)
            if self.relu:
                y = F.relu(y)
            if self.pool_offset:
                y = F.pad(y, (self.pool_offset, 0, self.pool_offset, 0), value=float("-inf"))
            return F.max_pool2d(y, self.pool, self.pool, ceil_mode=self.ceil_mode)
        scale, shift = affine if affine is not None else (None, None)
        return dilated_conv_maxpool2d(
            x,
            conv.weight,
            conv.bias,
            self.padding,
            self.dilation,
            self.pool,
            scale=scale,
            shift=shift,
            relu=self.relu,
            groups=conv.groups,
            ceil_mode=self.ceil_mode,
            pool_offset=self.pool_offset,
        )

    def extra_repr(self) -> str:
        conv = self.conv
        norm = type(self.norm).__name__ if self.norm is not None else None
        return (
            f"{conv.in_channels}, {conv.out_channels}, kernel_size={tuple(conv.kernel_size)}, "
            f"dilation={self.dilation}, padding={self.padding}, groups={conv.groups}, "
            f"pool={self.pool}, pool_offset={self.pool_offset}, ceil_mode={self.ceil_mode}, "
            f"norm={norm}, relu={self.relu}"
        )


# --- autograd and fake (meta) kernels of the compiled op --------------------------------------


def _setup(ctx, inputs, output):
    # torch.library fills in the arguments left at their defaults (pool_offset).
    x, weight, bias, scale, shift, padding, dilation, groups, pool, relu, ceil, offset = inputs
    ctx.save_for_backward(x, weight, bias, scale, shift)
    ctx.args = (list(padding), list(dilation), groups, pool, relu, ceil)
    ctx.pool_offset = offset


def _backward(ctx, grad):
    x, weight, bias, scale, shift = ctx.saved_tensors
    needs = ctx.needs_input_grad
    mask = [
        needs[0],
        needs[1],
        bias is not None and needs[2],
        scale is not None and needs[3],
        shift is not None and needs[4],
    ]
    grads = torch.ops.featsr_d2._dilated_conv_maxpool2d_backward(
        grad, x, weight, bias, scale, shift, *ctx.args, mask, ctx.pool_offset
    )
    # None for padding, dilation, groups, pool, relu, ceil_mode, pool_offset.
    return (*(g if m else None for g, m in zip(grads, mask)), *(None,) * 7)


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _out_size(size, padding, dilation, kernel, pool, ceil_mode, pool_offset=0):
    conv = size + 2 * padding - dilation * (kernel - 1)
    return _pooled_size(conv + pool_offset, pool, ceil_mode)


def _pooled_size(span, pool, ceil_mode):
    """max_pool2d's output size (kernel and stride ``pool``, no padding) over ``span`` rows, the
    -inf rows that shift the windows included."""
    return (span + pool - 1) // pool if ceil_mode else span // pool


def _register_compiled_ops() -> None:
    lib = "featsr_d2"

    @torch.library.register_fake(f"{lib}::dilated_conv_maxpool2d")
    def _(x, weight, bias, scale, shift, padding, dilation, groups, pool, relu, ceil, offset=0):
        h = _out_size(x.size(2), padding[0], dilation[0], weight.size(2), pool, ceil, offset)
        w = _out_size(x.size(3), padding[1], dilation[1], weight.size(3), pool, ceil, offset)
        return x.new_empty((x.size(0), weight.size(0), h, w))

    @torch.library.register_fake(f"{lib}::_dilated_conv_maxpool2d_backward")
    def _(grad, x, weight, bias, scale, shift, padding, dilation, groups, pool, relu, ceil, mask,
          offset=0):  # fmt: skip
        def like(t, needed):
            return x.new_empty(t.shape) if needed and t is not None else x.new_empty((0,))

        return (
            like(x, mask[0]),
            like(weight, mask[1]),
            like(bias, mask[2]),
            like(scale, mask[3]),
            like(shift, mask[4]),
        )

    torch.library.register_autograd(
        f"{lib}::dilated_conv_maxpool2d", _backward, setup_context=_setup
    )


if compiled.has_compiled_ops():
    _register_compiled_ops()
