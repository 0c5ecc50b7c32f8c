// device_none.cpp: the CPU build's device query (no CUDA compiled in).
#include "common/device.h"

namespace dsv4 {
int device_count() { return 0; }
std::string device_describe(int) { return "no CUDA in this build"; }
bool built_with_cuda() { return false; }
}  // namespace dsv4
