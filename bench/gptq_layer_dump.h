// gptq_layer_dump.h: what bench_gptq_layer writes under BENCH_DUMP=DIR for the side-by-side with
// llm-compressor (bench/peer_gptq_layer.py reads it; not timed). Per family F ("a": w1/w3, "b": w2),
// raw little-endian arrays, the first `count()` matrices of the family's first chunk:
//   F_h.f32      [k, cols, cols]  the Hessian sums XᵀX as the bench made them (family a: one, shared)
//   F_w.f32      [k, rows, cols]  the weights (bf16 values), original column order
//   F_codes.i8   [k, rows, cols]  our INT4 codes, original order
//   F_deq.f32    [k, rows, cols]  our dequantized weights (bf16 values)
//   F_scale.f32  [k, rows, groups] the observer's scales
//   F_loss.f64   [matrices]       every matrix's Σ((w−q)/d)² (llm-compressor's loss is half of it)
// and meta.json (chunk, k, shapes), written last so a reader sees a complete dump or none.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "common/check.h"

class GptqLayerDump {
 public:
  GptqLayerDump(std::string dir, int chunk) : dir_(std::move(dir)), chunk_(chunk) {}
  int count() const { return count_; }

  // The first `k` Hessians [n, n] at device `h` (consecutive).
  void hessians(const std::string& family, const float* h, int k, int64_t n) {
    write_device(family + "_h.f32", h, static_cast<size_t>(k) * n * n * 4, false);
  }

  // One swept chunk: matrices [done, done + n); the first chunk's first count() are kept whole.
  void chunk(const std::string& family, int done, int n, int64_t rows, int64_t cols, const float* w,
             const int32_t* codes, const float* deq, const float* scale, const double* loss) {
    std::vector<double> l(static_cast<size_t>(n));
    DSV4_CUDA_CHECK(cudaMemcpy(l.data(), loss, l.size() * 8, cudaMemcpyDeviceToHost));
    append(family + "_loss.f64", l.data(), l.size() * 8, done > 0);
    if (done > 0) return;
    const int k = std::min(n, count_);
    const size_t per = static_cast<size_t>(rows * cols);
    write_device(family + "_w.f32", w, per * k * 4, false);
    write_device(family + "_deq.f32", deq, per * k * 4, false);
    write_device(family + "_scale.f32", scale, static_cast<size_t>(k * rows * (cols / 128)) * 4, false);
    std::vector<int32_t> c(per * k);
    DSV4_CUDA_CHECK(cudaMemcpy(c.data(), codes, c.size() * 4, cudaMemcpyDeviceToHost));
    std::vector<int8_t> c8(c.begin(), c.end());
    append(family + "_codes.i8", c8.data(), c8.size(), false);
    meta_ += (meta_.empty() ? "" : ", ") + ("\"" + family + "\": {\"k\": " + std::to_string(k) +
                                            ", \"rows\": " + std::to_string(rows) + ", \"cols\": " +
                                            std::to_string(cols) + "}");
  }

  void finish() {
    const std::string m = "{\"chunk\": " + std::to_string(chunk_) + ", \"families\": {" + meta_ + "}}\n";
    append("meta.json", m.data(), m.size(), false);
    std::printf("dump: %s (first %d matrices of each family, every matrix's loss)\n", dir_.c_str(), count_);
  }

 private:
  void write_device(const std::string& name, const void* d, size_t bytes, bool add) {
    std::vector<char> h(bytes);
    DSV4_CUDA_CHECK(cudaMemcpy(h.data(), d, bytes, cudaMemcpyDeviceToHost));
    append(name, h.data(), bytes, add);
  }
  void append(const std::string& name, const void* p, size_t bytes, bool add) {
    const std::string path = dir_ + "/" + name;
    std::FILE* f = std::fopen(path.c_str(), add ? "ab" : "wb");
    DSV4_CHECK(f != nullptr, "BENCH_DUMP: cannot open %s", path.c_str());
    const bool written = std::fwrite(p, 1, bytes, f) == bytes;
    const bool closed = std::fclose(f) == 0;
    DSV4_CHECK(written && closed, "BENCH_DUMP: cannot write %s", path.c_str());
  }
  std::string dir_;
  int chunk_;
  int count_ = 4;
  std::string meta_;
};
