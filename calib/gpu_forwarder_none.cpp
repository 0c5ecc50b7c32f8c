// gpu_forwarder_none.cpp: the CPU build's gpu_forwarder_create (see gpu_forwarder.h).
#include "calib/gpu_forwarder.h"

#include "common/check.h"

namespace dsv4::calib {

std::unique_ptr<GpuForwarder> gpu_forwarder_create(const model::ModelConfig&, const GpuForwarderOptions&) {
  DSV4_FAIL("calibrate", "--device cuda: this dsv4-calib was built without CUDA (configure with the cuda preset)");
}

}  // namespace dsv4::calib
