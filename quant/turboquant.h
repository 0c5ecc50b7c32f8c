// turboquant.h: TurboQuant weight quantization (PolarQuant with a randomized Walsh–Hadamard
// rotation and a Lloyd–Max codebook), as turboquant-vllm's `save_tq3_checkpoint` computes it
// (../shared/reference/seed_pipelines.md §1.4, §3.4; checked against turboquant-vllm 0.13.1's
// torch_ops.py PolarQuantTorch, weight_quant.py pack_indices / unpack_indices and checkpoint.py
// _compress_tensor).
//
//   const TqCodec codec(3, 128);                                // bits, group size; seed 42
//   TqResult r = tq_quantize(codec, w, rows, cols);             // indices, norms, dequant
//   std::vector<uint8_t> packed = tq_pack(codec, r.indices);    // [rows·groups, 48] for TQ3
//   std::vector<float> w2 = tq_dequantize(codec, r.indices, r.norms, rows, cols);
//
// Per row, the input is zero-padded to a multiple of the group size and cut into groups of G.
// Each group x (G floats) is stored as:
//   n      = ‖x‖₂;  u = x / n (n = 0: u = x)
//   y      = D2 · H · D1 · u   (D1, D2: ±1 diagonals; H: the Walsh–Hadamard butterfly, then / √G)
//   idx_j  = #{b in boundaries : b < y_j}   (torch.searchsorted, left side: a tie goes down)
//   norm   = n / ‖D1 · H · D2 · c[idx]‖₂   (norm correction: the original norm over the
//            reconstruction's; a zero reconstruction divides by 1)
// and decodes to norm · (D1 · H · D2 · c[idx]) (H is its own inverse once scaled by 1/√G).
// Signs: torch.Generator("cpu").manual_seed(42) is MT19937 seeded 42; D1 = the first G draws of
// randint(0, 2) (each draw is one 32-bit output mod 2) · 2 − 1, D2 = the next G.
// Codebook for N(0, 1/G): 2 bits the fixed {±0.453, ±1.51}/√G, 3 and 4 bits 100 Lloyd iterations
// in double from the normal quantile boundaries; stored as float, boundaries the float midpoints.
// Packing per group: 4 bits two per byte, the even index in the low nibble; 3 bits eight indices
// in three bytes, index k at bits 3k..3k+2 of the little-endian 24-bit word; 2 bits four per byte,
// index k at bits 2k..2k+1.
//
// Arithmetic: every step is fp32 in upstream's order (sign products, the butterfly's a+b / a−b
// by stride 1, 2, 4 ..., one division by float(√G), x / n, the final product), so an encoder or
// decoder that keeps it gets the same bits, with one exception: upstream's torch.linalg.norm sums
// squares in fp32 in the order of the CPU's vector width (AVX2 and AVX-512 differ). The norms here
// are sqrt of the double sum of the squares (each exact in double, added in index order) rounded
// to float: the same on every machine and on the GPU (quant/turboquant_cuda.h), and within a few
// ulps of upstream's.
// Supported: bits 2, 3, 4; the group size a power of two from 8 to 4096.
// Tests: tests/quant/test_turboquant.cpp (worked values and upstream's own bytes).
#pragma once

#include <cstdint>
#include <vector>

namespace dsv4::quant {

inline constexpr uint64_t kTqSeed = 42;

class TqCodec {
 public:
  TqCodec(int bits, int group_size);  // throws for bits outside 2..4 or a group size not 2^k in [8, 4096]

  int bits() const { return bits_; }
  int group_size() const { return group_; }
  int group_bytes() const { return group_ * bits_ / 8; }  // packed bytes per group: 48 for TQ3 g128
  const std::vector<float>& centroids() const { return centroids_; }    // [2^bits], ascending
  const std::vector<float>& boundaries() const { return boundaries_; }  // [2^bits − 1] midpoints
  const std::vector<float>& signs1() const { return signs1_; }          // D1, [G] of ±1
  const std::vector<float>& signs2() const { return signs2_; }          // D2, [G] of ±1

  // In place on one group of G floats: y = D2·H·D1·x, and its inverse x = D1·H·D2·y.
  void rotate(float* x) const;
  void rotate_inverse(float* y) const;

 private:
  int bits_, group_;
  std::vector<float> centroids_, boundaries_, signs1_, signs2_;
};

// Lloyd–Max centroids of N(0, 1/dim) in double (before the float rounding), as upstream's
// optimal_centroids(bits, dim) computes them.
std::vector<double> tq_lloyd_max_centroids(int bits, int dim);
// The ±1 signs D1 (first G draws) and D2 (next G) from MT19937 seeded `seed`.
void tq_signs(uint64_t seed, int group_size, std::vector<float>* signs1, std::vector<float>* signs2);

int64_t tq_groups_per_row(int64_t cols, int group_size);  // ceil(cols / G)

// Sqrt of the double sum of squares (index order), rounded to float (see the header).
float tq_norm(const float* x, int n);

struct TqResult {
  std::vector<int32_t> indices;  // [rows, groups·G] codebook indices of the rotated groups (padding included)
  std::vector<float> norms;      // [rows, groups] corrected norms
  std::vector<float> dequant;    // [rows, cols] the decode of the two
};

// w: [rows, cols] fp32. One group: tq_quantize_group (norm-corrected).
TqResult tq_quantize(const TqCodec& codec, const float* w, int64_t rows, int64_t cols);
// x: G floats (already padded); writes G indices and returns the corrected norm.
float tq_quantize_group(const TqCodec& codec, const float* x, int32_t* indices);
// The corrected norm of a group whose indices were chosen otherwise (GPTQ): ‖x‖ over the
// reconstruction's norm.
float tq_corrected_norm(const TqCodec& codec, float x_norm, const int32_t* indices);
// One group's decode into out[G].
void tq_dequantize_group(const TqCodec& codec, const int32_t* indices, float norm, float* out);
std::vector<float> tq_dequantize(const TqCodec& codec, const std::vector<int32_t>& indices,
                                 const std::vector<float>& norms, int64_t rows, int64_t cols);

// indices [num_groups, G] -> packed [num_groups, group_bytes], and back.
std::vector<uint8_t> tq_pack(const TqCodec& codec, const std::vector<int32_t>& indices);
std::vector<int32_t> tq_unpack(const TqCodec& codec, const uint8_t* packed, int64_t num_groups);

}  // namespace dsv4::quant
