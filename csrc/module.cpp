// Python bindings of featsr_d2._C. Operators register themselves with TORCH_LIBRARY in their own
// folders; this module exposes the build information.
#include <torch/extension.h>

#include "build_info.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("has_cuda", &featsr_d2::has_cuda, "whether CUDA kernels were compiled");
  m.def("compiler_version", &featsr_d2::compiler_version, "compiler that built the extension");
  m.def("cuda_version", &featsr_d2::cuda_version, "CUDA version compiled against, '' if none");
}
