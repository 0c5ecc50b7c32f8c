// check.cpp: dsv4::Error and the formatting helpers behind the DSV4_CHECK macros.
#include "common/check.h"

#include <cstdarg>
#include <cstdio>

#include "common/log.h"

namespace dsv4 {

std::string strfmt_v(const char* fmt, va_list args) {
  va_list copy;
  va_copy(copy, args);
  const int n = std::vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  std::string out;
  if (n > 0) {
    out.resize(static_cast<size_t>(n));
    std::vsnprintf(out.data(), out.size() + 1, fmt, args);
  }
  return out;
}

std::string strfmt(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::string out = strfmt_v(fmt, args);
  va_end(args);
  return out;
}

static std::string base_name(const char* file) {
  std::string path(file);
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

Error::Error(std::string component, const char* file, int line, const std::string& message)
    : std::runtime_error("[" + component + "] " + base_name(file) + ":" + std::to_string(line) +
                         ": " + message + log_context().suffix()),
      component_(std::move(component)),
      message_(message) {}

void throw_error(const char* component, const char* file, int line, const std::string& message) {
  throw Error(component, file, line, message);
}

}  // namespace dsv4
