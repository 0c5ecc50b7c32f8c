// block_weights_cuda.cu: block_weights_upload (see forward_cuda.h): a CPU-decoded block to bf16
// device weights, refusing any linear whose values are not exact in bf16 (the GPU forward would
// silently compute a different model).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/check.h"
#include "common/codec.h"
#include "model/forward_cuda.h"

namespace dsv4::model {
namespace {

class Uploader {
 public:
  explicit Uploader(DeviceBlockWeights& out) : out_(out) {}

  template <typename T>
  T* alloc(size_t count) {
    void* p = nullptr;
    DSV4_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)));
    out_.memory.emplace_back(p, [](void* q) { cudaFree(q); });
    out_.bytes += count * sizeof(T);
    return static_cast<T*>(p);
  }

  template <typename T>
  const T* put(const std::vector<T>& v) {
    if (v.empty()) return nullptr;
    T* p = alloc<T>(v.size());
    DSV4_CUDA_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return p;
  }

  // Encodes rows of a linear into bf16 at `dst` (host), checking every value round-trips.
  static void encode(const DenseLinear& l, uint16_t* dst) {
    for (size_t i = 0; i < l.w.size(); ++i) {
      const float v = l.w[i];
      dst[i] = bf16_encode(v);
      DSV4_CHECK_IN("upload", bf16_decode(dst[i]) == v || std::isnan(v),
                    "%s: value %.9g at [%lld, %lld] is not exact in bf16; the GPU forward runs bf16 weights",
                    l.name.c_str(), static_cast<double>(v), static_cast<long long>(i / l.in),
                    static_cast<long long>(i % l.in));
    }
  }

  DeviceLinear linear(const DenseLinear& l) {
    std::vector<uint16_t> host(l.w.size());
    encode(l, host.data());
    return {l.name, l.out, l.in, put(host)};
  }

  // fn = hi + mid + lo, three bf16 parts stacked by rows (see hc_cuda.h).
  DeviceHc hc(const HcWeights& w, int64_t mixes, int64_t flat, const std::string& what) {
    DSV4_CHECK_IN("upload", static_cast<int64_t>(w.fn.size()) == mixes * flat, "%s: fn has %zu values, expected %lld",
                  what.c_str(), w.fn.size(), static_cast<long long>(mixes * flat));
    std::vector<uint16_t> parts(static_cast<size_t>(3 * mixes * flat));
    for (size_t i = 0; i < w.fn.size(); ++i) {
      const float v = w.fn[i];
      const uint16_t hi = bf16_encode(v);
      const float r1 = v - bf16_decode(hi);
      const uint16_t mid = bf16_encode(r1);
      const float r2 = r1 - bf16_decode(mid);
      const uint16_t lo = bf16_encode(r2);
      DSV4_CHECK_IN("upload", bf16_decode(hi) + bf16_decode(mid) + bf16_decode(lo) == v || !std::isfinite(v),
                    "%s: fn value %.9g at %zu does not split into three bf16 parts", what.c_str(),
                    static_cast<double>(v), i);
      parts[i] = hi;
      parts[w.fn.size() + i] = mid;
      parts[2 * w.fn.size() + i] = lo;
    }
    return {put(parts), put(w.base), put(w.scale)};
  }

  DeviceCompressor compressor(const CompressorWeights& w) {
    return {linear(w.wkv), linear(w.wgate), put(w.ape), put(w.norm), w.ratio, w.series, w.dim};
  }

 private:
  DeviceBlockWeights& out_;
};

}  // namespace

DeviceBlockWeights block_weights_upload(const BlockWeights& w, const ModelConfig& c) {
  DeviceBlockWeights d;
  d.prefix = w.prefix;
  d.layer = w.layer;
  d.spec = w.spec;
  Uploader up(d);
  d.attn_norm = up.put(w.attn_norm);
  d.ffn_norm = up.put(w.ffn_norm);
  d.hc_attn = up.hc(w.hc_attn, c.hc_mix(), c.hc_dim(), w.prefix + "hc_attn_fn");
  d.hc_ffn = up.hc(w.hc_ffn, c.hc_mix(), c.hc_dim(), w.prefix + "hc_ffn_fn");

  const AttentionWeights& a = w.attn;
  DeviceAttention& da = d.attn;
  da.wq_a = up.linear(a.wq_a);
  da.wq_b = up.linear(a.wq_b);
  da.wkv = up.linear(a.wkv);
  da.wo_a = up.linear(a.wo_a);
  da.wo_b = up.linear(a.wo_b);
  da.q_norm = up.put(a.q_norm);
  da.kv_norm = up.put(a.kv_norm);
  da.sink = up.put(a.sink);
  if (a.compressor) da.compressor = up.compressor(*a.compressor);
  if (a.indexer) {
    da.indexer = DeviceAttention::Indexer{up.linear(a.indexer->wq_b), up.linear(a.indexer->weights_proj),
                                          up.compressor(a.indexer->compressor)};
  }

  const MoeWeights& m = w.ffn;
  DeviceMoe& dm = d.ffn;
  dm.gate = up.linear(m.gate);
  dm.bias = up.put(m.bias);
  dm.tid2eid = up.put(m.tid2eid);
  dm.tid2eid_rows = m.tid2eid.empty() ? 0 : static_cast<int64_t>(m.tid2eid.size()) / c.num_experts_per_tok;
  const int64_t D = c.hidden_size, I = c.moe_intermediate_size;
  const size_t matrix = static_cast<size_t>(I * D);
  std::vector<uint16_t> w13(2 * matrix), w2(matrix);
  auto put_expert = [&](const ExpertWeights& e, uint16_t* dst13, uint16_t* dst2, const std::string& what) {
    DSV4_CHECK_IN("upload",
                  e.w1.w.size() == matrix && e.w3.w.size() == matrix && e.w2.w.size() == matrix &&
                      e.w1.out == I && e.w2.out == D,
                  "%s: expert matrices of %zu/%zu/%zu values, expected [%lld, %lld]", what.c_str(), e.w1.w.size(),
                  e.w3.w.size(), e.w2.w.size(), static_cast<long long>(I), static_cast<long long>(D));
    Uploader::encode(e.w1, w13.data());
    Uploader::encode(e.w3, w13.data() + matrix);
    Uploader::encode(e.w2, w2.data());
    DSV4_CUDA_CHECK(cudaMemcpy(dst13, w13.data(), 2 * matrix * sizeof(uint16_t), cudaMemcpyHostToDevice));
    DSV4_CUDA_CHECK(cudaMemcpy(dst2, w2.data(), matrix * sizeof(uint16_t), cudaMemcpyHostToDevice));
  };
  if (m.shared) {
    uint16_t* s13 = up.alloc<uint16_t>(2 * matrix);
    uint16_t* s2 = up.alloc<uint16_t>(matrix);
    put_expert(*m.shared, s13, s2, w.prefix + "ffn.shared_experts");
    dm.shared_w13 = s13;
    dm.shared_w2 = s2;
  }
  const int E = m.experts.count();
  DSV4_CHECK_IN("upload", E == c.n_routed_experts, "%s: %d routed experts, config has %d", w.prefix.c_str(), E,
                c.n_routed_experts);
  uint16_t* e13 = up.alloc<uint16_t>(static_cast<size_t>(E) * 2 * matrix);
  uint16_t* e2 = up.alloc<uint16_t>(static_cast<size_t>(E) * matrix);
  for (int e = 0; e < E; ++e) {
    const std::shared_ptr<const ExpertWeights> ex = m.experts.get(e);
    DSV4_CHECK_IN("upload", ex != nullptr, "%sffn.experts.%d is missing", w.prefix.c_str(), e);
    put_expert(*ex, e13 + static_cast<size_t>(e) * 2 * matrix, e2 + static_cast<size_t>(e) * matrix,
               w.prefix + "ffn.experts." + std::to_string(e));
  }
  dm.w13 = e13;
  dm.w2 = e2;
  return d;
}

}  // namespace dsv4::model
