// compressed_module.h: lays one quantized Linear (codes + qparams [+ g_idx]) out as the
// compressed-tensors tensors vLLM loads (gptq_and_formats.md §3.2-3.3), names without a module
// prefix: weight_packed / weight / weight_scale / weight_shape / weight_zero_point (asymmetric
// only) / weight_g_idx (actorder=group only) / weight_global_scale (NVFP4).
//
//   auto tensors = compressed_module_encode(quant_scheme_format(scheme), scheme.weights,
//                                           result.qparams, result.codes, result.g_idx, N, K);
//   for (auto& t : tensors) write(prefix + "." + t.name, t.dtype, t.shape, t.bytes);
//
// The format comes from the scheme (quant_scheme_format in quant_scheme.h: it depends on the
// input activations too) and must fit the args: int -> pack-/int-/naive-quantized; fp8 ->
// float-/naive-quantized; fp4 tensor_group -> nvfp4-pack-quantized; fp4 group 32 with e8m0
// scales -> mxfp4-pack-quantized. A misfit is an error naming both.
// Tests: tests/quant/test_compressed_module.cpp.
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

// The dtype weight_scale is stored in where the format leaves it to the args (pack-, float-,
// int-, naive-quantized; the fp4 formats fix their own): FP32 for FP32 scales and for power-of-two
// (e8m0) scales outside the MX formats (FP8 block: the dtype vLLM's block-FP8 kernels take, issue
// 27), else the model dtype, BF16.
DType compressed_module_scale_dtype(const QuantArgs& args);

// Whether `format` can hold weights with these args (compressed-tensors' can_compress); the check
// throws unless it can.
bool compressed_module_format_holds(PackFormat format, const QuantArgs& args);
void compressed_module_check_format(PackFormat format, const QuantArgs& args);

// The tensors compressed_module_encode writes for a [rows, cols] module (names, dtypes, shapes;
// bytes empty), without quantizing anything: the writer plans its shards and `verify` checks key
// sets from it. with_g_idx: the module was solved with actorder=group (weight_g_idx written).
std::vector<EncodedTensor> compressed_module_layout(PackFormat format, const QuantArgs& args, int64_t rows,
                                                    int64_t cols, bool with_g_idx);

// The bytes a layout entry's dtype and shape take (what the encoder writes for it).
uint64_t encoded_tensor_bytes(const EncodedTensor& layout_entry);

// `tensors` in the order of compressed_module_layout(format, args, rows, cols, false), when they are
// exactly that layout (the same names, dtypes, shapes and byte counts, nothing else); otherwise
// empty, with *why (unless null) saying what differs (an act-order weight_g_idx, another format). Lets a
// decoder of that layout (unpack_cuda.h) take them, and a caller fall back to the CPU decoder.
std::vector<const EncodedTensor*> compressed_module_in_layout(PackFormat format, const QuantArgs& args, int64_t rows,
                                                              int64_t cols, const std::vector<EncodedTensor>& tensors,
                                                              std::string* why);

std::vector<EncodedTensor> compressed_module_encode(PackFormat format, const QuantArgs& args,
                                                    const QParams& qparams,
                                                    const std::vector<int32_t>& codes,
                                                    const std::vector<int32_t>& g_idx, int64_t rows,
                                                    int64_t cols);

}  // namespace dsv4::quant
