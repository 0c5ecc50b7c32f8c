// int_requant.h: symmetric integer rounding with the scale rules of AppMana's dsv4_int converter
// (../shared/reference/seed_pipelines.md §1.5): scale = absmax / divisor per qparam cell, which
// differs from compressed-tensors' absmax / ((qmax - qmin) / 2) (quantizer.h), or the divisor
// among 19 (5.0, 5.25, ..., 9.5) whose BF16-rounded scale gives the least squared error.
//
//   QuantArgs a = quant_args_preset("W4A16");  a.group_size = 32;
//   RtnResult r = int_requant(a, DivisorRule::kSearch, w, rows, cols);   // the seed's "mse" mode
//   r.qparams.scale;   // BF16 values (what is stored), one per cell
//   r.dequant;         // bf16(code * scale), what the fork's decoder computes
//
// Numerics, as the converter computes them in fp32: absmax is clamped to FLT_MIN first; a fixed
// divisor's codes are rounded (half to even) against the fp32 scale and only the stored scale is
// rounded to BF16 (so a code can differ from rounding against the stored scale); the search
// scores each candidate with its BF16-rounded scale, keeps the first of equal errors (in divisor
// order), and rounds the codes against the winner. Codes are clamped to [qmin, qmax].
// Strategies: channel, group, block (ragged blocks use the elements present).
// Tests: tests/quant/test_int_requant.cpp.
#pragma once

#include <cstdint>

#include "quant/quant_args.h"
#include "quant/quantizer.h"

namespace dsv4::quant {

enum class DivisorRule : uint8_t {
  kQmax,     // absmax / qmax: "absmax7" for INT4, the dense INT8 rule (absmax / 127)
  kNegQmin,  // absmax / -qmin: "absmax8" for INT4 (gives up +8·s to place 1.5 / 3.0 levels better)
  kSearch,   // the best of kRequantDivisors by squared error: "mse"
};

inline constexpr int kRequantDivisorCount = 19;  // 5.0 + 0.25·i, i < 19 (torch.linspace(5, 9.5, 19))
float requant_divisor(int i);

// args: int, symmetric, channel / group / block; the stored scale dtype is BF16 whatever
// args.scale_dtype says (the converter's out_scale_dtype).
RtnResult int_requant(const QuantArgs& args, DivisorRule rule, const float* w, int64_t rows, int64_t cols);

}  // namespace dsv4::quant
