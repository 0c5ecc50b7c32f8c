// dtype.h: the element types of safetensors files and their byte sizes.
//
//   DType t = dtype_from_name("F8_E4M3").value();   // std::nullopt for an unknown string
//   size_t n = dtype_size(t);                       // 1
//   std::string_view s = dtype_name(DType::kBF16);  // "BF16"
//
// Names are the safetensors spellings. FP4 is carried as I8 in the DeepSeek release (two e2m1
// codes per byte), so there is no 4-bit dtype here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace dsv4 {

enum class DType : uint8_t {
  kBool, kU8, kI8, kU16, kI16, kU32, kI32, kU64, kI64,
  kF16, kBF16, kF32, kF64,
  kF8E4M3, kF8E5M2, kF8E8M0,
};

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);

}  // namespace dsv4
