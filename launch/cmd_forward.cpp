// cmd_forward.cpp: `dsv4-calib forward`: the CPU reference forward of any release-format
// checkpoint on one sequence of token ids; prints per-block time and state RMS, and with --out
// writes F32 `logits` [T, vocab] and `hidden.L` [T, hc, hidden] (the HC state after block L).
//
//   echo '[0, 17, 42, 99]' > ids.json
//   dsv4-calib forward --model runs/tiny --ids ids.json --out fwd.safetensors
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <span>
#include <cstdio>
#include <memory>

#include "calib/artifact_decode.h"
#include "common/check.h"
#include "common/json_guard.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/safetensors.h"
#include "launch/commands.h"
#include "model/config.h"
#include "model/forward.h"

namespace dsv4::launch {
namespace {

struct ForwardArgs {
  std::string model;
  std::string ids;
  std::string mode = "fp32";
  std::string out;
};

std::vector<int64_t> read_ids(const std::string& path, int vocab) {
  nlohmann::json j;
  try {
    j = json_parse(read_file(path), path);
  } catch (const nlohmann::json::exception& e) {
    DSV4_USER_FAIL("forward", "%s is not valid JSON: %s", path.c_str(), e.what());
  }
  DSV4_USER_CHECK("forward", j.is_array() && !j.empty(), "%s must hold a non-empty JSON list of token ids",
                  path.c_str());
  std::vector<int64_t> ids;
  for (size_t i = 0; i < j.size(); ++i) {
    DSV4_USER_CHECK("forward", j[i].is_number_integer(), "%s: element %zu is not an integer", path.c_str(), i);
    const int64_t id = j[i].get<int64_t>();
    DSV4_USER_CHECK("forward", id >= 0 && id < vocab, "%s: element %zu = %lld is outside the vocabulary [0, %d)",
                    path.c_str(), i, static_cast<long long>(id), vocab);
    ids.push_back(id);
  }
  return ids;
}

void append_f32(std::vector<TensorSpec>& specs, std::vector<const std::vector<float>*>& data, std::string name,
                std::vector<int64_t> shape, const std::vector<float>& values) {
  specs.push_back({std::move(name), DType::kF32, std::move(shape)});
  data.push_back(&values);
}

int run(const ForwardArgs& a) {
  DSV4_USER_CHECK("forward", a.mode == "fp32" || a.mode == "bf16", "--mode must be fp32 or bf16, got '%s'",
                  a.mode.c_str());
  calib::checkpoint_dir_check(a.model, "--model");
  const model::ModelConfig config = model::ModelConfig::from_file(a.model + "/config.json");
  const Checkpoint ckpt = Checkpoint::open(a.model);
  const std::vector<int64_t> ids = read_ids(a.ids, config.vocab_size);
  const int64_t tokens = static_cast<int64_t>(ids.size());
  log_info("forward %s: %lld tokens, %d layers, mode %s", a.model.c_str(), static_cast<long long>(tokens),
           config.num_layers, a.mode.c_str());

  model::ForwardOptions o;
  o.mode = a.mode == "bf16" ? model::NumericMode::kBf16 : model::NumericMode::kFp32;
  o.keep_hidden = !a.out.empty();
  o.on_block = [&](int layer, double seconds, double rms) {
    log_info("block %2d/%d | %8.3f s | %8.1f tok/s | state rms %.4e", layer + 1, config.num_layers, seconds,
             tokens / seconds, rms);
  };
  const auto start = std::chrono::steady_clock::now();
  const model::ForwardResult r = model::model_forward(ckpt, config, ids, o);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double sum_sq = 0;
  for (float v : r.logits) sum_sq += static_cast<double>(v) * v;
  log_info("forward done: %.3f s, %.1f tok/s, logits rms %.4e", seconds, tokens / seconds,
           std::sqrt(sum_sq / static_cast<double>(r.logits.size())));

  if (!a.out.empty()) {
    std::vector<TensorSpec> specs;
    std::vector<const std::vector<float>*> data;
    append_f32(specs, data, "logits", {tokens, config.vocab_size}, r.logits);
    for (size_t l = 0; l < r.hidden.size(); ++l)
      append_f32(specs, data, "hidden." + std::to_string(l), {tokens, config.hc_mult, config.hidden_size}, r.hidden[l]);
    SafetensorsWriter w(a.out, specs, {{"format", "pt"}, {"mode", a.mode}, {"model", a.model}});
    for (size_t i = 0; i < specs.size(); ++i)
      w.write(specs[i].name, std::as_bytes(std::span<const float>(data[i]->data(), data[i]->size())));
    w.finish();
    log_info("wrote %s (%zu tensors)", a.out.c_str(), specs.size());
  }
  return 0;
}

}  // namespace

Command cmd_forward_register(CLI::App& app) {
  auto args = std::make_shared<ForwardArgs>();
  CLI::App* sub = app.add_subcommand("forward", "run the CPU reference forward on one sequence of token ids");
  sub->add_option("--model", args->model, "release-format checkpoint directory")->required();
  sub->add_option("--ids", args->ids, "JSON file with a list of token ids (one sequence)")->required();
  sub->add_option("--mode", args->mode, "numeric mode: fp32 or bf16")->check(CLI::IsMember({"fp32", "bf16"}));
  sub->add_option("--out", args->out, "write logits and every block's HC state (F32 safetensors)");
  return [args]() { return run(*args); };
}

}  // namespace dsv4::launch
