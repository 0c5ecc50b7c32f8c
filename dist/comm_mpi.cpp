// comm_mpi.cpp: the MPI host backend of Communicator (see communicator.h). Every collective is
// the non-blocking MPI call polled with MPI_Test until done or past the watchdog deadline. Open
// MPI moves a large message only while both sides poll (shared-memory fragments), so sleeping
// between tests stretches a transfer by the sleeps: with a core per rank on the host the poll
// only yields; with more ranks than cores (4 ranks on 2 cores in CI) it sleeps, so the ranks
// still computing keep the cores. DSV4_MPI_WAIT=spin|sleep overrides the choice.
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <thread>

#include "common/check.h"
#include "dist/communicator.h"
#include "dist/run_phase.h"

namespace dsv4::dist {
namespace {

// MPI counts are int (STYLE §6.7): at most this many elements per call.
constexpr size_t kMaxChunk = size_t{1} << 30;

MPI_Datatype mpi_type(ElemType t) {
  switch (t) {
    case ElemType::kF32: return MPI_FLOAT;
    case ElemType::kF64: return MPI_DOUBLE;
    case ElemType::kI64: return MPI_INT64_T;
    case ElemType::kU8: return MPI_UINT8_T;
  }
  return MPI_BYTE;
}
MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::kSum ? MPI_SUM : MPI_MAX; }

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, int rank, int world, double timeout_s, bool spin)
      : Communicator(rank, world, timeout_s), comm_(comm), spin_(spin) {}
  ~MpiCommunicator() override {
    if (comm_ != MPI_COMM_NULL && topology_mpi_alive()) MPI_Comm_free(&comm_);
  }
  std::string_view backend() const override { return "mpi"; }

  void reduce(void* buf, size_t count, ElemType type, ReduceOp op, int root) override {
    check_root(root, "reduce");
    char* p = static_cast<char*>(buf);
    for (size_t done = 0; done < count;) {
      const size_t n = std::min(kMaxChunk, count - done);
      void* at = p + done * elem_size(type);
      MPI_Request req;
      if (rank() == root) {
        DSV4_MPI_CHECK(MPI_Ireduce(MPI_IN_PLACE, at, static_cast<int>(n), mpi_type(type), mpi_op(op), root, comm_, &req));
      } else {
        DSV4_MPI_CHECK(MPI_Ireduce(at, nullptr, static_cast<int>(n), mpi_type(type), mpi_op(op), root, comm_, &req));
      }
      wait(req, "reduce");
      done += n;
    }
  }

  void all_reduce(void* buf, size_t count, ElemType type, ReduceOp op) override {
    char* p = static_cast<char*>(buf);
    for (size_t done = 0; done < count;) {
      const size_t n = std::min(kMaxChunk, count - done);
      MPI_Request req;
      DSV4_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, p + done * elem_size(type), static_cast<int>(n), mpi_type(type),
                                    mpi_op(op), comm_, &req));
      wait(req, "all_reduce");
      done += n;
    }
  }

  void broadcast(void* buf, size_t bytes, int root) override {
    check_root(root, "broadcast");
    char* p = static_cast<char*>(buf);
    for (size_t done = 0; done < bytes;) {
      const size_t n = std::min(kMaxChunk, bytes - done);
      MPI_Request req;
      DSV4_MPI_CHECK(MPI_Ibcast(p + done, static_cast<int>(n), MPI_BYTE, root, comm_, &req));
      wait(req, "broadcast");
      done += n;
    }
  }

  void all_gather(const void* in, size_t bytes, void* out) override {
    DSV4_CHECK_IN("dist", bytes <= static_cast<size_t>(INT_MAX), "all_gather of %zu bytes per rank (at most %d)", bytes,
                  INT_MAX);
    MPI_Request req;
    DSV4_MPI_CHECK(MPI_Iallgather(in, static_cast<int>(bytes), MPI_BYTE, out, static_cast<int>(bytes), MPI_BYTE, comm_, &req));
    wait(req, "all_gather");
  }

  void barrier() override {
    MPI_Request req;
    DSV4_MPI_CHECK(MPI_Ibarrier(comm_, &req));
    wait(req, "barrier");
  }

  [[noreturn]] void abort_job(int exit_code) noexcept override {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::_Exit(exit_code);  // MPI_Abort does not return; this is for a broken MPI
  }

 private:
  void check_root(int root, const char* what) const {
    DSV4_CHECK_IN("dist", root >= 0 && root < world(), "%s to root rank %d in a world of %d", what, root, world());
  }

  // Polls `req` until it completes or the watchdog deadline passes (then aborts the job).
  void wait(MPI_Request& req, const char* what) {
    run_phase_wait(this, timeout_s(), what, [&] {
      int done = 0;
      DSV4_MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
      return done != 0;
    }, spin_ ? 0 : 2000);
  }

  static bool topology_mpi_alive() {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
  }

  MPI_Comm comm_;
  bool spin_;
};

// Whether waits poll without sleeping: as told (DSV4_MPI_WAIT), else when this host has a core
// per rank.
bool wait_spins(MPI_Comm comm, MpiWait wait) {
  if (wait != MpiWait::kAuto) return wait == MpiWait::kSpin;
  MPI_Comm local;
  DSV4_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local));
  int ranks_here = 1;
  DSV4_MPI_CHECK(MPI_Comm_size(local, &ranks_here));
  DSV4_MPI_CHECK(MPI_Comm_free(&local));
  return static_cast<unsigned>(ranks_here) <= std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

std::unique_ptr<Communicator> communicator_mpi(double timeout_s, MpiWait wait) {
  int init = 0;
  DSV4_MPI_CHECK(MPI_Initialized(&init));
  DSV4_CHECK_IN("dist", init, "communicator_mpi needs MPI initialized (topology_init)");
  MPI_Comm comm;
  DSV4_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm));
  DSV4_MPI_CHECK(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
  int rank = 0, world = 1;
  DSV4_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  DSV4_MPI_CHECK(MPI_Comm_size(comm, &world));
  return std::make_unique<MpiCommunicator>(comm, rank, world, timeout_s, wait_spins(comm, wait));
}

}  // namespace dsv4::dist
