// forward.h: the whole-model CPU forward of a release-format DeepSeek-V4 checkpoint, one
// sequence from position 0 (prefill, no cache), layer-sequential: each block's weights are
// decoded from the checkpoint when the block runs and dropped after it, as calibration does.
//
//   ForwardResult r = model_forward(ckpt, config, ids, {.keep_hidden = true});
//   r.logits;      // [T, vocab] fp32
//   r.hidden[L];   // [T, n, D] HC state after block L
//   MtpResult m = mtp_forward(ckpt, config, ids, r.last_state, {});   // MTP logits [T-1, vocab]
//
// Skeleton (reference §3.0): e = embed[ids] copied into all n streams; X = Block_L(X) for every
// layer; y = HCHead(X); logits = RMSNorm(y; norm)·headᵀ. MTP (§4, DeepSeek-V3 convention): stage s
// at position t combines the previous stage's state at t (the main model's final state for s = 0)
// with embed[ids[t+1+s]]: X = h_proj(RMSNorm(H[j]; hnorm)) + e_proj(RMSNorm(e; enorm)), one MTP
// block, its own HC head and norm, the shared head.
// Tests: tests/model/test_forward.cpp (golden comparison with transformers 5.17.0).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "common/safetensors.h"
#include "model/config.h"
#include "model/forward_context.h"

namespace dsv4::model {

struct ForwardOptions {
  NumericMode mode = NumericMode::kFp32;
  TapSink* taps = nullptr;
  bool all_experts = false;
  bool keep_hidden = false;  // keep every block's output state in ForwardResult::hidden
  bool logits = true;        // compute the head (skip for calibration passes)
  // Called after each block with its index, the seconds it took and the RMS of its output state.
  std::function<void(int layer, double seconds, double state_rms)> on_block;
};

struct ForwardResult {
  std::vector<float> embed;                // [T, D] the embedding rows
  std::vector<std::vector<float>> hidden;  // [layers][T, n, D] when keep_hidden
  std::vector<float> last_state;           // [T, n, D] output of the last main block
  std::vector<float> final_hidden;         // [T, D] RMSNorm(HCHead(X); norm)
  std::vector<float> logits;               // [T, vocab]
};

// The block input of the first layer: embed[ids] copied into all n HC streams, [T, n, D]. Only
// the rows used are decoded (the table is 1 GB at Flash widths).
std::vector<float> model_embed_state(const Checkpoint& checkpoint, const ModelConfig& config,
                                     const std::vector<int64_t>& token_ids);

ForwardResult model_forward(const Checkpoint& checkpoint, const ModelConfig& config,
                            const std::vector<int64_t>& token_ids, const ForwardOptions& options);

struct MtpResult {
  std::vector<std::vector<float>> logits;  // [stages][T-1-s, vocab]
};

// Runs every MTP stage present in the checkpoint (mtp.N. prefixes).
MtpResult mtp_forward(const Checkpoint& checkpoint, const ModelConfig& config,
                      const std::vector<int64_t>& token_ids, const std::vector<float>& last_state,
                      const ForwardOptions& options);

}  // namespace dsv4::model
