// Fused dilated conv + max pool, CUDA kernels (compiled only WITH_CUDA).
//
// The same tiling as on CPU: for each (image, tile of pooled rows) an im2col kernel unfolds the
// tile's input window, cuBLAS multiplies it by the weight (at::mm_out, one GEMM per group), and
// a pooling kernel activates and max-reduces every window into the output. The tile buffers are
// reused from tile to tile in stream order, so the pre-pool map never exists whole. The
// backward recomputes each tile, routes the gradient to the first maximum of each window (in
// place), then dW += G cols^T, dcols = W^T G (reusing the cols buffer), and a gather-style
// col2im adds dcols onto the input gradient: one writer per element, no atomics, deterministic.
// Everything runs on the current stream; nothing synchronizes the device.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/detail/KernelUtils.h>
#include <c10/cuda/CUDAGuard.h>
// The current stream (what at::cuda::getCurrentCUDAStream returns), without including
// ATen/cuda/CUDAContext.h, which needs cuBLAS / cuSPARSE headers that a minimal toolkit lacks.
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <limits>

#include "dilated_conv_maxpool.h"

namespace featsr_d2 {

namespace {

using conv_pool_detail::activate;
using conv_pool_detail::ConvPoolShape;
using conv_pool_detail::replaces_max;

constexpr int kThreads = 256;
// Largest tile (im2col columns + conv outputs): small enough to stay in L2 (50 MB on an H100)
// between the im2col kernel, the GEMM and the pooling kernel; also at most 1/8 of the pre-pool map.
constexpr int64_t kCudaTileBudgetBytes = int64_t(16) << 20;

int64_t cuda_tile_rows(const ConvPoolShape& s, int64_t element_size, int64_t min_rows) {
  const int64_t pre_pool_bytes = s.batch * s.out_channels * s.conv_h * s.conv_w * element_size;
  const int64_t budget =
      std::min<int64_t>(kCudaTileBudgetBytes, std::max<int64_t>(pre_pool_bytes / 8, 1));
  return conv_pool_detail::tile_rows(s, element_size, budget, min_rows);
}

int64_t num_blocks(int64_t total) {
  return std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t(1) << 30);
}

// cols [k_total, rows * tile_w] of conv rows [row0, row0 + rows) of one image x [C, H, W]; column
// cc is conv column cc - pool_offset (see ConvPoolShape).
template <typename T>
__global__ void im2col_tile_kernel(int64_t total, const T* x, ConvPoolShape s, int64_t row0,
                                   int64_t rows, T* cols) {
  const int64_t ncols = rows * s.tile_w;
  CUDA_KERNEL_LOOP_TYPE(index, total, int64_t) {
    const int64_t col = index % ncols;
    const int64_t kidx = index / ncols;
    const int64_t cc = col % s.tile_w;
    const int64_t rr = col / s.tile_w;
    const int64_t kj = kidx % s.kernel_w;
    const int64_t ki = (kidx / s.kernel_w) % s.kernel_h;
    const int64_t ci = kidx / (s.kernel_w * s.kernel_h);
    const int64_t y = row0 + rr + ki * s.dil_h - s.pad_h;
    const int64_t xw = cc + kj * s.dil_w - s.pad_w - s.pool_offset;
    cols[index] = (y >= 0 && y < s.height && xw >= 0 && xw < s.width)
                      ? x[(ci * s.height + y) * s.width + xw]
                      : T(0);
  }
}

template <typename T>
struct DeviceEpilogue {
  using acc_t = at::opmath_type<T>;
  const T* bias;
  const T* scale;
  const T* shift;
  bool relu;

  __device__ acc_t pre(acc_t conv, int64_t c) const {
    return bias != nullptr ? conv + static_cast<acc_t>(bias[c]) : conv;
  }
  __device__ acc_t act(acc_t v, int64_t c) const {
    const bool affine = scale != nullptr;
    return activate<acc_t>(v, affine, affine ? static_cast<acc_t>(scale[c]) : acc_t(0),
                           affine ? static_cast<acc_t>(shift[c]) : acc_t(0), relu);
  }
};

// One thread per pooled output of the tile: activate its window and keep the max. row0: the
// tile's first conv row (s.window_start of its first pooled row); windows reaching outside the
// conv output (before it with a pool_offset, past it in ceil mode) are partial.
template <typename T>
__global__ void pool_tile_kernel(int64_t total, const T* tile, ConvPoolShape s, int64_t row0,
                                 int64_t rows, DeviceEpilogue<T> e, T* out) {
  using acc_t = at::opmath_type<T>;
  const int64_t ncols = rows * s.pool * s.tile_w;
  const int64_t plane = s.pooled_h * s.pooled_w;
  CUDA_KERNEL_LOOP_TYPE(index, total, int64_t) {
    const int64_t q = index % s.pooled_w;
    const int64_t pr = (index / s.pooled_w) % rows;
    const int64_t c = index / (s.pooled_w * rows);
    const T* window = tile + c * ncols + pr * s.pool * s.tile_w + q * s.pool;
    acc_t best = -std::numeric_limits<acc_t>::infinity();
    const int64_t r = row0 + pr * s.pool;   // the window's first conv row
    const int64_t col = s.window_start(q);  // its first conv column
    const int64_t a_begin = r < 0 ? -r : 0;
    const int64_t b_begin = col < 0 ? -col : 0;
    const int64_t a_end = s.conv_h - r < s.pool ? s.conv_h - r : s.pool;
    const int64_t b_end = s.conv_w - col < s.pool ? s.conv_w - col : s.pool;
    for (int64_t a = a_begin; a < a_end; ++a) {
      for (int64_t b = b_begin; b < b_end; ++b) {
        const acc_t z = e.act(e.pre(static_cast<acc_t>(window[a * s.tile_w + b]), c), c);
        if (replaces_max(z, best)) {
          best = z;
        }
      }
    }
    out[c * plane + pr * s.pooled_w + q] = static_cast<T>(best);
  }
}

// Backward of pool_tile_kernel, in place (conv outputs in, their gradient out; 0 for every tile
// element outside the conv output). Also writes the per-output terms of the bias / shift / scale
// gradients: sums[0 | 1 | 2][c][p] = dv | dz | dz v.
template <typename T>
__global__ void pool_tile_backward_kernel(int64_t total, T* tile, ConvPoolShape s, int64_t row0,
                                          int64_t rows, DeviceEpilogue<T> e, const T* grad_out,
                                          at::opmath_type<T>* sums) {
  using acc_t = at::opmath_type<T>;
  const int64_t ncols = rows * s.pool * s.tile_w;
  const int64_t plane = s.pooled_h * s.pooled_w;
  CUDA_KERNEL_LOOP_TYPE(index, total, int64_t) {
    const int64_t q = index % s.pooled_w;
    const int64_t pr = (index / s.pooled_w) % rows;
    const int64_t c = index / (s.pooled_w * rows);
    T* window = tile + c * ncols + pr * s.pool * s.tile_w + q * s.pool;
    acc_t best = -std::numeric_limits<acc_t>::infinity();
    acc_t best_pre = 0;
    // max_pool2d starts from the window's first element, padding or not.
    int64_t best_a = 0;
    int64_t best_b = 0;
    const int64_t r = row0 + pr * s.pool;   // the window's first conv row
    const int64_t col = s.window_start(q);  // its first conv column
    const int64_t a_begin = r < 0 ? -r : 0;
    const int64_t b_begin = col < 0 ? -col : 0;
    const int64_t a_end = s.conv_h - r < s.pool ? s.conv_h - r : s.pool;
    const int64_t b_end = s.conv_w - col < s.pool ? s.conv_w - col : s.pool;
    for (int64_t a = a_begin; a < a_end; ++a) {
      for (int64_t b = b_begin; b < b_end; ++b) {
        const acc_t v = e.pre(static_cast<acc_t>(window[a * s.tile_w + b]), c);
        const acc_t z = e.act(v, c);
        if (replaces_max(z, best)) {
          best = z;
          best_pre = v;
          best_a = a;
          best_b = b;
        }
      }
    }
    const acc_t go = static_cast<acc_t>(grad_out[c * plane + pr * s.pooled_w + q]);
    // Every element -inf and the first one padding: the gradient goes to the padding.
    const bool to_padding = best_a < a_begin || best_b < b_begin;
    const acc_t dz = (to_padding || (e.relu && best <= acc_t(0))) ? acc_t(0) : go;
    const acc_t dv = e.scale != nullptr ? dz * static_cast<acc_t>(e.scale[c]) : dz;
    for (int64_t a = 0; a < s.pool; ++a) {
      for (int64_t b = 0; b < s.pool; ++b) {
        window[a * s.tile_w + b] = T(0);
      }
    }
    if (!to_padding) {
      window[best_a * s.tile_w + best_b] = static_cast<T>(dv);
    }
    sums[index] = dv;
    sums[total + index] = dz;
    sums[2 * total + index] = dz * best_pre;
  }
}

// dx[ci, y, x] += sum of the dcols entries that conv rows [row0, row0 + rows) took from it,
// for input rows [y_begin, y_begin + y_count): one thread per input element, no atomics. dcols
// column cc is conv column cc - pool_offset, as in im2col_tile_kernel.
template <typename T>
__global__ void col2im_tile_add_kernel(int64_t total, const T* dcols, ConvPoolShape s, int64_t row0,
                                       int64_t rows, int64_t y_begin, int64_t y_count, T* dx) {
  using acc_t = at::opmath_type<T>;
  const int64_t ncols = rows * s.tile_w;
  CUDA_KERNEL_LOOP_TYPE(index, total, int64_t) {
    const int64_t xw = index % s.width;
    const int64_t y = y_begin + (index / s.width) % y_count;
    const int64_t ci = index / (s.width * y_count);
    acc_t sum = 0;
    for (int64_t ki = 0; ki < s.kernel_h; ++ki) {
      const int64_t rr = y + s.pad_h - ki * s.dil_h - row0;
      if (rr < 0 || rr >= rows) {
        continue;
      }
      for (int64_t kj = 0; kj < s.kernel_w; ++kj) {
        const int64_t cc = xw + s.pad_w - kj * s.dil_w + s.pool_offset;
        if (cc < 0 || cc >= s.tile_w) {
          continue;
        }
        sum += static_cast<acc_t>(
            dcols[((ci * s.kernel_h + ki) * s.kernel_w + kj) * ncols + rr * s.tile_w + cc]);
      }
    }
    T* p = dx + (ci * s.height + y) * s.width + xw;
    *p = static_cast<T>(static_cast<acc_t>(*p) + sum);
  }
}

template <typename T>
DeviceEpilogue<T> make_epilogue(const at::Tensor& bias, const at::Tensor& scale,
                                const at::Tensor& shift, bool relu) {
  return DeviceEpilogue<T>{bias.defined() ? bias.const_data_ptr<T>() : nullptr,
                           scale.defined() ? scale.const_data_ptr<T>() : nullptr,
                           shift.defined() ? shift.const_data_ptr<T>() : nullptr, relu};
}

at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->contiguous() : at::Tensor();
}

void grouped_mm(const at::Tensor& weight, const at::Tensor& cols, at::Tensor& out) {
  for (int64_t g = 0; g < weight.size(0); ++g) {
    at::Tensor out_g = out.select(0, g);
    at::mm_out(out_g, weight.select(0, g), cols.select(0, g));
  }
}

}  // namespace

at::Tensor dilated_conv_maxpool2d_cuda(const at::Tensor& input, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias,
                                       const std::optional<at::Tensor>& scale,
                                       const std::optional<at::Tensor>& shift,
                                       at::IntArrayRef padding, at::IntArrayRef dilation,
                                       int64_t groups, int64_t pool, bool relu, bool ceil_mode,
                                       int64_t pool_offset) {
  const ConvPoolShape s =
      conv_pool_detail::check_arguments(input, weight, bias, scale, shift, padding, dilation,
                                        groups, pool, relu, ceil_mode, pool_offset);
  // check_arguments verified that every tensor is on the input's device.
  TORCH_CHECK(input.is_cuda(), "dilated_conv_maxpool2d_cuda expects CUDA tensors");
  const at::cuda::CUDAGuard device_guard(input.device());
  at::Tensor out = at::empty({s.batch, s.out_channels, s.pooled_h, s.pooled_w}, input.options());
  if (out.numel() == 0) {
    return out;
  }
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous().view({s.groups, s.out_group(), s.k_group()});
  const at::Tensor b = contiguous_or_undefined(bias);
  const at::Tensor sc = contiguous_or_undefined(scale);
  const at::Tensor sh = contiguous_or_undefined(shift);
  const int64_t rows_per_tile = cuda_tile_rows(s, x.element_size(), 1);
  const int64_t max_cols = rows_per_tile * s.pool * s.tile_w;
  at::Tensor cols_buf = at::empty({s.k_total * max_cols}, x.options());
  at::Tensor tile_buf = at::empty({s.out_channels * max_cols}, x.options());
  const int64_t image = s.in_channels * s.height * s.width;
  const int64_t out_image = s.out_channels * s.pooled_h * s.pooled_w;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "dilated_conv_maxpool2d_cuda", [&] {
        const DeviceEpilogue<scalar_t> e = make_epilogue<scalar_t>(b, sc, sh, relu);
        for (int64_t n = 0; n < s.batch; ++n) {
          for (int64_t r0 = 0; r0 < s.pooled_h; r0 += rows_per_tile) {
            const int64_t rows = std::min(rows_per_tile, s.pooled_h - r0);
            const int64_t row0 = s.window_start(r0);  // the tile's first conv row
            const int64_t ncols = rows * s.pool * s.tile_w;
            at::Tensor cols =
                cols_buf.narrow(0, 0, s.k_total * ncols).view({s.groups, s.k_group(), ncols});
            at::Tensor tile = tile_buf.narrow(0, 0, s.out_channels * ncols)
                                  .view({s.groups, s.out_group(), ncols});
            const int64_t n_cols = s.k_total * ncols;
            im2col_tile_kernel<scalar_t><<<num_blocks(n_cols), kThreads, 0, stream>>>(
                n_cols, x.const_data_ptr<scalar_t>() + n * image, s, row0, rows * s.pool,
                cols.mutable_data_ptr<scalar_t>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
            grouped_mm(w, cols, tile);
            const int64_t n_out = s.out_channels * rows * s.pooled_w;
            pool_tile_kernel<scalar_t><<<num_blocks(n_out), kThreads, 0, stream>>>(
                n_out, tile.const_data_ptr<scalar_t>(), s, row0, rows, e,
                out.mutable_data_ptr<scalar_t>() + n * out_image + r0 * s.pooled_w);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          }
        }
      });
  return out;
}

ConvPoolGrads dilated_conv_maxpool2d_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
    const std::optional<at::Tensor>& shift, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, int64_t pool, bool relu, bool ceil_mode, std::array<bool, 5> output_mask,
    int64_t pool_offset) {
  const ConvPoolShape s =
      conv_pool_detail::check_arguments(input, weight, bias, scale, shift, padding, dilation,
                                        groups, pool, relu, ceil_mode, pool_offset);
  // check_arguments verified that every tensor is on the input's device.
  TORCH_CHECK(input.is_cuda(), "dilated_conv_maxpool2d_cuda expects CUDA tensors");
  TORCH_CHECK(
      grad_output.sizes() == at::IntArrayRef({s.batch, s.out_channels, s.pooled_h, s.pooled_w}),
      "grad_output must have the output's shape [", s.batch, ", ", s.out_channels, ", ", s.pooled_h,
      ", ", s.pooled_w, "], got ", grad_output.sizes());
  TORCH_CHECK(
      grad_output.scalar_type() == input.scalar_type() && grad_output.device() == input.device(),
      "grad_output must have the input's dtype and device");
  const at::cuda::CUDAGuard device_guard(input.device());
  const at::ScalarType dtype = input.scalar_type();
  if (dtype == at::kHalf || dtype == at::kBFloat16) {
    // Reduced precision: compute in float32 (GEMM sums, dx and dW across tiles), round once.
    auto up = [](const std::optional<at::Tensor>& t) -> std::optional<at::Tensor> {
      return t.has_value() ? std::optional<at::Tensor>(t->to(at::kFloat)) : std::nullopt;
    };
    auto [gi, gw, gb, gsc, gsh] = dilated_conv_maxpool2d_backward_cuda(
        grad_output.to(at::kFloat), input.to(at::kFloat), weight.to(at::kFloat), up(bias),
        up(scale), up(shift), padding, dilation, groups, pool, relu, ceil_mode, output_mask,
        pool_offset);
    return {gi.to(dtype), gw.to(dtype), gb.to(dtype), gsc.to(dtype), gsh.to(dtype)};
  }
  const bool need_input = output_mask[0];
  const bool need_weight = output_mask[1];
  const bool need_bias = output_mask[2] && s.has_bias;
  const bool need_scale = output_mask[3] && s.has_affine;
  const bool need_shift = output_mask[4] && s.has_affine;
  const at::TensorOptions options = input.options();
  at::Tensor grad_input = need_input ? at::zeros(input.sizes(), options) : at::empty({0}, options);
  at::Tensor grad_weight =
      need_weight ? at::zeros(weight.sizes(), options) : at::empty({0}, options);
  // Per-channel sums of dv (bias), dz (shift), dz v (scale).
  at::Tensor sums_total = at::zeros({3, s.out_channels}, options);
  const bool any = need_input || need_weight || need_bias || need_scale || need_shift;
  if (s.batch > 0 && any) {
    const at::Tensor x = input.contiguous();
    const at::Tensor go = grad_output.contiguous();
    const at::Tensor w = weight.contiguous().view({s.groups, s.out_group(), s.k_group()});
    at::Tensor gw =
        need_weight ? grad_weight.view({s.groups, s.out_group(), s.k_group()}) : at::Tensor();
    const at::Tensor b = contiguous_or_undefined(bias);
    const at::Tensor sc = contiguous_or_undefined(scale);
    const at::Tensor sh = contiguous_or_undefined(shift);
    const int64_t rows_per_tile = cuda_tile_rows(s, x.element_size(), 1);
    const int64_t max_cols = rows_per_tile * s.pool * s.tile_w;
    at::Tensor cols_buf = at::empty({s.k_total * max_cols}, x.options());
    at::Tensor tile_buf = at::empty({s.out_channels * max_cols}, x.options());
    at::Tensor sums_buf = at::empty({3 * s.out_channels * rows_per_tile * s.pooled_w}, options);
    const int64_t image = s.in_channels * s.height * s.width;
    const int64_t out_image = s.out_channels * s.pooled_h * s.pooled_w;
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dilated_conv_maxpool2d_backward_cuda", [&] {
      const DeviceEpilogue<scalar_t> e = make_epilogue<scalar_t>(b, sc, sh, relu);
      for (int64_t n = 0; n < s.batch; ++n) {
        for (int64_t r0 = 0; r0 < s.pooled_h; r0 += rows_per_tile) {
          const int64_t rows = std::min(rows_per_tile, s.pooled_h - r0);
          const int64_t row0 = s.window_start(r0);  // the tile's first conv row
          const int64_t ncols = rows * s.pool * s.tile_w;
          at::Tensor cols =
              cols_buf.narrow(0, 0, s.k_total * ncols).view({s.groups, s.k_group(), ncols});
          at::Tensor tile =
              tile_buf.narrow(0, 0, s.out_channels * ncols).view({s.groups, s.out_group(), ncols});
          const int64_t n_cols = s.k_total * ncols;
          im2col_tile_kernel<scalar_t><<<num_blocks(n_cols), kThreads, 0, stream>>>(
              n_cols, x.const_data_ptr<scalar_t>() + n * image, s, row0, rows * s.pool,
              cols.mutable_data_ptr<scalar_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          grouped_mm(w, cols, tile);
          const int64_t n_out = s.out_channels * rows * s.pooled_w;
          at::Tensor sums = sums_buf.narrow(0, 0, 3 * n_out);
          pool_tile_backward_kernel<scalar_t><<<num_blocks(n_out), kThreads, 0, stream>>>(
              n_out, tile.mutable_data_ptr<scalar_t>(), s, row0, rows, e,
              go.const_data_ptr<scalar_t>() + n * out_image + r0 * s.pooled_w,
              sums.mutable_data_ptr<scalar_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
          sums_total.add_(sums.view({3, s.out_channels, rows * s.pooled_w}).sum(2));
          for (int64_t g = 0; g < s.groups; ++g) {
            if (need_weight) {
              gw.select(0, g).addmm_(tile.select(0, g), cols.select(0, g).t());
            }
            if (need_input) {  // dcols overwrite cols, which dW no longer needs
              at::Tensor dcols_g = cols.select(0, g);
              at::mm_out(dcols_g, w.select(0, g).t(), tile.select(0, g));
            }
          }
          if (need_input) {
            const int64_t y_begin = std::max<int64_t>(row0 - s.pad_h, 0);
            const int64_t y_end = std::min<int64_t>(
                row0 + rows * s.pool - s.pad_h + s.dil_h * (s.kernel_h - 1), s.height);
            if (y_end > y_begin) {
              const int64_t n_in = s.in_channels * (y_end - y_begin) * s.width;
              col2im_tile_add_kernel<scalar_t><<<num_blocks(n_in), kThreads, 0, stream>>>(
                  n_in, cols.const_data_ptr<scalar_t>(), s, row0, rows * s.pool, y_begin,
                  y_end - y_begin, grad_input.mutable_data_ptr<scalar_t>() + n * image);
              C10_CUDA_KERNEL_LAUNCH_CHECK();
            }
          }
        }
      }
    });
  }
  const at::Tensor empty = at::empty({0}, options);
  return {grad_input, grad_weight, need_bias ? sums_total[0].clone() : empty,
          need_scale ? sums_total[2].clone() : empty, need_shift ? sums_total[1].clone() : empty};
}

}  // namespace featsr_d2
