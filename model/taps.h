// taps.h: how a calibration consumer receives, for every linear of a block, exactly the
// activation that linear consumes (reference §3.7), while the forward runs. The forward calls
// the sink only when one is attached (ForwardContext::taps != nullptr), so taps cost nothing
// otherwise.
//
//   struct HessianSink : TapSink {
//     void on_tap(const TapEvent& e) override { for (auto& m : e.modules) accumulate(m, e); }
//   };
//
// Conventions (release module names, e.g. "layers.3.attn.wq_a"):
//   - one event per distinct activation; `modules` lists every linear that consumes it
//     (wq_a + wkv share x_attn; wq_b + indexer.wq_b share qr; shared w1 + w3 share x_ffn);
//   - wo_a: one event per output group g (`group` = g), x = that group's [T, 4096] slice of o;
//   - routed experts: w1/w3 get the rows routed to the expert (`token_rows` = their positions in
//     the layer input), or every row in all-experts mode; w2 gets h of those rows, with
//     `row_weights` = the routing weights (the consumer chooses the weighted or plain convention);
//   - per-expert routed token counts arrive through on_expert_tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv4::model {

struct TapEvent {
  std::vector<std::string> modules;      // release module names consuming this activation
  const float* x = nullptr;              // [rows, cols] row-major fp32
  int64_t rows = 0;
  int64_t cols = 0;
  int group = -1;                        // wo_a output group, else -1
  int expert = -1;                       // routed expert index, else -1
  const int64_t* token_rows = nullptr;   // [rows] row of the layer input each row came from, or null (= 0..rows-1)
  const float* row_weights = nullptr;    // [rows] routing weight per row (routed w2), or null
};

class TapSink {
 public:
  virtual ~TapSink() = default;
  virtual void on_tap(const TapEvent& event) = 0;
  // Tokens routed to `expert` in the block with this prefix ("layers.3." / "mtp.0."), by the
  // real routing (not all-experts evaluation).
  virtual void on_expert_tokens(const std::string& block_prefix, int expert, int64_t count) {}
};

}  // namespace dsv4::model
