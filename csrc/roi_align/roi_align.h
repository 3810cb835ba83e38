// RoIAlign (Mask R-CNN), torchvision's contract, plus a multi-level / multi-map variant.
//
// roi_align: pools every RoI (rows of `rois`: batch index, x1, y1, x2, y2) from one map.
// multi_roi_align: `features` holds num_maps groups of L levels each, map-major
//   ([map0_level0, map0_level1, ..., map1_level0, ...]). RoI k is pooled from level
//   levels[k] (level 0 when `levels` is absent) of every map, with that feature's spatial scale,
//   in one pass; the result is one [K, C_m, pooled_height, pooled_width] tensor per map.
//
// Kernels are registered per device in ops.cpp; the dispatcher picks them from the tensors'
// device. CUDA kernels exist only in builds compiled WITH_CUDA.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <optional>
#include <vector>

namespace featsr_d2 {

// Most features (maps x levels) and maps that one multi_roi_align call accepts.
constexpr int64_t kRoIAlignMaxFeatures = 32;
constexpr int64_t kRoIAlignMaxMaps = 8;

at::Tensor roi_align_forward_cpu(const at::Tensor& input, const at::Tensor& rois,
                                 double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                 int64_t sampling_ratio, bool aligned);

at::Tensor roi_align_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                  double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                  int64_t batch_size, int64_t channels, int64_t height,
                                  int64_t width, int64_t sampling_ratio, bool aligned);

std::vector<at::Tensor> multi_roi_align_forward_cpu(at::TensorList features, const at::Tensor& rois,
                                                    const std::optional<at::Tensor>& levels,
                                                    at::ArrayRef<double> spatial_scales,
                                                    int64_t num_maps, int64_t pooled_height,
                                                    int64_t pooled_width, int64_t sampling_ratio,
                                                    bool aligned);

std::vector<at::Tensor> multi_roi_align_backward_cpu(at::TensorList grads, const at::Tensor& rois,
                                                     const std::optional<at::Tensor>& levels,
                                                     at::ArrayRef<double> spatial_scales,
                                                     int64_t batch_size, at::IntArrayRef heights,
                                                     at::IntArrayRef widths, int64_t sampling_ratio,
                                                     bool aligned);

#ifdef WITH_CUDA
at::Tensor roi_align_forward_cuda(const at::Tensor& input, const at::Tensor& rois,
                                  double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                  int64_t sampling_ratio, bool aligned);

at::Tensor roi_align_backward_cuda(const at::Tensor& grad, const at::Tensor& rois,
                                   double spatial_scale, int64_t pooled_height,
                                   int64_t pooled_width, int64_t batch_size, int64_t channels,
                                   int64_t height, int64_t width, int64_t sampling_ratio,
                                   bool aligned);

std::vector<at::Tensor> multi_roi_align_forward_cuda(
    at::TensorList features, const at::Tensor& rois, const std::optional<at::Tensor>& levels,
    at::ArrayRef<double> spatial_scales, int64_t num_maps, int64_t pooled_height,
    int64_t pooled_width, int64_t sampling_ratio, bool aligned);

std::vector<at::Tensor> multi_roi_align_backward_cuda(at::TensorList grads, const at::Tensor& rois,
                                                      const std::optional<at::Tensor>& levels,
                                                      at::ArrayRef<double> spatial_scales,
                                                      int64_t batch_size, at::IntArrayRef heights,
                                                      at::IntArrayRef widths,
                                                      int64_t sampling_ratio, bool aligned);
#endif

namespace roi_align_detail {

// Shape of a multi_roi_align problem, validated on the host (shared by CPU and CUDA).
struct MultiSpec {
  int64_t num_maps = 0;
  int64_t num_levels = 0;
  int64_t num_rois = 0;
  int64_t batch_size = 0;
  std::vector<int64_t> channels;  // per map
  std::vector<int64_t> heights;   // per feature
  std::vector<int64_t> widths;    // per feature
};

// Checks the forward arguments (shapes, dtypes, devices, counts) and returns their shape.
MultiSpec check_multi_forward(at::TensorList features, const at::Tensor& rois,
                              const std::optional<at::Tensor>& levels,
                              at::ArrayRef<double> spatial_scales, int64_t num_maps,
                              int64_t pooled_height, int64_t pooled_width);

// Checks the backward arguments and returns their shape.
MultiSpec check_multi_backward(at::TensorList grads, const at::Tensor& rois,
                               const std::optional<at::Tensor>& levels,
                               at::ArrayRef<double> spatial_scales, int64_t batch_size,
                               at::IntArrayRef heights, at::IntArrayRef widths);

}  // namespace roi_align_detail
}  // namespace featsr_d2
