// cmd_dequant.cpp: `dsv4-calib dequant`: writes the dequantized weight of every compressed module
// of an artifact (as dsv4-calib's own decoder computes it) to one safetensors file of F32 tensors
// named `<module>.weight`, for cross-checks with other readers (tests/golden/ct_decompress_check.py runs
// compressed-tensors' decompressors on the same artifact and compares).
//
//   dsv4-calib dequant runs/tiny_w4a16_mtp --out /tmp/dequant.safetensors [--match REGEX]
//   python tests/golden/ct_decompress_check.py runs/tiny_w4a16_mtp --dequant /tmp/dequant.safetensors
#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <memory>
#include <regex>

#include "calib/artifact_decode.h"
#include "calib/profile_turboquant.h"
#include "common/fs.h"
#include "common/json_guard.h"
#include "common/check.h"
#include "common/log.h"
#include "common/safetensors.h"
#include "launch/commands.h"

namespace dsv4::launch {
namespace {

struct DequantArgs {
  std::string artifact, out, match = ".*";
};

int run_dequant(const DequantArgs& a) {
  const Checkpoint ckpt = Checkpoint::open(a.artifact);
  const std::regex match(a.match);
  std::vector<std::pair<std::string, std::vector<int64_t>>> modules;  // module, [out, in]
  // turboquant: the input width is the padded one unless tq_config.json's orig_in_dims says otherwise.
  nlohmann::json tq;
  if (std::filesystem::exists(a.artifact + "/" + calib::kTqConfigFile)) {
    tq = json_parse(read_file(a.artifact + "/" + calib::kTqConfigFile), a.artifact + "/" + calib::kTqConfigFile);
  }
  for (const std::string& name : ckpt.names()) {
    if (name.ends_with(".weight.tq_norms")) {
      const std::string module = name.substr(0, name.size() - 16);
      if (!std::regex_search(module, match)) continue;
      const std::vector<int64_t>& n = ckpt.info(name).shape;
      const int64_t group = tq.is_object() ? tq.value("group_size", int64_t{128}) : 128;
      int64_t cols = n.size() == 2 ? n[1] * group : 0;
      if (tq.is_object() && tq.contains("orig_in_dims") && tq["orig_in_dims"].contains(module + ".weight")) {
        cols = tq["orig_in_dims"][module + ".weight"].get<int64_t>();
      }
      modules.push_back({module, {n.empty() ? 0 : n[0], cols}});
      continue;
    }
    // compressed-tensors: `.weight_scale`; appmana-dsv4-int: its BF16 `.scale` (the release's are e8m0).
    const bool appmana = name.ends_with(".scale") && ckpt.info(name).dtype == DType::kBF16;
    if (!name.ends_with(".weight_scale") && !appmana) continue;
    const std::string module = name.substr(0, name.size() - (appmana ? 6 : 13));
    if (!std::regex_search(module, match)) continue;
    if (appmana) {
      std::vector<int64_t> shape = ckpt.info(module + ".weight").shape;
      if (ckpt.info(name).shape.size() == 2 && ckpt.info(name).shape[1] * 32 == shape[1] * 2) shape[1] *= 2;  // INT4 pairs
      modules.push_back({module, shape});
      continue;
    }
    // [out, in]: weight_shape (pack-quantized), two e2m1 per byte (nvfp4/mxfp4), else the weight.
    std::vector<int64_t> shape;
    if (ckpt.contains(module + ".weight_shape")) {
      const auto b = ckpt.bytes(module + ".weight_shape");
      shape.resize(2);
      std::memcpy(shape.data(), b.data(), 16);
    } else if (ckpt.contains(module + ".weight_packed")) {
      shape = ckpt.info(module + ".weight_packed").shape;
      shape[1] *= 2;
    } else {
      shape = ckpt.info(module + ".weight").shape;
    }
    modules.push_back({module, shape});
  }
  DSV4_USER_CHECK("dequant", !modules.empty(), "%s has no compressed module matching '%s'", a.artifact.c_str(),
                  a.match.c_str());
  std::vector<TensorSpec> specs;
  for (const auto& [m, shape] : modules) specs.push_back({m + ".weight", DType::kF32, shape});
  SafetensorsWriter w(a.out, specs);
  for (const auto& [m, shape] : modules) {
    const std::vector<float> v = calib::artifact_linear_decode(ckpt, m, shape[0], shape[1]);
    w.write(m + ".weight", std::as_bytes(std::span(v)));
  }
  w.finish();
  log_info("wrote %zu dequantized modules of %s to %s", modules.size(), a.artifact.c_str(), a.out.c_str());
  return 0;
}

}  // namespace

Command cmd_dequant_register(CLI::App& app) {
  auto a = std::make_shared<DequantArgs>();
  CLI::App* sub = app.add_subcommand("dequant", "Write the dequantized weights of an artifact's compressed modules");
  sub->add_option("artifact", a->artifact, "artifact directory")->required()->check(CLI::ExistingDirectory);
  sub->add_option("--out", a->out, "output .safetensors (F32, one tensor per module)")->required();
  sub->add_option("--match", a->match, "only modules whose name matches this regex (search)");
  return [a] { return run_dequant(*a); };
}

}  // namespace dsv4::launch
