// comm_nccl.cpp: the NCCL device backend of Communicator (CUDA builds; STYLE §6). Bring-up:
// the caller has bound the device (cudaSetDevice(local_rank)); rank 0 makes the unique id and MPI
// broadcasts it; every rank joins with ncclCommInitRankConfig in non-blocking mode, so the
// watchdog can abort a communicator stuck in a collective (ncclCommAbort) instead of hanging.
//
// Collectives run on the communicator's own stream and return when complete: the host polls
// the stream and ncclCommGetAsyncError against the deadline. Buffers may be device or host
// memory; host buffers are staged through a device scratch buffer (the journal's strings, the
// key maps), device buffers are used in place.
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
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
  NcclCommunicator(int rank, int world, double timeout_s, int device)
      : Communicator(rank, world, timeout_s), device_(device) {
    DSV4_CUDA_CHECK(cudaSetDevice(device_));
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
    Staged s(*this, buf, count * elem_size(type), true);
    DSV4_NCCL_CHECK_ASYNC(ncclReduce(s.dev, s.dev, count, nccl_type(type), nccl_op(op), root, comm_, stream_));
    wait("reduce");
    s.back(rank() == root);
  }
  void all_reduce(void* buf, size_t count, ElemType type, ReduceOp op) override {
    Staged s(*this, buf, count * elem_size(type), true);
    DSV4_NCCL_CHECK_ASYNC(ncclAllReduce(s.dev, s.dev, count, nccl_type(type), nccl_op(op), comm_, stream_));
    wait("all_reduce");
    s.back(true);
  }
  void broadcast(void* buf, size_t bytes, int root) override {
    check_root(root, "broadcast");
    Staged s(*this, buf, bytes, rank() == root);
    DSV4_NCCL_CHECK_ASYNC(ncclBroadcast(s.dev, s.dev, bytes, ncclUint8, root, comm_, stream_));
    wait("broadcast");
    s.back(true);
  }
  void all_gather(const void* in, size_t bytes, void* out) override {
    const size_t total = bytes * static_cast<size_t>(world());
    const bool dev = is_device_pointer(out);
    char* d = dev ? static_cast<char*>(out) : static_cast<char*>(scratch(total));
    // NCCL's in-place all-gather: this rank's block at its offset of the output.
    DSV4_CUDA_CHECK(cudaMemcpyAsync(d + bytes * static_cast<size_t>(rank()), in, bytes, cudaMemcpyDefault, stream_));
    DSV4_NCCL_CHECK_ASYNC(ncclAllGather(d + bytes * static_cast<size_t>(rank()), d, bytes, ncclUint8, comm_, stream_));
    wait("all_gather");
    if (!dev) DSV4_CUDA_CHECK(cudaMemcpy(out, d, total, cudaMemcpyDeviceToHost));
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
  // A host buffer copied to the device scratch (if `in`), and back (if asked); device buffers as is.
  struct Staged {
    NcclCommunicator& c;
    void* host = nullptr;
    void* dev = nullptr;
    size_t bytes = 0;
    Staged(NcclCommunicator& comm, void* buf, size_t n, bool in) : c(comm), bytes(n) {
      if (is_device_pointer(buf)) {
        dev = buf;
        return;
      }
      host = buf;
      dev = c.scratch(n);
      if (in && n) DSV4_CUDA_CHECK(cudaMemcpyAsync(dev, host, n, cudaMemcpyHostToDevice, c.stream_));
    }
    void back(bool want) {
      if (host && want && bytes) DSV4_CUDA_CHECK(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost));
    }
  };

  void* scratch(size_t bytes) {
    if (bytes > scratch_bytes_) {
      if (scratch_) DSV4_CUDA_CHECK(cudaFree(scratch_));
      scratch_ = nullptr;
      DSV4_CUDA_CHECK(cudaMalloc(&scratch_, std::max<size_t>(bytes, 1)));
      scratch_bytes_ = bytes;
    }
    return scratch_;
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
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> communicator_nccl(double timeout_s, int device) {
  int rank = 0, world = 1;
  if (topology_mpi_active()) {
    DSV4_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    DSV4_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world));
  }
  return std::make_unique<NcclCommunicator>(rank, world, timeout_s, device);
}

}  // namespace dsv4::dist
