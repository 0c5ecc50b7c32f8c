// test_dtype.cpp: the safetensors dtype table: every name round-trips, sizes match the format,
// unknown spellings are rejected, and out-of-range enum values throw instead of reading past the
// table.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/dtype.h"

namespace dsv4 {
namespace {

// Written out independently of dtype.cpp: safetensors spelling and element size in bytes.
const std::vector<std::pair<std::string, size_t>> kExpected = {
    {"BOOL", 1}, {"U8", 1},   {"I8", 1},   {"U16", 2},  {"I16", 2},     {"U32", 4},
    {"I32", 4},  {"U64", 8},  {"I64", 8},  {"F16", 2},  {"BF16", 2},    {"F32", 4},
    {"F64", 8},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1},
};

TEST(DType, EveryNameRoundTripsWithItsSize) {
  ASSERT_EQ(kExpected.size(), static_cast<size_t>(DType::kF8E8M0) + 1)
      << "the expected table must cover every DType";
  for (const auto& [name, bytes] : kExpected) {
    const std::optional<DType> t = dtype_from_name(name);
    ASSERT_TRUE(t.has_value()) << "dtype_from_name(\"" << name << "\") returned nullopt";
    EXPECT_EQ(dtype_name(*t), name) << "enum value " << static_cast<int>(*t);
    EXPECT_EQ(dtype_size(*t), bytes) << name;
  }
}

TEST(DType, EveryEnumValueHasADistinctName) {
  std::vector<std::string> seen;
  for (int i = 0; i <= static_cast<int>(DType::kF8E8M0); ++i) {
    const auto t = static_cast<DType>(i);
    const std::string name(dtype_name(t));
    EXPECT_FALSE(name.empty()) << "enum value " << i;
    for (const std::string& other : seen) EXPECT_NE(name, other) << "enum value " << i;
    seen.push_back(name);
    const std::optional<DType> back = dtype_from_name(name);
    ASSERT_TRUE(back.has_value()) << name;
    EXPECT_EQ(static_cast<int>(*back), i) << name;
  }
}

TEST(DType, SpecificValues) {
  EXPECT_EQ(dtype_name(DType::kBF16), "BF16");
  EXPECT_EQ(dtype_name(DType::kF8E4M3), "F8_E4M3");
  EXPECT_EQ(dtype_name(DType::kF8E8M0), "F8_E8M0");
  EXPECT_EQ(dtype_from_name("I8"), DType::kI8);  // FP4 experts are carried as I8
  EXPECT_EQ(dtype_from_name("I64"), DType::kI64);
  EXPECT_EQ(dtype_size(DType::kF32), 4u);
  EXPECT_EQ(dtype_size(DType::kI64), 8u);
}

TEST(DType, UnknownNamesAreRejected) {
  // Near misses: lower case, torch spellings, trailing space, 4-bit types the format lacks.
  for (const char* name : {"", "bf16", "Bf16", "F8_E4M3FN", "float8_e4m3fn", "FP8", "F4", "I4",
                           "BF16 ", " BF16", "F8_E8M0FNU", "U128", "F8"}) {
    EXPECT_EQ(dtype_from_name(name), std::nullopt) << "name \"" << name << "\"";
  }
}

TEST(DType, OutOfRangeEnumThrows) {
  const auto bad = static_cast<DType>(static_cast<int>(DType::kF8E8M0) + 1);
  EXPECT_THROW(dtype_size(bad), Error);
  EXPECT_THROW(dtype_name(bad), Error);
  EXPECT_THROW(dtype_size(static_cast<DType>(255)), Error);
  try {
    dtype_size(static_cast<DType>(200));
    FAIL() << "dtype_size(200) did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "dtype");
    EXPECT_NE(e.message().find("200"), std::string::npos) << "message: " << e.message();
  }
}

}  // namespace
}  // namespace dsv4
