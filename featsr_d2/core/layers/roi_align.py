"""RoIAlign on featsr_d2's compiled kernels, and its multi-level / multi-map variants.

* :func:`roi_align` has the contract of ``torchvision.ops.roi_align`` (and equals it bit for bit
  on CPU for float32 / float64). The CPU kernel is multi-threaded (``at::parallel_for``).
* :func:`multilevel_roi_align` pools every RoI from its own FPN level in one call: no per-level
  masking, gathering and scattering as in Detectron2's ``ROIPooler``.
* :func:`multimap_roi_align` pools the same RoIs from several maps (each a single map or an FPN
  pyramid) in one call, e.g. FeatSR's base, sub and target features.

All three are differentiable with respect to the features (not the boxes) and trace under
``torch.compile``. Without a compiled ``featsr_d2._C`` (or for CUDA tensors with a CPU-only build)
they fall back to ``torchvision.ops.roi_align``, with the same results.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from featsr_d2.core.layers import compiled

__all__ = ["ROIAlign", "roi_align", "multilevel_roi_align", "multimap_roi_align"]

Boxes = Tensor | Sequence[Tensor]


def boxes_to_rois(boxes: Boxes, dtype: torch.dtype) -> Tensor:
    """Tensor[K, 5] (batch index, x1, y1, x2, y2) from torchvision's box formats, in ``dtype``.

    ``boxes`` is either that Tensor[K, 5] already or a list of Tensor[L_i, 4], one per image.
    """
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.size(1) != 5:
            raise ValueError(f"boxes must be a Tensor[K, 5], got shape {tuple(boxes.shape)}")
        return boxes.to(dtype)
    if not isinstance(boxes, (list, tuple)):
        raise TypeError(
            f"boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes)}"
        )
    for b in boxes:
        if not isinstance(b, Tensor) or b.dim() != 2 or b.size(1) != 4:
            raise ValueError("every element of the boxes list must be a Tensor[L, 4]")
    if len(boxes) == 0:
        return torch.zeros((0, 5), dtype=dtype)
    rois = [torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)]
    return torch.cat(rois, dim=0).to(dtype)


def _check_features(features: Sequence[Tensor], what: str) -> None:
    for f in features:
        if not isinstance(f, Tensor) or f.dim() != 4:
            raise ValueError(f"{what} must be 4-D tensors [N, C, H, W]")


def _deterministic_cuda(t: Tensor) -> bool:
    # The CUDA backward uses atomic adds; torchvision has a deterministic fallback for this case.
    return t.is_cuda and torch.are_deterministic_algorithms_enabled()


def _use_compiled(t: Tensor) -> bool:
    return (
        compiled.compiled_for(t.device)
        and not t.is_quantized
        and not _deterministic_cuda(t)
        and t.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16)
    )


def roi_align(
    input: Tensor,
    boxes: Boxes,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign with ``torchvision.ops.roi_align``'s contract.

    Args:
        input: Tensor[N, C, H, W].
        boxes: Tensor[K, 5] (batch index, x1, y1, x2, y2) or a list of N Tensor[L_i, 4].
            Cast to ``input``'s dtype.
        output_size: (height, width) of the pooled output, or one int for both.
        spatial_scale: factor from box coordinates to ``input`` coordinates (1 / stride).
        sampling_ratio: samples per bin along each axis; <= 0 means ceil(roi size / bins).
        aligned: shift boxes by -0.5 pixel (Detectron2's ROIAlignV2) when True.

    Returns:
        Tensor[K, C, output_size[0], output_size[1]].
    """
    oh, ow = _pair(output_size)
    if input.dim() != 4:
        raise ValueError(f"input must be 4-D [N, C, H, W], got shape {tuple(input.shape)}")
    rois = boxes_to_rois(boxes, input.dtype).to(input.device)
    if not _use_compiled(input):
        return torchvision.ops.roi_align(
            input, rois, (oh, ow), spatial_scale, sampling_ratio, aligned
        )
    return torch.ops.featsr_d2.roi_align(
        input, rois, float(spatial_scale), oh, ow, sampling_ratio, aligned
    )


def _reference_multilevel(
    features: Sequence[Tensor],
    rois: Tensor,
    levels: Tensor | None,
    output_size: tuple[int, int],
    spatial_scales: Sequence[float],
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """torchvision per level, then scatter (Detectron2's ROIPooler loop)."""
    if len(features) == 1:
        return torchvision.ops.roi_align(
            features[0], rois, output_size, spatial_scales[0], sampling_ratio, aligned
        )
    out = features[0].new_zeros((rois.size(0), features[0].size(1), *output_size))
    for level, (f, scale) in enumerate(zip(features, spatial_scales)):
        idx = torch.nonzero(levels == level, as_tuple=True)[0]
        pooled = torchvision.ops.roi_align(
            f, rois[idx], output_size, scale, sampling_ratio, aligned
        )
        out = out.index_put((idx,), pooled)
    return out


def multilevel_roi_align(
    features: Sequence[Tensor],
    boxes: Boxes,
    levels: Tensor,
    output_size: int | tuple[int, int],
    spatial_scales: Sequence[float],
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """Pools RoI k from ``features[levels[k]]`` (scaled by ``spatial_scales[levels[k]]``).

    Args:
        features: L tensors [N, C, H_l, W_l] (an FPN), same N, C and dtype.
        boxes: Tensor[K, 5] or a list of N Tensor[L_i, 4] (see :func:`roi_align`).
        levels: int Tensor[K] with values in [0, L), e.g. from Detectron2's
            ``assign_boxes_to_levels``.
        output_size, sampling_ratio, aligned: as in :func:`roi_align`.
        spatial_scales: L floats, 1 / stride of each level.

    Returns:
        Tensor[K, C, output_size[0], output_size[1]], equal to pooling every RoI with
        :func:`roi_align` from its own level.
    """
    return multimap_roi_align(
        [list(features)],
        boxes,
        output_size,
        [list(spatial_scales)],
        sampling_ratio,
        aligned,
        levels=levels,
    )[0]


def multimap_roi_align(
    maps: Sequence[Tensor | Sequence[Tensor]],
    boxes: Boxes,
    output_size: int | tuple[int, int],
    spatial_scales: Sequence[float | Sequence[float]],
    sampling_ratio: int = -1,
    aligned: bool = False,
    levels: Tensor | None = None,
) -> list[Tensor]:
    """Pools the same RoIs from several maps in one call.

    Args:
        maps: M entries, each a Tensor[N, C_m, H, W] (one level) or a list of L such tensors
            (a pyramid; every map then has L levels). Channels may differ between maps.
        boxes: Tensor[K, 5] or a list of N Tensor[L_i, 4], shared by all maps.
        output_size, sampling_ratio, aligned: as in :func:`roi_align`.
        spatial_scales: like ``maps``: per map a float, or a list of L floats.
        levels: int Tensor[K] in [0, L), the level of each RoI in every map; required when
            the maps have more than one level.

    Returns:
        M tensors [K, C_m, output_size[0], output_size[1]], one per map, each equal to
        :func:`roi_align` / :func:`multilevel_roi_align` on that map alone.

    The compiled kernels take at most 8 maps and 32 tensors (maps x levels) per call. A RoI whose
    batch index or level is out of range raises on CPU and pools zeros on CUDA (checking there
    would synchronize the device).
    """
    if len(maps) == 0:
        raise ValueError("maps must not be empty")
    oh, ow = _pair(output_size)
    if len(spatial_scales) != len(maps):
        raise ValueError(f"{len(maps)} maps but {len(spatial_scales)} spatial_scales entries")
    groups = [list(m) if isinstance(m, (list, tuple)) else [m] for m in maps]
    scales = [
        [float(s) for s in sc] if isinstance(sc, (list, tuple)) else [float(sc)]
        for sc in spatial_scales
    ]
    num_levels = len(groups[0])
    if any(len(g) != num_levels for g in groups) or any(len(s) != num_levels for s in scales):
        raise ValueError("every map (and its spatial_scales entry) must have the same levels")
    features = [f for g in groups for f in g]
    _check_features(features, "maps")
    first = features[0]
    rois = boxes_to_rois(boxes, first.dtype).to(first.device)
    if levels is None:
        if num_levels > 1:
            raise ValueError(f"levels is required for maps of {num_levels} levels")
    else:
        if levels.dim() != 1 or levels.size(0) != rois.size(0):
            raise ValueError(
                f"levels must have shape [K] = [{rois.size(0)}], got {tuple(levels.shape)}"
            )
        levels = levels.to(device=first.device, dtype=torch.int64)
        if num_levels == 1:
            levels = None  # every RoI is on level 0
    if not _use_compiled(first):
        return [
            _reference_multilevel(g, rois, levels, (oh, ow), s, sampling_ratio, aligned)
            for g, s in zip(groups, scales)
        ]
    flat_scales = [s for sc in scales for s in sc]
    return list(
        torch.ops.featsr_d2.multi_roi_align(
            features, rois, levels, flat_scales, len(groups), oh, ow, sampling_ratio, aligned
        )
    )


class ROIAlign(nn.Module):
    """:func:`roi_align` as a module (the interface of ``torchvision.ops.RoIAlign``)."""

    def __init__(
        self,
        output_size: int | tuple[int, int],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool = False,
    ):
        super().__init__()
        self.output_size = _pair(output_size)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: Tensor, rois: Boxes) -> Tensor:
        return roi_align(
            input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )


# --- autograd and fake (meta) kernels of the compiled ops -------------------------------------


def _roi_align_setup(ctx, inputs, output):
    input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.input_shape = input.shape
    ctx.args = (spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)


def _roi_align_backward(ctx, grad):
    (rois,) = ctx.saved_tensors
    spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = ctx.args
    n, c, h, w = ctx.input_shape
    grad_input = torch.ops.featsr_d2._roi_align_backward(
        grad,
        rois,
        spatial_scale,
        pooled_height,
        pooled_width,
        n,
        c,
        h,
        w,
        sampling_ratio,
        aligned,
    )
    return grad_input, None, None, None, None, None, None


def _multi_setup(ctx, inputs, output):
    features, rois, levels, spatial_scales, num_maps, ph, pw, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois, levels)
    ctx.set_materialize_grads(False)  # unused outputs come as None: their maps are skipped
    ctx.shapes = [f.shape for f in features]
    ctx.args = (list(spatial_scales), num_maps, ph, pw, sampling_ratio, aligned)


def _multi_backward(ctx, grads):
    rois, levels = ctx.saved_tensors
    spatial_scales, num_maps, ph, pw, sampling_ratio, aligned = ctx.args
    num_levels = len(spatial_scales) // num_maps
    needs = ctx.needs_input_grad[0]
    if isinstance(needs, bool):
        needs = [needs] * len(spatial_scales)
    # Only the maps whose features need a gradient and whose output was used.
    maps = [
        m
        for m in range(num_maps)
        if grads[m] is not None and any(needs[m * num_levels : (m + 1) * num_levels])
    ]
    result: list[Tensor | None] = [None] * len(spatial_scales)
    if maps:
        feats = [j for m in maps for j in range(m * num_levels, (m + 1) * num_levels)]
        grad_features = torch.ops.featsr_d2._multi_roi_align_backward(
            [grads[m] for m in maps],
            rois,
            levels,
            [spatial_scales[j] for j in feats],
            ctx.shapes[0][0],
            [ctx.shapes[j][2] for j in feats],
            [ctx.shapes[j][3] for j in feats],
            sampling_ratio,
            aligned,
        )
        for j, g in zip(feats, grad_features):
            result[j] = g if needs[j] else None
    return result, None, None, None, None, None, None, None, None


def _register_compiled_ops() -> None:
    lib = "featsr_d2"

    @torch.library.register_fake(f"{lib}::roi_align")
    def _(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
        torch._check(rois.dim() == 2 and rois.size(1) == 5, lambda: "rois must be [K, 5]")
        return input.new_empty((rois.size(0), input.size(1), pooled_height, pooled_width))

    @torch.library.register_fake(f"{lib}::_roi_align_backward")
    def _(grad, rois, spatial_scale, ph, pw, batch_size, channels, height, width, sr, aligned):
        return grad.new_empty((batch_size, channels, height, width))

    @torch.library.register_fake(f"{lib}::multi_roi_align")
    def _(features, rois, levels, spatial_scales, num_maps, ph, pw, sampling_ratio, aligned):
        num_levels = len(features) // num_maps
        return [
            features[m * num_levels].new_empty(
                (rois.size(0), features[m * num_levels].size(1), ph, pw)
            )
            for m in range(num_maps)
        ]

    @torch.library.register_fake(f"{lib}::_multi_roi_align_backward")
    def _(grads, rois, levels, spatial_scales, batch_size, heights, widths, sr, aligned):
        num_levels = len(spatial_scales) // len(grads)
        return [
            grads[j // num_levels].new_empty(
                (batch_size, grads[j // num_levels].size(1), heights[j], widths[j])
            )
            for j in range(len(spatial_scales))
        ]

    torch.library.register_autograd(
        f"{lib}::roi_align", _roi_align_backward, setup_context=_roi_align_setup
    )
    torch.library.register_autograd(
        f"{lib}::multi_roi_align", _multi_backward, setup_context=_multi_setup
    )


if compiled.has_compiled_ops():
    _register_compiled_ops()
