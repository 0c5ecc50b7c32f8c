// comm_nccl_none.cpp: the CPU build's communicator_nccl, which refuses (no NCCL compiled in), so
// callers need no #ifdef.
#include "common/check.h"
#include "dist/communicator.h"

namespace dsv4::dist {

std::unique_ptr<Communicator> communicator_nccl(double, int, size_t) {
  DSV4_FAIL("dist", "the NCCL communicator needs a CUDA build (configure with the cuda preset)");
}

}  // namespace dsv4::dist
