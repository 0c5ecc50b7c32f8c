// weight_decode.h: release-format linear weights -> float, on the CPU (the reference the CUDA
// decoders of issue 8 are compared to).
//
//   FP8 block: W[i][j] = e4m3(Wq[i][j]) · scale[i/B][j/B]          (B = 128 in the release)
//   MXFP4:     W[i][k] = e2m1(nibble(i,k)) · scale[i][k/32]         (low nibble = even k)
//   scales are F8_E8M0 bytes (2^(b-127)) or F32 values (V4-Flash-Base reportedly).
//
//   std::vector<float> w(out * in);
//   weight_decode_fp8_block(codes, scales, DType::kF8E8M0, out, in, 128, w.data());
//   weight_decode_mxfp4(packed, scales, DType::kF8E8M0, out, in, w.data());
//
// Spec: ../shared/reference/dsv4_architecture.md §5.2-5.3. Tests: tests/model/test_weight_decode.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/safetensors.h"

namespace dsv4::model {

// codes: [rows, cols] e4m3 bytes; scales: [ceil(rows/block), ceil(cols/block)].
void weight_decode_fp8_block(std::span<const std::byte> codes, std::span<const std::byte> scales,
                             DType scale_dtype, int64_t rows, int64_t cols, int64_t block,
                             float* out);

// packed: [rows, cols/2] bytes; scales: [rows, cols/32].
void weight_decode_mxfp4(std::span<const std::byte> packed, std::span<const std::byte> scales,
                         DType scale_dtype, int64_t rows, int64_t cols, float* out);

// Decodes `<stem>.weight` with its `<stem>.scale` from a checkpoint to [out, in] floats, choosing
// the format by the weight's dtype (F8_E4M3: block FP8; I8: MXFP4). Throws naming the tensor when
// either is missing or the dtype is neither.
//   std::vector<float> w = weight_decode_linear(ckpt, "layers.3.ffn.experts.7.w1", 128);
std::vector<float> weight_decode_linear(const Checkpoint& checkpoint, const std::string& stem,
                                        int64_t fp8_block);

// Decodes linears stored in a layout the release does not use (dsv4-calib's compressed-tensors
// artifacts; implemented in calib/, which model/ must not include). Installed through
// ModelConfig::linear_decoder; linear_load (and so every linear of the forward, routed experts
// included) asks it first. decode() returns false when `module` is not in its layout, so the
// release decoders run; when it returns true, *w holds the [out, in] weight. Must be safe to call
// from several threads at once (experts decode in parallel).
class LinearDecoder {
 public:
  virtual ~LinearDecoder() = default;
  virtual bool decode(const Checkpoint& checkpoint, const std::string& module, int64_t out, int64_t in,
                      std::vector<float>* w) const = 0;
};

}  // namespace dsv4::model
