// Operator schemas of featsr_d2 and their CPU / CUDA kernels.
//
// Autograd formulas and fake (meta) kernels are registered from Python, in
// featsr_d2/core/layers/roi_align.py and featsr_d2/core/layers/dilated_conv_maxpool.py
// (torch.library.register_autograd / register_fake), so that torch.compile can trace the ops.
#include <torch/library.h>

#include "dilated_conv_maxpool/dilated_conv_maxpool.h"
#include "roi_align/roi_align.h"

TORCH_LIBRARY(featsr_d2, m) {
  // torchvision.ops.roi_align's contract: rois [K, 5] = (batch index, x1, y1, x2, y2).
  m.def(
      "roi_align(Tensor input, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width, int sampling_ratio, bool aligned) -> Tensor");
  m.def(
      "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, "
      "int sampling_ratio, bool aligned) -> Tensor");
  // features: num_maps groups of L levels, map-major; RoI k pools level levels[k] of each map.
  m.def(
      "multi_roi_align(Tensor[] features, Tensor rois, Tensor? levels, float[] spatial_scales, "
      "int num_maps, int pooled_height, int pooled_width, int sampling_ratio, bool aligned) "
      "-> Tensor[]");
  m.def(
      "_multi_roi_align_backward(Tensor[] grads, Tensor rois, Tensor? levels, "
      "float[] spatial_scales, SymInt batch_size, SymInt[] heights, SymInt[] widths, "
      "int sampling_ratio, bool aligned) -> Tensor[]");
  // max_pool2d(pad(relu?(affine?(conv2d(input, weight, bias, stride=1, padding, dilation,
  // groups))), top=pool_offset, left=pool_offset, value=-inf), pool, stride=pool, ceil_mode); the
  // affine is v * scale[c] + shift[c] when both are given; 0 <= pool_offset < pool.
  m.def(
      "dilated_conv_maxpool2d(Tensor input, Tensor weight, Tensor? bias, Tensor? scale, "
      "Tensor? shift, int[2] padding, int[2] dilation, int groups, int pool, bool relu, "
      "bool ceil_mode, int pool_offset=0) -> Tensor");
  // Gradients (input, weight, bias, scale, shift); unrequested or absent ones are empty [0].
  m.def(
      "_dilated_conv_maxpool2d_backward(Tensor grad_output, Tensor input, Tensor weight, "
      "Tensor? bias, Tensor? scale, Tensor? shift, int[2] padding, int[2] dilation, int groups, "
      "int pool, bool relu, bool ceil_mode, bool[5] output_mask, int pool_offset=0) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(featsr_d2, CPU, m) {
  m.impl("roi_align", &featsr_d2::roi_align_forward_cpu);
  m.impl("_roi_align_backward", &featsr_d2::roi_align_backward_cpu);
  m.impl("multi_roi_align", &featsr_d2::multi_roi_align_forward_cpu);
  m.impl("_multi_roi_align_backward", &featsr_d2::multi_roi_align_backward_cpu);
  m.impl("dilated_conv_maxpool2d", &featsr_d2::dilated_conv_maxpool2d_cpu);
  m.impl("_dilated_conv_maxpool2d_backward", &featsr_d2::dilated_conv_maxpool2d_backward_cpu);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(featsr_d2, CUDA, m) {
  m.impl("roi_align", &featsr_d2::roi_align_forward_cuda);
  m.impl("_roi_align_backward", &featsr_d2::roi_align_backward_cuda);
  m.impl("multi_roi_align", &featsr_d2::multi_roi_align_forward_cuda);
  m.impl("_multi_roi_align_backward", &featsr_d2::multi_roi_align_backward_cuda);
  m.impl("dilated_conv_maxpool2d", &featsr_d2::dilated_conv_maxpool2d_cuda);
  m.impl("_dilated_conv_maxpool2d_backward", &featsr_d2::dilated_conv_maxpool2d_backward_cuda);
}
#endif
