// Fused dilated conv + max pool, CPU kernels.
//
// Forward: work items are (image, tile of pooled output rows), split over threads by one
// at::parallel_for. Each thread unfolds a tile's input window (im2col), multiplies it by the
// weight (at::mm_out: the BLAS runs single-threaded inside the parallel region) and activates and
// max-reduces every pool x pool window into the output at once. So the pre-pool map never exists
// whole (one tile per thread does), and there is a single fork/join per call: a threaded GEMM per
// tile from a serial loop synchronizes inside every GEMM instead, which on a loaded machine ran
// several times slower.
//
// Backward: tiles run one after the other and each is recomputed; the gradient goes to the first
// maximum of each window (in place over the conv tile, channels in parallel, each channel's bias /
// scale / shift sums owned by one thread), then dW += G cols^T and dcols = W^T G (ATen GEMMs),
// and col2im adds dcols onto the input gradient (input channels in parallel). Tiles run in order,
// so there are no races and the per-channel sums are deterministic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "dilated_conv_maxpool.h"

namespace featsr_d2 {

namespace {

using conv_pool_detail::activate;
using conv_pool_detail::ConvPoolShape;
using conv_pool_detail::replaces_max;

// Per-thread tile buffers of the forward (im2col columns + conv outputs): a few MB, so that one
// pooled row of a ResNet layer at 800x1333 fits (the BLAS blocks for the caches itself).
constexpr int64_t kForwardTileBudgetBytes = int64_t(4) << 20;
// Tile buffers of the backward (one tile at a time, all threads).
constexpr int64_t kBackwardTileBudgetBytes = int64_t(2) << 20;

int64_t cpu_tile_rows(const ConvPoolShape& s, int64_t element_size, int64_t budget_bytes) {
  // Also at most 1/8 of the pre-pool map that the unfused path would allocate (over all
  // threads), so that the fused op stays lean for small inputs too.
  const int64_t pre_pool_bytes = s.batch * s.out_channels * s.conv_h * s.conv_w * element_size;
  const int64_t budget = std::min<int64_t>(
      budget_bytes, std::max<int64_t>(pre_pool_bytes / 8 / at::get_num_threads(), 1));
  return conv_pool_detail::tile_rows(s, element_size, budget, 1);
}

// A forward tile: conv rows [row0, row0 + rows) x conv columns [col0, col0 + width), both starting
// on a window (negative for the first window when pool_offset > 0).
struct Tile {
  int64_t row0;
  int64_t rows;
  int64_t col0;
  int64_t width;
  int64_t ncols() const { return rows * width; }  // GEMM columns: rr * width + cc
};

// Unfolds the input rows that conv rows [row0, row0 + rows) read, for one image x [C, H, W], into
// cols [k_total, rows * tile_w] (zeros where the window hits the padding); im2col rows
// (ci, ki, kj) in [k0, k1) only. Column cc is conv column cc - pool_offset (see ConvPoolShape).
template <typename T>
void im2col_tile(const T* x, const ConvPoolShape& s, int64_t row0, int64_t rows, T* cols,
                 int64_t k0, int64_t k1) {
  const int64_t ncols = rows * s.tile_w;
  for (int64_t kidx = k0; kidx < k1; ++kidx) {
    const int64_t kj = kidx % s.kernel_w;
    const int64_t ki = (kidx / s.kernel_w) % s.kernel_h;
    const int64_t ci = kidx / (s.kernel_w * s.kernel_h);
    T* dst = cols + kidx * ncols;
    const int64_t x_off = kj * s.dil_w - s.pad_w - s.pool_offset;
    const int64_t cc_begin = std::clamp<int64_t>(-x_off, 0, s.tile_w);
    const int64_t cc_end = std::clamp<int64_t>(s.width - x_off, cc_begin, s.tile_w);
    for (int64_t rr = 0; rr < rows; ++rr, dst += s.tile_w) {
      const int64_t y = row0 + rr + ki * s.dil_h - s.pad_h;
      if (y < 0 || y >= s.height) {
        std::fill(dst, dst + s.tile_w, T(0));
        continue;
      }
      const T* src = x + (ci * s.height + y) * s.width + x_off;
      std::fill(dst, dst + cc_begin, T(0));
      std::copy(src + cc_begin, src + cc_end, dst + cc_begin);
      std::fill(dst + cc_end, dst + s.tile_w, T(0));
    }
  }
}

// Adds the unfolded gradient dcols [k_total, rows * tile_w] back onto one image dx [C, H, W],
// for input channels [c0, c1) only (each channel's plane has a single writer).
template <typename T>
void col2im_tile_add(const T* dcols, const ConvPoolShape& s, int64_t row0, int64_t rows, T* dx,
                     int64_t c0, int64_t c1) {
  const int64_t ncols = rows * s.tile_w;
  for (int64_t ci = c0; ci < c1; ++ci) {
    for (int64_t ki = 0; ki < s.kernel_h; ++ki) {
      for (int64_t kj = 0; kj < s.kernel_w; ++kj) {
        const T* src = dcols + ((ci * s.kernel_h + ki) * s.kernel_w + kj) * ncols;
        const int64_t x_off = kj * s.dil_w - s.pad_w - s.pool_offset;
        const int64_t cc_begin = std::clamp<int64_t>(-x_off, 0, s.tile_w);
        const int64_t cc_end = std::clamp<int64_t>(s.width - x_off, cc_begin, s.tile_w);
        for (int64_t rr = 0; rr < rows; ++rr, src += s.tile_w) {
          const int64_t y = row0 + rr + ki * s.dil_h - s.pad_h;
          if (y < 0 || y >= s.height) {
            continue;
          }
          T* dst = dx + (ci * s.height + y) * s.width + x_off;
          for (int64_t cc = cc_begin; cc < cc_end; ++cc) {
            dst[cc] += src[cc];
          }
        }
      }
    }
  }
}

// Per-channel parameters of the epilogue, in the accumulation type.
template <typename T>
struct Epilogue {
  using acc_t = at::opmath_type<T>;
  const T* bias;
  const T* scale;
  const T* shift;
  bool relu;

  acc_t pre(acc_t conv, int64_t c) const {  // conv output with bias
    return bias != nullptr ? conv + static_cast<acc_t>(bias[c]) : conv;
  }
  acc_t act(acc_t v, int64_t c) const {
    const bool affine = scale != nullptr;
    return activate<acc_t>(v, affine, affine ? static_cast<acc_t>(scale[c]) : acc_t(0),
                           affine ? static_cast<acc_t>(shift[c]) : acc_t(0), relu);
  }
};

// Where channel c's conv outputs start in a tile laid out [groups][mp][ldc] (mp >= out_group
// rows per group, ldc >= columns).
inline int64_t channel_offset(const ConvPoolShape& s, int64_t c, int64_t mp, int64_t ldc) {
  return ((c / s.out_group()) * mp + c % s.out_group()) * ldc;
}

// Activates and max-pools the conv outputs of a forward tile ([groups][mp][ldc], column
// rr * t.width + cc) into the output of one image (`out`: channel 0, row 0); channels [c0, c1).
// The tile's rows and columns start on window boundaries; windows reaching outside the conv
// output (before it with a pool_offset, past it in ceil mode) take the max of their existing
// elements.
template <typename T>
void pool_forward_tile(const T* tile, int64_t mp, int64_t ldc, const ConvPoolShape& s,
                       const Tile& t, const Epilogue<T>& e, T* out, int64_t c0, int64_t c1) {
  using acc_t = at::opmath_type<T>;
  const int64_t plane = s.pooled_h * s.pooled_w;
  const int64_t pr0 = (t.row0 + s.pool_offset) / s.pool;
  const int64_t q0 = (t.col0 + s.pool_offset) / s.pool;
  const int64_t prows = (t.rows + s.pool - 1) / s.pool;
  const int64_t pcols = (t.width + s.pool - 1) / s.pool;
  for (int64_t c = c0; c < c1; ++c) {
    const T* tc = tile + channel_offset(s, c, mp, ldc);
    T* o = out + c * plane + pr0 * s.pooled_w + q0;
    for (int64_t pr = 0; pr < prows; ++pr) {
      const int64_t r = t.row0 + pr * s.pool;  // the window's first conv row
      const int64_t a_begin = std::max<int64_t>(-r, 0);
      const int64_t a_end = std::min(s.pool, s.conv_h - r);
      for (int64_t q = 0; q < pcols; ++q) {
        const int64_t col = t.col0 + q * s.pool;  // its first conv column
        const int64_t b_begin = std::max<int64_t>(-col, 0);
        const int64_t b_end = std::min(s.pool, s.conv_w - col);
        acc_t best = -std::numeric_limits<acc_t>::infinity();
        for (int64_t a = a_begin; a < a_end; ++a) {
          const T* row = tc + (pr * s.pool + a) * t.width + q * s.pool;
          for (int64_t b = b_begin; b < b_end; ++b) {
            const acc_t z = e.act(e.pre(static_cast<acc_t>(row[b]), c), c);
            if (replaces_max(z, best)) {
              best = z;
            }
          }
        }
        o[pr * s.pooled_w + q] = static_cast<T>(best);
      }
    }
  }
}

// Backward of pool_forward_tile (for a full-width tile [C_out, rows * pool * tile_w] of `rows`
// pooled rows from conv row row0), in place: `tile` holds the conv outputs on entry and the
// gradient with respect to them on exit (grad_output routed to the first maximum of every window,
// through ReLU and the affine; every tile element outside the conv output gets 0). Per-channel
// sums for bias / scale / shift are added to the accumulators.
template <typename T>
void pool_tile_backward(T* tile, const ConvPoolShape& s, int64_t row0, int64_t rows,
                        const Epilogue<T>& e, const T* grad_out, double* dbias, double* dscale,
                        double* dshift, int64_t c0, int64_t c1) {
  using acc_t = at::opmath_type<T>;
  const int64_t ncols = rows * s.pool * s.tile_w;
  const int64_t plane = s.pooled_h * s.pooled_w;
  for (int64_t c = c0; c < c1; ++c) {
    T* t = tile + c * ncols;
    const T* go_row = grad_out + c * plane;
    for (int64_t pr = 0; pr < rows; ++pr) {
      for (int64_t q = 0; q < s.pooled_w; ++q) {
        T* window = t + pr * s.pool * s.tile_w + q * s.pool;
        const int64_t r = row0 + pr * s.pool;   // the window's first conv row
        const int64_t col = s.window_start(q);  // its first conv column
        acc_t best = -std::numeric_limits<acc_t>::infinity();
        acc_t best_pre = 0;
        // max_pool2d starts from the window's first element, padding or not.
        int64_t best_a = 0;
        int64_t best_b = 0;
        const int64_t a_begin = std::max<int64_t>(-r, 0);
        const int64_t a_end = std::min(s.pool, s.conv_h - r);
        const int64_t b_begin = std::max<int64_t>(-col, 0);
        const int64_t b_end = std::min(s.pool, s.conv_w - col);
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
        const acc_t go = static_cast<acc_t>(go_row[pr * s.pooled_w + q]);
        // Every element -inf and the first one padding: the gradient goes to the padding.
        const bool to_padding = best_a < a_begin || best_b < b_begin;
        // ReLU passes the gradient where its output is not <= 0 (threshold_backward).
        const acc_t dz = (to_padding || (e.relu && best <= acc_t(0))) ? acc_t(0) : go;
        acc_t dv = dz;
        if (e.scale != nullptr) {
          dshift[c] += static_cast<double>(dz);
          dscale[c] += static_cast<double>(dz * best_pre);
          dv = dz * static_cast<acc_t>(e.scale[c]);
        }
        dbias[c] += static_cast<double>(dv);
        for (int64_t a = 0; a < s.pool; ++a) {
          std::fill(window + a * s.tile_w, window + a * s.tile_w + s.pool, T(0));
        }
        if (!to_padding) {
          window[best_a * s.tile_w + best_b] = static_cast<T>(dv);
        }
      }
    }
  }
}

template <typename T>
Epilogue<T> make_epilogue(const at::Tensor& bias, const at::Tensor& scale, const at::Tensor& shift,
                          bool relu) {
  return Epilogue<T>{bias.defined() ? bias.const_data_ptr<T>() : nullptr,
                     scale.defined() ? scale.const_data_ptr<T>() : nullptr,
                     shift.defined() ? shift.const_data_ptr<T>() : nullptr, relu};
}

at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->contiguous() : at::Tensor();
}

// Rows / channels per chunk of at::parallel_for such that a chunk has at least GRAIN_SIZE
// elements of work: small problems (tests, gradcheck) run on the calling thread, without a
// fork/join per call.
int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(work_per_item, 1));
}

// Per-group products at most this many weight entries (out_group x k_group) are computed by a
// direct loop: for a depthwise convolution (1 x 9 per group) one ATen mm call per group and tile
// costs more in dispatch than in arithmetic (measured 5x slower than unfused on MobileNetV2's
// 192-channel stride-2 layer before this path).
constexpr int64_t kDirectGroupWeights = 64;

// out[g] = weight[g] @ cols[g] for every group ([G, M, K] x [G, K, N] -> [G, M, N], all
// contiguous). The BLAS uses all threads when called outside a parallel region and only the
// calling thread inside one; the direct loop runs on the calling thread.
template <typename scalar_t>
void grouped_mm(const at::Tensor& weight, const at::Tensor& cols, at::Tensor& out) {
  const int64_t groups = weight.size(0), m = weight.size(1), k = weight.size(2);
  if (m * k > kDirectGroupWeights) {
    for (int64_t g = 0; g < groups; ++g) {
      at::Tensor out_g = out.select(0, g);
      at::mm_out(out_g, weight.select(0, g), cols.select(0, g));
    }
    return;
  }
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = cols.size(2);
  const scalar_t* w = weight.const_data_ptr<scalar_t>();
  const scalar_t* c = cols.const_data_ptr<scalar_t>();
  scalar_t* o = out.mutable_data_ptr<scalar_t>();
  // Groups in parallel when called outside a parallel region (the backward); inside one (the
  // forward's tiles) at::parallel_for runs on the calling thread.
  at::parallel_for(0, groups, grain_for(m * k * n), [&](int64_t g0, int64_t g1) {
    std::vector<acc_t> acc(n);
    for (int64_t g = g0; g < g1; ++g) {
      const scalar_t* wg = w + g * m * k;
      const scalar_t* cg = c + g * k * n;
      for (int64_t i = 0; i < m; ++i) {
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t kk = 0; kk < k; ++kk) {
          const acc_t wv = static_cast<acc_t>(wg[i * k + kk]);
          const scalar_t* row = cg + kk * n;
          for (int64_t j = 0; j < n; ++j) {
            acc[j] += wv * static_cast<acc_t>(row[j]);
          }
        }
        scalar_t* orow = o + (g * m + i) * n;
        for (int64_t j = 0; j < n; ++j) {
          orow[j] = static_cast<scalar_t>(acc[j]);
        }
      }
    }
  });
}

}  // namespace

at::Tensor dilated_conv_maxpool2d_cpu(const at::Tensor& input, const at::Tensor& weight,
                                      const std::optional<at::Tensor>& bias,
                                      const std::optional<at::Tensor>& scale,
                                      const std::optional<at::Tensor>& shift,
                                      at::IntArrayRef padding, at::IntArrayRef dilation,
                                      int64_t groups, int64_t pool, bool relu, bool ceil_mode,
                                      int64_t pool_offset) {
  const ConvPoolShape s =
      conv_pool_detail::check_arguments(input, weight, bias, scale, shift, padding, dilation,
                                        groups, pool, relu, ceil_mode, pool_offset);
  TORCH_CHECK(input.is_cpu(), "dilated_conv_maxpool2d_cpu expects CPU tensors");
  const at::ScalarType dtype = input.scalar_type();
  if (dtype == at::kHalf || dtype == at::kBFloat16) {
    // Reduced precision: computed in float32 (the input's copy, not the pre-pool map), rounded
    // once.
    auto up = [](const std::optional<at::Tensor>& t) -> std::optional<at::Tensor> {
      return t.has_value() ? std::optional<at::Tensor>(t->to(at::kFloat)) : std::nullopt;
    };
    return dilated_conv_maxpool2d_cpu(input.to(at::kFloat), weight.to(at::kFloat), up(bias),
                                      up(scale), up(shift), padding, dilation, groups, pool, relu,
                                      ceil_mode, pool_offset)
        .to(dtype);
  }
  at::Tensor out = at::empty({s.batch, s.out_channels, s.pooled_h, s.pooled_w}, input.options());
  if (out.numel() == 0) {
    return out;
  }
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor b = contiguous_or_undefined(bias);
  const at::Tensor sc = contiguous_or_undefined(scale);
  const at::Tensor sh = contiguous_or_undefined(shift);
  const at::Tensor wg = w.view({s.groups, s.out_group(), s.k_group()});
  const int64_t rows_per_tile = cpu_tile_rows(s, x.element_size(), kForwardTileBudgetBytes);
  const int64_t blocks = (s.pooled_h + rows_per_tile - 1) / rows_per_tile;
  const int64_t image = s.in_channels * s.height * s.width;
  const int64_t out_image = s.out_channels * s.pooled_h * s.pooled_w;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dilated_conv_maxpool2d_cpu", [&] {
    const Epilogue<scalar_t> e = make_epilogue<scalar_t>(b, sc, sh, relu);
    const scalar_t* x_ptr = x.const_data_ptr<scalar_t>();
    scalar_t* out_ptr = out.mutable_data_ptr<scalar_t>();
    // One fork/join: every thread runs whole tiles with its own buffers; the BLAS runs on the
    // calling thread inside the parallel region. Tiles of less than ~1 MFLOP are grouped, so
    // that tiny problems stay on one thread.
    const int64_t tile_flops = 2 * s.out_channels * s.k_group() * rows_per_tile * s.pool * s.tile_w;
    // ATen calls in worker threads must see the caller's dispatch state (below autograd).
    const at::ThreadLocalState tls;
    at::parallel_for(
        0, s.batch * blocks, grain_for(tile_flops / 32), [&](int64_t begin, int64_t end) {
          const at::ThreadLocalStateGuard tls_guard(tls);
          const int64_t max_cols = rows_per_tile * s.pool * s.tile_w;
          at::Tensor cols_buf = at::empty({s.k_total * max_cols}, x.options());
          at::Tensor tile_buf = at::empty({s.out_channels * max_cols}, x.options());
          for (int64_t item = begin; item < end; ++item) {
            const int64_t n = item / blocks;
            const int64_t pr0 = (item % blocks) * rows_per_tile;
            Tile t;
            t.row0 = s.window_start(pr0);
            t.rows = std::min(rows_per_tile, s.pooled_h - pr0) * s.pool;
            t.col0 = s.window_start(0);  // im2col_tile's first column
            t.width = s.tile_w;
            const int64_t ncols = t.ncols();
            at::Tensor cols =
                cols_buf.narrow(0, 0, s.k_total * ncols).view({s.groups, s.k_group(), ncols});
            at::Tensor tile = tile_buf.narrow(0, 0, s.out_channels * ncols)
                                  .view({s.groups, s.out_group(), ncols});
            im2col_tile(x_ptr + n * image, s, t.row0, t.rows, cols.mutable_data_ptr<scalar_t>(), 0,
                        s.k_total);
            grouped_mm<scalar_t>(wg, cols, tile);
            pool_forward_tile(tile.const_data_ptr<scalar_t>(), s.out_group(), ncols, s, t, e,
                              out_ptr + n * out_image, 0, s.out_channels);
          }
        });
  });
  return out;
}

ConvPoolGrads dilated_conv_maxpool2d_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& scale,
    const std::optional<at::Tensor>& shift, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, int64_t pool, bool relu, bool ceil_mode, std::array<bool, 5> output_mask,
    int64_t pool_offset) {
  const ConvPoolShape s =
      conv_pool_detail::check_arguments(input, weight, bias, scale, shift, padding, dilation,
                                        groups, pool, relu, ceil_mode, pool_offset);
  TORCH_CHECK(input.is_cpu(), "dilated_conv_maxpool2d_backward_cpu expects CPU tensors");
  TORCH_CHECK(
      grad_output.sizes() == at::IntArrayRef({s.batch, s.out_channels, s.pooled_h, s.pooled_w}),
      "grad_output must have the output's shape [", s.batch, ", ", s.out_channels, ", ", s.pooled_h,
      ", ", s.pooled_w, "], got ", grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type(),
              "grad_output must have the input's dtype");
  const at::ScalarType dtype = input.scalar_type();
  if (dtype == at::kHalf || dtype == at::kBFloat16) {
    // Reduced precision: compute in float32 (the GEMM sums and dW across tiles), round once.
    auto up = [](const std::optional<at::Tensor>& t) -> std::optional<at::Tensor> {
      return t.has_value() ? std::optional<at::Tensor>(t->to(at::kFloat)) : std::nullopt;
    };
    auto [gi, gw, gb, gsc, gsh] = dilated_conv_maxpool2d_backward_cpu(
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
  const int64_t channels = s.out_channels;
  // Per-channel sums in double; channel c is only ever updated by the thread that owns it.
  std::vector<double> dbias(channels, 0.0);
  std::vector<double> dscale(channels, 0.0);
  std::vector<double> dshift(channels, 0.0);

  if (s.batch > 0 && (need_input || need_weight || need_bias || need_scale || need_shift)) {
    const at::Tensor x = input.contiguous();
    const at::Tensor go = grad_output.contiguous();
    const at::Tensor w = weight.contiguous().view({s.groups, s.out_group(), s.k_group()});
    at::Tensor gw =
        need_weight ? grad_weight.view({s.groups, s.out_group(), s.k_group()}) : at::Tensor();
    const at::Tensor b = contiguous_or_undefined(bias);
    const at::Tensor sc = contiguous_or_undefined(scale);
    const at::Tensor sh = contiguous_or_undefined(shift);
    const int64_t rows_per_tile = cpu_tile_rows(s, x.element_size(), kBackwardTileBudgetBytes);
    const int64_t max_cols = rows_per_tile * s.pool * s.tile_w;
    at::Tensor cols_buf = at::empty({s.k_total * max_cols}, x.options());
    at::Tensor tile_buf = at::empty({s.out_channels * max_cols}, x.options());
    const int64_t image = s.in_channels * s.height * s.width;
    const int64_t out_image = s.out_channels * s.pooled_h * s.pooled_w;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dilated_conv_maxpool2d_backward_cpu", [&] {
      const Epilogue<scalar_t> e = make_epilogue<scalar_t>(b, sc, sh, relu);
      const scalar_t* x_ptr = x.const_data_ptr<scalar_t>();
      const scalar_t* go_ptr = go.const_data_ptr<scalar_t>();
      scalar_t* gi_ptr = need_input ? grad_input.mutable_data_ptr<scalar_t>() : nullptr;
      for (int64_t n = 0; n < s.batch; ++n) {
        for (int64_t r0 = 0; r0 < s.pooled_h; r0 += rows_per_tile) {
          const int64_t rows = std::min(rows_per_tile, s.pooled_h - r0);
          const int64_t row0 = s.window_start(r0);  // the tile's first conv row
          const int64_t ncols = rows * s.pool * s.tile_w;
          at::Tensor cols =
              cols_buf.narrow(0, 0, s.k_total * ncols).view({s.groups, s.k_group(), ncols});
          at::Tensor tile =
              tile_buf.narrow(0, 0, s.out_channels * ncols).view({s.groups, s.out_group(), ncols});
          scalar_t* cols_ptr = cols.mutable_data_ptr<scalar_t>();
          at::parallel_for(0, s.k_total, grain_for(ncols), [&](int64_t k0, int64_t k1) {
            im2col_tile(x_ptr + n * image, s, row0, rows * s.pool, cols_ptr, k0, k1);
          });
          grouped_mm<scalar_t>(w, cols, tile);
          scalar_t* tile_ptr = tile.mutable_data_ptr<scalar_t>();
          at::parallel_for(0, s.out_channels, grain_for(ncols), [&](int64_t c0, int64_t c1) {
            pool_tile_backward(tile_ptr, s, row0, rows, e, go_ptr + n * out_image + r0 * s.pooled_w,
                               dbias.data(), dscale.data(), dshift.data(), c0, c1);
          });
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
            const int64_t taps = s.kernel_h * s.kernel_w;
            at::parallel_for(0, s.in_channels, grain_for(taps * ncols),
                             [&](int64_t c0, int64_t c1) {
                               col2im_tile_add(static_cast<const scalar_t*>(cols_ptr), s, row0,
                                               rows * s.pool, gi_ptr + n * image, c0, c1);
                             });
          }
        }
      }
    });
  }
  auto to_tensor = [&](bool needed, const std::vector<double>& v) {
    if (!needed) {
      return at::empty({0}, options);
    }
    return at::tensor(v, options.dtype(at::kDouble)).to(options.dtype());
  };
  return {grad_input, grad_weight, to_tensor(need_bias, dbias), to_tensor(need_scale, dscale),
          to_tensor(need_shift, dshift)};
}

}  // namespace featsr_d2
