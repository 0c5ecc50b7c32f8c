// log.cpp: rank-aware logging. Lines are written whole with one fwrite so concurrent ranks
// sharing a terminal do not interleave inside a line.
#include "common/log.h"

#include "common/check.h"

#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <string>

namespace dsv4 {
namespace {

LogContext g_context;
int g_level = 1;
std::mutex g_mutex;
std::string g_status;  // log_status_set's line; drawn on stdout after every log line while not empty

constexpr const char kEraseLine[] = "\r\033[K";  // to column 0, erase to the end of the line

void emit(FILE* stream, const std::string& prefix, const std::string& body) {
  std::string line = prefix + body;
  if (line.empty() || line.back() != '\n') line.push_back('\n');
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_status.empty()) std::fputs(kEraseLine, stdout), std::fflush(stdout);
  std::fwrite(line.data(), 1, line.size(), stream);
  std::fflush(stream);
  if (!g_status.empty()) std::fputs(g_status.c_str(), stdout), std::fflush(stdout);
}

}  // namespace

std::string LogContext::suffix() const {
  if (world <= 1 && host.empty()) return "";
  std::string out = " (rank " + std::to_string(rank) + "/" + std::to_string(world);
  if (!host.empty()) out += " " + host;
  if (device >= 0) out += " gpu" + std::to_string(device);
  return out + ")";
}

std::string LogContext::prefix() const {
  std::string out = "[r" + std::to_string(rank) + "/" + std::to_string(world);
  if (!host.empty()) out += " " + host;
  if (device >= 0) out += " gpu" + std::to_string(device);
  return out + "] ";
}

std::string LogContext::speaker() const { return world > 1 ? prefix() : ""; }

void set_log_context(const LogContext& context) { g_context = context; }
const LogContext& log_context() { return g_context; }
void set_log_level(int level) { g_level = level; }
int log_level() { return g_level; }

void log_status_set(const std::string& text) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (text == g_status) return;
  std::fputs(kEraseLine, stdout);
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
  g_status = text;
}

#define DSV4_LOG_BODY(stream, prefix, condition) \
  do {                                           \
    if (!(condition)) return;                    \
    va_list args;                                \
    va_start(args, fmt);                         \
    const std::string body = strfmt_v(fmt, args); \
    va_end(args);                                \
    emit(stream, prefix, body);                  \
  } while (0)

void log_info(const char* fmt, ...) { DSV4_LOG_BODY(stdout, "", g_level >= 1 && g_context.rank == 0); }
void log_debug(const char* fmt, ...) { DSV4_LOG_BODY(stdout, g_context.speaker(), g_level >= 2); }
void log_rank(const char* fmt, ...) { DSV4_LOG_BODY(stdout, g_context.prefix(), g_level >= 1); }
void log_warn(const char* fmt, ...) { DSV4_LOG_BODY(stderr, " !! " + g_context.speaker(), true); }
void log_error(const char* fmt, ...) { DSV4_LOG_BODY(stderr, " ## " + g_context.speaker(), true); }

#undef DSV4_LOG_BODY

}  // namespace dsv4
