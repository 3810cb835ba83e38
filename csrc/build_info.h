#pragma once
#include <string>

namespace featsr_d2 {

// Whether the extension was compiled with CUDA kernels (WITH_CUDA).
bool has_cuda();
// The C++ compiler that built the extension, e.g. "GCC 12.2.0".
std::string compiler_version();
// The CUDA runtime version the extension was compiled against, "" when built without CUDA.
std::string cuda_version();

}  // namespace featsr_d2
