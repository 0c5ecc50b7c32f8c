// finite_scan.h: NaN and infinity in a tensor, found before they reach a solve (issue 26): a
// checkpoint whose weights hold them would otherwise calibrate to exit 0 with "GPTQ fallbacks" and
// never name the tensor. The decoders scan what they decode; the writer scans what it copies.
//
//   NonFinite nf = non_finite_scan(bytes, DType::kBF16);        // raw bytes in their dtype
//   require_finite(non_finite_scan(values.data(), values.size()), "layers.0.attn_norm.weight", dir);
//
// Dtypes: F32, F16, BF16 (NaN and ±Inf), F8_E4M3 (its NaN; it has no Inf), F8_E8M0 (0xFF, its
// NaN); integer and other dtypes hold none. Tests: tests/common/test_finite_scan.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "common/dtype.h"

namespace dsv4 {

struct NonFinite {
  int64_t count = 0;   // values that are NaN or infinite
  int64_t first = -1;  // the index of the first, -1 when none
};

NonFinite non_finite_scan(std::span<const std::byte> bytes, DType dtype);
NonFinite non_finite_scan(const float* values, size_t count);

// A user error when nf.count > 0: `tensor` (of the checkpoint in `where`) holds that many NaN or
// infinite values, the first at its index; the checkpoint is damaged.
void require_finite(const NonFinite& nf, const std::string& tensor, const std::string& where);

}  // namespace dsv4
