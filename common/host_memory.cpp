// host_memory.cpp: see host_memory.h.
#include "common/host_memory.h"

#include <sys/resource.h>

namespace dsv4 {

uint64_t peak_rss_bytes() {
  rusage u{};
  if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
  return static_cast<uint64_t>(u.ru_maxrss) * 1024;  // Linux reports kilobytes
}

}  // namespace dsv4
