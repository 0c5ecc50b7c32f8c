// test_weights_import.cpp: make-model --weights (model/weights_import.h): a checkpoint of F32
// weights under transformers 5.17 names (routed experts stacked as gate_up_proj / down_proj, the
// MTP block under mtp.S.*) or under release names becomes the release layout, with every value
// where it belongs; bad sources are refused before anything is written, naming the tensor.
//
// Source values: the decoded tensors of make-model's random tiny checkpoint. They already lie on
// the release grids, so re-encoding must give back exactly the same decoded values: any tensor
// taken from the wrong name, expert or rows (w1 vs w3) shows up as a mismatch.
#include <gtest/gtest.h>
#include <gmock/gmock.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "common/check.h"
#include "common/codec.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "model/inventory.h"
#include "model/names.h"
#include "model/synth_model.h"
#include "model/weight_decode.h"
#include "tests/scratch_dir.h"

namespace dsv4::model {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

struct Source {
  std::vector<TensorSpec> specs;
  std::map<std::string, std::vector<std::byte>> bytes;
};

const std::string& synth_dir() {
  static const std::string dir = [] {
    const std::string d = dsv4::testing::scratch_path("synth");
    synth_checkpoint_write(ModelConfig::tiny(), {.out_dir = d, .seed = 5, .max_shard_bytes = 1u << 20});
    return d;
  }();
  return dir;
}

// The logical values of a non-scale release tensor as floats (I64: its ids as floats).
std::vector<float> values_of(const Checkpoint& ck, const ModelConfig& c, const ExpectedTensor& t) {
  if (t.encoding == TensorEncoding::kFp8Block || t.encoding == TensorEncoding::kMxfp4)
    return weight_decode_linear(ck, t.name.substr(0, t.name.size() - 7), c.fp8_block);
  const auto b = ck.bytes(t.name);
  std::vector<float> out(static_cast<size_t>(ck.info(t.name).numel()));
  if (t.dtype == DType::kBF16) bf16_decode_n(b.data(), out.data(), out.size());
  if (t.dtype == DType::kF32) std::memcpy(out.data(), b.data(), out.size() * 4);
  if (t.dtype == DType::kI64) {
    for (size_t i = 0; i < out.size(); ++i) {
      int64_t v;
      std::memcpy(&v, b.data() + 8 * i, 8);  // a tensor's offset in the file need not be aligned
      out[i] = static_cast<float>(v);
    }
  }
  return out;
}

void put(Source& s, const std::string& name, DType dtype, std::vector<int64_t> shape, std::span<const std::byte> b) {
  s.specs.push_back({name, dtype, std::move(shape)});
  s.bytes[name].assign(b.begin(), b.end());
}

// The synth checkpoint's values as an F32 source; `hf`: under transformers names (experts stacked).
Source source_from_synth(bool hf) {
  const Checkpoint ck = Checkpoint::open(synth_dir());
  const ModelConfig c = ModelConfig::tiny();
  const NameMap names(c);
  Source s;
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> stacked;
  for (const ExpectedTensor& t : inventory_expected(c, 1)) {
    if (t.encoding == TensorEncoding::kScale) continue;
    if (t.dtype == DType::kI64) {
      put(s, hf ? names.hf_tensor(t.name)->name : t.name, DType::kI64, t.shape, ck.bytes(t.name));
      continue;
    }
    const std::vector<float> v = values_of(ck, c, t);
    const auto alias = hf ? names.hf_tensor(t.name) : std::nullopt;
    if (alias && alias->expert >= 0) {  // [E, R, cols]: gate_up R = 2I (w1 rows first), down R = D
      const int64_t rows = t.logical_shape[0], cols = t.logical_shape[1];
      const int64_t r = alias->row_begin >= 0 ? 2 * rows : rows;
      auto& [shape, data] = stacked[alias->name];
      shape = {c.n_routed_experts, r, cols};
      data.resize(static_cast<size_t>(c.n_routed_experts * r * cols));
      const int64_t row0 = alias->expert * r + std::max<int64_t>(alias->row_begin, 0);
      std::copy(v.begin(), v.end(), data.begin() + row0 * cols);
      continue;
    }
    put(s, alias ? alias->name : t.name, DType::kF32, t.logical_shape, std::as_bytes(std::span(v)));
  }
  for (const auto& [name, sd] : stacked) put(s, name, DType::kF32, sd.first, std::as_bytes(std::span(sd.second)));
  return s;
}

std::string source_write(const Source& s, const std::string& name) {
  const std::string dir = dsv4::testing::scratch_path(name);
  CheckpointWriter w(dir, s.specs, 1u << 20);
  for (const TensorSpec& t : s.specs) w.write(t.name, s.bytes.at(t.name));
  w.finish();
  return dir;
}

std::string import_to(const std::string& weights, const std::string& name) {
  const std::string out = dsv4::testing::scratch_path(name);
  synth_checkpoint_write(ModelConfig::tiny(),
                         {.out_dir = out, .max_shard_bytes = 1u << 20, .calibration_records = 0, .weights_dir = weights});
  return out;
}

TEST(WeightsImport, TransformersNamesGiveBackEveryReleaseValueExactly) {
  const std::string out = import_to(source_write(source_from_synth(true), "src_hf"), "out_hf");
  const Checkpoint a = Checkpoint::open(synth_dir()), b = Checkpoint::open(out);
  const ModelConfig c = ModelConfig::tiny();
  int compared = 0, experts = 0;
  for (const ExpectedTensor& t : inventory_expected(c, 1)) {
    if (t.encoding == TensorEncoding::kScale) continue;
    ASSERT_EQ(b.info(t.name).dtype, t.dtype) << t.name;
    const std::vector<float> want = values_of(a, c, t), got = values_of(b, c, t);
    ASSERT_EQ(got.size(), want.size()) << t.name;
    double norm = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(got[i], want[i]) << t.name << " element " << i << " of " << shape_string(t.logical_shape);
      norm += std::fabs(want[i]);
    }
    EXPECT_GT(norm, 0) << t.name << ": an all-zero tensor would compare vacuously";
    ++compared;
    experts += t.expert >= 0;
  }
  EXPECT_EQ(experts, 3 * c.n_routed_experts * (c.num_layers + 1));  // MTP experts come by release name
  EXPECT_EQ(compared, 263);  // tiny: 427 tensors, 164 of them .scale
}

TEST(WeightsImport, ReleaseNamesGiveTheSameBytes) {
  const std::string hf = import_to(source_write(source_from_synth(true), "src_hf2"), "out_hf2");
  const std::string rel = import_to(source_write(source_from_synth(false), "src_rel"), "out_rel");
  const Checkpoint a = Checkpoint::open(hf), b = Checkpoint::open(rel);
  ASSERT_EQ(a.names(), b.names());
  for (const std::string& n : a.names()) {
    const auto x = a.bytes(n), y = b.bytes(n);
    ASSERT_TRUE(x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size()) == 0) << n;
  }
}

// Imports a modified source and returns the error; the output directory must not exist after.
std::string import_error(Source s, const std::string& name) {
  const std::string src = source_write(s, "bad_src_" + name);
  const std::string out = dsv4::testing::scratch_path("bad_out_" + name);
  try {
    synth_checkpoint_write(ModelConfig::tiny(), {.out_dir = out, .calibration_records = 0, .weights_dir = src});
  } catch (const Error& e) {
    EXPECT_FALSE(fs::exists(out)) << name << ": something was written before the error";
    return e.what();
  }
  ADD_FAILURE() << name << ": no error";
  return "";
}

TEST(WeightsImport, RefusesABadSourceBeforeWritingAndNamesTheTensor) {
  const Source good = source_from_synth(true);
  auto drop = [&](const std::string& name) {
    Source s = good;
    std::erase_if(s.specs, [&](const TensorSpec& t) { return t.name == name; });
    s.bytes.erase(name);
    return s;
  };
  EXPECT_THAT(import_error(drop("model.layers.2.mlp.experts.gate_up_proj"), "missing"),
              AllOf(HasSubstr("layers.2.ffn.experts.0.w1.weight"), HasSubstr("model.layers.2.mlp.experts.gate_up_proj")));
  EXPECT_THAT(import_error(drop("mtp.0.e_proj.weight"), "missing_mtp"),
              AllOf(HasSubstr("'mtp.0.e_proj.weight'"), HasSubstr("no transformers name")));

  Source extra = good;
  const std::vector<float> four(4, 1.0f);
  put(extra, "model.layers.0.self_attn.q_a_proj.bias", DType::kF32, {4}, std::as_bytes(std::span(four)));
  EXPECT_THAT(import_error(extra, "extra"), AllOf(HasSubstr("1 tensor(s)"), HasSubstr("q_a_proj.bias")));

  Source shape = drop("model.layers.1.self_attn.q_a_proj.weight");
  const std::vector<float> small(128 * 128, 0.5f);
  put(shape, "model.layers.1.self_attn.q_a_proj.weight", DType::kF32, {128, 128}, std::as_bytes(std::span(small)));
  EXPECT_THAT(import_error(shape, "shape"), AllOf(HasSubstr("q_a_proj.weight"), HasSubstr("[128, 128]"),
                                                  HasSubstr("expected [128, 256]")));

  Source dtype = drop("model.norm.weight");
  const std::vector<int32_t> ints(256, 1);
  put(dtype, "model.norm.weight", DType::kI32, {256}, std::as_bytes(std::span(ints)));
  EXPECT_THAT(import_error(dtype, "dtype"), AllOf(HasSubstr("'model.norm.weight'"), HasSubstr("F32 or BF16")));

  Source nan = good;
  float* w = reinterpret_cast<float*>(nan.bytes.at("lm_head.weight").data());
  w[3 * 256 + 7] = std::nanf("");
  EXPECT_THAT(import_error(nan, "nan"), AllOf(HasSubstr("lm_head.weight"), HasSubstr("NaN or infinite"), HasSubstr("index 775")));
}

}  // namespace
}  // namespace dsv4::model
