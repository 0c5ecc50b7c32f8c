// test_block_decode_finite_cuda.cu: what block_weights_decode_cuda decodes or copies on the GPU
// never passes the host decoders' NaN scan, so it counts its own output on the device (issue 26): a
// NaN E8M0 scale of a routed expert (the batched MXFP4 path, with and without the pinned buffer),
// a NaN FP8 code of an attention linear and an infinity in a BF16 linear copied as stored are each
// a user error naming the tensor, as the CPU decode of the same checkpoint is. Compiled in the CUDA build
// only; skips without a device.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "common/check.h"
#include "common/fs.h"
#include "common/pinned_host.h"
#include "common/safetensors.h"
#include "model/block_weights.h"
#include "model/forward_cuda.h"
#include "model/synth_model.h"
#include "tests/gpu_test.h"

namespace dsv4::model {
namespace {

namespace fs = std::filesystem;

// A fresh tiny checkpoint whose tensor `name` starts with the bytes `head` (a NaN's encoding).
std::string damaged_copy(const std::string& tag, const std::string& name, const std::string& head) {
  const std::string dir = ::testing::TempDir() + "dsv4_decode_finite_" + tag + "_" + std::to_string(::getpid());
  fs::remove_all(dir);
  synth_checkpoint_write(ModelConfig::tiny(), {.out_dir = dir, .seed = 5, .calibration_records = 0});
  std::string file;
  uint64_t begin = 0;
  {
    const Checkpoint c = Checkpoint::open(dir);  // unmapped before the file changes
    file = dir + "/" + c.file_of(name);
    begin = c.info(name).data_begin;
  }
  std::string bytes = read_file(file);
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  bytes.replace(8 + header + begin, head.size(), head);
  std::ofstream(file, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return dir;
}

// `decode` throws a user error naming `tensor` and a NaN or infinite count.
void expect_named(const std::function<void()>& decode, const std::string& tensor) {
  try {
    decode();
    ADD_FAILURE() << "decoded a block whose " << tensor << " holds NaN";
  } catch (const Error& e) {
    EXPECT_TRUE(e.user()) << e.what();
    EXPECT_NE(e.message().find(tensor), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("NaN or infinite value(s)"), std::string::npos) << e.message();
  }
}

TEST(BlockDecodeFiniteCuda, NanInADecodedOrCopiedLinearIsAUserErrorNamingIt) {
  DSV4_REQUIRE_GPU_OR_SKIP();
  const ModelConfig c = ModelConfig::tiny();
  const std::string prefix = "layers.1.";
  struct Case {
    std::string tag, tensor, head;
  };
  // E8M0 0xff is NaN (its 1x32 block of an MXFP4 expert decodes to NaN: the batched path); FP8
  // E4M3 0x7f is NaN (an attention linear: fill's own path); BF16 0xff80 (little-endian 80 ff) is
  // -Inf in the router's gate, which is copied to the GPU as stored.
  for (const Case& k : {Case{"expert_scale", prefix + "ffn.experts.3.w1.scale", "\xff"},
                        Case{"fp8_code", prefix + "attn.wq_a.weight", "\x7f"},
                        Case{"bf16_copy", prefix + "ffn.gate.weight", "\x80\xff"}}) {
    SCOPED_TRACE(k.tag);
    const std::string dir = damaged_copy(k.tag, k.tensor, k.head);
    const Checkpoint ckpt = Checkpoint::open(dir);
    const std::string linear = k.tensor.substr(0, k.tensor.rfind('.'));
    expect_named([&] { block_weights_decode_cuda(ckpt, c, prefix, 1); }, linear + ".weight (decoded on the GPU)");
    PinnedHostBuffer pinned(size_t{1} << 20);
    expect_named([&] { block_weights_decode_cuda(ckpt, c, prefix, 1, &pinned); }, linear + ".weight");
    // The CPU decode says the same (routed experts decode when first used).
    expect_named([&] { block_weights_load(ckpt, c, prefix, 1).ffn.experts.get(3); }, linear);
    fs::remove_all(dir);
  }
}

}  // namespace
}  // namespace dsv4::model
