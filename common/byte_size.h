// byte_size.h: a size written for people ("5GB", "512MiB", "4G", "1048576") as a byte count. One
// implementation for every size a user writes (the recipe's output.shard_size, make-model's
// --shard-size), so both take the same spellings and refuse the same values.
//
//   parse_byte_size("5GB")     // 5000000000 (KB, MB, GB: powers of 1000, as huggingface_hub)
//   parse_byte_size("512 MiB") // 536870912  (K, M, G, KiB, MiB, GiB: powers of 1024)
//   parse_byte_size("0.5")     // nullopt, with *why: "less than one byte"
//
// Tests: tests/common/test_byte_size.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace dsv4 {

// The largest size taken: 1 PiB, far beyond any shard (the whole DeepSeek-V4-Flash release is
// about 160 GB), and every count up to it is exact in the double the text is read as, so the
// cast to an integer is defined and a size written back as bytes reads back the same.
inline constexpr uint64_t kMaxByteSize = 1ull << 50;

// The byte count `text` names (a number, optional spaces, an optional unit; a fraction of a byte
// is dropped), or nullopt with the reason in *why (not a number, an unknown unit, not finite,
// below one byte, above kMaxByteSize).
std::optional<uint64_t> parse_byte_size(const std::string& text, std::string* why);

}  // namespace dsv4
