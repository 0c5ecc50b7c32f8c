// parallel.h: a minimal fork-join loop over indices for host-side bulk work (synthetic weight
// generation, decoding). Work items must be independent; results must not depend on which
// thread ran an item (key random streams by item, never by thread).
//
//   parallel_for(jobs.size(), threads, [&](size_t i) { run(jobs[i]); });
//
// threads <= 0 means std::thread::hardware_concurrency(). The first exception thrown by an item
// is rethrown on the calling thread after all threads have joined.
#pragma once

#include <cstddef>
#include <functional>

namespace dsv4 {

void parallel_for(size_t count, int threads, const std::function<void(size_t)>& body);
int parallel_threads(int requested);  // the thread count parallel_for would use

}  // namespace dsv4
