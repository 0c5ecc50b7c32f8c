// communicator.h: the collectives the calibration pipeline issues, behind one interface with an
// MPI host backend (CPU builds, CI) and an NCCL device backend (GPU builds) (DESIGN §1, STYLE §6).
//
//   std::unique_ptr<Communicator> comm = communicator_mpi(timeout_s);   // MPI_COMM_WORLD dup
//   comm->reduce(h.data(), h.size(), ElemType::kF32, ReduceOp::kSum, owner);  // partial H -> owner
//   comm->broadcast(blob.data(), blob.size(), owner);                         // solved weights
//
// Rules (seed_pipelines.md §2.1, every hang the field hit):
//   - every rank calls the same collectives in the same order, derived from the ownership plan
//     before the layer loop; nothing here decides on its own data whether to communicate;
//   - reduce (not all-reduce) where one rank needs the result;
//   - every collective runs under a watchdog: past `timeout_s` the rank prints where it was
//     (run_phase.h) and the job is aborted, never left hanging;
//   - counts are size_t; backends split them into chunks the library accepts (MPI counts are int).
// Buffers live where the backend works: host memory for MPI, device memory for NCCL.
// Tests: tests/dist/test_communicator.cpp (under mpirun -n 2 and -n 4).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::dist {

enum class ElemType : uint8_t { kF32, kF64, kI64, kU8 };
enum class ReduceOp : uint8_t { kSum, kMax };
size_t elem_size(ElemType t);

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int world() const { return world_; }
  virtual std::string_view backend() const = 0;

  // In place: on `root` buf becomes the reduction over all ranks; other ranks' buf is unchanged.
  virtual void reduce(void* buf, size_t count, ElemType type, ReduceOp op, int root) = 0;
  virtual void all_reduce(void* buf, size_t count, ElemType type, ReduceOp op) = 0;
  virtual void broadcast(void* buf, size_t bytes, int root) = 0;
  // Every rank's `bytes`-long block, concatenated in rank order into out[world * bytes].
  virtual void all_gather(const void* in, size_t bytes, void* out) = 0;
  virtual void barrier() = 0;
  // Ends the whole job now (MPI_Abort / ncclCommAbort first): for a watchdog timeout or an error
  // on this rank, after the message is printed. Never returns.
  [[noreturn]] virtual void abort_job(int exit_code) noexcept = 0;

  // Host helpers on top of the primitives (MPI backend, or host-staged).
  // A byte string from `root` to every rank (length first, then the bytes).
  void broadcast_string(std::string& s, int root);
  // Every rank's string, in rank order.
  std::vector<std::string> all_gather_strings(const std::string& mine);

  double timeout_s() const { return timeout_s_; }

 protected:
  Communicator(int rank, int world, double timeout_s) : rank_(rank), world_(world), timeout_s_(timeout_s) {}

 private:
  int rank_;
  int world_;
  double timeout_s_;
};

// How the MPI backend waits for a collective (DSV4_MPI_WAIT, read by launch/): kSpin polls
// without sleeping, kSleep sleeps between polls (up to 2 ms) so oversubscribed ranks leave the
// cores to the ranks still computing; kAuto spins when the host has a core per rank on it.
enum class MpiWait : uint8_t { kAuto, kSpin, kSleep };

// A communicator over MPI_COMM_WORLD (duplicated, MPI_ERRORS_RETURN). MPI must be initialized
// (topology_init). Collectives are non-blocking calls polled against the watchdog deadline.
std::unique_ptr<Communicator> communicator_mpi(double timeout_s, MpiWait wait = MpiWait::kAuto);

// CUDA builds (dist/comm_nccl.cpp; the CPU build's throws): an NCCL communicator over the MPI
// job (or of one rank without MPI) on `device`, which it binds (cudaSetDevice) for the calling
// thread. Buffers may be device or host memory: host buffers go through `staging_bytes` of device
// memory allocated here, a slice at a time, so that nothing is allocated after creation.
std::unique_ptr<Communicator> communicator_nccl(double timeout_s, int device, size_t staging_bytes = 64u << 20);

// A single-process communicator: every collective is the identity. Runs without MPI at all.
std::unique_ptr<Communicator> communicator_self();

}  // namespace dsv4::dist
