// RoIAlign CUDA kernels (forward and backward), compiled only WITH_CUDA.
//
// One thread per pooled output element (RoI, channel of any map, bin); consecutive threads
// take consecutive bins of one channel so that their samples fall on nearby addresses of one
// plane. The feature pointers, sizes and scales of all maps and levels travel in one by-value
// kernel argument, so the multi-level / multi-map op is one launch. The backward scatters with
// atomic adds (non-deterministic order, reported through alertNotDeterministic).
// Everything runs on the current stream; nothing synchronizes the device.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/detail/KernelUtils.h>
#include <c10/cuda/CUDAGuard.h>

#include <ATen/native/cuda/KernelUtils.cuh>
// The current stream (what at::cuda::getCurrentCUDAStream returns), without including
// ATen/cuda/CUDAContext.h, which needs cuBLAS / cuSPARSE headers that a minimal toolkit lacks.
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "roi_align.h"
#include "roi_align_common.h"

namespace featsr_d2 {

namespace {

using roi_align_detail::bilinear_weights;
using roi_align_detail::MultiSpec;
using roi_align_detail::roi_geometry;
using roi_align_detail::RoIGeometry;
using roi_align_detail::sample_coord;

constexpr int kThreads = 256;

// Sizes of every feature (maps x levels) of one call, passed by value to the kernels.
template <typename acc_t>
struct MultiSizes {
  int64_t heights[kRoIAlignMaxFeatures];
  int64_t widths[kRoIAlignMaxFeatures];
  acc_t scales[kRoIAlignMaxFeatures];
  int64_t channels[kRoIAlignMaxMaps];
  int64_t channel_begin[kRoIAlignMaxMaps + 1];  // prefix sums of channels
  int64_t num_maps;
  int64_t num_levels;
  int64_t batch_size;
};

// Forward: read features (maps x levels), write one output per map.
template <typename scalar_t>
struct ForwardPtrs {
  const scalar_t* features[kRoIAlignMaxFeatures];
  scalar_t* outputs[kRoIAlignMaxMaps];
};

// Backward: read one gradient per map, write gradients of the features (maps x levels).
template <typename scalar_t>
struct BackwardPtrs {
  const scalar_t* grads[kRoIAlignMaxMaps];
  scalar_t* grad_features[kRoIAlignMaxFeatures];
};

template <typename acc_t>
MultiSizes<acc_t> make_sizes(const MultiSpec& s, at::ArrayRef<double> scales) {
  MultiSizes<acc_t> a;
  a.num_maps = s.num_maps;
  a.num_levels = s.num_levels;
  a.batch_size = s.batch_size;
  a.channel_begin[0] = 0;
  for (int64_t m = 0; m < s.num_maps; ++m) {
    a.channels[m] = s.channels[m];
    a.channel_begin[m + 1] = a.channel_begin[m] + s.channels[m];
  }
  for (int64_t j = 0; j < s.num_maps * s.num_levels; ++j) {
    a.heights[j] = s.heights[j];
    a.widths[j] = s.widths[j];
    a.scales[j] = static_cast<acc_t>(scales[j]);
  }
  return a;
}

// The pooled output element `index`: RoI k, map m, channel c of that map, bin, and the
// feature j = (map m, level of RoI k) it pools from.
struct Location {
  int64_t k;
  int64_t m;
  int64_t c;
  int64_t bin;
  int64_t j;
  int64_t batch;
  bool valid;  // false when the RoI's level or batch index is out of range, or the map empty
};

template <typename scalar_t, typename acc_t>
__device__ inline Location locate(const MultiSizes<acc_t>& a, int64_t index, int64_t bins,
                                  const scalar_t* rois, const int64_t* levels) {
  Location l;
  const int64_t total_channels = a.channel_begin[a.num_maps];
  l.bin = index % bins;
  const int64_t ct = (index / bins) % total_channels;
  l.k = index / bins / total_channels;
  l.m = 0;
  while (l.m + 1 < a.num_maps && ct >= a.channel_begin[l.m + 1]) {
    ++l.m;
  }
  l.c = ct - a.channel_begin[l.m];
  const int64_t level = levels != nullptr ? levels[l.k] : 0;
  const acc_t batch = static_cast<acc_t>(rois[l.k * 5]);
  // Checked here instead of on the host, which would need a device synchronization: such an
  // RoI pools zeros and receives no gradient.
  l.valid = level >= 0 && level < a.num_levels && batch >= 0 && batch < a.batch_size;
  l.j = l.valid ? l.m * a.num_levels + level : 0;
  l.batch = l.valid ? static_cast<int64_t>(batch) : 0;
  l.valid = l.valid && a.heights[l.j] > 0 && a.widths[l.j] > 0;
  return l;
}

template <typename scalar_t>
__global__ void multi_roi_align_forward_kernel(int64_t total,
                                               MultiSizes<at::opmath_type<scalar_t>> a,
                                               ForwardPtrs<scalar_t> p, const scalar_t* rois,
                                               const int64_t* levels, int pooled_height,
                                               int pooled_width, int sampling_ratio, bool aligned) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t bins = static_cast<int64_t>(pooled_height) * pooled_width;
  CUDA_KERNEL_LOOP_TYPE(index, total, int64_t) {
    const Location l = locate(a, index, bins, rois, levels);
    scalar_t* out = p.outputs[l.m] + (l.k * a.channels[l.m] + l.c) * bins + l.bin;
    if (!l.valid) {
      *out = scalar_t(0);
      continue;
    }
    const int64_t height = a.heights[l.j];
    const int64_t width = a.widths[l.j];
    const int ph = static_cast<int>(l.bin / pooled_width);
    const int pw = static_cast<int>(l.bin % pooled_width);
    const scalar_t* roi = rois + l.k * 5;
    const RoIGeometry<acc_t> g =
        roi_geometry<acc_t>(roi[1], roi[2], roi[3], roi[4], a.scales[l.j], pooled_height,
                            pooled_width, sampling_ratio, aligned);
    const scalar_t* plane = p.features[l.j] + (l.batch * a.channels[l.m] + l.c) * height * width;
    acc_t val = 0;
    for (int iy = 0; iy < g.grid_h; ++iy) {
      const acc_t y = sample_coord(g.start_h, g.bin_h, ph, iy, g.grid_h);
      for (int ix = 0; ix < g.grid_w; ++ix) {
        const acc_t x = sample_coord(g.start_w, g.bin_w, pw, ix, g.grid_w);
        int64_t pos[4];
        acc_t w[4];
        if (bilinear_weights(height, width, y, x, pos, w)) {
          val +=
              w[0] * static_cast<acc_t>(plane[pos[0]]) + w[1] * static_cast<acc_t>(plane[pos[1]]) +
              w[2] * static_cast<acc_t>(plane[pos[2]]) + w[3] * static_cast<acc_t>(plane[pos[3]]);
        }
      }
    }
    const int64_t samples = static_cast<int64_t>(g.grid_h) * g.grid_w;
    val /= static_cast<acc_t>(samples > 1 ? samples : 1);
    *out = static_cast<scalar_t>(val);
  }
}

template <typename scalar_t>
__global__ void multi_roi_align_backward_kernel(int64_t total,
                                                MultiSizes<at::opmath_type<scalar_t>> a,
                                                BackwardPtrs<scalar_t> p, const scalar_t* rois,
                                                const int64_t* levels, int pooled_height,
                                                int pooled_width, int sampling_ratio,
                                                bool aligned) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t bins = static_cast<int64_t>(pooled_height) * pooled_width;
  CUDA_KERNEL_LOOP_TYPE(index, total, int64_t) {
    const Location l = locate(a, index, bins, rois, levels);
    if (!l.valid) {
      continue;
    }
    const int64_t height = a.heights[l.j];
    const int64_t width = a.widths[l.j];
    const int ph = static_cast<int>(l.bin / pooled_width);
    const int pw = static_cast<int>(l.bin % pooled_width);
    const scalar_t* roi = rois + l.k * 5;
    const RoIGeometry<acc_t> g =
        roi_geometry<acc_t>(roi[1], roi[2], roi[3], roi[4], a.scales[l.j], pooled_height,
                            pooled_width, sampling_ratio, aligned);
    const acc_t count = static_cast<acc_t>(static_cast<int64_t>(g.grid_h) * g.grid_w);
    const acc_t go = static_cast<acc_t>(p.grads[l.m][(l.k * a.channels[l.m] + l.c) * bins + l.bin]);
    const int64_t plane_size = height * width;
    const int64_t plane_offset = (l.batch * a.channels[l.m] + l.c) * plane_size;
    const int64_t numel = a.batch_size * a.channels[l.m] * plane_size;
    scalar_t* grad_feature = p.grad_features[l.j];
    for (int iy = 0; iy < g.grid_h; ++iy) {
      const acc_t y = sample_coord(g.start_h, g.bin_h, ph, iy, g.grid_h);
      for (int ix = 0; ix < g.grid_w; ++ix) {
        const acc_t x = sample_coord(g.start_w, g.bin_w, pw, ix, g.grid_w);
        int64_t pos[4];
        acc_t w[4];
        if (!bilinear_weights(height, width, y, x, pos, w)) {
          continue;
        }
        for (int q = 0; q < 4; ++q) {
          at::native::fastAtomicAdd(grad_feature, plane_offset + pos[q], numel,
                                    static_cast<scalar_t>(go * w[q] / count), true);
        }
      }
    }
  }
}

int64_t num_blocks(int64_t total) {
  const int64_t max_blocks = 65535LL * 32;  // the grid-stride loop covers the rest
  return std::min<int64_t>((total + kThreads - 1) / kThreads, max_blocks);
}

}  // namespace

std::vector<at::Tensor> multi_roi_align_forward_cuda(
    at::TensorList features, const at::Tensor& rois, const std::optional<at::Tensor>& levels,
    at::ArrayRef<double> spatial_scales, int64_t num_maps, int64_t pooled_height,
    int64_t pooled_width, int64_t sampling_ratio, bool aligned) {
  const MultiSpec s = roi_align_detail::check_multi_forward(features, rois, levels, spatial_scales,
                                                            num_maps, pooled_height, pooled_width);
  TORCH_CHECK(rois.is_cuda(), "multi_roi_align_forward_cuda expects CUDA tensors");
  const at::cuda::CUDAGuard device_guard(rois.device());
  std::vector<at::Tensor> outputs;
  int64_t total_channels = 0;
  for (int64_t m = 0; m < s.num_maps; ++m) {
    outputs.push_back(at::empty({s.num_rois, s.channels[m], pooled_height, pooled_width},
                                features[m * s.num_levels].options()));
    total_channels += s.channels[m];
  }
  const int64_t total = s.num_rois * total_channels * pooled_height * pooled_width;
  if (total == 0) {
    return outputs;
  }
  const at::Tensor rois_c = rois.contiguous();
  const at::Tensor levels_c = levels.has_value() ? levels->contiguous() : at::Tensor();
  std::vector<at::Tensor> features_c;
  for (const at::Tensor& f : features) {
    features_c.push_back(f.contiguous());
  }
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, rois.scalar_type(), "multi_roi_align_forward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        ForwardPtrs<scalar_t> p{};
        for (size_t j = 0; j < features_c.size(); ++j) {
          p.features[j] = features_c[j].const_data_ptr<scalar_t>();
        }
        for (int64_t m = 0; m < s.num_maps; ++m) {
          p.outputs[m] = outputs[m].mutable_data_ptr<scalar_t>();
        }
        multi_roi_align_forward_kernel<scalar_t><<<num_blocks(total), kThreads, 0, stream>>>(
            total, make_sizes<acc_t>(s, spatial_scales), p, rois_c.const_data_ptr<scalar_t>(),
            levels_c.defined() ? levels_c.const_data_ptr<int64_t>() : nullptr,
            static_cast<int>(pooled_height), static_cast<int>(pooled_width),
            static_cast<int>(sampling_ratio), aligned);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return outputs;
}

std::vector<at::Tensor> multi_roi_align_backward_cuda(at::TensorList grads, const at::Tensor& rois,
                                                      const std::optional<at::Tensor>& levels,
                                                      at::ArrayRef<double> spatial_scales,
                                                      int64_t batch_size, at::IntArrayRef heights,
                                                      at::IntArrayRef widths,
                                                      int64_t sampling_ratio, bool aligned) {
  const MultiSpec s = roi_align_detail::check_multi_backward(grads, rois, levels, spatial_scales,
                                                             batch_size, heights, widths);
  TORCH_CHECK(rois.is_cuda(), "multi_roi_align_backward_cuda expects CUDA tensors");
  const at::cuda::CUDAGuard device_guard(rois.device());
  const int64_t pooled_height = grads[0].size(2);
  const int64_t pooled_width = grads[0].size(3);
  std::vector<at::Tensor> grad_inputs;
  for (int64_t j = 0; j < s.num_maps * s.num_levels; ++j) {
    const int64_t m = j / s.num_levels;
    grad_inputs.push_back(
        at::zeros({s.batch_size, s.channels[m], s.heights[j], s.widths[j]}, grads[m].options()));
  }
  int64_t total_channels = 0;
  for (int64_t c : s.channels) {
    total_channels += c;
  }
  const int64_t total = s.num_rois * total_channels * pooled_height * pooled_width;
  if (total == 0) {
    return grad_inputs;
  }
  at::globalContext().alertNotDeterministic("featsr_d2::multi_roi_align_backward_cuda");
  const at::Tensor rois_c = rois.contiguous();
  const at::Tensor levels_c = levels.has_value() ? levels->contiguous() : at::Tensor();
  std::vector<at::Tensor> grads_c;
  for (const at::Tensor& g : grads) {
    grads_c.push_back(g.contiguous());
  }
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, rois.scalar_type(), "multi_roi_align_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        BackwardPtrs<scalar_t> p{};
        for (int64_t m = 0; m < s.num_maps; ++m) {
          p.grads[m] = grads_c[m].const_data_ptr<scalar_t>();
        }
        for (size_t j = 0; j < grad_inputs.size(); ++j) {
          p.grad_features[j] = grad_inputs[j].mutable_data_ptr<scalar_t>();
        }
        multi_roi_align_backward_kernel<scalar_t><<<num_blocks(total), kThreads, 0, stream>>>(
            total, make_sizes<acc_t>(s, spatial_scales), p, rois_c.const_data_ptr<scalar_t>(),
            levels_c.defined() ? levels_c.const_data_ptr<int64_t>() : nullptr,
            static_cast<int>(pooled_height), static_cast<int>(pooled_width),
            static_cast<int>(sampling_ratio), aligned);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return grad_inputs;
}

at::Tensor roi_align_forward_cuda(const at::Tensor& input, const at::Tensor& rois,
                                  double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                  int64_t sampling_ratio, bool aligned) {
  return multi_roi_align_forward_cuda({input}, rois, std::nullopt, {spatial_scale}, 1,
                                      pooled_height, pooled_width, sampling_ratio, aligned)[0];
}

at::Tensor roi_align_backward_cuda(const at::Tensor& grad, const at::Tensor& rois,
                                   double spatial_scale, int64_t pooled_height,
                                   int64_t pooled_width, int64_t batch_size, int64_t channels,
                                   int64_t height, int64_t width, int64_t sampling_ratio,
                                   bool aligned) {
  TORCH_CHECK(grad.dim() == 4 && grad.size(1) == channels && grad.size(2) == pooled_height &&
                  grad.size(3) == pooled_width,
              "grad must have shape [K, ", channels, ", ", pooled_height, ", ", pooled_width,
              "], got ", grad.sizes());
  return multi_roi_align_backward_cuda({grad}, rois, std::nullopt, {spatial_scale}, batch_size,
                                       {height}, {width}, sampling_ratio, aligned)[0];
}

}  // namespace featsr_d2
