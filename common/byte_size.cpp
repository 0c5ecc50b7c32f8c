// byte_size.cpp: see byte_size.h.
#include "common/byte_size.h"

#include <cmath>
#include <cstdlib>

namespace dsv4 {
namespace {

// The multiplier of a unit, or a negative value for an unknown one.
double unit_multiplier(const std::string& unit) {
  if (unit.empty() || unit == "B") return 1.0;
  if (unit == "KB") return 1e3;
  if (unit == "MB") return 1e6;
  if (unit == "GB") return 1e9;
  if (unit == "K" || unit == "KiB") return 1024.0;
  if (unit == "M" || unit == "MiB") return 1048576.0;
  if (unit == "G" || unit == "GiB") return 1073741824.0;
  return -1.0;
}

}  // namespace

std::optional<uint64_t> parse_byte_size(const std::string& text, std::string* why) {
  const char* begin = text.c_str();
  char* end = nullptr;
  const double number = std::strtod(begin, &end);
  if (end == begin) {
    *why = "not a number";
    return std::nullopt;
  }
  std::string unit(end);
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  const double mult = unit_multiplier(unit);
  if (mult < 0) {
    *why = "unknown unit '" + unit + "' (B, KB, MB, GB, K, M, G, KiB, MiB, GiB)";
    return std::nullopt;
  }
  const double bytes = number * mult;
  if (!std::isfinite(bytes)) {  // "inf", "nan", 1e400
    *why = "not a finite size";
    return std::nullopt;
  }
  if (bytes < 1.0) {
    *why = "less than one byte";
    return std::nullopt;
  }
  if (bytes > static_cast<double>(kMaxByteSize)) {
    *why = "more than 1 PiB";
    return std::nullopt;
  }
  return static_cast<uint64_t>(bytes);
}

}  // namespace dsv4
