// test_comm_nccl.cpp: the NCCL backend on one GPU (CUDA builds; skipped without a device unless
// DSV4_REQUIRE_GPU=1): a one-rank communicator built without MPI runs every collective on device
// and host buffers with the results the MPI backend gives at world size 1. Multi-GPU runs are
// issue 10's.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "common/check.h"
#include "dist/communicator.h"
#include "tests/gpu_test.h"

namespace dsv4::dist {
namespace {

TEST(NcclCommunicator, OneRankCollectivesOnDeviceAndHostBuffers) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  auto comm = communicator_nccl(60.0, 0);
  EXPECT_EQ(comm->backend(), "nccl");
  EXPECT_EQ(comm->world(), 1);

  const std::vector<float> h = {1.0f, -2.5f, 3.25f, 0.0f};
  float* d = nullptr;
  DSV4_CUDA_CHECK(cudaMalloc(&d, h.size() * sizeof(float)));
  DSV4_CUDA_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
  comm->reduce(d, h.size(), ElemType::kF32, ReduceOp::kSum, 0);
  comm->all_reduce(d, h.size(), ElemType::kF32, ReduceOp::kMax);
  comm->broadcast(d, h.size() * sizeof(float), 0);
  std::vector<float> back(h.size());
  DSV4_CUDA_CHECK(cudaMemcpy(back.data(), d, h.size() * sizeof(float), cudaMemcpyDeviceToHost));
  EXPECT_EQ(back, h);
  DSV4_CUDA_CHECK(cudaFree(d));

  // Host buffers are staged.
  std::vector<int64_t> n = {7, -3};
  comm->all_reduce(n.data(), n.size(), ElemType::kI64, ReduceOp::kSum);
  EXPECT_EQ(n, (std::vector<int64_t>{7, -3}));
  std::string s = "solved modules";
  comm->broadcast_string(s, 0);
  EXPECT_EQ(s, "solved modules");
  EXPECT_EQ(comm->all_gather_strings("keys"), (std::vector<std::string>{"keys"}));
  comm->barrier();
  EXPECT_THROW(comm->broadcast(n.data(), 8, 1), Error);
}

// Host buffers larger than the staging buffer go through it slice by slice (whole elements);
// at one rank every collective must hand back exactly what it was given, so a slice put at the
// wrong offset shows.
TEST(NcclCommunicator, HostBuffersLargerThanTheStagingGoSliceBySlice) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  auto comm = communicator_nccl(60.0, 0, /*staging_bytes=*/40);  // 10 floats, 5 int64
  std::vector<float> f(1003);
  for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(i) * 0.5f - 7.0f;
  const std::vector<float> want = f;
  comm->reduce(f.data(), f.size(), ElemType::kF32, ReduceOp::kSum, 0);
  EXPECT_EQ(f, want);
  comm->all_reduce(f.data(), f.size(), ElemType::kF32, ReduceOp::kMax);
  EXPECT_EQ(f, want);
  std::vector<int64_t> n(37);
  for (size_t i = 0; i < n.size(); ++i) n[i] = static_cast<int64_t>(i * i) - 100;
  const std::vector<int64_t> want_n = n;
  comm->all_reduce(n.data(), n.size(), ElemType::kI64, ReduceOp::kSum);
  EXPECT_EQ(n, want_n);
  std::string blob(333, '\0');
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>(i * 7);
  const std::string want_blob = blob;
  comm->broadcast(blob.data(), blob.size(), 0);
  EXPECT_EQ(blob, want_blob);
  std::string gathered(blob.size(), '\0');
  comm->all_gather(want_blob.data(), want_blob.size(), gathered.data());
  EXPECT_EQ(gathered, want_blob);
  EXPECT_EQ(comm->all_gather_strings(want_blob), (std::vector<std::string>{want_blob}));
  EXPECT_THROW(communicator_nccl(60.0, 0, /*staging_bytes=*/4), Error);  // not one int64
}

}  // namespace
}  // namespace dsv4::dist
