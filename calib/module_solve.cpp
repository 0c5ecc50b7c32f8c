// module_solve.cpp: one module -> codes, qparams, dequantized weight and its compressed tensors
// (see module_solve.h).
#include "calib/module_solve.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "calib/profile_layout.h"
#include "common/check.h"
#include "common/codec.h"
#include "common/dtype.h"
#include "common/log.h"
#include "quant/int_requant.h"
#include "quant/turboquant.h"
#include "quant/turboquant_gptq.h"
#include "quant/observer.h"
#include "quant/quant_scheme.h"
#include "quant/quantizer.h"

namespace dsv4::calib {
namespace {

using quant::QuantArgs;
using quant::Strategy;

bool is_fp8_block_e8m0(const QuantArgs& a) {
  return a.type == quant::QuantType::kFloat && a.num_bits == 8 && a.strategy == Strategy::kBlock &&
         a.block_structure[0] == 128 && a.block_structure[1] == 128 && a.scale_dtype == quant::ScaleDType::kE8m0;
}

bool is_int4_sym_g32(const QuantArgs& a) {
  return a.type == quant::QuantType::kInt && a.num_bits == 4 && a.symmetric && a.strategy == Strategy::kGroup &&
         a.group_size == 32;
}

std::vector<uint8_t> as_u8(std::span<const std::byte> b) {
  std::vector<uint8_t> out(b.size());
  std::memcpy(out.data(), b.data(), b.size());
  return out;
}

// The release FP8 path needs e8m0 scales; a checkpoint with F32 block scales (reportedly the
// Base model) is rounded from its decoded weight instead.
bool source_scales_e8m0(const Checkpoint& ckpt, const std::string& module) {
  return ckpt.info(module + ".scale").dtype == DType::kF8E8M0;
}

quant::RtnResult solve_fp8_reencode(const Checkpoint& ckpt, const PlannedModule& m, const QuantArgs& args) {
  const std::vector<uint8_t> codes = as_u8(ckpt.bytes(m.names.release + ".weight"));
  const std::vector<uint8_t> scales = as_u8(ckpt.bytes(m.names.release + ".scale"));
  return quant::quantizer_fp8_block_reencode(args, codes.data(), scales.data(), m.rows, m.cols);
}

quant::RtnResult solve_mxfp4_to_int4(const Checkpoint& ckpt, const PlannedModule& m, const QuantArgs& args) {
  const auto packed = ckpt.bytes(m.names.release + ".weight");
  DSV4_CHECK_IN("solve", static_cast<int64_t>(packed.size()) == m.rows * m.cols / 2,
                "%s.weight in %s holds %zu bytes, expected %lld for MXFP4 [%lld, %lld]", m.names.release.c_str(),
                ckpt.dir().c_str(), packed.size(), static_cast<long long>(m.rows * m.cols / 2),
                static_cast<long long>(m.rows), static_cast<long long>(m.cols));
  std::vector<uint8_t> nibbles(static_cast<size_t>(m.rows * m.cols));
  for (size_t i = 0; i < packed.size(); ++i) {
    const uint8_t b = static_cast<uint8_t>(packed[i]);
    nibbles[2 * i] = b & 0xF;  // low nibble = even input
    nibbles[2 * i + 1] = b >> 4;
  }
  const std::vector<uint8_t> scales = as_u8(ckpt.bytes(m.names.release + ".scale"));
  return quant::quantizer_mxfp4_to_int4(args, nibbles.data(), scales.data(), m.rows, m.cols);
}

// The appmana-dsv4-int converter's rules (quant/int_requant.h): INT4 per the recipe's scale mode,
// INT8 absmax / 127, from the exact decode of the source (MXFP4 here, FP8 decoded by the caller).
quant::DivisorRule appmana_rule(const ModuleScheme& s) {
  if (s.scheme.weights.num_bits != 4) return quant::DivisorRule::kQmax;
  switch (s.int4_scale_mode) {
    case Int4ScaleMode::kAbsmax7: return quant::DivisorRule::kQmax;
    case Int4ScaleMode::kAbsmax8: return quant::DivisorRule::kNegQmin;
    case Int4ScaleMode::kMse: return quant::DivisorRule::kSearch;
  }
  return quant::DivisorRule::kSearch;
}

quant::RtnResult solve_appmana_mxfp4(const Checkpoint& ckpt, const PlannedModule& m) {
  const auto packed = ckpt.bytes(m.names.release + ".weight");
  const std::vector<uint8_t> scales = as_u8(ckpt.bytes(m.names.release + ".scale"));
  DSV4_CHECK_IN("solve", static_cast<int64_t>(packed.size()) == m.rows * m.cols / 2 &&
                             static_cast<int64_t>(scales.size()) == m.rows * m.cols / 32,
                "%s in %s: %zu weight and %zu scale bytes, expected MXFP4 [%lld, %lld]", m.names.release.c_str(),
                ckpt.dir().c_str(), packed.size(), scales.size(), static_cast<long long>(m.rows),
                static_cast<long long>(m.cols));
  std::vector<float> w(static_cast<size_t>(m.rows * m.cols));
  for (size_t i = 0; i < w.size(); ++i) {
    const uint8_t b = static_cast<uint8_t>(packed[i / 2]);
    w[i] = e2m1_decode((i % 2 == 0) ? (b & 0xF) : (b >> 4)) * e8m0_decode(scales[i / 32]);
  }
  return quant::int_requant(m.scheme->scheme.weights, appmana_rule(*m.scheme), w.data(), m.rows, m.cols);
}

// turboquant: upstream's quantizer's result (quant::tq_quantize on the host, or its GPU twin):
// the codes are the codebook indices of the rotated groups, the qparams' scales the corrected
// group norms.
void take_turboquant(SolvedModule& s, const PlannedModule& m, quant::TqResult&& r) {
  s.codes = std::move(r.indices);
  s.qparams.rows = m.rows;
  s.qparams.cols = m.cols;
  s.qparams.scale_rows = m.rows;
  s.qparams.scale_cols = quant::tq_groups_per_row(m.cols, m.scheme->scheme.weights.group_size);
  s.qparams.scale = std::move(r.norms);
  s.dequant = std::move(r.dequant);
}

quant::TqCodec turboquant_codec(const PlannedModule& m) {
  return quant::TqCodec(m.scheme->scheme.weights.num_bits, static_cast<int>(m.scheme->scheme.weights.group_size));
}

void take_rtn(SolvedModule& s, quant::RtnResult&& r) {
  s.qparams = std::move(r.qparams);
  s.codes = std::move(r.codes);
  s.dequant = std::move(r.dequant);
}

// Loss summed, damping and fallback the most severe over the solves (one, or one per wo_a group).
void add_gptq_stats(SolvedModule& s, const quant::GptqResult& r) {
  s.loss += r.loss;
  s.dampening_frac_used = std::max(s.dampening_frac_used, r.dampening_frac_used);
  if (static_cast<int>(r.fallback) > static_cast<int>(s.fallback)) s.fallback = r.fallback;
}

void take_gptq(SolvedModule& s, quant::GptqResult&& r) {
  add_gptq_stats(s, r);
  s.qparams = std::move(r.qparams);
  s.codes = std::move(r.codes);
  s.dequant = std::move(r.dequant);
  s.g_idx = std::move(r.g_idx);
}

// Appends the row block `part` (rows [r0, r0 + part.rows)) to `whole`.
void append_rows(quant::QParams& whole, const quant::QParams& part) {
  whole.rows += part.rows;
  whole.cols = part.cols;
  whole.scale_rows += part.scale_rows;
  whole.scale_cols = part.scale_cols;
  whole.scale.insert(whole.scale.end(), part.scale.begin(), part.scale.end());
  whole.zero_point.insert(whole.zero_point.end(), part.zero_point.begin(), part.zero_point.end());
  whole.scale_e8m0.insert(whole.scale_e8m0.end(), part.scale_e8m0.begin(), part.scale_e8m0.end());
}

// GPTQ of wo_a: each output group's rows with that group's Hessian.
void solve_grouped_gptq(const ModuleSolveInput& in, const QuantArgs& args, quant::GptqOptions opts,
                        SolvedModule& s) {
  const PlannedModule& m = *in.module;
  const int64_t groups = static_cast<int64_t>(in.hessians.size());
  DSV4_CHECK_IN("solve", m.rows % groups == 0, "%s: %lld rows do not split into %lld output groups",
                m.names.release.c_str(), static_cast<long long>(m.rows), static_cast<long long>(groups));
  const int64_t block_rows = m.rows / groups;
  const bool row_separable = args.strategy == Strategy::kChannel || args.strategy == Strategy::kGroup ||
                             (args.strategy == Strategy::kBlock && block_rows % args.block_structure[0] == 0);
  DSV4_CHECK_IN("solve", row_separable,
                "%s (%s): GPTQ of a grouped linear solves each of its %lld output groups with its own "
                "Hessian, so the scales must not span groups; use a channel, group or block strategy "
                "whose block rows divide %lld",
                m.names.release.c_str(), m.scheme->key_path.c_str(), static_cast<long long>(groups),
                static_cast<long long>(block_rows));
  if (opts.actorder == quant::ActOrder::kGroup) {
    // One g_idx per output group cannot be written as the module's single weight_g_idx.
    log_warn("%s: actorder group needs one g_idx per output group; solving with static", m.names.release.c_str());
    opts.actorder = quant::ActOrder::kStatic;
  }
  quant::QParams qp;
  for (int64_t g = 0; g < groups; ++g) {
    const float* w = in.weight + g * block_rows * m.cols;
    const float* dxxt = in.cross.empty() ? nullptr : in.cross[static_cast<size_t>(g)]->h.data();
    quant::GptqResult r = quant::gptq_solve_asymmetric(args, w, block_rows, m.cols, in.hessians[g]->h.data(), dxxt, opts);
    append_rows(qp, r.qparams);
    s.codes.insert(s.codes.end(), r.codes.begin(), r.codes.end());
    s.dequant.insert(s.dequant.end(), r.dequant.begin(), r.dequant.end());
    add_gptq_stats(s, r);
  }
  s.qparams = std::move(qp);
}

// tr(ΔHΔᵀ)/tr(WHWᵀ) over all output groups of a grouped linear, each with its own H.
double grouped_rel_error(const ModuleSolveInput& in, const float* q) {
  const PlannedModule& m = *in.module;
  const int64_t groups = static_cast<int64_t>(in.hessians.size());
  const int64_t block_rows = m.rows / groups;
  const int64_t n = block_rows * m.cols;
  double num = 0, den = 0;
  for (int64_t g = 0; g < groups; ++g) {
    const quant::HessianError e = quant::hessian_error(in.weight + g * n, q + g * n, block_rows, m.cols,
                                                       in.hessians[g]->h.data());
    num += e.delta_trace;
    den += e.weight_trace;
  }
  return den > 0 ? num / den : 0.0;
}

// turboquant + GPTQ (quant/turboquant_gptq.h): each output group's rows (one group unless wo_a)
// with its Hessian; errors against the data-free quantizer as the RTN baseline.
void solve_turboquant_gptq(const ModuleSolveInput& in, SolvedModule& s) {
  const PlannedModule& m = *in.module;
  const quant::TqCodec codec = turboquant_codec(m);
  const int64_t parts = static_cast<int64_t>(in.hessians.size()), block_rows = m.rows / parts;
  DSV4_CHECK_IN("solve", m.rows % parts == 0, "%s: %lld rows do not split into %lld output groups",
                m.names.release.c_str(), static_cast<long long>(m.rows), static_cast<long long>(parts));
  s.method = SolveMethod::kGptq;
  s.qparams.rows = m.rows, s.qparams.cols = m.cols, s.qparams.scale_rows = m.rows;
  for (int64_t p = 0; p < parts; ++p) {
    quant::GptqResult r = quant::tq_gptq_solve(codec, in.weight + p * block_rows * m.cols, block_rows, m.cols,
                                               in.hessians[static_cast<size_t>(p)]->h.data(), m.scheme->gptq);
    s.qparams.scale_cols = r.qparams.scale_cols;
    s.qparams.scale.insert(s.qparams.scale.end(), r.qparams.scale.begin(), r.qparams.scale.end());
    s.codes.insert(s.codes.end(), r.codes.begin(), r.codes.end());
    s.dequant.insert(s.dequant.end(), r.dequant.begin(), r.dequant.end());
    add_gptq_stats(s, r);
    s.tokens += in.hessians[static_cast<size_t>(p)]->num_tokens;
  }
  bool any_tokens = false;
  for (const quant::HessianResult* h : in.hessians) any_tokens = any_tokens || !h->no_tokens;
  if (any_tokens) {
    const quant::TqResult rtn = quant::tq_quantize(codec, in.weight, m.rows, m.cols);
    s.rel_error = grouped_rel_error(in, s.dequant.data());
    s.rtn_rel_error = grouped_rel_error(in, rtn.dequant.data());
  }
}

}  // namespace

std::string_view solve_method_name(SolveMethod m) {
  switch (m) {
    case SolveMethod::kGptq: return "gptq";
    case SolveMethod::kRtn: return "rtn";
    case SolveMethod::kFp8Reencode: return "fp8_reencode";
    case SolveMethod::kMxfp4ToInt4: return "mxfp4_to_int4";
  }
  return "?";
}

SolveMethod module_data_free_method(const PlannedModule& m) {
  DSV4_CHECK_IN("solve", m.quantized(), "%s is not quantized", m.names.release.c_str());
  if (m.scheme->profile == OutputProfile::kTurboquant) return SolveMethod::kRtn;  // from the decoded weight
  const QuantArgs& a = m.scheme->scheme.weights;
  if (m.source == model::TensorEncoding::kFp8Block && is_fp8_block_e8m0(a)) return SolveMethod::kFp8Reencode;
  if (m.source == model::TensorEncoding::kMxfp4 && is_int4_sym_g32(a)) return SolveMethod::kMxfp4ToInt4;
  return SolveMethod::kRtn;
}

namespace {

// GPTQ statistics of a one-Hessian module solved into s (by gptq_solve or the GPU batch).
void one_hessian_stats(const ModuleSolveInput& in, SolvedModule& s) {
  const PlannedModule& m = *in.module;
  const quant::RtnResult rtn =
      quant::quantizer_rtn(m.scheme->scheme.weights, in.weight, m.rows, m.cols, quant::kPeerRtnArith);
  if (!in.hessians[0]->no_tokens) {
    s.rel_error = quant::gptq_rel_error(in.weight, s.dequant.data(), m.rows, m.cols, in.hessians[0]->h.data());
    s.rtn_rel_error = quant::gptq_rel_error(in.weight, rtn.dequant.data(), m.rows, m.cols, in.hessians[0]->h.data());
  }
}

// The module's compressed-tensors tensors (weights, then static activation scales); the weight
// tensors are given when the GPU encoded them.
void encode_tensors(const ModuleSolveInput& in, SolvedModule& s, std::vector<quant::EncodedTensor>* encoded = nullptr) {
  const PlannedModule& m = *in.module;
  const quant::QuantScheme& scheme = m.scheme->scheme;
  s.tensors = encoded ? std::move(*encoded) : profile_module_encode(m, s.qparams, s.codes, s.g_idx);
  for (quant::EncodedTensor& t : quant::activation_encode(scheme, in.input_amax)) s.tensors.push_back(std::move(t));
}

}  // namespace

bool module_solve_gpu_eligible(const ModuleSolveInput& in) {
  const ModuleScheme& scheme = *in.module->scheme;
  if (!scheme.gptq_solved() || in.hessians.size() != 1 || in.amax_tensor > 0.0f) return false;
  // The GPU encodes compressed-tensors layouts only; other profiles are solved and encoded on the host.
  if (scheme.profile != OutputProfile::kVllm) return false;
  return quant::gptq_cuda_unsupported(scheme.scheme.weights, scheme.gptq).empty();
}

SolvedModule module_solve_from_gptq(const ModuleSolveInput& in, quant::GptqResult&& r, const double* rel_error,
                                    const double* rtn_rel_error, std::vector<quant::EncodedTensor>* encoded) {
  DSV4_CHECK_IN("solve", in.module && in.module->quantized() && in.hessians.size() == 1 &&
                            (in.weight || (rel_error && rtn_rel_error)),
                "a quantized module and one Hessian are required, and the source weight unless the errors are given");
  SolvedModule s;
  s.module = in.module->names.release;
  s.method = SolveMethod::kGptq;
  s.tokens = in.hessians[0]->num_tokens;
  take_gptq(s, std::move(r));
  if (rel_error && rtn_rel_error) {
    if (!in.hessians[0]->no_tokens) s.rel_error = *rel_error, s.rtn_rel_error = *rtn_rel_error;
  } else {
    one_hessian_stats(in, s);
  }
  encode_tensors(in, s, encoded);
  return s;
}

bool module_solve_turboquant_data_free(const PlannedModule& m) {
  return m.quantized() && m.scheme->profile == OutputProfile::kTurboquant && !m.scheme->gptq_solved();
}

SolvedModule module_solve_from_turboquant(const ModuleSolveInput& in, quant::TqResult&& r) {
  const PlannedModule& m = *in.module;
  DSV4_CHECK_IN("solve", module_solve_turboquant_data_free(m) &&
                             r.dequant.size() == static_cast<size_t>(m.rows * m.cols),
                "%s: not a data-free turboquant module, or %zu decoded values for [%lld, %lld]",
                m.names.release.c_str(), r.dequant.size(), static_cast<long long>(m.rows),
                static_cast<long long>(m.cols));
  SolvedModule s;
  s.module = m.names.release;
  s.method = SolveMethod::kRtn;
  take_turboquant(s, m, std::move(r));
  encode_tensors(in, s);
  return s;
}

bool module_solve_needs_weight(const ModuleSolveInput& in, const Checkpoint& ckpt) {
  if (in.module->scheme->gptq_solved() || in.amax_tensor > 0.0f) return true;
  const SolveMethod m = module_data_free_method(*in.module);
  return m == SolveMethod::kRtn || !source_scales_e8m0(ckpt, in.module->names.release);
}

SolvedModule module_solve(const ModuleSolveInput& in, const Checkpoint& ckpt) {
  const auto start = std::chrono::steady_clock::now();
  DSV4_CHECK_IN("solve", in.module && in.module->quantized(), "a quantized module is required");
  DSV4_CHECK_IN("solve", in.weight || !module_solve_needs_weight(in, ckpt), "%s: the decoded source weight is required",
                in.module->names.release.c_str());
  const PlannedModule& m = *in.module;
  const ModuleScheme& scheme = *m.scheme;
  const QuantArgs& args = scheme.scheme.weights;
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };

  if (scheme.gptq_solved()) {
    DSV4_CHECK_IN("solve", !in.hessians.empty(), "%s: GPTQ needs its Hessian", m.names.release.c_str());
    DSV4_CHECK_IN("solve", in.cross.empty() || in.cross.size() == in.hessians.size(),
                  "%s: %zu ΔX·Xᵀ for %zu Hessians", m.names.release.c_str(), in.cross.size(), in.hessians.size());
    DSV4_CHECK_IN("solve", in.cross.empty() || scheme.profile != OutputProfile::kTurboquant,
                  "%s (%s): GPTAQ with the turboquant profile", m.names.release.c_str(), scheme.key_path.c_str());
    if (scheme.profile == OutputProfile::kTurboquant) {
      SolvedModule s;
      s.module = m.names.release;
      solve_turboquant_gptq(in, s);
      encode_tensors(in, s);
      s.seconds = seconds();
      return s;
    }
    if (in.hessians.size() == 1) {
      // GPTAQ's ΔX·Xᵀ where the scheme asks for it (null: classic GPTQ, the same code path).
      const float* dxxt = in.cross.empty() ? nullptr : in.cross[0]->h.data();
      SolvedModule s = module_solve_from_gptq(
          in, quant::gptq_solve_asymmetric(args, in.weight, m.rows, m.cols, in.hessians[0]->h.data(), dxxt, scheme.gptq));
      s.seconds = seconds();
      return s;
    }
  }
  SolvedModule s;
  s.module = m.names.release;
  if (scheme.gptq_solved()) {
    s.method = SolveMethod::kGptq;
    for (const quant::HessianResult* h : in.hessians) s.tokens += h->num_tokens;
    solve_grouped_gptq(in, args, scheme.gptq, s);
    const quant::RtnResult rtn = quant::quantizer_rtn(args, in.weight, m.rows, m.cols, quant::kPeerRtnArith);
    s.rel_error = grouped_rel_error(in, s.dequant.data());
    s.rtn_rel_error = grouped_rel_error(in, rtn.dequant.data());
  } else {
    s.method = module_data_free_method(m);
    if (s.method != SolveMethod::kRtn && !source_scales_e8m0(ckpt, m.names.release)) s.method = SolveMethod::kRtn;
    if (scheme.profile == OutputProfile::kTurboquant) {
      take_turboquant(s, m, quant::tq_quantize(turboquant_codec(m), in.weight, m.rows, m.cols));
    } else if (scheme.profile == OutputProfile::kAppmanaDsv4Int) {
      take_rtn(s, s.method == SolveMethod::kMxfp4ToInt4
                      ? solve_appmana_mxfp4(ckpt, m)
                      : quant::int_requant(args, appmana_rule(scheme), in.weight, m.rows, m.cols));
    } else if (s.method == SolveMethod::kFp8Reencode) {
      take_rtn(s, solve_fp8_reencode(ckpt, m, args));
    } else if (s.method == SolveMethod::kMxfp4ToInt4) {
      take_rtn(s, solve_mxfp4_to_int4(ckpt, m, args));
    } else if (in.amax_tensor > 0.0f) {
      const quant::QParams qp = quant::observer_qparams(args, in.weight, m.rows, m.cols, in.amax_tensor);
      take_rtn(s, quant::quantizer_rtn_with(args, qp, in.weight));
    } else {
      take_rtn(s, quant::quantizer_rtn(args, in.weight, m.rows, m.cols));
    }
  }
  encode_tensors(in, s);
  s.seconds = seconds();
  return s;
}

}  // namespace dsv4::calib
