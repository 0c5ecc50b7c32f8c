// dtype.cpp: the safetensors dtype table (names and byte sizes). One row per DType, in enum
// order, so dtype_name/dtype_size index it and dtype_from_name scans it.
#include "common/dtype.h"

#include "common/check.h"

namespace dsv4 {
namespace {

struct DTypeInfo {
  DType type;
  std::string_view name;
  size_t bytes;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kBool, "BOOL", 1},       {DType::kU8, "U8", 1},
    {DType::kI8, "I8", 1},           {DType::kU16, "U16", 2},
    {DType::kI16, "I16", 2},         {DType::kU32, "U32", 4},
    {DType::kI32, "I32", 4},         {DType::kU64, "U64", 8},
    {DType::kI64, "I64", 8},         {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},       {DType::kF32, "F32", 4},
    {DType::kF64, "F64", 8},         {DType::kF8E4M3, "F8_E4M3", 1},
    {DType::kF8E5M2, "F8_E5M2", 1},  {DType::kF8E8M0, "F8_E8M0", 1},
};
constexpr size_t kNumDTypes = sizeof(kDTypes) / sizeof(kDTypes[0]);

// The table is indexed by the enum value; this catches an enumerator added without a row.
constexpr bool table_in_enum_order() {
  for (size_t i = 0; i < kNumDTypes; ++i) {
    if (static_cast<size_t>(kDTypes[i].type) != i) return false;
  }
  return static_cast<size_t>(DType::kF8E8M0) + 1 == kNumDTypes;
}
static_assert(table_in_enum_order(), "kDTypes must list every DType in enum order");

const DTypeInfo& dtype_info(DType t) {
  const auto index = static_cast<size_t>(t);
  // A DType read from a corrupted file or cast from an int can be out of range.
  DSV4_CHECK_IN("dtype", index < kNumDTypes, "invalid DType value %zu", index);
  return kDTypes[index];
}

}  // namespace

size_t dtype_size(DType t) { return dtype_info(t).bytes; }

std::string_view dtype_name(DType t) { return dtype_info(t).name; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.name == name) return info.type;
  }
  return std::nullopt;
}

}  // namespace dsv4
