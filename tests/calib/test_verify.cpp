// test_verify.cpp: `verify` on real runs of the tiny synthetic checkpoint: a data-free artifact
// (int4_int8.yaml) and a GPTQ one (w4a16_mtp.yaml) pass every check, with nothing vacuous; then
// copies of them, each tampered in one way, fail closed with the specific check naming the
// offending item: a leaked source `.scale`, one changed FP32 tensor, a source key dropped from
// config.json, a changed MTP tensor or alias, a leftover temporary file, a missing recipe.yaml,
// the wrong source (by content and by the manifest's identities), and a GPTQ artifact whose
// experts were replaced by RTN codes (the differential check).
// Each TEST builds its own source and artifact (ctest runs every TEST in its own process), so the
// tamper cases are grouped to keep the suite at a few seconds.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include <nlohmann/json.hpp>

#include "calib/artifact_decode.h"
#include "calib/calibrate.h"
#include "calib/verify.h"
#include "common/fs.h"
#include "common/safetensors.h"
#include "model/block_weights.h"
#include "model/synth_model.h"
#include "quant/compressed_module.h"
#include "quant/quant_scheme.h"
#include "quant/quantizer.h"

namespace dsv4::calib {
namespace {

namespace fs = std::filesystem;

std::string temp_root() { return ::testing::TempDir() + "dsv4_verify_" + std::to_string(::getpid()); }

std::string temp_dir(const std::string& name) {
  const std::string d = temp_root() + "/" + name;
  fs::remove_all(d);
  fs::create_directories(temp_root());
  return d;
}

// Removes the test's directories when it passed (kept for inspection when it failed).
struct TempCleanup {
  ~TempCleanup() {
    if (!::testing::Test::HasFailure()) fs::remove_all(temp_root());
  }
};

std::string tiny_source(const std::string& name = "source", uint64_t seed = 3) {
  const std::string d = temp_dir(name);
  model::synth_checkpoint_write(model::ModelConfig::tiny(), {.out_dir = d, .seed = seed, .threads = 2});
  return d;
}

// Calibrates `source` with a shipped recipe (few samples: GPTQ needs only some tokens here).
std::string calibrate(const std::string& source, const std::string& recipe, const std::string& out) {
  Recipe r = recipe_load(std::string(DSV4_SOURCE_DIR) + "/recipes/" + recipe);
  recipe_apply_overrides(r, {.model = source, .dataset = source + "/calib.jsonl", .out = out, .num_samples = 4,
                             .seq_len = 32});
  calibrate_run(r, {.threads = 2, .progress = false});
  return out;
}

std::string copy_of(const std::string& artifact, const std::string& name) {
  const std::string d = temp_dir(name);
  fs::copy(artifact, d, fs::copy_options::recursive);
  return d;
}

const VerifyCheck& check_of(const VerifyReport& r, const std::string& name) {
  const VerifyCheck* c = r.find(name);
  if (c == nullptr) {
    static const VerifyCheck missing{"<missing>", false};
    ADD_FAILURE() << "check " << name << " did not run:\n" << verify_report_text(r);
    return missing;
  }
  return *c;
}

bool examples_mention(const VerifyCheck& c, const std::string& what) {
  for (const std::string& e : c.examples) {
    if (e.find(what) != std::string::npos) return true;
  }
  return false;
}

// Asserts the report failed, and that check `name` failed naming `what`.
void expect_fails(const VerifyReport& r, const std::string& name, const std::string& what) {
  const std::string text = verify_report_text(r);
  EXPECT_FALSE(r.ok()) << text;
  EXPECT_NE(text.find("verify: FAILED"), std::string::npos) << text;
  const VerifyCheck& c = check_of(r, name);
  EXPECT_FALSE(c.passed) << name << "\n" << text;
  EXPECT_GT(c.failed, 0) << name;
  EXPECT_TRUE(examples_mention(c, what)) << name << " does not name " << what << "\n" << text;
}

void expect_all_pass(const VerifyReport& r) {
  const std::string text = verify_report_text(r);
  ASSERT_TRUE(r.ok()) << text;
  EXPECT_NE(text.find("verify: OK"), std::string::npos) << text;
  for (const VerifyCheck& c : r.checks) {
    EXPECT_TRUE(c.passed) << c.name;
    EXPECT_EQ(c.failed, 0) << c.name;
  }
  EXPECT_FALSE(r.families.empty());
  const nlohmann::ordered_json j = verify_report_json(r);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["checks"].size(), r.checks.size());
}

// Rewrites tensors of a checkpoint directory in place: `edit` gets each named tensor's bytes.
// One read and one write per shard file.
using TensorEdit = std::function<void(std::byte*, size_t)>;
void patch_tensors(const std::string& dir, const std::map<std::string, TensorEdit>& edits) {
  struct Where {
    std::string name;
    uint64_t begin, end;
  };
  std::map<std::string, std::vector<Where>> by_file;
  {
    const Checkpoint c = Checkpoint::open(dir);
    for (const auto& [name, fn] : edits) {
      const TensorInfo& i = c.info(name);
      by_file[c.file_of(name)].push_back({name, i.data_begin, i.data_end});
    }
  }  // unmapped before the files change
  for (const auto& [file, list] : by_file) {
    const std::string path = dir + "/" + file;
    std::string bytes = read_file(path);
    uint64_t header = 0;
    std::memcpy(&header, bytes.data(), 8);
    for (const Where& w : list) {
      edits.at(w.name)(reinterpret_cast<std::byte*>(bytes.data() + 8 + header + w.begin), w.end - w.begin);
    }
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(f.good()) << path;
  }
}

void flip_first_byte(std::byte* p, size_t n) {
  ASSERT_GT(n, 0u);
  p[0] ^= std::byte{0x40};
}

// A BF16 tensor's second value set to a quiet NaN (0x7fc0).
void bf16_nan_at_1(std::byte* p, size_t n) {
  ASSERT_GE(n, 4u);
  p[2] = std::byte{0xc0}, p[3] = std::byte{0x7f};
}

TEST(Verify, DataFreeArtifactPassesAndTamperedCopiesFail) {
  const TempCleanup cleanup;
  const std::string source = tiny_source();
  const std::string artifact = calibrate(source, "int4_int8.yaml", temp_dir("int4_int8"));
  const VerifyOptions opts{.threads = 2};

  const VerifyReport good = verify_artifact(artifact, source, opts);
  expect_all_pass(good);
  // Nothing vacuous: every family of check examined something.
  for (const char* name : {"files", "finite", "plan", "source_identity", "key_set", "no_source_scale",
                           "fp32_bit_exact", "copies_bit_exact", "decoded_bf16_exact", "mtp_source_exact",
                           "mtp_aliases", "mtp_unquantized", "config", "reconstruction"}) {
    EXPECT_GT(check_of(good, name).checked, 0) << name;
  }
  EXPECT_EQ(check_of(good, "reconstruction").checked, 4 * (8 * 3 + 4 + 3));  // experts, attention, shared
  EXPECT_EQ(check_of(good, "mtp_aliases").checked, 2);
  EXPECT_EQ(check_of(good, "gptq_signature").checked, 0);  // data-free: nothing to compare
  EXPECT_FALSE(check_of(good, "reconstruction").info.empty());

  {
    SCOPED_TRACE("a leaked source .scale tensor");
    const std::string d = copy_of(artifact, "leaked_scale");
    const std::string leaked = "layers.1.attn.wq_a.scale";
    const std::vector<uint8_t> scale(4, 127);
    SafetensorsWriter w(d + "/model-extra.safetensors", {{leaked, DType::kF8E8M0, {2, 2}}});
    w.write(leaked, std::as_bytes(std::span(scale)));
    w.finish();
    nlohmann::ordered_json index = nlohmann::ordered_json::parse(read_file(d + "/model.safetensors.index.json"));
    index["weight_map"][leaked] = "model-extra.safetensors";
    index["metadata"]["total_size"] = index["metadata"]["total_size"].get<uint64_t>() + scale.size();
    write_file_atomic(d + "/model.safetensors.index.json", index.dump(2));
    const VerifyReport r = verify_artifact(d, source, opts);
    expect_fails(r, "no_source_scale", leaked);
    expect_fails(r, "key_set", leaked);
    EXPECT_TRUE(check_of(r, "files").passed);  // the index itself is consistent
  }
  {
    SCOPED_TRACE("one FP32 tensor changed");
    const std::string d = copy_of(artifact, "fp32");
    patch_tensors(d, {{"layers.2.hc_ffn_base", flip_first_byte}});
    const VerifyReport r = verify_artifact(d, source, opts);
    expect_fails(r, "fp32_bit_exact", "layers.2.hc_ffn_base");
    EXPECT_EQ(check_of(r, "fp32_bit_exact").failed, 1);
    EXPECT_TRUE(check_of(r, "key_set").passed);
  }
  {
    SCOPED_TRACE("a source key dropped from config.json");
    const std::string d = copy_of(artifact, "config");
    nlohmann::ordered_json cfg = nlohmann::ordered_json::parse(read_file(d + "/config.json"));
    ASSERT_TRUE(cfg.contains("compress_ratios"));
    cfg.erase("compress_ratios");
    write_file_atomic(d + "/config.json", cfg.dump(2));
    const VerifyReport r = verify_artifact(d, source, opts);
    expect_fails(r, "config", "compress_ratios");
    EXPECT_EQ(check_of(r, "config").failed, 1);
  }
  {
    // What compressed-tensors >= 0.19 refuses fails verify, whatever our own reader makes of it.
    SCOPED_TRACE("a config group compressed-tensors refuses");
    const std::string d = copy_of(artifact, "ct_rules");
    nlohmann::ordered_json cfg = nlohmann::ordered_json::parse(read_file(d + "/config.json"));
    nlohmann::ordered_json& groups = cfg["quantization_config"]["config_groups"];
    ASSERT_FALSE(groups.empty());
    nlohmann::ordered_json& w = groups.begin().value()["weights"];
    w["actorder"] = "group";
    w["scale_dtype"] = "e8m0";
    write_file_atomic(d + "/config.json", cfg.dump(2));
    const VerifyReport r = verify_artifact(d, source, opts);
    expect_fails(r, "config", "rule args.actorder");
    expect_fails(r, "config", "rule args.dtype");
  }
  {
    SCOPED_TRACE("an MTP tensor changed");
    const std::string d = copy_of(artifact, "mtp");
    patch_tensors(d, {{"mtp.0.attn.wq_a.weight", flip_first_byte}});  // the exact BF16 decode of FP8
    const VerifyReport r = verify_artifact(d, source, opts);
    expect_fails(r, "mtp_source_exact", "mtp.0.attn.wq_a.weight");
    EXPECT_TRUE(check_of(r, "mtp_aliases").passed);
  }
  {
    SCOPED_TRACE("an MTP alias changed");
    const std::string d = copy_of(artifact, "alias");
    patch_tensors(d, {{"mtp.0.head.weight", flip_first_byte}});
    expect_fails(verify_artifact(d, source, opts), "mtp_aliases", "mtp.0.head.weight");
  }
  {
    SCOPED_TRACE("a leftover temporary of an interrupted write");
    const std::string d = copy_of(artifact, "stray");
    write_file_atomic(d + "/model-00002-of-00002.safetensors.tmp.4242", "partial");
    const VerifyReport r = verify_artifact(d, source, opts);
    expect_fails(r, "files", "model-00002-of-00002.safetensors.tmp.4242");
    EXPECT_GT(r.checks.size(), 1u);  // not fatal: the other checks still run
  }
  {
    SCOPED_TRACE("recipe.yaml missing: nothing else can be checked");
    const std::string d = copy_of(artifact, "no_recipe");
    fs::remove(d + "/recipe.yaml");
    const VerifyReport r = verify_artifact(d, source, opts);
    expect_fails(r, "files", "recipe.yaml");
    EXPECT_EQ(r.checks.size(), 1u);
  }
  {
    SCOPED_TRACE("verified against another source of the same shapes (its file identities match)");
    const std::string other = tiny_source("other_source", 4);
    const VerifyReport r = verify_artifact(artifact, other, opts);
    expect_fails(r, "fp32_bit_exact", "hc_head");
    EXPECT_FALSE(check_of(r, "copies_bit_exact").passed);
    EXPECT_FALSE(check_of(r, "mtp_source_exact").passed);
    EXPECT_FALSE(check_of(r, "mtp_aliases").passed);
  }
  {
    SCOPED_TRACE("the manifest records another source");
    const std::string d = copy_of(artifact, "identity");
    nlohmann::ordered_json m = nlohmann::ordered_json::parse(read_file(d + "/calib_manifest.json"));
    auto& files = m["source"]["files"];
    ASSERT_TRUE(files.contains("config.json"));
    files["config.json"]["fnv1a64"] = "0000000000000000";
    write_file_atomic(d + "/calib_manifest.json", m.dump(2));
    expect_fails(verify_artifact(d, source, opts), "source_identity", "config.json");
  }
  {
    // Issue 26: a NaN copied into the MTP block byte for byte passed every other check.
    SCOPED_TRACE("a NaN in the artifact's MTP norm");
    const std::string d = copy_of(artifact, "nan_artifact");
    patch_tensors(d, {{"mtp.0.attn_norm.weight", bf16_nan_at_1}});
    const VerifyReport r = verify_artifact(d, source, opts);
    const std::string shard = Checkpoint::open(d).file_of("mtp.0.attn_norm.weight");
    expect_fails(r, "finite", "artifact mtp.0.attn_norm.weight in " + shard +
                                  " holds 1 NaN or infinite value(s), the first at index 1");
    EXPECT_EQ(check_of(r, "finite").failed, 1);
    EXPECT_GT(r.checks.size(), 3u);  // an artifact's NaN ends nothing: the other checks run
  }
  {
    SCOPED_TRACE("a NaN in the source: named, and the checks that decode it do not run");
    const std::string s = copy_of(source, "nan_source");
    patch_tensors(s, {{"layers.0.attn_norm.weight", bf16_nan_at_1}});
    const VerifyReport r = verify_artifact(artifact, s, opts);
    expect_fails(r, "finite", "source layers.0.attn_norm.weight in ");
    EXPECT_NE(check_of(r, "finite").detail.find("the source is damaged"), std::string::npos);
    EXPECT_EQ(r.checks.back().name, "finite");
  }
}

TEST(Verify, GptqArtifactPassesAndRtnCodesFailTheDifferential) {
  const TempCleanup cleanup;
  const std::string source = tiny_source();
  const std::string artifact = calibrate(source, "w4a16_mtp.yaml", temp_dir("w4a16_mtp"));
  const VerifyOptions opts{.threads = 2};

  const VerifyReport good = verify_artifact(artifact, source, opts);
  expect_all_pass(good);
  EXPECT_EQ(check_of(good, "gptq_signature").checked, 16);  // the default sample of the 96 GPTQ experts
  EXPECT_EQ(check_of(good, "reconstruction").checked, 4 * (8 * 3 + 4));
  EXPECT_GT(check_of(good, "mtp_source_exact").checked, 0);

  // Replace every GPTQ expert with round-to-nearest of its source weight, encoded the same way:
  // a valid artifact of the right shape, reconstruction within bounds, but not GPTQ.
  const std::string d = copy_of(artifact, "rtn");
  const Recipe recipe = recipe_load(d + "/recipe.yaml");
  const RecipeGroup* group = nullptr;
  for (const RecipeModifier& m : recipe.modifiers) {
    if (m.kind == ModifierKind::kGptq) group = &m.groups.at(0);
  }
  ASSERT_NE(group, nullptr);
  const model::ModelConfig config = checkpoint_config_load(source);
  std::map<std::string, std::vector<std::byte>> replaced;
  {
    const Checkpoint a = Checkpoint::open(d), s = Checkpoint::open(source);
    for (const std::string& n : a.names()) {
      if (!n.starts_with("layers.") || !n.ends_with(".weight_packed")) continue;
      const std::string module = n.substr(0, n.rfind('.'));
      const bool w2 = module.ends_with(".w2");  // w1/w3 [inter, hidden], w2 [hidden, inter]
      const int64_t out = w2 ? config.hidden_size : config.moe_intermediate_size;
      const int64_t in = w2 ? config.moe_intermediate_size : config.hidden_size;
      const std::vector<float> w = model::linear_load(s, config, module, out, in).w;
      const quant::QuantArgs& args = group->scheme.weights;
      const quant::RtnResult rtn = quant::quantizer_rtn(args, w.data(), out, in);
      for (quant::EncodedTensor& t : quant::compressed_module_encode(quant::quant_scheme_format(group->scheme), args,
                                                                     rtn.qparams, rtn.codes, {}, out, in)) {
        replaced[module + "." + t.name] = std::move(t.bytes);
      }
    }
  }
  ASSERT_EQ(replaced.size(), 4u * 8 * 3 * 3);  // weight_packed, weight_scale, weight_shape
  std::map<std::string, TensorEdit> edits;
  for (const auto& [name, bytes] : replaced) {
    edits[name] = [&bytes, name](std::byte* p, size_t n) {
      ASSERT_EQ(n, bytes.size()) << name;
      std::memcpy(p, bytes.data(), n);
    };
  }
  patch_tensors(d, edits);
  const VerifyReport r = verify_artifact(d, source, opts);
  expect_fails(r, "gptq_signature", "layers.");
  EXPECT_NE(check_of(r, "gptq_signature").detail.find("looks like RTN"), std::string::npos);
  EXPECT_TRUE(check_of(r, "reconstruction").passed) << verify_report_text(r);  // RTN is within bounds
  EXPECT_TRUE(check_of(r, "key_set").passed);
  int failed = 0;
  for (const VerifyCheck& c : r.checks) failed += c.passed ? 0 : 1;
  EXPECT_EQ(failed, 1) << verify_report_text(r);
}

}  // namespace
}  // namespace dsv4::calib
