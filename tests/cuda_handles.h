// cuda_handles.h: RAII owners of the CUDA handles the GPU op tests (tests/*/test_*_cuda.cu) create,
// one per test: a stream with a cuBLAS handle (the model ops), and cuBLAS with cuSOLVER (the
// Cholesky chains). CUDA builds only: included from .cu tests.
//
//   CudaStreamBlas gpu;                          // gpu.stream, gpu.blas
//   CudaBlasSolver hd;                           // hd.blas, hd.solver
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include "common/check.h"

namespace dsv4 {

struct CudaStreamBlas {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  CudaStreamBlas() {
    DSV4_CUDA_CHECK(cudaStreamCreate(&stream));
    DSV4_CUBLAS_CHECK(cublasCreate(&blas));
  }
  ~CudaStreamBlas() {
    cublasDestroy(blas);
    cudaStreamDestroy(stream);
  }
  CudaStreamBlas(const CudaStreamBlas&) = delete;
  CudaStreamBlas& operator=(const CudaStreamBlas&) = delete;
};

struct CudaBlasSolver {
  cublasHandle_t blas = nullptr;
  cusolverDnHandle_t solver = nullptr;
  CudaBlasSolver() {
    DSV4_CUBLAS_CHECK(cublasCreate(&blas));
    DSV4_CUSOLVER_CHECK(cusolverDnCreate(&solver));
  }
  ~CudaBlasSolver() {
    cublasDestroy(blas);
    cusolverDnDestroy(solver);
  }
  CudaBlasSolver(const CudaBlasSolver&) = delete;
  CudaBlasSolver& operator=(const CudaBlasSolver&) = delete;
};

}  // namespace dsv4
