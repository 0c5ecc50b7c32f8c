// cuda_check.cu: the to-string function DSV4_CUSOLVER_CHECK needs (cuSOLVER has none of its own);
// CUDA, cuBLAS and NCCL bring theirs (cudaGetErrorString, cublasGetStatusString,
// ncclGetErrorString). CUDA build only. Tests: tests/common/test_check_cuda.cu.
#include <cusolverDn.h>

#include <string>

#include "common/check.h"

namespace dsv4 {

std::string cusolver_status_string(int status) {
  switch (static_cast<cusolverStatus_t>(status)) {
#define DSV4_CASE(s) \
  case s:            \
    return #s;
    DSV4_CASE(CUSOLVER_STATUS_SUCCESS)
    DSV4_CASE(CUSOLVER_STATUS_NOT_INITIALIZED)
    DSV4_CASE(CUSOLVER_STATUS_ALLOC_FAILED)
    DSV4_CASE(CUSOLVER_STATUS_INVALID_VALUE)
    DSV4_CASE(CUSOLVER_STATUS_ARCH_MISMATCH)
    DSV4_CASE(CUSOLVER_STATUS_MAPPING_ERROR)
    DSV4_CASE(CUSOLVER_STATUS_EXECUTION_FAILED)
    DSV4_CASE(CUSOLVER_STATUS_INTERNAL_ERROR)
    DSV4_CASE(CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED)
    DSV4_CASE(CUSOLVER_STATUS_NOT_SUPPORTED)
    DSV4_CASE(CUSOLVER_STATUS_ZERO_PIVOT)
    DSV4_CASE(CUSOLVER_STATUS_INVALID_LICENSE)
#undef DSV4_CASE
    default:
      return "cusolver status " + std::to_string(status);
  }
}

}  // namespace dsv4
