// module_solve.h: quantizes one planned module with its recipe group: GPTQ with the module's
// Hessian(s) for GPTQModifier groups, data-free rounding for QuantizationModifier groups, and
// the two exact conversions of the release's own encodings:
//   - FP8 block source + FP8 128×128 block scheme with e8m0 scales: the source codes and scales
//     are kept bit for bit (quantizer_fp8_block_reencode);
//   - MXFP4 source + INT4 symmetric group 32: one INT4 group per MX group
//     (quantizer_mxfp4_to_int4, min-max or MSE scales).
// Every other case rounds the decoded fp32 weight (RTN with the group's observer).
//
//   ModuleSolveInput in{.module = &m, .weight = w, .hessians = {&h}};   // m.scheme says how
//   SolvedModule s = module_solve(in, checkpoint);
//   s.dequant;   // [rows, cols] what the quantized module computes with (pass B)
//   s.tensors;   // compressed-tensors tensors, names without the module prefix
//
// wo_a (DeepseekV4GroupedLinear) has one Hessian per output group: rows [g·R, (g+1)·R) see only
// group g's input, so GPTQ solves each row block with its own H (row-separable strategies only).
// Tests: tests/calib/test_module_solve.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "calib/heldout.h"
#include "calib/module_plan.h"
#include "common/safetensors.h"
#include "quant/compressed_module.h"
#include "quant/gptq.h"
#include "quant/hessian.h"
#include "quant/turboquant.h"

namespace dsv4::calib {

enum class SolveMethod : uint8_t { kGptq, kRtn, kFp8Reencode, kMxfp4ToInt4 };
// Every method, in report order (progress lines and the manifest tally them this way).
inline constexpr SolveMethod kSolveMethods[] = {SolveMethod::kGptq, SolveMethod::kRtn, SolveMethod::kFp8Reencode,
                                                SolveMethod::kMxfp4ToInt4};
std::string_view solve_method_name(SolveMethod m);

struct ModuleSolveInput {
  const PlannedModule* module = nullptr;     // quantized: its resolved scheme says how
  const float* weight = nullptr;             // [rows, cols] decoded source weight (fp32)
  // GPTQ: one Hessian, or for wo_a one per output group (in group order).
  std::vector<const quant::HessianResult*> hessians;
  float amax_tensor = 0.0f;  // > 0: NVFP4 global-scale amax shared with a fused partner (w1/w3)
  float input_amax = 0.0f;   // static activation schemes: max |x| over the calibration tokens
  // GPTAQ (scheme gptq.asymmetric): 2/n ΔX·Xᵀ beside each Hessian (quant/gptaq.h); else empty.
  std::vector<const quant::HessianResult*> cross;
};

struct SolvedModule {
  std::string module;  // release name
  SolveMethod method = SolveMethod::kRtn;
  quant::QParams qparams;
  std::vector<int32_t> codes;     // [rows, cols]
  std::vector<int32_t> g_idx;     // actorder=group only
  std::vector<float> dequant;     // [rows, cols]
  std::vector<quant::EncodedTensor> tensors;  // weight tensors + static activation tensors
  // GPTQ statistics (0 / kNone for data-free methods): loss summed over row blocks, relative
  // error tr(ΔHΔᵀ)/tr(WHWᵀ) (also for RTN when a Hessian is given), and what fell back.
  double loss = 0.0;
  double rel_error = -1.0;        // -1: no Hessian to measure it with
  double rtn_rel_error = -1.0;    // the same for RTN of the same weight (GPTQ only)
  double dampening_frac_used = 0.0;
  quant::GptqFallback fallback = quant::GptqFallback::kNone;
  int64_t tokens = 0;             // tokens behind the Hessian (sum over wo_a groups)
  double seconds = 0.0;
  HeldoutChoice heldout;          // calibration.heldout's candidates and choice (calib/heldout_solve.h)
};

// in.weight may be null when module_solve_needs_weight says so: the exact conversions read the
// source codes and scales themselves (decoding a full-width attention weight only to ignore it
// cost seconds a layer).
SolvedModule module_solve(const ModuleSolveInput& in, const Checkpoint& source);
bool module_solve_needs_weight(const ModuleSolveInput& in, const Checkpoint& source);

// The GPU path (calib/gpu_forwarder.h solves batches with quant/gptq_batch_cuda.h): whether a
// module can go there (GPTQ with one Hessian and a scheme the GPU sweep takes), and the module
// finished from its GptqResult as module_solve finishes one from gptq_solve (statistics, encoded
// tensors; seconds left to the caller). The relative errors, when given (the GPU computes them),
// replace the CPU's O(rows·cols²) evaluation (and then in.weight may be null: the GPU solved from
// its own copy); a no-token Hessian reports none either way.
bool module_solve_gpu_eligible(const ModuleSolveInput& in);
// `encoded`: the weight tensors when the GPU encoded them (result.codes may then be empty).
SolvedModule module_solve_from_gptq(const ModuleSolveInput& in, quant::GptqResult&& result,
                                    const double* rel_error = nullptr, const double* rtn_rel_error = nullptr,
                                    std::vector<quant::EncodedTensor>* encoded = nullptr);

// The turboquant profile's data-free modules, which the CUDA executor encodes on the GPU
// (GpuForwarder::turboquant_encode, bit for bit quant::tq_quantize), finished here as
// module_solve finishes them on the host (encoded tensors; seconds left to the caller).
bool module_solve_turboquant_data_free(const PlannedModule& module);
SolvedModule module_solve_from_turboquant(const ModuleSolveInput& in, quant::TqResult&& result);

// Whether a data-free module can be converted exactly from its source encoding (the FP8
// re-encode or MXFP4 -> INT4 paths above) instead of rounding the decoded weight.
SolveMethod module_data_free_method(const PlannedModule& module);

}  // namespace dsv4::calib
