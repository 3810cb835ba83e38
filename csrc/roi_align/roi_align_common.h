// RoIAlign geometry and bilinear weights shared by the CPU and CUDA kernels.
//
// The arithmetic (types, operation order) is torchvision's, so that float32 / float64 results
// equal torchvision's bit for bit on CPU: the sampling grid of a RoI, the adaptive number of
// samples per bin (sampling_ratio <= 0), the "aligned" half-pixel shift, and the clamping of
// samples that fall up to one pixel outside the map.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

namespace featsr_d2 {
namespace roi_align_detail {

// Where the bins of one RoI lie on one feature map.
template <typename T>
struct RoIGeometry {
  T start_h;
  T start_w;
  T bin_h;
  T bin_w;
  int grid_h;  // samples per bin along y (may be 0 for an empty aligned RoI)
  int grid_w;  // samples per bin along x
};

template <typename T>
C10_HOST_DEVICE inline RoIGeometry<T> roi_geometry(T x1, T y1, T x2, T y2, T spatial_scale,
                                                   int pooled_height, int pooled_width,
                                                   int sampling_ratio, bool aligned) {
  // Do not round: this implementation detail is critical (Detectron / torchvision).
  const T offset = aligned ? static_cast<T>(0.5) : static_cast<T>(0.0);
  const T start_w = x1 * spatial_scale - offset;
  const T start_h = y1 * spatial_scale - offset;
  const T end_w = x2 * spatial_scale - offset;
  const T end_h = y2 * spatial_scale - offset;
  T roi_width = end_w - start_w;
  T roi_height = end_h - start_h;
  if (!aligned) {
    // Legacy behaviour: malformed RoIs are forced to be 1x1.
    roi_width = roi_width > static_cast<T>(1.) ? roi_width : static_cast<T>(1.);
    roi_height = roi_height > static_cast<T>(1.) ? roi_height : static_cast<T>(1.);
  }
  RoIGeometry<T> g;
  g.start_h = start_h;
  g.start_w = start_w;
  g.bin_h = static_cast<T>(roi_height) / static_cast<T>(pooled_height);
  g.bin_w = static_cast<T>(roi_width) / static_cast<T>(pooled_width);
  const int gh =
      sampling_ratio > 0 ? sampling_ratio : static_cast<int>(ceil(roi_height / pooled_height));
  const int gw =
      sampling_ratio > 0 ? sampling_ratio : static_cast<int>(ceil(roi_width / pooled_width));
  // A negative grid (inverted aligned RoI) samples nothing, as in torchvision.
  g.grid_h = gh > 0 ? gh : 0;
  g.grid_w = gw > 0 ? gw : 0;
  return g;
}

// y (or x) coordinate of sample `i` of bin `p`.
template <typename T>
C10_HOST_DEVICE inline T sample_coord(T start, T bin, int p, int i, int grid) {
  return start + p * bin + static_cast<T>(i + .5f) * bin / static_cast<T>(grid);
}

// Bilinear interpolation at (y, x) on a height x width plane: the four neighbour offsets and
// weights. Returns false (weights 0, offsets 0) for a sample more than one pixel outside the
// map; written as !(in range) so that NaN coordinates take that branch too.
template <typename T>
C10_HOST_DEVICE inline bool bilinear_weights(int64_t height, int64_t width, T y, T x, int64_t* pos,
                                             T* w) {
  if (!(y >= -1.0 && y <= height && x >= -1.0 && x <= width)) {
    pos[0] = pos[1] = pos[2] = pos[3] = 0;
    w[0] = w[1] = w[2] = w[3] = 0;
    return false;
  }
  if (y <= 0) {
    y = 0;
  }
  if (x <= 0) {
    x = 0;
  }
  int64_t y_low = static_cast<int64_t>(y);
  int64_t x_low = static_cast<int64_t>(x);
  int64_t y_high;
  int64_t x_high;
  if (y_low >= height - 1) {
    y_high = y_low = height - 1;
    y = static_cast<T>(y_low);
  } else {
    y_high = y_low + 1;
  }
  if (x_low >= width - 1) {
    x_high = x_low = width - 1;
    x = static_cast<T>(x_low);
  } else {
    x_high = x_low + 1;
  }
  const T ly = y - y_low;
  const T lx = x - x_low;
  const T hy = 1. - ly;
  const T hx = 1. - lx;
  w[0] = hy * hx;
  w[1] = hy * lx;
  w[2] = ly * hx;
  w[3] = ly * lx;
  pos[0] = y_low * width + x_low;
  pos[1] = y_low * width + x_high;
  pos[2] = y_high * width + x_low;
  pos[3] = y_high * width + x_high;
  return true;
}

}  // namespace roi_align_detail
}  // namespace featsr_d2
