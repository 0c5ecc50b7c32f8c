// test_device_arena_cuda.cu: common/device_arena.h (CUDA build; skips without a device unless
// DSV4_REQUIRE_GPU=1): aligned stack-ordered takes, scopes, the high-water mark, and errors that
// name the request.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "common/check.h"
#include "common/device_arena.h"
#include "tests/gpu_test.h"

namespace dsv4 {
namespace {

TEST(DeviceArena, TakesAreAlignedStackOrderedAndBounded) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  DeviceArena arena(4096);
  auto* a = arena.take<float>(3, "a");
  auto* b = arena.take<uint8_t>(1, "b");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % DeviceArena::kAlign, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) - reinterpret_cast<uintptr_t>(a), DeviceArena::kAlign);
  {
    ArenaScope scope(arena);
    arena.take<char>(1000, "inner");
    EXPECT_EQ(arena.used(), 2 * DeviceArena::kAlign + 1024);
  }
  EXPECT_EQ(arena.used(), 2 * DeviceArena::kAlign);
  EXPECT_EQ(arena.high_water(), 2 * DeviceArena::kAlign + 1024);
  try {
    arena.take<char>(4000, "Hessian scratch");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Hessian scratch needs 4000 bytes, 3584 of 4096 are left"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(arena.used(), 2 * DeviceArena::kAlign);  // a failed take changes nothing
  EXPECT_THROW(arena.release_to(arena.used() + 1), Error);
  arena.release_to(0);
  EXPECT_EQ(arena.take<float>(1, "again"), a);
}

}  // namespace
}  // namespace dsv4
