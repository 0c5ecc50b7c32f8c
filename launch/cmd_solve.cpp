// cmd_solve.cpp: `dsv4-calib solve`: the researcher's single-matrix experiment. Quantizes one
// weight with GPTQ against a given Hessian (or by round-to-nearest with --actorder none and an
// identity H) and writes the compressed-tensors tensors of that module plus `weight_dequant`.
//
//   dsv4-calib solve --weight W.safetensors --hessian H.safetensors --scheme W4A16 --out OUT.safetensors --json
//   -> {"loss": ..., "rel_error": ..., "rtn_rel_error": ..., "fallbacks": [...], "seconds": ...}
//
// W holds `weight` [rows, cols] (BF16, F16 or F32); H holds `hessian` [cols, cols] F32.
// rel_error = tr((W−Q)H(W−Q)ᵀ)/tr(WHWᵀ); rtn_rel_error is the same for round-to-nearest.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>

#include "common/check.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/safetensors.h"
#include "launch/commands.h"
#include "quant/compressed_module.h"
#include "quant/gptq.h"
#include "quant/observer.h"
#include "quant/quant_scheme.h"

namespace dsv4::launch {
namespace {

struct SolveArgs {
  std::string weight, hessian, scheme = "W4A16", out;
  int group_size = 0;  // 0: the scheme's
  std::string actorder = "static";
  float dampening_frac = 0.01f;
  int block_size = 128;
  std::string observer = "minmax";
  std::string qparams = "upfront";
  bool json = false;
};

// The one tensor `name` of `path` as fp32, with its shape.
std::vector<float> load_matrix(const std::string& path, const std::string& name, std::vector<int64_t>* shape) {
  const auto file = SafetensorsFile::open(path);
  const TensorInfo* t = file->find(name);
  DSV4_USER_CHECK("solve", t != nullptr, "%s has no tensor '%s'", path.c_str(), name.c_str());
  DSV4_USER_CHECK("solve", t->shape.size() == 2, "%s: '%s' has shape %s, expected a matrix", path.c_str(), name.c_str(),
                  shape_string(t->shape).c_str());
  const auto bytes = file->bytes(*t);
  std::vector<float> v(static_cast<size_t>(t->numel()));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t->dtype == DType::kF32) {
      std::memcpy(&v[i], bytes.data() + 4 * i, 4);
    } else if (t->dtype == DType::kBF16 || t->dtype == DType::kF16) {
      uint16_t b;
      std::memcpy(&b, bytes.data() + 2 * i, 2);
      v[i] = t->dtype == DType::kBF16 ? bf16_decode(b) : fp16_decode(b);
    } else {
      DSV4_USER_FAIL("solve", "%s: '%s' has dtype %s, expected BF16, F16 or F32", path.c_str(), name.c_str(),
                     std::string(dtype_name(t->dtype)).c_str());
    }
  }
  *shape = t->shape;
  return v;
}

quant::ActOrder parse_actorder(const std::string& s) {
  if (s == "none") return quant::ActOrder::kNone;
  if (s == "static") return quant::ActOrder::kStatic;
  DSV4_USER_CHECK("solve", s == "group", "--actorder must be none, static or group, got '%s'", s.c_str());
  return quant::ActOrder::kGroup;
}

int run(const SolveArgs& a) {
  std::vector<int64_t> w_shape, h_shape;
  const std::vector<float> w = load_matrix(a.weight, "weight", &w_shape);
  const std::vector<float> h = load_matrix(a.hessian, "hessian", &h_shape);
  const int64_t rows = w_shape[0], cols = w_shape[1];
  DSV4_USER_CHECK("solve", h_shape == (std::vector<int64_t>{cols, cols}),
                  "hessian %s does not match weight %s: expected [%lld, %lld]",
                  shape_string(h_shape).c_str(), shape_string(w_shape).c_str(), static_cast<long long>(cols),
                  static_cast<long long>(cols));

  quant::QuantScheme scheme = quant::quant_scheme_preset(a.scheme);
  quant::QuantArgs& args = scheme.weights;
  if (a.group_size > 0) args.group_size = a.group_size;
  args.observer = a.observer == "mse" ? quant::ObserverKind::kMse : quant::ObserverKind::kMinMax;
  scheme.check();
  const quant::PackFormat format = quant::quant_scheme_format(scheme);
  quant::quant_args_check_shape(args, rows, cols);
  quant::GptqOptions o;
  o.dampening_frac = a.dampening_frac;
  o.block_size = a.block_size;
  o.actorder = parse_actorder(a.actorder);
  o.qparams = a.qparams == "lazy" ? quant::QParamsTiming::kLazy : quant::QParamsTiming::kUpfront;
  o.check();

  const auto start = std::chrono::steady_clock::now();
  const quant::GptqResult r = quant::gptq_solve(args, w.data(), rows, cols, h.data(), o);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const quant::RtnResult rtn = quant::quantizer_rtn(args, w.data(), rows, cols, quant::kPeerRtnArith);
  const double rel = quant::gptq_rel_error(w.data(), r.dequant.data(), rows, cols, h.data());
  const double rtn_rel = quant::gptq_rel_error(w.data(), rtn.dequant.data(), rows, cols, h.data());

  std::vector<quant::EncodedTensor> tensors = quant::compressed_module_encode(format, args, r.qparams, r.codes, r.g_idx, rows, cols);
  quant::EncodedTensor dq{"weight_dequant", DType::kF32, {rows, cols}, std::vector<std::byte>(r.dequant.size() * 4)};
  std::memcpy(dq.bytes.data(), r.dequant.data(), dq.bytes.size());
  tensors.push_back(std::move(dq));
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) specs.push_back({t.name, t.dtype, t.shape});
  SafetensorsWriter writer(a.out, specs, {{"format", "pt"}, {"scheme", a.scheme},
                                          {"format_name", std::string(quant::pack_format_name(format))}});
  for (const auto& t : tensors) writer.write(t.name, t.bytes);
  writer.finish();

  nlohmann::ordered_json fallbacks = nlohmann::ordered_json::array();
  if (r.fallback != quant::GptqFallback::kNone) fallbacks.push_back(std::string(quant::gptq_fallback_name(r.fallback)));
  if (a.json) {
    nlohmann::ordered_json j = {{"loss", r.loss}, {"rel_error", rel}, {"rtn_rel_error", rtn_rel},
                                {"fallbacks", fallbacks}, {"seconds", seconds}, {"damp", r.damp},
                                {"dead_columns", r.dead_columns}, {"rows", rows}, {"cols", cols}, {"scheme", a.scheme}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    log_info("solve %s [%lld, %lld]: loss %.6g, rel_error %.4e (RTN %.4e, ratio %.3f), damp %.3g, %s, %.3f s -> %s",
             a.scheme.c_str(), static_cast<long long>(rows), static_cast<long long>(cols), r.loss, rel, rtn_rel,
             rtn_rel > 0 ? rel / rtn_rel : 0.0, r.damp, std::string(quant::gptq_fallback_name(r.fallback)).c_str(),
             seconds, a.out.c_str());
  }
  return 0;
}

}  // namespace

Command cmd_solve_register(CLI::App& app) {
  auto a = std::make_shared<SolveArgs>();
  CLI::App* sub = app.add_subcommand("solve", "GPTQ (or RTN) on one weight matrix with a given Hessian");
  sub->add_option("--weight", a->weight, "safetensors file with tensor 'weight' [rows, cols]")->required();
  sub->add_option("--hessian", a->hessian, "safetensors file with tensor 'hessian' [cols, cols] F32")->required();
  sub->add_option("--scheme", a->scheme, "preset: W4A16, W4A16_ASYM, W8A16, W3A16, FP8_BLOCK, NVFP4A16, MXFP4A16, ...");
  sub->add_option("--group-size", a->group_size, "override the scheme's group size")->check(CLI::Range(1, 1 << 20));
  sub->add_option("--actorder", a->actorder, "none, static (default) or group")->check(CLI::IsMember({"none", "static", "group"}));
  sub->add_option("--dampening-frac", a->dampening_frac, "damping = frac * mean(diag H)")->check(CLI::Range(0.0, 10.0));
  sub->add_option("--block-size", a->block_size, "GPTQ lazy-batch width")->check(CLI::Range(1, 1 << 16));
  sub->add_option("--observer", a->observer, "minmax or mse")->check(CLI::IsMember({"minmax", "mse"}));
  sub->add_option("--qparams", a->qparams, "upfront (llm-compressor) or lazy (classic GPTQ)")->check(CLI::IsMember({"upfront", "lazy"}));
  sub->add_option("--out", a->out, "output safetensors (compressed-tensors tensors + weight_dequant)")->required();
  sub->add_flag("--json", a->json, "print one JSON line");
  return [a]() { return run(*a); };
}

}  // namespace dsv4::launch
