// Argument checks of the RoIAlign ops, shared by the CPU and CUDA kernels.
#include "roi_align.h"

#include <ATen/ATen.h>

#include <limits>

namespace featsr_d2 {
namespace roi_align_detail {

namespace {

void check_rois(const at::Tensor& rois, const std::optional<at::Tensor>& levels,
                int64_t num_levels) {
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5,
              "rois must have shape [K, 5] (batch index, x1, y1, x2, y2), got ", rois.sizes());
  if (levels.has_value()) {
    const at::Tensor& lv = *levels;
    TORCH_CHECK(lv.scalar_type() == at::kLong, "levels must be int64, got ", lv.scalar_type());
    TORCH_CHECK(lv.dim() == 1 && lv.size(0) == rois.size(0),
                "levels must have shape [K] with K = rois.size(0) = ", rois.size(0), ", got ",
                lv.sizes());
    TORCH_CHECK(lv.device() == rois.device(), "levels and rois must be on the same device, got ",
                lv.device(), " and ", rois.device());
  } else {
    TORCH_CHECK(num_levels == 1, "levels is required when every map has ", num_levels, " levels");
  }
}

}  // namespace

MultiSpec check_multi_forward(at::TensorList features, const at::Tensor& rois,
                              const std::optional<at::Tensor>& levels,
                              at::ArrayRef<double> spatial_scales, int64_t num_maps,
                              int64_t pooled_height, int64_t pooled_width) {
  const int64_t num_features = static_cast<int64_t>(features.size());
  TORCH_CHECK(num_maps >= 1 && num_maps <= kRoIAlignMaxMaps, "num_maps must be in [1, ",
              kRoIAlignMaxMaps, "], got ", num_maps);
  TORCH_CHECK(num_features >= num_maps && num_features % num_maps == 0 &&
                  num_features <= kRoIAlignMaxFeatures,
              "features must hold num_maps (", num_maps,
              ") groups of equally many levels, at most ", kRoIAlignMaxFeatures,
              " tensors in all; got ", num_features);
  TORCH_CHECK(static_cast<int64_t>(spatial_scales.size()) == num_features,
              "spatial_scales must have one entry per feature (", num_features, "), got ",
              spatial_scales.size());
  TORCH_CHECK(pooled_height > 0 && pooled_width > 0, "output size must be positive, got ",
              pooled_height, "x", pooled_width);
  MultiSpec spec;
  spec.num_maps = num_maps;
  spec.num_levels = num_features / num_maps;
  spec.num_rois = rois.size(0);
  check_rois(rois, levels, spec.num_levels);
  for (int64_t j = 0; j < num_features; ++j) {
    const at::Tensor& f = features[j];
    TORCH_CHECK(f.dim() == 4, "features must be 4-D [N, C, H, W], feature ", j, " has shape ",
                f.sizes());
    TORCH_CHECK(f.scalar_type() == rois.scalar_type(),
                "features and rois must have the same dtype, got ", f.scalar_type(), " and ",
                rois.scalar_type());
    TORCH_CHECK(f.device() == rois.device(), "features and rois must be on the same device, got ",
                f.device(), " and ", rois.device());
    TORCH_CHECK(f.size(2) * f.size(3) <= std::numeric_limits<int32_t>::max(),
                "a feature plane must have fewer than 2^31 elements");
    const int64_t m = j / spec.num_levels;
    if (j == 0) {
      spec.batch_size = f.size(0);
    }
    TORCH_CHECK(f.size(0) == spec.batch_size, "all features must have the same batch size, got ",
                f.size(0), " and ", spec.batch_size);
    if (j % spec.num_levels == 0) {
      spec.channels.push_back(f.size(1));
    }
    TORCH_CHECK(f.size(1) == spec.channels[m], "the levels of map ", m,
                " must have the same channel count, got ", f.size(1), " and ", spec.channels[m]);
    spec.heights.push_back(f.size(2));
    spec.widths.push_back(f.size(3));
  }
  return spec;
}

MultiSpec check_multi_backward(at::TensorList grads, const at::Tensor& rois,
                               const std::optional<at::Tensor>& levels,
                               at::ArrayRef<double> spatial_scales, int64_t batch_size,
                               at::IntArrayRef heights, at::IntArrayRef widths) {
  const int64_t num_maps = static_cast<int64_t>(grads.size());
  const int64_t num_features = static_cast<int64_t>(spatial_scales.size());
  TORCH_CHECK(num_maps >= 1 && num_maps <= kRoIAlignMaxMaps, "grads must hold 1 to ",
              kRoIAlignMaxMaps, " tensors, got ", num_maps);
  TORCH_CHECK(num_features % num_maps == 0 && num_features <= kRoIAlignMaxFeatures,
              "spatial_scales must hold num_maps groups of equally many levels");
  TORCH_CHECK(static_cast<int64_t>(heights.size()) == num_features &&
                  static_cast<int64_t>(widths.size()) == num_features,
              "heights and widths must have one entry per feature");
  MultiSpec spec;
  spec.num_maps = num_maps;
  spec.num_levels = num_features / num_maps;
  spec.num_rois = rois.size(0);
  spec.batch_size = batch_size;
  check_rois(rois, levels, spec.num_levels);
  for (int64_t m = 0; m < num_maps; ++m) {
    const at::Tensor& g = grads[m];
    TORCH_CHECK(g.dim() == 4 && g.size(0) == spec.num_rois,
                "grads must have shape [K, C, pooled_height, pooled_width], got ", g.sizes());
    TORCH_CHECK(g.scalar_type() == rois.scalar_type(),
                "grads and rois must have the same dtype, got ", g.scalar_type(), " and ",
                rois.scalar_type());
    TORCH_CHECK(g.device() == rois.device(), "grads and rois must be on the same device");
    TORCH_CHECK(g.size(2) == grads[0].size(2) && g.size(3) == grads[0].size(3),
                "all grads must have the same pooled size");
    spec.channels.push_back(g.size(1));
  }
  for (int64_t j = 0; j < num_features; ++j) {
    TORCH_CHECK(heights[j] >= 0 && widths[j] >= 0, "feature sizes must be non-negative");
    spec.heights.push_back(heights[j]);
    spec.widths.push_back(widths[j]);
  }
  return spec;
}

}  // namespace roi_align_detail
}  // namespace featsr_d2
