// host_memory.h: this process's host memory, for the per-rank memory the run reports.
//
//   uint64_t peak = peak_rss_bytes();  // the most resident memory so far (getrusage ru_maxrss)
#pragma once

#include <cstdint>

namespace dsv4 {

uint64_t peak_rss_bytes();  // 0 where the OS does not say

}  // namespace dsv4
