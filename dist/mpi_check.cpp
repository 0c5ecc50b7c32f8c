// mpi_check.cpp: the to-string function behind DSV4_MPI_CHECK (MPI_Error_string into a string).
// MPI calls must run with MPI_ERRORS_RETURN on the communicator for a failure to reach the check
// at all; dist/ sets it when it creates communicators. Tests: tests/dist/test_mpi_check.cpp.
#include <mpi.h>

#include <string>

#include "common/check.h"

namespace dsv4 {

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  // Not wrapped in a check: failing to describe an error must not hide the error itself.
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(length)) + " (MPI error " + std::to_string(code) + ")";
}

}  // namespace dsv4
