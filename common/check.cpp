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

static std::string location(const std::string& component, const char* file, int line) {
  return "[" + component + "] " + base_name(file) + ":" + std::to_string(line) + ": ";
}

Error::Error(std::string component, const char* file, int line, const std::string& message, ErrorKind kind,
             const std::string& expression)
    // A user error names the rank only when there are several: on one process it is noise.
    : std::runtime_error(kind == ErrorKind::kUser
                             ? message + (log_context().world > 1 ? log_context().suffix() : "")
                             : location(component, file, line) + message + log_context().suffix()),
      component_(std::move(component)),
      message_(message),
      detail_(location(component_, file, line) + (expression.empty() ? "" : expression + ": ") + message),
      kind_(kind) {}

void throw_error(const char* component, const char* file, int line, const std::string& message) {
  throw Error(component, file, line, message);
}

void throw_user_error(const char* component, const char* file, int line, const char* expression,
                      const std::string& message) {
  // The condition goes to the detail (`-v 2`), not into the user's message.
  throw Error(component, file, line, message, ErrorKind::kUser, expression ? expression : "");
}

}  // namespace dsv4
