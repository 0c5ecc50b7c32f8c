// device_arena.h: one preallocated block of device memory handed out as stack-ordered scratch
// (CUDA builds; issue 8). A layer's kernels take their buffers from it instead of calling
// cudaMalloc per launch, so a run's device memory is fixed up front and a too-small arena fails
// at the first take, naming the request, rather than deep inside a cuBLAS call.
//
//   DeviceArena arena(1ull << 30);                       // one cudaMalloc
//   {
//     ArenaScope scope(arena);                           // releases on exit
//     float* tmp = arena.take<float>(n, "observer min/max");
//     kernel<<<..., stream>>>(tmp, ...);
//   }
//
// Releasing only moves the top back on the host; it does not wait for kernels. That is safe when
// every user of the arena runs on one stream (stream order makes the next user wait), which is
// the rule: one arena per stream. Tests: tests/common/test_device_arena_cuda.cu.
#pragma once

#include <cstddef>
#include <string_view>

namespace dsv4 {

class DeviceArena {
 public:
  static constexpr size_t kAlign = 256;  // cudaMalloc's alignment: every take is vector-aligned

  explicit DeviceArena(size_t bytes);  // throws with the size when cudaMalloc fails
  ~DeviceArena();
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  // `bytes` from the top (rounded up to kAlign). Throws naming `what`, the request and what is
  // left when it does not fit.
  void* take_bytes(size_t bytes, std::string_view what);
  template <typename T>
  T* take(size_t count, std::string_view what) {
    return static_cast<T*>(take_bytes(count * sizeof(T), what));
  }

  size_t mark() const { return used_; }
  void release_to(size_t mark);  // throws if mark is above the top

  size_t capacity() const { return capacity_; }
  size_t used() const { return used_; }
  size_t high_water() const { return high_water_; }

 private:
  char* base_ = nullptr;
  size_t capacity_ = 0, used_ = 0, high_water_ = 0;
};

// Releases everything taken after its construction when it goes out of scope.
class ArenaScope {
 public:
  explicit ArenaScope(DeviceArena& arena) : arena_(arena), mark_(arena.mark()) {}
  ~ArenaScope() { arena_.release_to(mark_); }
  ArenaScope(const ArenaScope&) = delete;
  ArenaScope& operator=(const ArenaScope&) = delete;

 private:
  DeviceArena& arena_;
  size_t mark_;
};

}  // namespace dsv4
