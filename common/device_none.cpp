// device_none.cpp: the CPU build's device query (no CUDA compiled in).
#include "common/device.h"

#include "common/check.h"

namespace dsv4 {
int device_count() { return 0; }
std::string device_describe(int) { return "no CUDA in this build"; }
bool built_with_cuda() { return false; }

namespace {
[[noreturn]] void no_cuda() { DSV4_FAIL("device", "device memory needs a CUDA build (configure with the cuda preset)"); }
}  // namespace
void* device_alloc(size_t) { no_cuda(); }
void device_free(void*) noexcept {}
void device_upload(void*, const void*, size_t) { no_cuda(); }
void device_download(void*, const void*, size_t) { no_cuda(); }
DeviceMemory device_memory_zeros(size_t) { no_cuda(); }
}  // namespace dsv4
