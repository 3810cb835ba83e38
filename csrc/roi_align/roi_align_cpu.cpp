// RoIAlign CPU kernels (forward and backward), multi-threaded with at::parallel_for.
//
// Work is split over channels (of all maps together): each thread pools every RoI for its
// channel range. The bilinear taps of a RoI are shared by all channels, so each thread computes
// them once per RoI (and per map) and reuses them across its channels. Splitting by channel also
// makes the backward race-free: a thread only writes the gradient planes of its own channels, so
// no atomics are needed and the accumulation order per element is torchvision's (RoI, bin,
// sample), which makes forward and backward equal to torchvision's bit for bit for float32 and
// float64. Half and bfloat16 accumulate in float32.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "roi_align.h"
#include "roi_align_common.h"

namespace featsr_d2 {

namespace {

using roi_align_detail::bilinear_weights;
using roi_align_detail::MultiSpec;
using roi_align_detail::roi_geometry;
using roi_align_detail::RoIGeometry;
using roi_align_detail::sample_coord;

// One bilinear sample: four offsets into a plane and their weights.
template <typename T>
struct Tap {
  int32_t pos[4];
  T w[4];
  bool valid;  // false for a sample more than one pixel outside the map (weights are 0)
};

// The taps of every sample of every bin of one RoI, in (ph, pw, iy, ix) order.
template <typename T>
void compute_taps(const RoIGeometry<T>& g, int64_t height, int64_t width, int64_t pooled_height,
                  int64_t pooled_width, std::vector<Tap<T>>& taps) {
  taps.resize(pooled_height * pooled_width * g.grid_h * g.grid_w);
  Tap<T>* t = taps.data();
  for (int64_t ph = 0; ph < pooled_height; ++ph) {
    for (int64_t pw = 0; pw < pooled_width; ++pw) {
      for (int iy = 0; iy < g.grid_h; ++iy) {
        const T y = sample_coord(g.start_h, g.bin_h, static_cast<int>(ph), iy, g.grid_h);
        for (int ix = 0; ix < g.grid_w; ++ix, ++t) {
          const T x = sample_coord(g.start_w, g.bin_w, static_cast<int>(pw), ix, g.grid_w);
          int64_t pos[4];
          t->valid = height > 0 && width > 0 && bilinear_weights(height, width, y, x, pos, t->w);
          if (!t->valid) {
            t->w[0] = t->w[1] = t->w[2] = t->w[3] = 0;
            pos[0] = pos[1] = pos[2] = pos[3] = 0;
          }
          for (int i = 0; i < 4; ++i) {
            t->pos[i] = static_cast<int32_t>(pos[i]);
          }
        }
      }
    }
  }
}

// Channels processed together: they share every tap load and give the CPU independent
// accumulation chains; each output still sums its samples in torchvision's order.
constexpr int64_t kChannelBlock = 4;

// Pools CB consecutive channels (planes `plane` apart, outputs `bins` apart) of one RoI.
template <int64_t CB, typename scalar_t, typename acc_t>
inline void pool_channels(const scalar_t* planes, int64_t plane, const Tap<acc_t>* t, int64_t bins,
                          int64_t samples, acc_t count, scalar_t* out) {
  for (int64_t bin = 0; bin < bins; ++bin) {
    acc_t val[CB];
    for (int64_t cb = 0; cb < CB; ++cb) {
      val[cb] = 0;
    }
    // Out-of-map taps have weight 0 and offset 0, as in torchvision.
    for (int64_t i = 0; i < samples; ++i, ++t) {
      for (int64_t cb = 0; cb < CB; ++cb) {
        const scalar_t* p = planes + cb * plane;
        val[cb] += t->w[0] * static_cast<acc_t>(p[t->pos[0]]) +
                   t->w[1] * static_cast<acc_t>(p[t->pos[1]]) +
                   t->w[2] * static_cast<acc_t>(p[t->pos[2]]) +
                   t->w[3] * static_cast<acc_t>(p[t->pos[3]]);
      }
    }
    for (int64_t cb = 0; cb < CB; ++cb) {
      val[cb] /= count;
      out[cb * bins + bin] = static_cast<scalar_t>(val[cb]);
    }
  }
}

// Scatters the output gradients of CB consecutive channels of one RoI onto their planes.
template <int64_t CB, typename scalar_t, typename acc_t, typename grad_t>
inline void scatter_channels(const scalar_t* grad, const Tap<acc_t>* t, int64_t bins,
                             int64_t samples, acc_t count, grad_t* planes, int64_t plane) {
  for (int64_t bin = 0; bin < bins; ++bin) {
    acc_t go[CB];
    for (int64_t cb = 0; cb < CB; ++cb) {
      go[cb] = static_cast<acc_t>(grad[cb * bins + bin]);
    }
    for (int64_t i = 0; i < samples; ++i, ++t) {
      if (!t->valid) {
        continue;
      }
      for (int q = 0; q < 4; ++q) {
        acc_t g[CB];
        for (int64_t cb = 0; cb < CB; ++cb) {  // (go * w) / count, as torchvision rounds it
          g[cb] = go[cb] * t->w[q] / count;
        }
        for (int64_t cb = 0; cb < CB; ++cb) {
          planes[cb * plane + t->pos[q]] += static_cast<grad_t>(g[cb]);
        }
      }
    }
  }
}

// Channels per chunk of at::parallel_for such that a chunk has at least GRAIN_SIZE elements of
// work: small problems (tests, gradcheck) run on the calling thread, without a fork/join.
int64_t grain_for(int64_t work_per_channel) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(work_per_channel, 1));
}

// Batch indices and levels must address existing images and levels (checked once, serially).
template <typename scalar_t>
void check_roi_indices(const MultiSpec& s, const scalar_t* rois, const int64_t* levels) {
  for (int64_t k = 0; k < s.num_rois; ++k) {
    const double b = static_cast<double>(rois[k * 5]);
    TORCH_CHECK(b >= 0 && b < static_cast<double>(s.batch_size), "rois[", k,
                ", 0] (batch index) must be in [0, ", s.batch_size, "), got ", b);
    if (levels != nullptr) {
      TORCH_CHECK(levels[k] >= 0 && levels[k] < s.num_levels, "levels[", k, "] must be in [0, ",
                  s.num_levels, "), got ", levels[k]);
    }
  }
}

// RoI indices grouped by level, in their original order within a level (a stable counting
// sort): a thread then works on one level's planes at a time, which keeps them in cache, and
// every gradient element still receives its contributions in RoI order.
std::vector<int64_t> order_by_level(const MultiSpec& s, const int64_t* levels) {
  std::vector<int64_t> order(s.num_rois);
  if (levels == nullptr) {
    for (int64_t k = 0; k < s.num_rois; ++k) {
      order[k] = k;
    }
    return order;
  }
  std::vector<int64_t> start(s.num_levels + 1, 0);
  for (int64_t k = 0; k < s.num_rois; ++k) {
    ++start[levels[k] + 1];
  }
  for (int64_t l = 0; l < s.num_levels; ++l) {
    start[l + 1] += start[l];
  }
  for (int64_t k = 0; k < s.num_rois; ++k) {
    order[start[levels[k]]++] = k;
  }
  return order;
}

template <typename scalar_t>
void multi_forward_kernel(const MultiSpec& s, const std::vector<const scalar_t*>& features,
                          const scalar_t* rois, const int64_t* levels,
                          const std::vector<int64_t>& order, at::ArrayRef<double> scales,
                          const std::vector<scalar_t*>& outputs, int64_t pooled_height,
                          int64_t pooled_width, int64_t sampling_ratio, bool aligned) {
  using acc_t = at::opmath_type<scalar_t>;
  int64_t total_channels = 0;
  for (int64_t c : s.channels) {
    total_channels += c;
  }
  const int64_t bins = pooled_height * pooled_width;
  // Channels per chunk: at least GRAIN_SIZE samples of work (about 4 samples per bin), so that
  // small problems run on the calling thread.
  const int64_t grain = grain_for(s.num_rois * bins * 4);
  at::parallel_for(0, total_channels, grain, [&](int64_t begin, int64_t end) {
    std::vector<Tap<acc_t>> taps;
    int64_t c_base = 0;
    for (int64_t m = 0; m < s.num_maps; c_base += s.channels[m], ++m) {
      const int64_t channels = s.channels[m];
      const int64_t c0 = std::max(begin, c_base) - c_base;
      const int64_t c1 = std::min(end, c_base + channels) - c_base;
      if (c0 >= c1) {
        continue;
      }
      for (const int64_t k : order) {
        const scalar_t* roi = rois + k * 5;
        const int64_t b = static_cast<int64_t>(static_cast<double>(roi[0]));
        const int64_t j = m * s.num_levels + (levels != nullptr ? levels[k] : 0);
        const int64_t height = s.heights[j];
        const int64_t width = s.widths[j];
        scalar_t* out = outputs[m] + (k * channels + c0) * bins;
        if (height == 0 || width == 0) {
          std::fill(out, out + (c1 - c0) * bins, scalar_t(0));
          continue;
        }
        const RoIGeometry<acc_t> g =
            roi_geometry<acc_t>(roi[1], roi[2], roi[3], roi[4], static_cast<acc_t>(scales[j]),
                                static_cast<int>(pooled_height), static_cast<int>(pooled_width),
                                static_cast<int>(sampling_ratio), aligned);
        compute_taps(g, height, width, pooled_height, pooled_width, taps);
        const int64_t samples = static_cast<int64_t>(g.grid_h) * g.grid_w;
        const acc_t count = static_cast<acc_t>(std::max<int64_t>(samples, 1));
        const int64_t plane = height * width;
        const scalar_t* planes = features[j] + (b * channels + c0) * plane;
        int64_t c = c0;
        for (; c + kChannelBlock <= c1; c += kChannelBlock) {
          pool_channels<kChannelBlock>(planes + (c - c0) * plane, plane, taps.data(), bins, samples,
                                       count, out + (c - c0) * bins);
        }
        for (; c < c1; ++c) {
          pool_channels<1>(planes + (c - c0) * plane, plane, taps.data(), bins, samples, count,
                           out + (c - c0) * bins);
        }
      }
    }
  });
}

template <typename scalar_t, typename grad_t>
void multi_backward_kernel(const MultiSpec& s, const std::vector<const scalar_t*>& grads,
                           const scalar_t* rois, const int64_t* levels,
                           const std::vector<int64_t>& order, at::ArrayRef<double> scales,
                           const std::vector<grad_t*>& grad_inputs, int64_t pooled_height,
                           int64_t pooled_width, int64_t sampling_ratio, bool aligned) {
  using acc_t = at::opmath_type<scalar_t>;
  int64_t total_channels = 0;
  for (int64_t c : s.channels) {
    total_channels += c;
  }
  const int64_t bins = pooled_height * pooled_width;
  // Channels per chunk: at least GRAIN_SIZE elements of work (samples, and zeroing the planes).
  int64_t planes = 0;
  for (int64_t j = 0; j < s.num_maps * s.num_levels; ++j) {
    planes += s.batch_size * s.heights[j] * s.widths[j];
  }
  const int64_t grain = grain_for(s.num_rois * bins * 4 + planes / s.num_maps);
  at::parallel_for(0, total_channels, grain, [&](int64_t begin, int64_t end) {
    std::vector<Tap<acc_t>> taps;
    int64_t c_base = 0;
    for (int64_t m = 0; m < s.num_maps; c_base += s.channels[m], ++m) {
      const int64_t channels = s.channels[m];
      const int64_t c0 = std::max(begin, c_base) - c_base;
      const int64_t c1 = std::min(end, c_base + channels) - c_base;
      if (c0 >= c1) {
        continue;
      }
      // Zero this thread's gradient planes (first touch by the thread that writes them).
      for (int64_t l = 0; l < s.num_levels; ++l) {
        const int64_t j = m * s.num_levels + l;
        const int64_t plane = s.heights[j] * s.widths[j];
        for (int64_t n = 0; n < s.batch_size; ++n) {
          grad_t* p = grad_inputs[j] + (n * channels + c0) * plane;
          std::fill(p, p + (c1 - c0) * plane, grad_t(0));
        }
      }
      for (const int64_t k : order) {
        const scalar_t* roi = rois + k * 5;
        const int64_t b = static_cast<int64_t>(static_cast<double>(roi[0]));
        const int64_t j = m * s.num_levels + (levels != nullptr ? levels[k] : 0);
        const int64_t height = s.heights[j];
        const int64_t width = s.widths[j];
        if (height == 0 || width == 0) {
          continue;
        }
        const RoIGeometry<acc_t> g =
            roi_geometry<acc_t>(roi[1], roi[2], roi[3], roi[4], static_cast<acc_t>(scales[j]),
                                static_cast<int>(pooled_height), static_cast<int>(pooled_width),
                                static_cast<int>(sampling_ratio), aligned);
        compute_taps(g, height, width, pooled_height, pooled_width, taps);
        const int64_t samples = static_cast<int64_t>(g.grid_h) * g.grid_w;
        const acc_t count = static_cast<acc_t>(samples);
        const int64_t plane = height * width;
        grad_t* planes = grad_inputs[j] + (b * channels + c0) * plane;
        const scalar_t* grad = grads[m] + (k * channels + c0) * bins;
        int64_t c = c0;
        for (; c + kChannelBlock <= c1; c += kChannelBlock) {
          scatter_channels<kChannelBlock>(grad + (c - c0) * bins, taps.data(), bins, samples, count,
                                          planes + (c - c0) * plane, plane);
        }
        for (; c < c1; ++c) {
          scatter_channels<1>(grad + (c - c0) * bins, taps.data(), bins, samples, count,
                              planes + (c - c0) * plane, plane);
        }
      }
    }
  });
}

}  // namespace

std::vector<at::Tensor> multi_roi_align_forward_cpu(at::TensorList features, const at::Tensor& rois,
                                                    const std::optional<at::Tensor>& levels,
                                                    at::ArrayRef<double> spatial_scales,
                                                    int64_t num_maps, int64_t pooled_height,
                                                    int64_t pooled_width, int64_t sampling_ratio,
                                                    bool aligned) {
  const MultiSpec s = roi_align_detail::check_multi_forward(features, rois, levels, spatial_scales,
                                                            num_maps, pooled_height, pooled_width);
  TORCH_CHECK(rois.is_cpu(), "multi_roi_align_forward_cpu expects CPU tensors");
  std::vector<at::Tensor> outputs;
  for (int64_t m = 0; m < s.num_maps; ++m) {
    outputs.push_back(at::empty({s.num_rois, s.channels[m], pooled_height, pooled_width},
                                features[m * s.num_levels].options()));
  }
  if (s.num_rois == 0) {
    return outputs;
  }
  const at::Tensor rois_c = rois.contiguous();
  at::Tensor levels_c;
  if (levels.has_value()) {
    levels_c = levels->contiguous();
  }
  std::vector<at::Tensor> features_c;
  for (const at::Tensor& f : features) {
    features_c.push_back(f.contiguous());
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, rois.scalar_type(), "multi_roi_align_forward_cpu", [&] {
        const scalar_t* rois_ptr = rois_c.const_data_ptr<scalar_t>();
        const int64_t* levels_ptr =
            levels_c.defined() ? levels_c.const_data_ptr<int64_t>() : nullptr;
        check_roi_indices(s, rois_ptr, levels_ptr);
        std::vector<const scalar_t*> f_ptrs;
        for (const at::Tensor& f : features_c) {
          f_ptrs.push_back(f.const_data_ptr<scalar_t>());
        }
        std::vector<scalar_t*> o_ptrs;
        for (at::Tensor& o : outputs) {
          o_ptrs.push_back(o.mutable_data_ptr<scalar_t>());
        }
        multi_forward_kernel<scalar_t>(s, f_ptrs, rois_ptr, levels_ptr,
                                       order_by_level(s, levels_ptr), spatial_scales, o_ptrs,
                                       pooled_height, pooled_width, sampling_ratio, aligned);
      });
  return outputs;
}

std::vector<at::Tensor> multi_roi_align_backward_cpu(at::TensorList grads, const at::Tensor& rois,
                                                     const std::optional<at::Tensor>& levels,
                                                     at::ArrayRef<double> spatial_scales,
                                                     int64_t batch_size, at::IntArrayRef heights,
                                                     at::IntArrayRef widths, int64_t sampling_ratio,
                                                     bool aligned) {
  const MultiSpec s = roi_align_detail::check_multi_backward(grads, rois, levels, spatial_scales,
                                                             batch_size, heights, widths);
  TORCH_CHECK(rois.is_cpu(), "multi_roi_align_backward_cpu expects CPU tensors");
  const int64_t pooled_height = grads[0].size(2);
  const int64_t pooled_width = grads[0].size(3);
  const at::ScalarType dtype = rois.scalar_type();
  const bool reduced = dtype == at::kHalf || dtype == at::kBFloat16;
  // Half and bfloat16 gradients accumulate in float32 and are rounded once at the end.
  const at::TensorOptions grad_options = grads[0].options().dtype(reduced ? at::kFloat : dtype);
  std::vector<at::Tensor> grad_inputs;
  for (int64_t j = 0; j < s.num_maps * s.num_levels; ++j) {
    const int64_t m = j / s.num_levels;
    grad_inputs.push_back(
        at::empty({s.batch_size, s.channels[m], s.heights[j], s.widths[j]}, grad_options));
  }
  const at::Tensor rois_c = rois.contiguous();
  at::Tensor levels_c;
  if (levels.has_value()) {
    levels_c = levels->contiguous();
  }
  std::vector<at::Tensor> grads_c;
  for (const at::Tensor& g : grads) {
    grads_c.push_back(g.contiguous());
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, dtype, "multi_roi_align_backward_cpu", [&] {
        using grad_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
        const scalar_t* rois_ptr = rois_c.const_data_ptr<scalar_t>();
        const int64_t* levels_ptr =
            levels_c.defined() ? levels_c.const_data_ptr<int64_t>() : nullptr;
        check_roi_indices(s, rois_ptr, levels_ptr);
        std::vector<const scalar_t*> g_ptrs;
        for (const at::Tensor& g : grads_c) {
          g_ptrs.push_back(g.const_data_ptr<scalar_t>());
        }
        std::vector<grad_t*> gi_ptrs;
        for (at::Tensor& gi : grad_inputs) {
          gi_ptrs.push_back(gi.mutable_data_ptr<grad_t>());
        }
        multi_backward_kernel<scalar_t, grad_t>(
            s, g_ptrs, rois_ptr, levels_ptr, order_by_level(s, levels_ptr), spatial_scales, gi_ptrs,
            pooled_height, pooled_width, sampling_ratio, aligned);
      });
  if (reduced) {
    for (at::Tensor& gi : grad_inputs) {
      gi = gi.to(dtype);
    }
  }
  return grad_inputs;
}

at::Tensor roi_align_forward_cpu(const at::Tensor& input, const at::Tensor& rois,
                                 double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                 int64_t sampling_ratio, bool aligned) {
  return multi_roi_align_forward_cpu({input}, rois, std::nullopt, {spatial_scale}, 1, pooled_height,
                                     pooled_width, sampling_ratio, aligned)[0];
}

at::Tensor roi_align_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                  double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                  int64_t batch_size, int64_t channels, int64_t height,
                                  int64_t width, int64_t sampling_ratio, bool aligned) {
  TORCH_CHECK(grad.dim() == 4 && grad.size(1) == channels && grad.size(2) == pooled_height &&
                  grad.size(3) == pooled_width,
              "grad must have shape [K, ", channels, ", ", pooled_height, ", ", pooled_width,
              "], got ", grad.sizes());
  return multi_roi_align_backward_cpu({grad}, rois, std::nullopt, {spatial_scale}, batch_size,
                                      {height}, {width}, sampling_ratio, aligned)[0];
}

}  // namespace featsr_d2
