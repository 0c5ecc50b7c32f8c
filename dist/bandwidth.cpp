// bandwidth.cpp: the all-reduce sweep (see bandwidth.h).
#include "dist/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "common/check.h"
#include "common/device.h"

namespace dsv4::dist {
namespace {

// The sweep's buffer: device memory through common/device.h, or a host vector.
class SweepBuffer {
 public:
  SweepBuffer(size_t floats, bool on_device) : n_(floats), device_(on_device) {
    if (device_) {
      d_ = device_alloc(n_ * sizeof(float));
    } else {
      h_.resize(n_);
    }
  }
  ~SweepBuffer() {
    if (device_) device_free(d_);
  }
  SweepBuffer(const SweepBuffer&) = delete;
  SweepBuffer& operator=(const SweepBuffer&) = delete;
  void* data() { return device_ ? d_ : static_cast<void*>(h_.data()); }
  void fill(float v) {
    if (!device_) return std::fill(h_.begin(), h_.end(), v);
    const std::vector<float> host(n_, v);
    device_upload(d_, host.data(), n_ * sizeof(float));
  }
  std::vector<float> read() const {
    if (!device_) return h_;
    std::vector<float> host(n_);
    device_download(host.data(), d_, n_ * sizeof(float));
    return host;
  }

 private:
  size_t n_;
  bool device_;
  void* d_ = nullptr;
  std::vector<float> h_;
};

}  // namespace

AllReduceSweep all_reduce_sweep(Communicator& comm, size_t max_bytes, int iters, bool on_device) {
  DSV4_CHECK_IN("preflight", iters >= 1, "all-reduce sweep needs at least one timed iteration, got %d", iters);
  constexpr size_t kMin = 1u << 20;
  max_bytes = std::max(max_bytes, kMin);
  AllReduceSweep s;
  s.backend = std::string(comm.backend());
  s.on_device = on_device;
  s.world = comm.world();
  s.iters = iters;
  SweepBuffer buf(max_bytes / sizeof(float), on_device);

  // The fabric gives the right answer before it is timed.
  buf.fill(1.0f);
  comm.all_reduce(buf.data(), max_bytes / sizeof(float), ElemType::kF32, ReduceOp::kSum);
  const std::vector<float> got = buf.read();
  const auto bad = std::find_if(got.begin(), got.end(), [&](float v) { return v != static_cast<float>(s.world); });
  DSV4_CHECK_IN("preflight", bad == got.end(),
                "all-reduce of ones over %d ranks (%s) gave %g at element %zu, expected %d: the collective is broken",
                s.world, s.backend.c_str(), bad == got.end() ? 0.0 : static_cast<double>(*bad),
                static_cast<size_t>(bad - got.begin()), s.world);
  buf.fill(0.0f);  // sums of zeros stay finite however often they are repeated

  using Clock = std::chrono::steady_clock;
  // Mean seconds per call of `collective` at `count` floats, as the slowest rank sees it.
  auto timed = [&](size_t count, const auto& collective) {
    collective(count);  // warm-up (connection set-up)
    comm.barrier();
    const auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i) collective(count);
    double seconds = std::chrono::duration<double>(Clock::now() - t0).count() / iters;
    comm.all_reduce(&seconds, 1, ElemType::kF64, ReduceOp::kMax);
    return seconds;
  };
  for (size_t bytes = kMin; bytes <= max_bytes; bytes *= 2) {
    AllReducePoint p;
    p.bytes = bytes;
    p.seconds = timed(bytes / sizeof(float), [&](size_t n) {
      comm.all_reduce(buf.data(), n, ElemType::kF32, ReduceOp::kSum);
    });
    p.algbw_gbs = p.seconds > 0 ? static_cast<double>(bytes) / p.seconds / 1e9 : 0.0;
    p.busbw_gbs = p.algbw_gbs * 2.0 * (s.world - 1) / s.world;
    p.reduce_seconds = timed(bytes / sizeof(float), [&](size_t n) {
      comm.reduce(buf.data(), n, ElemType::kF32, ReduceOp::kSum, 0);
    });
    p.reduce_algbw_gbs = p.reduce_seconds > 0 ? static_cast<double>(bytes) / p.reduce_seconds / 1e9 : 0.0;
    s.points.push_back(p);
  }
  return s;
}

std::string all_reduce_sweep_text(const AllReduceSweep& s) {
  std::string out;
  if (s.world == 1) {
    out = "note: one rank: an all-reduce moves nothing between ranks, so the rates below are a local copy's "
          "(run under the job's launcher to measure the fabric)\n";
  }
  out += strfmt("all-reduce f32 sum over %d rank(s), %s, %s buffers, %d timed iteration(s) per size "
                           "(result of ones checked)\n",
                           s.world, s.backend.c_str(), s.on_device ? "device" : "host", s.iters);
  out += strfmt("  %12s %12s %12s %12s %14s\n", "bytes", "time", "algbw", "busbw", "reduce algbw");
  for (const AllReducePoint& p : s.points) {
    out += strfmt("  %12zu %9.3f ms %7.2f GB/s %7.2f GB/s %9.2f GB/s\n", p.bytes, p.seconds * 1e3, p.algbw_gbs,
                  p.busbw_gbs, p.reduce_algbw_gbs);
  }
  return out;
}

}  // namespace dsv4::dist
