// Dilated convolution (stride 1) fused with an optional per-channel affine, an optional ReLU and
// a pool x pool max pooling (stride pool, floor or ceil mode) whose windows may be shifted up-left:
//
//   out = max_pool2d(pad(act(conv2d(x, weight, bias, stride=1, padding, dilation, groups)),
//                        top=pool_offset, left=pool_offset, value=-inf),
//                    pool, stride=pool, ceil_mode)
//   act(v) = relu?(v * scale[c] + shift[c])      (affine only when scale and shift are given)
//
// Pooled row o covers conv rows [o * pool - pool_offset, o * pool - pool_offset + pool) that
// exist (the same for columns), 0 <= pool_offset < pool; there are floor((conv + pool_offset) /
// pool) of them, or the ceiling in ceil mode. The first and (in ceil mode) the last window may be
// partial; a window's max is over the conv outputs that exist. FeatSR's target extractor uses
// pool 2, pool_offset 1: windows {2o - 1, 2o} keep every target unit centred where the backbone's
// stride-2 unit on the 0.5x image is (windows {2o, 2o + 1} are half a cell off).
//
// The affine is applied per element before the max, so negative scales (which turn a max into
// a min) are exact. The full-resolution convolution output is never materialized: the kernels
// walk over tiles of pooled output rows; for each tile they unfold the input (im2col), multiply
// by the weight (one GEMM per group), and reduce every pool x pool window right away. Peak extra
// memory is one tile, a fixed budget, instead of the whole pre-pool map. Tiles start on a window
// (ConvPoolShape::window_start), so with a pool_offset the first tile's first rows and every
// tile's first columns lie above / left of the map: they are computed (from the zero padding) but
// never pooled, and get no gradient.
//
// The backward recomputes each tile (as activation checkpointing does) and routes the gradient
// through the first maximum of each window, like max_pool2d (a window whose elements are all -inf
// routes it to its first element, which is dropped when that element is the -inf padding).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>

#include <array>
#include <cmath>
#include <optional>
#include <tuple>

namespace featsr_d2 {

using ConvPoolGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

at::Tensor dilated_conv_maxpool2d_cpu(const at::Tensor& input, const at::Tensor& weight,
                                      const std::optional<at::Tensor>& bias,
                                      const std::optional<at::Tensor>& scale,
                                      const std::optional<at::Tensor>& shift,
                                      at::IntArrayRef padding, at::IntArrayRef dilation,
                                      int64_t groups, int64_t pool, bool relu, bool ceil_mode,
                                      int64_t pool_offset);

// Gradients (input, weight, bias, scale, shift); those not asked for by output_mask or whose
// argument is absent come back as empty tensors of shape [0].
ConvPoolGrads dilated_conv_maxpool2d_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
    const std::optional<at::Tensor>& shift, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, int64_t pool, bool relu, bool ceil_mode, std::array<bool, 5> output_mask,
    int64_t pool_offset);

#ifdef WITH_CUDA
at::Tensor dilated_conv_maxpool2d_cuda(const at::Tensor& input, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias,
                                       const std::optional<at::Tensor>& scale,
                                       const std::optional<at::Tensor>& shift,
                                       at::IntArrayRef padding, at::IntArrayRef dilation,
                                       int64_t groups, int64_t pool, bool relu, bool ceil_mode,
                                       int64_t pool_offset);

ConvPoolGrads dilated_conv_maxpool2d_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
    const std::optional<at::Tensor>& shift, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, int64_t pool, bool relu, bool ceil_mode, std::array<bool, 5> output_mask,
    int64_t pool_offset);
#endif

namespace conv_pool_detail {

// Shape of one call, validated on the host (shared by CPU and CUDA).
struct ConvPoolShape {
  int64_t batch = 0;
  int64_t in_channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t out_channels = 0;
  int64_t kernel_h = 0;
  int64_t kernel_w = 0;
  int64_t pad_h = 0;
  int64_t pad_w = 0;
  int64_t dil_h = 1;
  int64_t dil_w = 1;
  int64_t groups = 1;
  int64_t pool = 2;
  int64_t pool_offset = 0;  // window o covers conv rows / columns [o * pool - pool_offset, + pool)
  int64_t conv_h = 0;       // rows of the convolution output
  int64_t conv_w = 0;       // its columns
  int64_t pooled_h = 0;     // output rows: floor (or ceil) of (conv_h + pool_offset) / pool
  int64_t pooled_w = 0;     // output columns
  int64_t tile_w = 0;       // conv columns computed per row: pooled_w * pool, from -pool_offset
  int64_t k_total = 0;      // im2col rows: in_channels * kernel_h * kernel_w
  bool has_bias = false;
  bool has_affine = false;
  bool relu = false;
  bool ceil_mode = false;

  int64_t k_group() const { return k_total / groups; }
  int64_t out_group() const { return out_channels / groups; }
  // The conv row (column) where the window of pooled row (column) p starts; negative for p = 0
  // when pool_offset > 0. A tile's column cc is conv column cc - pool_offset.
  C10_HOST_DEVICE int64_t window_start(int64_t p) const { return p * pool - pool_offset; }
};

// Checks the arguments (shapes, dtypes, devices) and returns the shape of the call.
ConvPoolShape check_arguments(const at::Tensor& input, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias,
                              const std::optional<at::Tensor>& scale,
                              const std::optional<at::Tensor>& shift, at::IntArrayRef padding,
                              at::IntArrayRef dilation, int64_t groups, int64_t pool, bool relu,
                              bool ceil_mode, int64_t pool_offset);

// Pooled rows per tile such that the tile's buffers (im2col columns and conv outputs, both
// `pool * rows x tile_w` wide) take at most budget_bytes, and at least min_rows.
int64_t tile_rows(const ConvPoolShape& s, int64_t element_size, int64_t budget_bytes,
                  int64_t min_rows);

// The activation of one conv output v (bias included): affine, then ReLU (NaN propagates).
template <typename T>
C10_HOST_DEVICE inline T activate(T v, bool has_affine, T scale, T shift, bool relu) {
  if (has_affine) {
    v = v * scale + shift;
  }
  if (relu && v < T(0)) {
    v = T(0);
  }
  return v;
}

// max_pool2d's choice: the first maximum in scan order, a NaN wins (the last NaN, as in ATen).
template <typename T>
C10_HOST_DEVICE inline bool replaces_max(T value, T current) {
  return value > current || value != value;
}

}  // namespace conv_pool_detail
}  // namespace featsr_d2
