// synth_model.h: writes a synthetic DeepSeek-V4 checkpoint in exactly the release layout
// (names, dtypes, shapes, FP8/MXFP4 encodings with e8m0 scales, config.json with the release
// keys, sharded safetensors + index, tokenizer), for tests and benchmarks: the real 160 GB
// release is not available on our machines, and every code path must work unchanged on it. With
// SynthOptions::weights_dir the values are a trained model's instead (weights_import.h).
//
//   SynthOptions o{.out_dir = "ckpt", .seed = 0};
//   SynthSummary s = synth_checkpoint_write(ModelConfig::tiny(), o);   // or synth_plan: no I/O
//
// Deterministic for a seed, independent of the thread count. Refuses to write into a non-empty
// directory (nothing valid is overwritten). Tests: tests/model/test_synth.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "model/config.h"

namespace dsv4::model {

struct SynthOptions {
  std::string out_dir;
  uint64_t seed = 0;
  // Directory whose tokenizer.json (and tokenizer_config.json, if present) is copied; empty:
  // generate the built-in byte-level tokenizer.
  std::string tokenizer_dir;
  uint64_t max_shard_bytes = 4ull << 30;
  int threads = 0;  // 0: all cores
  int mtp_stages = 1;
  // Chat records written beside the weights as calib.jsonl (synth_text.h), so the checkpoint can be
  // calibrated with no other download; 0: none.
  int calibration_records = 64;
  int calibration_sentences = 0;  // per answer; 0: 3 to 8 (synth_text.h)
  // Directory of a checkpoint of unencoded weights (weights_import.h): the values come from there
  // instead of the random draw, rounded and encoded as the release does. Empty: random weights.
  std::string weights_dir;
  // Free bytes to assume on the output filesystem (tests); -1: ask the filesystem.
  int64_t available_bytes = -1;
};

struct SynthSummary {
  uint64_t tensors = 0;
  uint64_t bytes = 0;  // tensor data bytes (= index total_size)
  int shards = 0;
  int mtp_stages = 0;
};

// The config of a make-model preset ("tiny" or "flash") with the layer and expert counts
// overridden (0 keeps the preset's). Tiny keeps its pattern when resized: sliding first, then CSA
// and HCA alternating, one hash-routed layer; flash follows the release schedule.
ModelConfig synth_preset_config(const std::string& preset, int layers = 0, int experts = 0);

SynthSummary synth_plan(const ModelConfig& config, const SynthOptions& options);
SynthSummary synth_checkpoint_write(const ModelConfig& config, const SynthOptions& options);

}  // namespace dsv4::model
