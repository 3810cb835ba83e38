#include "build_info.h"

#include <sstream>

#ifdef WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace featsr_d2 {

bool has_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string compiler_version() {
  std::ostringstream ss;
#if defined(__clang__)
  ss << "Clang " << __clang_major__ << "." << __clang_minor__ << "." << __clang_patchlevel__;
#elif defined(__GNUC__)
  ss << "GCC " << __GNUC__ << "." << __GNUC_MINOR__ << "." << __GNUC_PATCHLEVEL__;
#elif defined(_MSC_VER)
  ss << "MSVC " << _MSC_FULL_VER;
#else
  ss << "unknown";
#endif
  return ss.str();
}

std::string cuda_version() {
#ifdef WITH_CUDA
  std::ostringstream ss;
  ss << CUDART_VERSION / 1000 << "." << (CUDART_VERSION / 10) % 100;
  return ss.str();
#else
  return "";
#endif
}

}  // namespace featsr_d2
