// test_check_cuda.cu: the CUDA-library check macros quote the statement and the library's own
// name of the failing status. The to-string functions need no device, so this runs in the CUDA
// build on machines without a GPU too.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <nccl.h>

#include <gtest/gtest.h>

#include <string>

#include "common/check.h"

namespace dsv4 {
namespace {

template <typename F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

cudaError_t fake_cuda(cudaError_t e) { return e; }
cublasStatus_t fake_cublas(cublasStatus_t s) { return s; }
cusolverStatus_t fake_cusolver(cusolverStatus_t s) { return s; }
ncclResult_t fake_nccl(ncclResult_t r) { return r; }

TEST(CheckCuda, EachMacroThrowsWithTheLibrarysStatusName) {
  EXPECT_NO_THROW(DSV4_CUDA_CHECK(fake_cuda(cudaSuccess)));
  const std::string cuda = message_of([] { DSV4_CUDA_CHECK(fake_cuda(cudaErrorInvalidValue)); });
  EXPECT_NE(cuda.find("[cuda]"), std::string::npos) << cuda;
  EXPECT_NE(cuda.find("fake_cuda(cudaErrorInvalidValue) failed: invalid argument"), std::string::npos) << cuda;

  const std::string cublas = message_of([] { DSV4_CUBLAS_CHECK(fake_cublas(CUBLAS_STATUS_INVALID_VALUE)); });
  EXPECT_NE(cublas.find("[cublas]"), std::string::npos) << cublas;
  EXPECT_NE(cublas.find("CUBLAS_STATUS_INVALID_VALUE"), std::string::npos) << cublas;

  const std::string cusolver = message_of([] { DSV4_CUSOLVER_CHECK(fake_cusolver(CUSOLVER_STATUS_ZERO_PIVOT)); });
  EXPECT_NE(cusolver.find("CUSOLVER_STATUS_ZERO_PIVOT"), std::string::npos) << cusolver;
  EXPECT_EQ(cusolver_status_string(9999), "cusolver status 9999");

  const std::string nccl = message_of([] { DSV4_NCCL_CHECK(fake_nccl(ncclInvalidArgument)); });
  EXPECT_NE(nccl.find("[nccl]"), std::string::npos) << nccl;
  EXPECT_NE(nccl.find("fake_nccl(ncclInvalidArgument) failed"), std::string::npos) << nccl;
}

}  // namespace
}  // namespace dsv4
