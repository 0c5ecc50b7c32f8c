// comm_nccl.cpp: the NCCL device backend of Communicator (CUDA builds; STYLE §6). Bring-up:
// the caller has bound the device (cudaSetDevice(local_rank)); rank 0 makes the unique id and MPI
// broadcasts it; every rank joins with ncclCommInitRankConfig in non-blocking mode, so the
// watchdog can abort a communicator stuck in a collective (ncclCommAbort) instead of hanging.
//
// Collectives run on the communicator's own stream and return when complete: the host polls
// the stream and ncclCommGetAsyncError against the deadline. Buffers may be device or host
// memory; host buffers are staged slice by slice through one device buffer allocated at creation
// (the journal's strings, the key maps, the shared results), device buffers are used in place.
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>

#include "common/check.h"
#include "dist/communicator.h"
#include "dist/run_phase.h"
#include "dist/topology.h"

// Non-blocking communicators return ncclInProgress from calls that were queued fine.
#define DSV4_NCCL_CHECK_ASYNC(expr)                                                                     \
  do {                                                                                                  \
    const ncclResult_t dsv4_nccl_ = (expr);                                                             \
    if (dsv4_nccl_ != ncclSuccess && dsv4_nccl_ != ncclInProgress) {                                    \
      ::dsv4::throw_error("nccl", __FILE__, __LINE__, std::string(#expr " failed: ") + ncclGetErrorString(dsv4_nccl_)); \
    }                                                                                                   \
  } while (0)

namespace dsv4::dist {
namespace {

ncclDataType_t nccl_type(ElemType t) {
  switch (t) {
    case ElemType::kF32: return ncclFloat32;
    case ElemType::kF64: return ncclFloat64;
    case ElemType::kI64: return ncclInt64;
    case ElemType::kU8: return ncclUint8;
  }
  return ncclUint8;
}
ncclRedOp_t nccl_op(ReduceOp op) { return op == ReduceOp::kSum ? ncclSum : ncclMax; }

bool is_device_pointer(const void* p) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    (void)cudaGetLastError();  // unregistered host memory on older runtimes: not an error
    return false;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(int rank, int world, double timeout_s, int device, size_t staging_bytes)
      : Communicator(rank, world, timeout_s), device_(device) {
    DSV4_CHECK_IN("dist", staging_bytes >= 8 * static_cast<size_t>(world), "NCCL staging of %zu bytes for %d ranks",
                  staging_bytes, world);
    DSV4_CUDA_CHECK(cudaSetDevice(device_));
    // Every connection and buffer NCCL needs is made now, not at the first collective of a kind
    // (its default since 2.22): by then the pipeline's arena holds the GPU's free memory.
    setenv("NCCL_RUNTIME_CONNECT", "0", /*overwrite=*/0);
    DSV4_CUDA_CHECK(cudaMalloc(&scratch_, staging_bytes));
    scratch_bytes_ = staging_bytes;
    ncclUniqueId id;
    if (rank == 0) DSV4_NCCL_CHECK(ncclGetUniqueId(&id));
    if (world > 1) DSV4_MPI_CHECK(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD));
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    DSV4_NCCL_CHECK_ASYNC(ncclCommInitRankConfig(&comm_, world, id, rank, &config));
    wait_comm_ready("ncclCommInitRank");
    DSV4_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~NcclCommunicator() override {
    if (scratch_) cudaFree(scratch_);
    if (stream_) cudaStreamDestroy(stream_);
    if (comm_) {
      // Non-blocking mode: finalize completes asynchronously; destroy only after it has.
      if (ncclCommFinalize(comm_) == ncclInProgress) {
        ncclResult_t state = ncclInProgress;
        while (state == ncclInProgress && ncclCommGetAsyncError(comm_, &state) == ncclSuccess) {
          std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
      }
      ncclCommDestroy(comm_);
    }
  }
  std::string_view backend() const override { return "nccl"; }

  void reduce(void* buf, size_t count, ElemType type, ReduceOp op, int root) override {
    check_root(root, "reduce");
    const size_t unit = elem_size(type);
    staged(buf, count * unit, unit, true, rank() == root, [&](void* d, size_t bytes) {
      DSV4_NCCL_CHECK_ASYNC(ncclReduce(d, d, bytes / unit, nccl_type(type), nccl_op(op), root, comm_, stream_));
      wait("reduce");
    });
  }
  void all_reduce(void* buf, size_t count, ElemType type, ReduceOp op) override {
    const size_t unit = elem_size(type);
    staged(buf, count * unit, unit, true, true, [&](void* d, size_t bytes) {
      DSV4_NCCL_CHECK_ASYNC(ncclAllReduce(d, d, bytes / unit, nccl_type(type), nccl_op(op), comm_, stream_));
      wait("all_reduce");
    });
  }
  void broadcast(void* buf, size_t bytes, int root) override {
    check_root(root, "broadcast");
    staged(buf, bytes, 1, rank() == root, true, [&](void* d, size_t n) {
      DSV4_NCCL_CHECK_ASYNC(ncclBroadcast(d, d, n, ncclUint8, root, comm_, stream_));
      wait("broadcast");
    });
  }
  void all_gather(const void* in, size_t bytes, void* out) override {
    char* o = static_cast<char*>(out);
    const size_t world_n = static_cast<size_t>(world()), me = static_cast<size_t>(rank());
    if (is_device_pointer(out)) {  // NCCL's in-place all-gather: this rank's block at its offset
      DSV4_CUDA_CHECK(cudaMemcpyAsync(o + bytes * me, in, bytes, cudaMemcpyDefault, stream_));
      DSV4_NCCL_CHECK_ASYNC(ncclAllGather(o + bytes * me, o, bytes, ncclUint8, comm_, stream_));
      wait("all_gather");
      return;
    }
    // A host output: every rank's block in slices that fit the staging buffer together.
    const size_t slice = std::max<size_t>(scratch_bytes_ / world_n, 1);
    char* d = static_cast<char*>(scratch_);
    for (size_t at = 0; at < bytes; at += slice) {
      const size_t n = std::min(slice, bytes - at);
      DSV4_CUDA_CHECK(cudaMemcpyAsync(d + n * me, static_cast<const char*>(in) + at, n, cudaMemcpyDefault, stream_));
      DSV4_NCCL_CHECK_ASYNC(ncclAllGather(d + n * me, d, n, ncclUint8, comm_, stream_));
      wait("all_gather");
      for (size_t r = 0; r < world_n; ++r) DSV4_CUDA_CHECK(cudaMemcpy(o + r * bytes + at, d + r * n, n, cudaMemcpyDeviceToHost));
    }
  }
  void barrier() override {
    int64_t one = 1;
    all_reduce(&one, 1, ElemType::kI64, ReduceOp::kSum);
  }
  [[noreturn]] void abort_job(int exit_code) noexcept override {
    std::fflush(stdout);
    std::fflush(stderr);
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    if (topology_mpi_active()) MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::_Exit(exit_code);
  }

 private:
  // Runs `collective(device_ptr, bytes)` on a device buffer in place; on a host buffer, slice by
  // slice through the staging buffer (allocated once, before the pipeline's arena takes the
  // GPU's free memory): each slice copied up (if `in`) and back (if `out`). Slices are whole
  // elements of `unit` bytes.
  template <typename Collective>
  void staged(void* buf, size_t bytes, size_t unit, bool in, bool out, const Collective& collective) {
    if (bytes == 0) return;
    if (is_device_pointer(buf)) {
      collective(buf, bytes);
      return;
    }
    char* host = static_cast<char*>(buf);
    const size_t slice = std::max<size_t>(scratch_bytes_ / unit, 1) * unit;
    for (size_t at = 0; at < bytes; at += slice) {
      const size_t n = std::min(slice, bytes - at);
      if (in) DSV4_CUDA_CHECK(cudaMemcpyAsync(scratch_, host + at, n, cudaMemcpyHostToDevice, stream_));
      collective(scratch_, n);
      if (out) DSV4_CUDA_CHECK(cudaMemcpy(host + at, scratch_, n, cudaMemcpyDeviceToHost));
    }
  }

  void check_root(int root, const char* what) const {
    DSV4_CHECK_IN("dist", root >= 0 && root < world(), "%s to root rank %d in a world of %d", what, root, world());
  }

  // Polls until the stream is idle (and the communicator has no pending or failed operation); an
  // NCCL async error throws, the deadline aborts the job.
  void wait(const char* what) {
    poll(what, [&] {
      const cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaErrorNotReady) return false;
      DSV4_CUDA_CHECK(e);
      return true;
    });
  }
  void wait_comm_ready(const char* what) {
    poll(what, [] { return true; });
  }
  void poll(const char* what, const std::function<bool()>& stream_done) {
    run_phase_wait(this, timeout_s(), std::string("NCCL ") + what, [&] {
      ncclResult_t async = ncclSuccess;
      DSV4_NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
      if (async != ncclSuccess && async != ncclInProgress) DSV4_NCCL_CHECK(async);
      return async == ncclSuccess && stream_done();
    }, 500);
  }

  int device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* scratch_ = nullptr;  // host buffers' staging (staged())
  size_t scratch_bytes_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> communicator_nccl(double timeout_s, int device, size_t staging_bytes) {
  int rank = 0, world = 1;
  if (topology_mpi_active()) {
    DSV4_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    DSV4_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world));
  }
  return std::make_unique<NcclCommunicator>(rank, world, timeout_s, device, staging_bytes);
}

}  // namespace dsv4::dist
