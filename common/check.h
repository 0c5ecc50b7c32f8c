// check.h: the project's error type and check macros.
//
//   DSV4_CHECK(n % 128 == 0, "hidden size %d is not a multiple of 128", n);
//   DSV4_CUDA_CHECK(cudaMemcpyAsync(...));      // in .cu files (needs cuda_runtime.h)
//   DSV4_MPI_CHECK(MPI_Bcast(...));             // in files that include mpi.h
//   DSV4_USER_CHECK("cli", !recipe.empty(), "nothing to do: pass --recipe R");  // a user's mistake
//
// Every failure throws dsv4::Error carrying the component, the source location and a message
// that quotes the failing statement plus the rank/host/device of log_context() (nccl-tests does
// the same so a multi-node failure says where it happened). Two kinds of failure:
//   - internal (DSV4_CHECK*, DSV4_FAIL): a broken invariant, a library or I/O failure. what() is
//     "[component] file:line: cond: message", what a developer needs to find the statement.
//   - user (DSV4_USER_CHECK, DSV4_USER_FAIL): a mistake in the command line, recipe or input
//     files that the user fixes. what() is the message alone, in the user's words: it names the
//     flag, file, key or recipe path and what was expected. The location is kept (detail(), shown
//     with `-v 2`), never printed by default. The library-specific variants are
// all built from DSV4_CHECK_STATUS, which takes the success value and a to-string function
// (ggml's CUDA_CHECK_GEN); this header includes no CUDA/MPI header, so the CPU build compiles it.
// Tests: tests/common/test_check.cpp.
#pragma once

#include <cstdarg>
#include <stdexcept>
#include <string>

namespace dsv4 {

enum class ErrorKind {
  kInternal,  // a bug, a broken file or library, a failed system call: location and expression shown
  kUser,      // the user's mistake (flag, recipe key, input file): the message alone is shown
};

// Thrown by every check. what() is "[component] file:line: message (rank r/w host dev)" for an
// internal error (the rank part once the log context names a host or several ranks), "message"
// for a user error ("message (rank r/w host dev)" in multi-rank runs).
class Error : public std::runtime_error {
 public:
  // `expression`: the failing condition of a user check, kept for detail() only.
  Error(std::string component, const char* file, int line, const std::string& message,
        ErrorKind kind = ErrorKind::kInternal, const std::string& expression = "");
  const std::string& component() const { return component_; }
  const std::string& message() const { return message_; }
  ErrorKind kind() const { return kind_; }
  bool user() const { return kind_ == ErrorKind::kUser; }
  // "[component] file:line: [cond: ]message" whatever the kind: where it was thrown (`-v 2`).
  const std::string& detail() const { return detail_; }

 private:
  std::string component_;
  std::string message_;
  std::string detail_;
  ErrorKind kind_;
};

// printf-style formatting into a std::string (used by the macros and by log_*).
std::string strfmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string strfmt_v(const char* fmt, va_list args);

// implementation details -------------------------------------------------------------------
[[noreturn]] void throw_error(const char* component, const char* file, int line,
                              const std::string& message);
// A user error; `expression` (the failing condition, may be empty) goes to detail() only.
[[noreturn]] void throw_user_error(const char* component, const char* file, int line,
                                   const char* expression, const std::string& message);

}  // namespace dsv4

// Generic check: `cond` false -> throw with "cond: <formatted message>".
#define DSV4_CHECK(cond, ...)                                                                \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      ::dsv4::throw_error("dsv4", __FILE__, __LINE__,                                        \
                          std::string(#cond ": ") + ::dsv4::strfmt(__VA_ARGS__));           \
    }                                                                                        \
  } while (0)

// Like DSV4_CHECK with an explicit component name ("safetensors", "config", ...).
#define DSV4_CHECK_IN(component, cond, ...)                                                  \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      ::dsv4::throw_error(component, __FILE__, __LINE__,                                     \
                          std::string(#cond ": ") + ::dsv4::strfmt(__VA_ARGS__));           \
    }                                                                                        \
  } while (0)

// Unconditional failure with a component and formatted message.
#define DSV4_FAIL(component, ...)                                                            \
  ::dsv4::throw_error(component, __FILE__, __LINE__, ::dsv4::strfmt(__VA_ARGS__))

// A user's mistake: `cond` false -> throw a kUser error whose what() is the message alone. Use
// it where the user can fix the cause (a flag, a recipe key, an input file, an occupied output
// directory), and word the message so that it names that thing and what was expected.
#define DSV4_USER_CHECK(component, cond, ...)                                                \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      ::dsv4::throw_user_error(component, __FILE__, __LINE__, #cond, ::dsv4::strfmt(__VA_ARGS__)); \
    }                                                                                        \
  } while (0)

// Unconditional user error with a component and formatted message.
#define DSV4_USER_FAIL(component, ...) \
  ::dsv4::throw_user_error(component, __FILE__, __LINE__, "", ::dsv4::strfmt(__VA_ARGS__))

// Status-code check: evaluates `expr` once; anything other than `success` throws with the
// statement text and to_string(status).
#define DSV4_CHECK_STATUS(component, expr, success, to_string)                               \
  do {                                                                                       \
    auto dsv4_status_ = (expr);                                                              \
    if (dsv4_status_ != (success)) {                                                         \
      ::dsv4::throw_error(component, __FILE__, __LINE__,                                     \
                          std::string(#expr " failed: ") + to_string(dsv4_status_));         \
    }                                                                                        \
  } while (0)

#define DSV4_CUDA_CHECK(expr) DSV4_CHECK_STATUS("cuda", expr, cudaSuccess, cudaGetErrorString)
#define DSV4_CUBLAS_CHECK(expr) \
  DSV4_CHECK_STATUS("cublas", expr, CUBLAS_STATUS_SUCCESS, cublasGetStatusString)
#define DSV4_CUSOLVER_CHECK(expr) \
  DSV4_CHECK_STATUS("cusolver", expr, CUSOLVER_STATUS_SUCCESS, ::dsv4::cusolver_status_string)
#define DSV4_NCCL_CHECK(expr) DSV4_CHECK_STATUS("nccl", expr, ncclSuccess, ncclGetErrorString)
#define DSV4_MPI_CHECK(expr) DSV4_CHECK_STATUS("mpi", expr, MPI_SUCCESS, ::dsv4::mpi_error_string)

// After every kernel launch (llm.c, FlashMLA): surfaces launch-configuration errors at the
// launch site instead of at the next synchronising call.
#define DSV4_CUDA_CHECK_LAUNCH() DSV4_CUDA_CHECK(cudaGetLastError())

namespace dsv4 {
// To-string helpers for libraries that have none; defined where the library is linked
// (common/cuda_check.cu for cuSOLVER, dist/ for MPI). Declared with plain ints so this header
// needs neither cusolver nor mpi headers.
std::string cusolver_status_string(int status);
std::string mpi_error_string(int code);
}  // namespace dsv4
