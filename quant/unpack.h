// unpack.h: compressed_module_decode, one quantized Linear's compressed-tensors tensors back to its
// fp32 weights on the CPU: the inverse of compressed_module_encode (compressed_module.h) and the
// reference of compressed_module_decode_cuda (unpack_cuda.h, which rounds these values to bf16).
//
//   std::vector<float> w = compressed_module_decode(tensors, "layers.0.attn.wq_a", rows, cols);
//
// Layouts decoded (gptq_and_formats.md §3.2-3.3), recognised from the tensors present under the
// module prefix: pack-quantized (`weight_packed` int32 + `weight_scale` [+ `weight_zero_point`]
// [+ `weight_g_idx`] + `weight_shape`), float-/naive-quantized (`weight` F8_E4M3 + `weight_scale`
// tensor/channel/block), int-quantized (`weight` I8 + `weight_scale`), nvfp4-pack-quantized
// (`weight_packed` U8 + `weight_scale` F8_E4M3 + `weight_global_scale`), mxfp4-pack-quantized
// (`weight_packed` U8 + `weight_scale` U8 e8m0). Values are exactly our quantizer's fake-quantized
// weight (quantizer_dequant_value through gptq_dequant_with_g_idx, g_idx applied): bf16 scales give
// the bf16-rounded product, as compressed-tensors' decompressors compute it; e4m3 / e8m0 scales
// give the fp32 product. The module name only names the tensors (`module.weight_scale`) in lookups
// and errors. Errors name the module, its source, the offending tensor and what was expected.
// Tests: tests/quant/test_compressed_module.cpp (through calib's artifact decoder:
// tests/calib/test_artifact_decode.cpp), tests/quant/test_unpack_cuda.cu (the GPU decoder).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "quant/compressed_module.h"

namespace dsv4::quant {

// Where one module's stored tensors are read from: an artifact on disk (calib/artifact_decode.h), or
// the encoded tensors a solve produced. Names are full (`module.weight_packed`).
class EncodedTensorSource {
 public:
  virtual ~EncodedTensorSource() = default;
  virtual const TensorInfo* find(const std::string& name) const = 0;  // null when absent
  virtual std::span<const std::byte> bytes(const TensorInfo& t) const = 0;
  virtual const std::string& where() const = 0;  // the source, for errors
};

// The dequantized weight [rows, cols] of `module` read from `source`. Throws naming the module and
// the offending tensor when a tensor is missing, has the wrong dtype or shape, or the layout is
// none of the above.
std::vector<float> compressed_module_decode(const EncodedTensorSource& source, const std::string& module, int64_t rows,
                                            int64_t cols);

// The same from a solve's encoded tensors (compressed_module_encode's output, names without the
// module prefix): bit-identical to the solve's dequantized weight.
std::vector<float> compressed_module_decode(const std::vector<EncodedTensor>& tensors, const std::string& module,
                                            int64_t rows, int64_t cols);

}  // namespace dsv4::quant
