// compressed_module.cpp: codes + qparams -> compressed-tensors tensor bytes (see the header).
#include "quant/compressed_module.h"

#include <cstring>

#include "common/check.h"
#include "common/codec.h"
#include "common/safetensors.h"

namespace dsv4::quant {
// FP32 for FP32 scales, and for e8m0 (power-of-two) scales outside the MX formats, i.e. FP8 block:
// vLLM's block-FP8 path creates its weight_scale parameter as float32 (create_fp8_scale_parameter)
// and DeepGEMM's post-processing asserts float32 (deepgemm_post_process_fp8_weight_block), both in
// vllm/model_executor/layers/quantization/utils/fp8_utils.py. A power of two 2^-127..2^127 is
// exact in FP32, so the values are those the BF16 encoding held. Otherwise the model dtype (BF16).
DType compressed_module_scale_dtype(const QuantArgs& a) {
  if (a.scale_dtype == ScaleDType::kF32) return DType::kF32;
  if (a.scale_dtype == ScaleDType::kE8m0 && !a.is_mx()) return DType::kF32;
  return DType::kBF16;
}

namespace {

template <typename T>
std::vector<std::byte> bytes_of(const std::vector<T>& v) {
  std::vector<std::byte> out(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

PackScaleLayout scale_layout(const QuantArgs& a) {
  switch (a.strategy) {
    case Strategy::kTensor: return PackScaleLayout::kTensor;
    case Strategy::kChannel: return PackScaleLayout::kChannel;
    case Strategy::kBlock: return PackScaleLayout::kBlock;
    case Strategy::kGroup:
    case Strategy::kTensorGroup: return PackScaleLayout::kGroup;
  }
  return PackScaleLayout::kGroup;
}

// The stored scale values in the dtype the tensor set asks for.
std::vector<std::byte> scale_bytes(const QParams& qp, DType dtype) {
  const size_t n = qp.scale.size();
  switch (dtype) {
    case DType::kF32: return bytes_of(qp.scale);
    case DType::kBF16: {
      std::vector<uint16_t> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = bf16_encode(qp.scale[i]);
      return bytes_of(v);
    }
    case DType::kF16: {
      std::vector<uint16_t> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = fp16_encode(qp.scale[i]);
      return bytes_of(v);
    }
    case DType::kF8E4M3: {
      std::vector<uint8_t> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = e4m3_encode(qp.scale[i]);
      return bytes_of(v);
    }
    case DType::kU8:
    case DType::kF8E8M0: {
      DSV4_CHECK_IN("pack", qp.scale_e8m0.size() == n, "e8m0 scales requested but the qparams hold %zu of %zu",
                    qp.scale_e8m0.size(), n);
      return bytes_of(qp.scale_e8m0);
    }
    default:
      DSV4_FAIL("pack", "no scale encoding for dtype %s", std::string(dtype_name(dtype)).c_str());
  }
}

}  // namespace

bool compressed_module_format_holds(PackFormat f, const QuantArgs& a) {
  const bool is_int = a.type == QuantType::kInt, fp4 = !is_int && a.num_bits == 4;
  bool ok = false;
  switch (f) {
    case PackFormat::kPackQuantized: ok = is_int; break;
    case PackFormat::kIntQuantized: ok = is_int; break;
    case PackFormat::kFloatQuantized: ok = !is_int && a.num_bits == 8; break;
    case PackFormat::kNaiveQuantized: ok = is_int || a.num_bits == 8; break;
    case PackFormat::kNvfp4PackQuantized: ok = fp4 && a.strategy == Strategy::kTensorGroup; break;
    case PackFormat::kMxfp4PackQuantized:
      ok = fp4 && a.strategy == Strategy::kGroup && a.scale_dtype == ScaleDType::kE8m0;
      break;
  }
  return ok;
}

void compressed_module_check_format(PackFormat f, const QuantArgs& a) {
  DSV4_CHECK_IN("pack", compressed_module_format_holds(f, a), "format %s cannot hold weights %s",
                pack_format_name(f).data(), a.to_string().c_str());
}

namespace {

PackedTensorSetArgs tensor_set_args(PackFormat format, const QuantArgs& a, int64_t rows, int64_t cols,
                                    bool with_g_idx) {
  compressed_module_check_format(format, a);
  PackedTensorSetArgs s;
  s.format = format;
  s.rows = rows;
  s.cols = cols;
  s.bits = a.num_bits;
  s.scale_layout = scale_layout(a);
  s.group_size = a.group_size > 0 ? a.group_size : 128;
  s.block_rows = a.block_structure[0] > 0 ? a.block_structure[0] : 128;
  s.block_cols = a.block_structure[1] > 0 ? a.block_structure[1] : 128;
  s.symmetric = a.symmetric;
  s.actorder_group = with_g_idx;
  s.float_codes = a.type == QuantType::kFloat;
  s.model_dtype = compressed_module_scale_dtype(a);
  return s;
}

}  // namespace

std::vector<EncodedTensor> compressed_module_layout(PackFormat format, const QuantArgs& a, int64_t rows, int64_t cols,
                                                    bool with_g_idx) {
  std::vector<EncodedTensor> out;
  for (const PackedTensor& t : packed_tensor_set(tensor_set_args(format, a, rows, cols, with_g_idx))) {
    out.push_back({t.name, t.dtype, t.shape, {}});
  }
  return out;
}

uint64_t encoded_tensor_bytes(const EncodedTensor& t) {
  uint64_t b = dtype_size(t.dtype);
  for (int64_t v : t.shape) b *= static_cast<uint64_t>(v);
  return b;
}

std::vector<const EncodedTensor*> compressed_module_in_layout(PackFormat format, const QuantArgs& args, int64_t rows,
                                                              int64_t cols, const std::vector<EncodedTensor>& tensors,
                                                              std::string* why) {
  const std::vector<EncodedTensor> layout = compressed_module_layout(format, args, rows, cols, false);
  std::vector<const EncodedTensor*> out;
  auto differs = [&](std::string reason) {
    if (why) *why = std::move(reason);
    return std::vector<const EncodedTensor*>{};
  };
  if (tensors.size() != layout.size()) {
    std::string names;
    for (const EncodedTensor& t : tensors) names += (names.empty() ? "" : ", ") + t.name;
    return differs(std::to_string(tensors.size()) + " tensors (" + names + "), " + std::string(pack_format_name(format)) +
                   " has " + std::to_string(layout.size()));
  }
  for (const EncodedTensor& want : layout) {
    const EncodedTensor* got = nullptr;
    for (const EncodedTensor& t : tensors) {
      if (t.name == want.name) got = &t;
    }
    if (got == nullptr) return differs("no " + want.name);
    const uint64_t bytes = encoded_tensor_bytes(want);
    if (got->dtype != want.dtype || got->shape != want.shape || got->bytes.size() != bytes) {
      return differs(want.name + " is " + std::string(dtype_name(got->dtype)) + " " + shape_string(got->shape) + " in " +
                     std::to_string(got->bytes.size()) + " bytes, the layout has " + std::string(dtype_name(want.dtype)) +
                     " " + shape_string(want.shape) + " in " + std::to_string(bytes));
    }
    out.push_back(got);
  }
  return out;
}

std::vector<EncodedTensor> compressed_module_encode(PackFormat format, const QuantArgs& a,
                                                    const QParams& qp,
                                                    const std::vector<int32_t>& codes,
                                                    const std::vector<int32_t>& g_idx, int64_t rows,
                                                    int64_t cols) {
  DSV4_CHECK_IN("pack", static_cast<int64_t>(codes.size()) == rows * cols, "%zu codes for a [%lld, %lld] weight",
                codes.size(), static_cast<long long>(rows), static_cast<long long>(cols));
  const PackedTensorSetArgs s = tensor_set_args(format, a, rows, cols, !g_idx.empty());
  const size_t n = static_cast<size_t>(rows), k = static_cast<size_t>(cols);
  std::vector<EncodedTensor> out;
  for (const PackedTensor& t : packed_tensor_set(s)) {
    EncodedTensor e{t.name, t.dtype, t.shape, {}};
    if (t.name == "weight_packed" && t.dtype == DType::kI32) {
      e.bytes = bytes_of(int32_pack(codes, n, k, a.num_bits));
    } else if (t.name == "weight_packed") {  // fp4 nibbles
      std::vector<uint8_t> c(codes.begin(), codes.end());
      e.bytes = bytes_of(fp4_pack_codes(c, n, k));
    } else if (t.name == "weight") {  // e4m3 codes (float-quantized) or int8 (int-quantized)
      std::vector<uint8_t> c(codes.size());
      for (size_t i = 0; i < c.size(); ++i) c[i] = static_cast<uint8_t>(codes[i]);
      e.bytes = bytes_of(c);
    } else if (t.name == "weight_scale") {
      e.bytes = scale_bytes(qp, t.dtype);
    } else if (t.name == "weight_shape") {
      e.bytes = bytes_of(std::vector<int64_t>{rows, cols});
    } else if (t.name == "weight_zero_point") {
      std::vector<int32_t> zp(qp.zero_point.size());
      for (size_t i = 0; i < zp.size(); ++i) zp[i] = static_cast<int32_t>(qp.zero_point[i]);
      e.bytes = bytes_of(zero_point_pack(zp, static_cast<size_t>(qp.scale_rows), static_cast<size_t>(qp.scale_cols),
                                         a.num_bits));
    } else if (t.name == "weight_g_idx") {
      e.bytes = bytes_of(g_idx);
    } else if (t.name == "weight_global_scale") {
      e.bytes = bytes_of(std::vector<float>{qp.global_scale});
    } else {
      DSV4_FAIL("pack", "no encoder for tensor %s", t.name.c_str());
    }
    DSV4_CHECK_IN("pack", e.bytes.size() == encoded_tensor_bytes(e), "%s: encoded %zu bytes, the layout needs another size", t.name.c_str(), e.bytes.size());
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace dsv4::quant
