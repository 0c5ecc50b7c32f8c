// env_options.cpp: the one place that reads the environment (see env_options.h).
#include "launch/env_options.h"

#include <cstdlib>
#include <cstring>

#include "common/check.h"

namespace dsv4::launch {

EnvOptions env_options_read() {
  EnvOptions o;
  // NOTE: only whether a launcher started this process; rank and local rank come from MPI itself
  // (STYLE §6), so no launcher's numbering is trusted.
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS", "DSV4_MPI"}) {
    if (std::getenv(v)) o.mpi_launched = true;
  }
  if (const char* wait = std::getenv("DSV4_MPI_WAIT"); wait && *wait) {
    DSV4_CHECK_IN("cli", !std::strcmp(wait, "spin") || !std::strcmp(wait, "sleep"),
                  "DSV4_MPI_WAIT='%s': expected spin or sleep", wait);
    o.mpi_wait = !std::strcmp(wait, "spin") ? dist::MpiWait::kSpin : dist::MpiWait::kSleep;
  }
  if (const char* fault = std::getenv("DSV4_FAULT"); fault && *fault) o.fault = fault;
  return o;
}

}  // namespace dsv4::launch
