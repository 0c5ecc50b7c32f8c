// hessian.h: the GPTQ Hessian of one linear layer's input, H = 2/n · Σ x xᵀ
// (gptq_and_formats.md §1.2), accumulated from 2-D activation batches.
//
//   HessianAccumulator acc(in_features);
//   acc.add(x, num_tokens);              // x: [num_tokens, in_features] row-major fp32
//   acc.merge(other_partial);            // what the distributed reduce does (sum of partials)
//   HessianResult h = acc.finalize();    // h.h = 2/n Σ x xᵀ, n = tokens; h.no_tokens if n == 0
//
// n counts TOKENS (rows of the 2-D input), as GPTQModel and MoE-Quant do. llm-compressor counts
// leading-dim rows (sequences for 3-D inputs, 1 per call for 2-D expert inputs); GPTQ's updates
// and the relative damping do not depend on that scale, only the reported loss does (§1.2).
// The sum Σ x xᵀ is kept in fp32 like llm-compressor's GPTQ_PRECISION. hessian_error (below) is
// the H-weighted error tr(ΔHΔᵀ) of a quantized weight. Tests: tests/quant/test_hessian.cpp.
#pragma once

#include <cstdint>
#include <vector>

namespace dsv4::quant {

struct HessianResult {
  int64_t dim = 0;
  int64_t num_tokens = 0;
  bool no_tokens = true;   // n == 0: h is all zero; GPTQ must fall back to RTN, not zero W
  std::vector<float> h;    // [dim, dim] row-major, symmetric
};

class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t dim);

  // Adds num_tokens rows of x ([num_tokens, dim], row-major). num_tokens == 0 is a no-op
  // (an expert that received no tokens in this batch).
  void add(const float* x, int64_t num_tokens);
  // Adds another partial over the same dim (sums and token counts).
  void merge(const HessianAccumulator& other);
  // H = 2/n · Σ x xᵀ computed as (2·S)/n in fp32; all zero with no_tokens set when n == 0.
  HessianResult finalize() const;

  int64_t dim() const { return dim_; }
  int64_t num_tokens() const { return num_tokens_; }
  // Raw partial Σ x xᵀ ([dim, dim], symmetric), e.g. for a host or device all-reduce; after
  // reducing it in place, set the token total with set_num_tokens.
  const std::vector<float>& sum() const { return sum_; }
  std::vector<float>& sum() { return sum_; }
  void set_num_tokens(int64_t n);

 private:
  int64_t dim_;
  int64_t num_tokens_ = 0;
  std::vector<float> sum_;
};

// HessianAccumulator::add's arithmetic on its own: s += xᵀx over num_tokens rows of x
// ([num_tokens, dim]), the upper triangle summed token by token in order, then mirrored to the
// lower one (s [dim, dim]; zero for the Gram of these rows alone, as HessianExactSum takes it).
void hessian_gram_add(const float* x, int64_t num_tokens, int64_t dim, float* s);

// The H-weighted squared error of a quantized weight, GPTQ's objective (§1.10): tr(ΔHΔᵀ) with
// Δ = W − Q, next to the weight's own tr(WHWᵀ); their ratio is the rel_error that gptq_rel_error,
// the pipeline's manifest and `dsv4-calib solve --json` report. The one CPU implementation; the
// GPU batch computes the same traces with TF32 GEMMs (gptq_solve_batch_cuda's GptqBatchErrors).
//
//   HessianError e = hessian_error(w, q, rows, cols, h.h.data());
//   double rel = e.rel();   // 0 when tr(WHWᵀ) = 0
struct HessianError {
  double delta_trace = 0.0;   // tr(ΔHΔᵀ)
  double weight_trace = 0.0;  // tr(WHWᵀ)
  double rel() const { return weight_trace == 0.0 ? 0.0 : delta_trace / weight_trace; }
};

// w, q: [rows, cols] row-major fp32; h: [cols, cols] fp32 (symmetric). Δ is taken in double and
// both traces sum in double, row by row; one pass over H serves both.
HessianError hessian_error(const float* w, const float* q, int64_t rows, int64_t cols, const float* h);

}  // namespace dsv4::quant
