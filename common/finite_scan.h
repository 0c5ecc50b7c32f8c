// finite_scan.h: NaN and infinity in a tensor, found before they reach a solve (issue 26): a
// checkpoint whose weights hold them would otherwise calibrate to exit 0 with "GPTQ fallbacks" and
// never name the tensor. The decoders scan what they decode; the writer scans what it copies.
//
//   NonFinite nf = non_finite_scan(bytes, DType::kBF16);        // raw bytes in their dtype
//   require_finite(non_finite_scan(values.data(), values.size()), "layers.0.attn_norm.weight", dir);
//
//   for (const TensorNonFinite& t : checkpoint_non_finite(ckpt, threads)) puts(t.text().c_str());
//
// Dtypes: F32, F16, BF16 (NaN and ±Inf), F8_E4M3 (its NaN; it has no Inf), F8_E8M0 (0xFF, its
// NaN); integer and other dtypes hold none. Tests: tests/common/test_finite_scan.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/safetensors.h"

namespace dsv4 {

struct NonFinite {
  int64_t count = 0;   // values that are NaN or infinite
  int64_t first = -1;  // the index of the first, -1 when none
};

NonFinite non_finite_scan(std::span<const std::byte> bytes, DType dtype);
NonFinite non_finite_scan(const float* values, size_t count);

// A user error when nf.count > 0: `tensor` (of the checkpoint in `where`) holds that many NaN or
// infinite values, the first at its index (unsaid when nf.first < 0: a device count has none);
// the checkpoint is damaged.
void require_finite(const NonFinite& nf, const std::string& tensor, const std::string& where);

// A tensor of a checkpoint that holds NaN or infinite values, and the shard file holding it.
struct TensorNonFinite {
  std::string tensor;
  std::string file;  // the shard's file name (Checkpoint::file_of)
  NonFinite nf;
  // "T in FILE holds N NaN or infinite value(s), the first at index I": what inspect and verify print.
  std::string text() const;
};

// Every tensor of `ckpt` scanned in its stored dtype (raw bytes: an FP8 code or E8M0 scale that is
// NaN, not a product that overflows, which the decoders' scan of their output catches), on
// `threads` threads (0: all cores); the tensors holding any, by name. `inspect` and `verify` run it
// (each reads every byte of the checkpoint once).
std::vector<TensorNonFinite> checkpoint_non_finite(const Checkpoint& ckpt, int threads);

}  // namespace dsv4
