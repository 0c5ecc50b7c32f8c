// verify_check.h: the pieces the verify_*.cpp files share, internal to verify (callers use
// verify.h): the expected artifact re-derived from recipe.yaml and the source, the bookkeeping of
// one VerifyCheck (note a pass or a failure, keep the first examples, close with a detail line),
// and the entry point of each check, grouped by the file that holds it:
//   verify_files.cpp           files, source_identity (what must be on disk, and from which source)
//   verify_finite.cpp          finite (no NaN or infinity in the artifact or the source)
//   verify_keys.cpp            key_set, no_source_scale, mtp_unquantized (which tensors, which dtypes)
//   verify_copies.cpp          fp32_bit_exact, copies_bit_exact, decoded_bf16_exact, mtp_source_exact,
//                              mtp_aliases (unquantized tensors against their origin)
//   verify_config.cpp          config (config.json invariants, vLLM's resolution of every module)
//   verify_reconstruction.cpp  reconstruction (‖deq − W‖/‖W‖ of each quantized module within its bound)
//   verify_gptq_signature.cpp  gptq_signature (GPTQ modules differ from RTN)
// verify.cpp runs them in report order. Tests: tests/calib/test_verify.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "calib/artifact_layout.h"
#include "calib/module_plan.h"
#include "calib/recipe.h"
#include "calib/verify.h"
#include "common/dtype.h"
#include "common/safetensors.h"
#include "model/config.h"

namespace dsv4::calib::verify_detail {

// What the artifact should be: its own recipe planned on the source.
struct Expected {
  Recipe recipe;
  model::ModelConfig config;  // the source's
  ModulePlan plan;
  ArtifactLayout layout;
  std::optional<nlohmann::ordered_json> manifest;
};

// ---- check bookkeeping ----

// A failing check keeps this many examples; the report counts the rest.
inline constexpr size_t kMaxExamples = 10;

inline void note_ok(VerifyCheck& c) { ++c.checked; }

inline void note_fail(VerifyCheck& c, std::string what) {
  ++c.checked;
  ++c.failed;
  if (c.examples.size() < kMaxExamples) c.examples.push_back(std::move(what));
}

inline long long ll(int64_t v) { return static_cast<long long>(v); }
inline int64_t passed(const VerifyCheck& c) { return c.checked - c.failed; }

inline VerifyCheck& finish(VerifyCheck& c, std::string detail) {
  c.passed = c.failed == 0;
  c.detail = std::move(detail);
  return c;
}

// Error texts and JSON values go into one-line examples: long ones are cut.
inline std::string clip(std::string s, size_t n = 80) {
  if (s.size() > n) s = s.substr(0, n) + "...";
  return s;
}

inline std::string spec_string(DType d, const std::vector<int64_t>& shape) {
  return std::string(dtype_name(d)) + " " + shape_string(shape);
}

// Evenly spread indices: all of [0, n) when k <= 0 or k >= n.
std::vector<size_t> sample_indices(size_t n, int k);

// ---- the checks (each fills its VerifyCheck and closes it with finish) ----

// Reads the side files and the shards (the manifest into e.manifest). Returns false when nothing
// else can be checked.
bool files_check(const std::string& art_dir, const Checkpoint* art, const std::string& art_error,
                 const std::string& src_dir, Expected& e, bool recipe_ok, const std::string& recipe_error,
                 VerifyCheck& c);
void source_identity_check(const Expected& e, const Checkpoint& src, VerifyCheck& c);
// Every tensor of both checkpoints scanned for NaN and infinity. Returns false when the source holds
// any: the checks that decode it would stop at its first such tensor, so the report ends there.
bool finite_check(const Checkpoint& art, const Checkpoint& src, int threads, VerifyCheck& c);

// key_set also fills report.families.
void key_set_check(const Expected& e, const Checkpoint& art, VerifyReport& report, VerifyCheck& c);
void source_scale_check(const Expected& e, const Checkpoint& art, VerifyCheck& c);
void mtp_unquantized_check(const Expected& e, const Checkpoint& art, VerifyCheck& c);

// The five checks over unquantized tensors, filled by one pass over them.
struct CopyChecks {
  VerifyCheck fp32{"fp32_bit_exact"}, copies{"copies_bit_exact"}, decoded{"decoded_bf16_exact"},
      mtp{"mtp_source_exact"}, aliases{"mtp_aliases"};
};
void copies_check(const Expected& e, const Checkpoint& art, const Checkpoint& src, int threads, CopyChecks& cc);

void config_check(const Expected& e, const std::string& art_dir, const std::string& src_dir, VerifyCheck& c);

void reconstruction_check(const Expected& e, const Checkpoint& art, const Checkpoint& src, const VerifyOptions& o,
                          VerifyCheck& c);
void gptq_signature_check(const Expected& e, const Checkpoint& art, const Checkpoint& src, const VerifyOptions& o,
                          VerifyCheck& c);

}  // namespace dsv4::calib::verify_detail
