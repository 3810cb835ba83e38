// Argument checks and tiling of the fused dilated conv + max pool, shared by CPU and CUDA.
#include "dilated_conv_maxpool.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace featsr_d2 {
namespace conv_pool_detail {

namespace {

void check_vector(const std::optional<at::Tensor>& t, const char* name, const at::Tensor& input,
                  int64_t out_channels) {
  if (!t.has_value()) {
    return;
  }
  TORCH_CHECK(t->dim() == 1 && t->size(0) == out_channels, name, " must have shape [", out_channels,
              "], got ", t->sizes());
  TORCH_CHECK(t->scalar_type() == input.scalar_type(), name, " must have the input's dtype ",
              input.scalar_type(), ", got ", t->scalar_type());
  TORCH_CHECK(t->device() == input.device(), name, " must be on the input's device ",
              input.device(), ", got ", t->device());
}

}  // namespace

ConvPoolShape check_arguments(const at::Tensor& input, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias,
                              const std::optional<at::Tensor>& scale,
                              const std::optional<at::Tensor>& shift, at::IntArrayRef padding,
                              at::IntArrayRef dilation, int64_t groups, int64_t pool, bool relu,
                              bool ceil_mode, int64_t pool_offset) {
  TORCH_CHECK(input.dim() == 4, "input must be 4-D [N, C, H, W], got ", input.sizes());
  TORCH_CHECK(weight.dim() == 4, "weight must be 4-D [C_out, C_in / groups, kH, kW], got ",
              weight.sizes());
  TORCH_CHECK(weight.scalar_type() == input.scalar_type(), "weight must have the input's dtype ",
              input.scalar_type(), ", got ", weight.scalar_type());
  TORCH_CHECK(weight.device() == input.device(), "weight must be on the input's device ",
              input.device(), ", got ", weight.device());
  TORCH_CHECK(padding.size() == 2 && dilation.size() == 2,
              "padding and dilation must have two entries");
  TORCH_CHECK(padding[0] >= 0 && padding[1] >= 0, "padding must be non-negative, got ", padding);
  TORCH_CHECK(dilation[0] >= 1 && dilation[1] >= 1, "dilation must be positive, got ", dilation);
  TORCH_CHECK(groups >= 1, "groups must be positive, got ", groups);
  TORCH_CHECK(pool >= 1, "pool must be positive, got ", pool);
  TORCH_CHECK(pool_offset >= 0 && pool_offset < pool, "pool_offset must be in [0, pool) = [0, ",
              pool, "), got ", pool_offset);
  TORCH_CHECK(scale.has_value() == shift.has_value(),
              "scale and shift must be given together (the per-channel affine)");
  ConvPoolShape s;
  s.batch = input.size(0);
  s.in_channels = input.size(1);
  s.height = input.size(2);
  s.width = input.size(3);
  s.out_channels = weight.size(0);
  s.kernel_h = weight.size(2);
  s.kernel_w = weight.size(3);
  s.pad_h = padding[0];
  s.pad_w = padding[1];
  s.dil_h = dilation[0];
  s.dil_w = dilation[1];
  s.groups = groups;
  s.pool = pool;
  s.pool_offset = pool_offset;
  s.has_bias = bias.has_value();
  s.has_affine = scale.has_value();
  s.relu = relu;
  s.ceil_mode = ceil_mode;
  TORCH_CHECK(s.in_channels % groups == 0 && s.out_channels % groups == 0,
              "channels must be divisible by groups (", groups, "), got ", s.in_channels, " and ",
              s.out_channels);
  TORCH_CHECK(weight.size(1) * groups == s.in_channels, "weight has ", weight.size(1),
              " input channels per group, expected ", s.in_channels / groups);
  TORCH_CHECK(s.kernel_h >= 1 && s.kernel_w >= 1, "kernel size must be positive");
  check_vector(bias, "bias", input, s.out_channels);
  check_vector(scale, "scale", input, s.out_channels);
  check_vector(shift, "shift", input, s.out_channels);
  const int64_t conv_h = s.height + 2 * s.pad_h - s.dil_h * (s.kernel_h - 1);
  const int64_t conv_w = s.width + 2 * s.pad_w - s.dil_w * (s.kernel_w - 1);
  TORCH_CHECK(conv_h >= 1 && conv_w >= 1, "the convolution output would be empty: input ", s.height,
              "x", s.width, ", kernel ", s.kernel_h, "x", s.kernel_w, ", padding ", padding,
              ", dilation ", dilation);
  s.conv_h = conv_h;
  s.conv_w = conv_w;
  // The map padded by pool_offset rows / columns of -inf at the top / left: every ceil-mode window
  // starts inside it (max_pool2d's padding is 0 there), and every window holds at least one conv
  // output, since pool_offset < pool.
  const int64_t span_h = conv_h + pool_offset;
  const int64_t span_w = conv_w + pool_offset;
  s.pooled_h = ceil_mode ? (span_h + pool - 1) / pool : span_h / pool;
  s.pooled_w = ceil_mode ? (span_w + pool - 1) / pool : span_w / pool;
  TORCH_CHECK(s.pooled_h >= 1 && s.pooled_w >= 1, "the pooled output would be empty: conv output ",
              conv_h, "x", conv_w, " with pool_offset ", pool_offset, " is smaller than the pool (",
              pool, ")");
  s.tile_w = s.pooled_w * pool;
  s.k_total = s.in_channels * s.kernel_h * s.kernel_w;
  return s;
}

int64_t tile_rows(const ConvPoolShape& s, int64_t element_size, int64_t budget_bytes,
                  int64_t min_rows) {
  const int64_t bytes_per_row = (s.k_total + s.out_channels) * s.pool * s.tile_w * element_size;
  const int64_t rows = bytes_per_row > 0 ? budget_bytes / bytes_per_row : s.pooled_h;
  return std::max<int64_t>(std::min<int64_t>(std::max(rows, min_rows), s.pooled_h), 1);
}

}  // namespace conv_pool_detail
}  // namespace featsr_d2
