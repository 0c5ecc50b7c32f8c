// artifact_decode.cpp: artifacts on disk -> fp32 (see artifact_decode.h). The compressed-tensors
// decoder itself is quant/unpack.h's compressed_module_decode (also the CPU reference of the GPU
// decoder); this file reads a module's tensors from a checkpoint for it and routes a config's
// compressed linears to it.
#include "calib/artifact_decode.h"

#include <filesystem>
#include <memory>
#include <span>

#include <nlohmann/json.hpp>

#include "common/check.h"
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
  return ckpt.contains(module + ".weight_packed") || ckpt.contains(module + ".weight_scale");
}

std::vector<float> artifact_linear_decode(const Checkpoint& ckpt, const std::string& module, int64_t out,
                                          int64_t in) {
  return quant::compressed_module_decode(CheckpointLookup(ckpt), module, out, in);
}

std::vector<float> encoded_linear_decode(const std::vector<quant::EncodedTensor>& tensors, const std::string& module,
                                         int64_t out, int64_t in) {
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
  model::ModelConfig c = model::ModelConfig::from_file(dir + "/config.json");
  const nlohmann::json& src = c.source;
  if (src.is_object() && src.contains("quantization_config") && src["quantization_config"].is_object()) {
    const nlohmann::json& q = src["quantization_config"];
    if (q.contains("quant_method") && q["quant_method"] == "compressed-tensors") {
      c.linear_decoder = std::make_shared<CompressedTensorsDecoder>();
    }
  }
  return c;
}

}  // namespace dsv4::calib
