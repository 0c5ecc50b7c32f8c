// artifact_decode.cpp: artifacts on disk -> fp32 (see artifact_decode.h). The compressed-tensors
// decoder itself is quant/unpack.h's compressed_module_decode (also the CPU reference of the GPU
// decoder); this file reads a module's tensors from a checkpoint for it and routes a config's
// compressed linears to it.
#include "calib/artifact_decode.h"

#include <filesystem>
#include <memory>
#include <span>

#include <nlohmann/json.hpp>

#include "calib/profile_appmana.h"
#include "calib/profile_turboquant.h"
#include "common/check.h"
#include "common/fs.h"
#include "common/json_guard.h"
#include "model/weight_decode.h"
#include "quant/unpack.h"

namespace dsv4::calib {
namespace {

// A module's tensors in an artifact on disk.
class CheckpointLookup final : public quant::EncodedTensorSource {
 public:
  explicit CheckpointLookup(const Checkpoint& c) : c_(c) {}
  const TensorInfo* find(const std::string& name) const override { return c_.contains(name) ? &c_.info(name) : nullptr; }
  std::span<const std::byte> bytes(const TensorInfo& t) const override { return c_.bytes(t.name); }
  const std::string& where() const override { return c_.dir(); }

 private:
  const Checkpoint& c_;
};

// An appmana-dsv4-int module: the release's `.weight` / `.scale` names with a BF16 scale (the
// release's own scales are e8m0, or F32 in V4-Flash-Base).
bool appmana_stored(const Checkpoint& ckpt, const std::string& module) {
  return ckpt.contains(module + ".weight") && ckpt.contains(module + ".scale") &&
         ckpt.info(module + ".scale").dtype == DType::kBF16;
}

// A turboquant module: `<module>.weight.tq_packed` / `.weight.tq_norms`.
bool turboquant_stored(const Checkpoint& ckpt, const std::string& module) {
  return ckpt.contains(module + ".weight.tq_packed") || ckpt.contains(module + ".weight.tq_norms");
}

StoredTensor stored(const Checkpoint& ckpt, const std::string& name) {
  const TensorInfo& t = ckpt.info(name);
  return {t.dtype, t.shape, ckpt.bytes(name)};
}

// Routes compressed modules to artifact_linear_decode; declines the rest (release layouts and
// plain BF16 weights), so model::linear_load decodes them as usual.
class CompressedTensorsDecoder final : public model::LinearDecoder {
 public:
  bool decode(const Checkpoint& ckpt, const std::string& module, int64_t out, int64_t in,
              std::vector<float>* w) const override {
    if (!artifact_linear_is_compressed(ckpt, module)) return false;
    *w = artifact_linear_decode(ckpt, module, out, in);
    return true;
  }
};

}  // namespace

bool artifact_linear_is_compressed(const Checkpoint& ckpt, const std::string& module) {
  return ckpt.contains(module + ".weight_packed") || ckpt.contains(module + ".weight_scale") ||
         appmana_stored(ckpt, module) || turboquant_stored(ckpt, module);
}

std::vector<float> artifact_linear_decode(const Checkpoint& ckpt, const std::string& module, int64_t out,
                                          int64_t in) {
  if (appmana_stored(ckpt, module)) {
    return appmana_linear_decode(stored(ckpt, module + ".weight"), stored(ckpt, module + ".scale"), out, in, module);
  }
  if (turboquant_stored(ckpt, module)) {
    for (const char* leaf : {".weight.tq_packed", ".weight.tq_norms"}) {
      DSV4_USER_CHECK("artifact", ckpt.contains(module + leaf), "%s: %s%s is missing beside its turboquant partner",
                      ckpt.dir().c_str(), module.c_str(), leaf);
    }
    return turboquant_linear_decode(stored(ckpt, module + ".weight.tq_packed"),
                                    stored(ckpt, module + ".weight.tq_norms"), out, in, module);
  }
  return quant::compressed_module_decode(CheckpointLookup(ckpt), module, out, in);
}

std::vector<float> encoded_linear_decode(const std::vector<quant::EncodedTensor>& tensors, const std::string& module,
                                         int64_t out, int64_t in) {
  const quant::EncodedTensor *weight = nullptr, *scale = nullptr, *tq_packed = nullptr, *tq_norms = nullptr;
  for (const quant::EncodedTensor& t : tensors) {
    if (t.name == "weight") weight = &t;
    if (t.name == "scale") scale = &t;
    if (t.name == "weight.tq_packed") tq_packed = &t;
    if (t.name == "weight.tq_norms") tq_norms = &t;
  }
  if (tq_packed && tq_norms) {
    return turboquant_linear_decode({tq_packed->dtype, tq_packed->shape, tq_packed->bytes},
                                    {tq_norms->dtype, tq_norms->shape, tq_norms->bytes}, out, in, module);
  }
  if (weight && scale) {  // appmana-dsv4-int (compressed-tensors never writes a bare `scale`)
    return appmana_linear_decode({weight->dtype, weight->shape, weight->bytes}, {scale->dtype, scale->shape, scale->bytes},
                                 out, in, module);
  }
  return quant::compressed_module_decode(tensors, module, out, in);
}

void checkpoint_dir_check(const std::string& dir, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string where = what.empty() ? "" : " (" + what + ")";
  const char* held = "a checkpoint directory (the release download, `dsv4-calib make-model` output or a dsv4-calib "
                     "artifact) holds config.json, model.safetensors.index.json (or one model.safetensors) and the "
                     "*.safetensors shards";
  DSV4_USER_CHECK("checkpoint", fs::is_directory(dir, ec), "%s is not a checkpoint directory%s: %s; %s", dir.c_str(),
                  where.c_str(), fs::exists(dir, ec) ? "it is a file" : "there is no such directory", held);
  const bool has_config = fs::exists(fs::path(dir) / "config.json", ec);
  const bool has_weights = fs::exists(fs::path(dir) / "model.safetensors.index.json", ec) ||
                           fs::exists(fs::path(dir) / "model.safetensors", ec);
  DSV4_USER_CHECK("checkpoint", has_config && has_weights, "%s is not a checkpoint directory%s: it has no %s; %s",
                  dir.c_str(), where.c_str(),
                  !has_config ? (has_weights ? "config.json" : "config.json and no model.safetensors.index.json")
                              : "model.safetensors.index.json or model.safetensors",
                  held);
}

model::ModelConfig checkpoint_config_load(const std::string& dir) {
  checkpoint_dir_check(dir, "");
  const std::string path = dir + "/config.json";
  nlohmann::json j = json_parse(read_file(path), path);
  // appmana-dsv4-int says `expert_dtype: int4`; its experts keep the release's MXFP4 names and
  // shapes (I8 [out, in/2] + `.scale` [out, in/32]), so the model is the release's fp4 one and
  // the decoder below reads the INT4 values.
  if (j.is_object() && j.value("expert_dtype", "") == "int4" && j.contains("quantization_config") &&
      j["quantization_config"].is_object() && j["quantization_config"].value("quant_method", "") == "dsv4_int") {
    j["expert_dtype"] = "fp4";
  }
  model::ModelConfig c = model::ModelConfig::from_json(j, path);
  const nlohmann::json& src = c.source;
  if (src.is_object() && src.contains("quantization_config") && src["quantization_config"].is_object()) {
    const nlohmann::json& q = src["quantization_config"];
    if (q.contains("quant_method") && (q["quant_method"] == "compressed-tensors" || q["quant_method"] == "dsv4_int")) {
      c.linear_decoder = std::make_shared<CompressedTensorsDecoder>();
    }
  }
  // turboquant: config.json has no quantization_config (as upstream writes it); tq_config.json marks the format.
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::path(dir) / kTqConfigFile, ec)) {
    c.linear_decoder = std::make_shared<CompressedTensorsDecoder>();
  }
  return c;
}

}  // namespace dsv4::calib
