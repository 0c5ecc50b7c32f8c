// fuzz_safetensors_header.cpp: the bytes as a whole .safetensors file (u64 header length, JSON
// header, data area) opened by SafetensorsFile::open, the reader every checkpoint goes through.
// It takes a path (it mmaps the file), so each input is written to the scratch directory first.
// Seeds: tests/fuzz/corpus/safetensors_header/ (shards of the tiny checkpoint, cut small).
#include <cstddef>
#include <cstdint>

#include "common/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsv4;
  static const std::string path = fuzz::scratch_dir() + "/input.safetensors";
  fuzz::write_bytes(path, fuzz::text(data, size));
  fuzz::expect_errors([&] {
    const auto file = SafetensorsFile::open(path);
    // Touch every accepted tensor's bytes: open promised they lie inside the mapping.
    uint64_t sum = 0;
    for (const TensorInfo& t : file->tensors()) {
      for (std::byte b : file->bytes(t)) sum += static_cast<uint64_t>(b);
    }
    [[maybe_unused]] static volatile uint64_t sink;  // keeps the reads from being optimized away
    sink = sum;
  });
  return 0;
}
