// verify.h: `dsv4-calib verify OUT --source SRC`: re-reads an artifact and its source and fails
// closed on every check of DESIGN §3 and seed_pipelines.md §2.4 that applies to our layout.
//
//   VerifyReport r = verify_artifact("runs/q", "runs/tiny", {});
//   std::fputs(verify_report_text(r).c_str(), stdout);
//   if (!r.ok()) for (const VerifyCheck& c : r.checks) if (!c.passed) ...
//
// The expected artifact is re-derived, not read from the artifact: the resolved recipe.yaml, the
// source checkpoint and its config.json give the plan (module_plan_build) and the exact tensor
// list (artifact_layout), which every check below compares against. Checks, in report order (each
// one a named VerifyCheck with counts and the first offending names):
//   - files: config.json, model.safetensors.index.json (total_size = sum of tensor bytes), every
//     shard header valid (Checkpoint::open), recipe.yaml and calib_manifest.json present and
//     parseable, the source's tokenizer files copied byte for byte (output.copy_tokenizer). When
//     config.json, the shards or recipe.yaml are unreadable no other check can run: the report
//     holds this check alone (failed); a `.safetensors` file the index does not list, or a
//     leftover `*.tmp.<pid>` of an atomic write, fails;
//   - finite: no tensor of the artifact or of the source holds NaN or infinity (each named with its
//     shard file and count; common/finite_scan.h); when the source holds any, the report ends here
//     (the checks that decode the source cannot run on it);
//   - plan: recipe.yaml planned on the source (module_plan_build + artifact_layout); when that
//     throws, the report ends here;
//   - source_identity: the manifest's source file identities (calibrate.h checkpoint_identity)
//     equal those of --source (verifying against another checkpoint would compare garbage). The
//     identities cover headers and sizes only: a source of the same shapes with other values
//     passes here and fails the byte and reconstruction checks;
//   - key_set: exactly the tensors of artifact_layout() (nothing missing, nothing extra), dtypes
//     and shapes equal; key counts per tensor family go to VerifyReport::families;
//   - no_source_scale: no leaked source `.scale` tensor and no `weight_scale_inv`;
//   - fp32_bit_exact: every FP32 tensor copied from the source is byte-identical to it;
//   - copies_bit_exact: every other tensor kept as is (BF16 linears and norms, I64 tid2eid, ...)
//     outside the MTP block is byte-identical;
//   - decoded_bf16_exact: every unquantized FP8/MXFP4 Linear outside MTP is BF16 equal to
//     bf16(decode(source)) exactly (the decode is exact in BF16, so no tolerance);
//   - mtp_source_exact: the whole MTP block: copies byte-identical, FP8/MXFP4 Linears equal to the
//     exact BF16 decode of their source;
//   - mtp_aliases: `mtp.S.head.weight` / `mtp.S.emb.tok_emb.weight` byte-identical to
//     `head.weight` / `embed.weight`;
//   - mtp_unquantized: nothing under `mtp.` is quantized: no weight_packed / weight_scale /
//     weight_global_scale / weight_zero_point / weight_g_idx / weight_shape / input_* / `.scale`
//     tensor, every MTP `.weight` is BF16 or FP32, and the plan quantizes no MTP module;
//   - config: every source key kept with its value (except quantization_config) and no key added,
//     quantization_config is compressed-tensors, status compressed, each group has a format and
//     the top-level format is that format or "mixed-precision", scale_fmt present, no rule of
//     compressed-tensors' validators broken (ct_rules.h: e.g. actorder "group", removed in 0.19), and
//     artifact_config_check() finds no module that vLLM would resolve differently from the plan;
//   - reconstruction: per quantized module, the relative Frobenius error ‖deq − W‖/‖W‖ of the
//     artifact's dequantized weight (artifact_decode.h) against the decoded source W must not
//     exceed its bound (below: verify_reconstruction_bound and the RTN factors); the worst module
//     of each family is listed in `info`;
//   - gptq_signature (differential): for a sample of the GPTQ-quantized modules (from recipe.yaml;
//     modules the manifest records as an RTN fallback are skipped), the artifact's dequantized
//     weight is compared with round-to-nearest of the same decoded source weight under the
//     group's args; at least one sampled module must differ from RTN by half a quantization step
//     or more in > 0.1% of its elements, else "artifact looks like RTN, not GPTQ".
// Tests: tests/calib/test_verify.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "quant/quant_args.h"

namespace dsv4::calib {

struct VerifyOptions {
  int reconstruction_sample = 0;  // modules checked for reconstruction error; 0: all
  int gptq_sample = 16;           // GPTQ modules checked against RTN
  int threads = 0;                // 0: all cores
};

struct VerifyCheck {
  std::string name;      // "key_set", "fp32_bit_exact", ...
  bool passed = true;
  int64_t checked = 0;   // items examined
  int64_t failed = 0;
  std::vector<std::string> examples;  // the first offending items, with what was found/expected
  std::string detail;    // one-line summary (e.g. the worst reconstruction error)
  std::vector<std::string> info;      // extra lines (reconstruction: the worst module per family)
};

struct VerifyReport {
  std::string artifact, source;
  std::vector<VerifyCheck> checks;
  std::vector<std::pair<std::string, int64_t>> families;  // artifact tensors per tensor_family, sorted
  bool ok() const;  // every check passed (and there is at least one)
  const VerifyCheck* find(const std::string& name) const;  // nullptr if the check did not run
};

// Runs every check above. Never throws for a damaged artifact (that is a failed check); throws
// dsv4::Error only when the source itself cannot be read.
VerifyReport verify_artifact(const std::string& artifact_dir, const std::string& source_dir,
                             const VerifyOptions& options);

// Reconstruction bound of a quantized module (relative Frobenius error ‖deq − W‖/‖W‖ against
// the decoded source W). A broken module (codes or scales mis-laid, wrong scale, garbage) lands
// near 1 or above; a correct one near its scheme's rounding error. The bound is
//   0                                             the exact FP8 re-encode of an FP8 source
//                                                 (module_solve.h): deq must equal W bit for bit;
//   verify_reconstruction_bound(args)             when the module is within it; else
//   max(that, factor × RTN error of W under args) with factor kVerifyDataFreeRtnFactor for
//                                                 data-free modules (RTN, MSE and the MXFP4 -> INT4
//                                                 conversion are at most a little worse than RTN on
//                                                 heavy-tailed weights) and kVerifyGptqRtnFactor for
//                                                 GPTQ modules.
// The table (about 2× what RTN reaches on Gaussian-like weights):
//   int ≥ 8 bits: 0.05 (int8 channel ≈ 0.01)      int 5..7: 0.15
//   int 4:        0.25 (int4 g128 ≈ 0.1, g32 ≈ 0.08)
//   int 3:        0.4  (int3 g128 ≈ 0.2)          int ≤ 2: 0.8
//   fp8:          0.1  (e4m3 ≈ 0.03)               fp4 (NVFP4 / MXFP4): 0.25 (≈ 0.1)
// GPTQ minimizes the output error ‖(W − Q)X‖, not the weight error, and pays for it in weight
// space, most where the Hessian is ill-conditioned (tokens ≈ input features): on the tiny model's
// MXFP4-decoded experts (RTN int4 g128 ≈ 0.13, int3 ≈ 0.30) GPTQ reached up to 2.75× RTN (int4
// 0.355, int3 0.80 with 128 tokens on 128 input features; 1.6× with 8× more tokens), hence 3.5.
// The price: a GPTQ module whose scales are all halved (error ≈ 0.5) passes at 3 bits.
inline constexpr double kVerifyGptqRtnFactor = 3.5;
inline constexpr double kVerifyDataFreeRtnFactor = 1.5;
double verify_reconstruction_bound(const quant::QuantArgs& weights);

// One line per check "PASS|FAIL name: checked N, failed M; detail", the failures' examples and
// info lines indented below it, then "verify: OK" or "verify: FAILED (k checks)".
std::string verify_report_text(const VerifyReport& report);
nlohmann::ordered_json verify_report_json(const VerifyReport& report);

}  // namespace dsv4::calib
