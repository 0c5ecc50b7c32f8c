// fuzz_index_json.cpp: the bytes as model.safetensors.index.json of a checkpoint directory that
// also holds one valid shard (a.safetensors with tensors "x" and "y"), opened by
// Checkpoint::open, so the index's cross-checks against the shard run too. Checkpoint::open takes
// a directory, so the index is written to the scratch directory first.
// Seeds: tests/fuzz/corpus/index_json/.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

// The shard every input's index may name: written once through the project's own writer.
void write_shard(const std::string& dir) {
  using namespace dsv4;
  std::vector<TensorSpec> specs = {{"x", DType::kF32, {2}}, {"y", DType::kBF16, {3}}};
  SafetensorsWriter w(dir + "/a.safetensors", specs);
  const std::vector<std::byte> x(8, std::byte{1}), y(6, std::byte{2});
  w.write("x", x);
  w.write("y", y);
  w.finish();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  dsv4::fuzz::quiet_logs();
  write_shard(dsv4::fuzz::scratch_dir());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsv4;
  const std::string& dir = fuzz::scratch_dir();
  fuzz::write_bytes(dir + "/model.safetensors.index.json", fuzz::text(data, size));
  fuzz::expect_errors([&] {
    const Checkpoint ckpt = Checkpoint::open(dir);
    for (const std::string& name : ckpt.names()) (void)ckpt.bytes(name);
  });
  return 0;
}
