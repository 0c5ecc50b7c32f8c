// test_byte_size.cpp: parse_byte_size's spellings and refusals (the recipe's output.shard_size
// and make-model's --shard-size both go through it).
#include <gtest/gtest.h>

#include "common/byte_size.h"

namespace dsv4 {
namespace {

uint64_t parsed(const std::string& text) {
  std::string why;
  const std::optional<uint64_t> v = parse_byte_size(text, &why);
  EXPECT_TRUE(v.has_value()) << text << ": " << why;
  return v.value_or(0);
}

std::string refusal(const std::string& text) {
  std::string why;
  const std::optional<uint64_t> v = parse_byte_size(text, &why);
  EXPECT_FALSE(v.has_value()) << text << " gave " << v.value_or(0);
  return why;
}

TEST(ByteSize, DecimalAndBinaryUnits) {
  EXPECT_EQ(parsed("1048576"), 1048576u);
  EXPECT_EQ(parsed("5GB"), 5000000000u);
  EXPECT_EQ(parsed("2 MB"), 2000000u);
  EXPECT_EQ(parsed("512MiB"), 512ull << 20);
  EXPECT_EQ(parsed("4G"), 4ull << 30);
  EXPECT_EQ(parsed("1K"), 1024u);
  EXPECT_EQ(parsed("1.5KiB"), 1536u);
  EXPECT_EQ(parsed("7B"), 7u);
  EXPECT_EQ(parsed("2.9"), 2u);  // a fraction of a byte is dropped
}

TEST(ByteSize, LargestSizeIsExactAndTaken) {
  EXPECT_EQ(parsed(std::to_string(kMaxByteSize)), kMaxByteSize);
  EXPECT_EQ(parsed("1048576GiB"), kMaxByteSize);
  EXPECT_EQ(refusal(std::to_string(kMaxByteSize + 1024)), "more than 1 PiB");
}

// Each of these once reached a cast of an out-of-range double to uint64_t (undefined; the fuzzer's
// UBSan finding) or gave 0 bytes, which the resolved recipe then could not read back.
TEST(ByteSize, NonFiniteHugeAndSubByteSizesAreRefused) {
  EXPECT_EQ(refusal("1e30"), "more than 1 PiB");
  EXPECT_EQ(refusal("18446744073709551615"), "more than 1 PiB");
  EXPECT_EQ(refusal("1e400"), "not a finite size");
  EXPECT_EQ(refusal("inf"), "not a finite size");
  EXPECT_EQ(refusal("nan"), "not a finite size");
  EXPECT_EQ(refusal("0.5"), "less than one byte");
  EXPECT_EQ(refusal("0"), "less than one byte");
  EXPECT_EQ(refusal("-3GB"), "less than one byte");
}

TEST(ByteSize, TextThatIsNoSizeIsRefused) {
  EXPECT_EQ(refusal(""), "not a number");
  EXPECT_EQ(refusal("GB"), "not a number");
  EXPECT_NE(refusal("5 parsecs").find("unknown unit 'parsecs'"), std::string::npos);
  EXPECT_NE(refusal("12X").find("unknown unit 'X'"), std::string::npos);
}

}  // namespace
}  // namespace dsv4
