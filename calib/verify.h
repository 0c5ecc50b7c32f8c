// verify.h: `dsv4-calib verify OUT --source SRC`: re-reads an artifact and its source and fails
// closed on every check of DESIGN §3 and seed_pipelines.md §2.4 that applies to our layout.
//
//   VerifyReport r = verify_artifact("runs/q", "runs/tiny", {});
//   if (!r.ok()) for (const VerifyCheck& c : r.checks) if (!c.passed) ...
//
// Checks (each one a named VerifyCheck with counts and the first offending names):
//   - files: config.json, model.safetensors.index.json (total_size = sum of tensor bytes), every
//     shard header valid, recipe.yaml and calib_manifest.json present and parseable;
//   - key set: exactly the tensors artifact_layout() derives from the resolved recipe.yaml, the
//     source and the plan (nothing missing, nothing extra), dtypes and shapes equal; key counts per
//     tensor family reported;
//   - no leaked source `.scale` tensor (and no `weight_scale_inv`);
//   - copies byte-identical to the source: every FP32 tensor, every BF16/I64 tensor kept as is,
//     the whole MTP block (or, where its source was FP8/MXFP4, BF16 equal to the exact decode),
//     MTP aliases byte-identical to `head.weight` / `embed.weight`;
//   - decoded modules: BF16 equal to bf16(decode(source)) exactly;
//   - MTP unquantized: no weight_packed / weight_scale / weight_global_scale / input_* under mtp.;
//   - config.json: every source key kept with its value (except quantization_config),
//     quantization_config is compressed-tensors, status compressed, format consistent with the
//     groups, scale_fmt present, and artifact_config_check() finds no module that vLLM would
//     resolve differently from the plan;
//   - reconstruction: per quantized module, the relative Frobenius error of the artifact's
//     dequantized weight (artifact_decode.h) against the decoded source is below a bound that
//     depends on the scheme's bits; the worst modules are reported;
//   - GPTQ signature (differential): for GPTQ-quantized modules (from recipe.yaml), a sample of
//     modules must differ from the round-to-nearest codes of the same source weight (an artifact
//     that is pure RTN under a GPTQ recipe fails).
// Tests: tests/calib/test_verify.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace dsv4::calib {

struct VerifyOptions {
  int reconstruction_sample = 0;  // modules checked for reconstruction error; 0: all
  int gptq_sample = 16;           // GPTQ modules checked against RTN
  int threads = 0;
};

struct VerifyCheck {
  std::string name;      // "key_set", "fp32_bit_exact", ...
  bool passed = true;
  int64_t checked = 0;   // items examined
  int64_t failed = 0;
  std::vector<std::string> examples;  // the first offending items, with what was found/expected
  std::string detail;    // one-line summary (e.g. the worst reconstruction error)
};

struct VerifyReport {
  std::string artifact, source;
  std::vector<VerifyCheck> checks;
  bool ok() const;
};

VerifyReport verify_artifact(const std::string& artifact_dir, const std::string& source_dir,
                             const VerifyOptions& options);
std::string verify_report_text(const VerifyReport& report);
nlohmann::ordered_json verify_report_json(const VerifyReport& report);

}  // namespace dsv4::calib
