// compressed_module.h: lays one quantized Linear (codes + qparams [+ g_idx]) out as the
// compressed-tensors tensors vLLM loads (gptq_and_formats.md §3.2-3.3), names without a module
// prefix: weight_packed / weight / weight_scale / weight_shape / weight_zero_point (asymmetric
// only) / weight_g_idx (actorder=group only) / weight_global_scale (NVFP4).
//
//   auto tensors = compressed_module_encode(args, result.qparams, result.codes, result.g_idx, N, K);
//   for (auto& t : tensors) write(prefix + "." + t.name, t.dtype, t.shape, t.bytes);
//
// The format follows from the args: int -> pack-quantized; float 8-bit -> float-quantized;
// float 4-bit tensor_group -> nvfp4-pack-quantized; float 4-bit group with e8m0 scales ->
// mxfp4-pack-quantized. Tests: tests/quant/test_compressed_module.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "quant/pack.h"
#include "quant/quant_args.h"
#include "quant/quantizer.h"

namespace dsv4::quant {

struct EncodedTensor {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;
};

PackFormat compressed_module_format(const QuantArgs& args);

std::vector<EncodedTensor> compressed_module_encode(const QuantArgs& args, const QParams& qparams,
                                                    const std::vector<int32_t>& codes,
                                                    const std::vector<int32_t>& g_idx, int64_t rows,
                                                    int64_t cols);

}  // namespace dsv4::quant
