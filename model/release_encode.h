// release_encode.h: how the release checkpoint rounds float values into its on-disk encodings,
// in one place for make-model's synthetic draws (synth_weights.h) and for imported trained
// weights (weights_import.h):
//   BF16: round to nearest even; F32: as is;
//   FP8 (kFp8Block): e4m3 codes, one power-of-two scale per fp8_block × fp8_block block;
//   MXFP4 (kMxfp4): e2m1 codes, two per byte (low nibble = even column), one scale per 32 columns.
// Scale rule (the spec's "never clips" choice, reference doc §5.2-5.3): s = 2^ceil(log2(amax / qmax))
// per block (qmax 448 for e4m3, 6 for e2m1), so |w / s| <= qmax and the encoders' saturation never
// triggers on finite data. The `.scale` tensor's dtype (F8_E8M0 or F32) comes from the inventory.
//
//   EncodedLinear e = release_encode_linear(weight, scale, config.fp8_block,
//                                           [&](int64_t i, float* row) { /* fill row i */ });
//   EncodedBytes b = release_encode_plain(tensor, values.data());
//
// Tests: tests/model/test_weights_import.cpp (round trip through model/weight_decode.h) and
// tests/model/test_synth.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "model/inventory.h"

namespace dsv4::model {

using EncodedBytes = std::vector<std::byte>;

struct EncodedLinear {
  EncodedBytes weight;
  EncodedBytes scale;
};

// Fills row[0, cols) with row i of a weight's logical [rows, cols] matrix. Called once per row, in
// increasing i, so a source may generate rows as it goes.
using RowSource = std::function<void(int64_t i, float* row)>;

// A kFp8Block or kMxfp4 weight and its kScale sibling, encoded from the rows `rows` gives.
EncodedLinear release_encode_linear(const ExpectedTensor& weight, const ExpectedTensor& scale, int64_t fp8_block,
                                    const RowSource& rows);

// A kPlain BF16 or F32 tensor from numel(shape) float values (row-major).
EncodedBytes release_encode_plain(const ExpectedTensor& tensor, const float* values);

}  // namespace dsv4::model
