// block_weights_cuda.cu: a block's bf16 device weights (see forward_cuda.h), either uploaded from a
// CPU-decoded block (block_weights_upload) or decoded on the GPU from the checkpoint's bytes
// (block_weights_decode_cuda: FP8 and MXFP4 linears go up as stored and are decoded by
// model/weight_decode_cuda.h, BF16 ones are copied). Either way a linear value that is not exact
// in bf16 is an error naming the tensor (the GPU forward would silently compute another model).
// What the GPU decodes or copies never passes the host decoders' NaN scan, so its bf16 output is
// counted on the device (common/finite_scan_cuda.h) and a linear holding NaN or infinity is the
// same user error naming it (issue 26).
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "common/check.h"
#include "common/codec.h"
#include "common/finite_scan.h"
#include "common/finite_scan_cuda.h"
#include "common/parallel.h"
#include "common/pinned_host.h"
#include "model/forward_cuda.h"
#include "model/weight_decode_cuda.h"

namespace dsv4::model {
namespace {

class Uploader {
 public:
  // checkpoint null: linears carry their values; else they are decoded from it on the GPU.
  Uploader(DeviceBlockWeights& out, const Checkpoint* checkpoint, const ModelConfig& config, bool round)
      : out_(out), checkpoint_(checkpoint), config_(config), round_(round) {}
  ~Uploader() {
    cudaFree(staging_);
    cudaFree(counts_);
  }

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

  // Encodes rows of a linear into bf16 at `dst` (host), checking every value round-trips (or
  // counting those that do not, when rounding is allowed).
  void encode(const DenseLinear& l, uint16_t* dst) {
    for (size_t i = 0; i < l.w.size(); ++i) {
      const float v = l.w[i];
      dst[i] = bf16_encode(v);
      if (bf16_decode(dst[i]) == v || std::isnan(v)) continue;
      rounded_.fetch_add(1, std::memory_order_relaxed);
      DSV4_CHECK_IN("upload", round_,
                    "%s: value %.9g at [%lld, %lld] is not exact in bf16; the GPU forward runs bf16 weights",
                    l.name.c_str(), static_cast<double>(v), static_cast<long long>(i / l.in),
                    static_cast<long long>(i % l.in));
    }
  }

  // Writes linear `l` ([out, in]) as bf16 at device `dst`.
  void fill(const DenseLinear& l, uint16_t* dst) {
    if (checkpoint_ == nullptr || config_.linear_decoder != nullptr || !checkpoint_->contains(l.name + ".weight")) {
      // Host values: given, or decoded on the CPU (artifact layouts go through linear_decoder).
      const DenseLinear decoded =
          !l.w.empty() || checkpoint_ == nullptr ? DenseLinear{} : linear_load(*checkpoint_, config_, l.name, l.out, l.in);
      const DenseLinear& src = l.w.empty() && checkpoint_ != nullptr ? decoded : l;
      DSV4_CHECK_IN("upload", static_cast<int64_t>(src.w.size()) == l.out * l.in, "%s: %zu values for [%lld, %lld]",
                    l.name.c_str(), src.w.size(), static_cast<long long>(l.out), static_cast<long long>(l.in));
      std::vector<uint16_t> host(src.w.size());
      encode(src, host.data());
      DSV4_CUDA_CHECK(cudaMemcpy(dst, host.data(), host.size() * sizeof(uint16_t), cudaMemcpyHostToDevice));
      return;
    }
    const Checkpoint& ckpt = *checkpoint_;
    const TensorInfo& w = ckpt.info(l.name + ".weight");
    if (!ckpt.contains(l.name + ".scale")) {
      if (w.dtype == DType::kBF16) {
        DSV4_CHECK_IN("upload", w.numel() == l.out * l.in, "%s.weight has %lld values, expected [%lld, %lld]",
                      l.name.c_str(), static_cast<long long>(w.numel()), static_cast<long long>(l.out),
                      static_cast<long long>(l.in));
        const auto bytes = ckpt.bytes(w.name);
        DSV4_CUDA_CHECK(cudaMemcpy(dst, bytes.data(), bytes.size(), cudaMemcpyHostToDevice));
        require_finite_on_device({&l}, {dst});
      } else {
        fill(linear_load(ckpt, config_, l.name, l.out, l.in), dst);  // F32/F16: checked encode
      }
      return;
    }
    const Encoded e = encoded(l);
    const auto codes = ckpt.bytes(e.weight->name);
    const auto scales = ckpt.bytes(e.scale->name);
    uint8_t* d = static_cast<uint8_t*>(staging(codes.size() + scales.size() + 16));
    uint8_t* d_scales = d + ((codes.size() + 15) / 16) * 16;
    DSV4_CUDA_CHECK(cudaMemcpy(d, codes.data(), codes.size(), cudaMemcpyHostToDevice));
    DSV4_CUDA_CHECK(cudaMemcpy(d_scales, scales.data(), scales.size(), cudaMemcpyHostToDevice));
    decode(l, e, d, d_scales, dst);
    require_finite_on_device({&l}, {dst});  // synchronizes: the staging buffer is reused by the next linear
  }

  // Counts the NaN and infinite values of each linear `ls[i]` decoded or copied at device `dsts[i]`
  // (one counter each, one copy back; this synchronizes) and refuses the first holding any, as the
  // host decoders' scan does (require_finite).
  void require_finite_on_device(const std::vector<const DenseLinear*>& ls, const std::vector<uint16_t*>& dsts) {
    if (ls.size() > counts_size_) {
      cudaFree(counts_);
      counts_ = nullptr;
      DSV4_CUDA_CHECK(cudaMalloc(&counts_, ls.size() * sizeof(unsigned long long)));
      counts_size_ = ls.size();
    }
    DSV4_CUDA_CHECK(cudaMemsetAsync(counts_, 0, ls.size() * sizeof(unsigned long long), nullptr));
    for (size_t i = 0; i < ls.size(); ++i) {
      non_finite_count_bf16_cuda(nullptr, dsts[i], static_cast<size_t>(ls[i]->out * ls[i]->in), counts_ + i);
    }
    std::vector<unsigned long long> counts(ls.size());
    DSV4_CUDA_CHECK(cudaMemcpy(counts.data(), counts_, counts.size() * sizeof(unsigned long long),
                               cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < ls.size(); ++i) {
      // The count alone (the GPU keeps no index): require_finite says so with first = -1.
      require_finite({static_cast<int64_t>(counts[i]), -1}, ls[i]->name + ".weight (decoded on the GPU)",
                     checkpoint_->dir());
    }
  }

  // A linear stored block-scaled in the checkpoint (FP8 128x128 or MXFP4 1x32): its weight and
  // scale tensors, checked against [out, in].
  struct Encoded {
    const TensorInfo* weight = nullptr;
    const TensorInfo* scale = nullptr;
    bool fp4 = false;
  };
  // Whether fill() decodes `l` on the GPU from the checkpoint's codes and scales.
  bool decodes_on_gpu(const DenseLinear& l) const {
    return checkpoint_ != nullptr && config_.linear_decoder == nullptr && l.w.empty() &&
           checkpoint_->contains(l.name + ".weight") && checkpoint_->contains(l.name + ".scale");
  }
  Encoded encoded(const DenseLinear& l) const {
    const Checkpoint& ckpt = *checkpoint_;
    const TensorInfo& w = ckpt.info(l.name + ".weight");
    const TensorInfo& sc = ckpt.info(l.name + ".scale");
    const bool fp4 = w.dtype == DType::kI8;
    DSV4_CHECK_IN("upload", fp4 || w.dtype == DType::kF8E4M3,
                  "%s.weight has dtype %s; expected F8_E4M3 (block FP8) or I8 (MXFP4)", l.name.c_str(),
                  std::string(dtype_name(w.dtype)).c_str());
    const int64_t block = config_.fp8_block;
    const int64_t scale_count = fp4 ? l.out * (l.in / 32) : ((l.out + block - 1) / block) * ((l.in + block - 1) / block);
    DSV4_CHECK_IN("upload",
                  w.shape.size() == 2 && w.shape[0] == l.out && w.shape[1] == (fp4 ? l.in / 2 : l.in) &&
                      sc.numel() == scale_count && (!fp4 || l.in % 32 == 0),
                  "%s: weight %s and scale %s do not encode [%lld, %lld] (%s)", l.name.c_str(),
                  shape_string(w.shape).c_str(), shape_string(sc.shape).c_str(), static_cast<long long>(l.out),
                  static_cast<long long>(l.in), fp4 ? "MXFP4, 1x32 scales" : "FP8, 128x128 scales");
    return {&w, &sc, fp4};
  }
  // Enqueues the decode of `l` from its codes and scales on the device into `dst` (bf16).
  void decode(const DenseLinear& l, const Encoded& e, const uint8_t* d_codes, const uint8_t* d_scales,
              uint16_t* dst) const {
    if (e.fp4) {
      weight_decode_mxfp4_cuda(d_codes, d_scales, e.scale->dtype, l.out, l.in, nullptr, dst, nullptr);
    } else {
      weight_decode_fp8_block_cuda(d_codes, d_scales, e.scale->dtype, l.out, l.in, config_.fp8_block, nullptr, dst,
                                   nullptr);
    }
  }

  // Fills many linears from the checkpoint (each decodes_on_gpu): their codes and scales copied
  // into the pinned buffer on all cores, as many linears at a time as it holds, one upload per
  // batch, then the decodes. A linear larger than the buffer goes through fill().
  void fill_many(const std::vector<const DenseLinear*>& ls, const std::vector<uint16_t*>& dsts,
                 PinnedHostBuffer& pinned) {
    const Checkpoint& ckpt = *checkpoint_;
    std::vector<Encoded> enc(ls.size());
    std::vector<size_t> bytes(ls.size());
    auto round16 = [](size_t n) { return (n + 15) / 16 * 16; };
    for (size_t i = 0; i < ls.size(); ++i) {
      enc[i] = encoded(*ls[i]);
      bytes[i] = round16(enc[i].weight->data_end - enc[i].weight->data_begin) +
                 round16(enc[i].scale->data_end - enc[i].scale->data_begin);
    }
    for (size_t first = 0; first < ls.size();) {
      size_t end = first, total = 0;
      while (end < ls.size() && total + bytes[end] <= pinned.size()) total += bytes[end++];
      if (end == first) {  // larger than the buffer
        fill(*ls[first], dsts[first]);
        ++first;
        continue;
      }
      std::vector<size_t> at(end - first);
      for (size_t i = first, off = 0; i < end; ++i) at[i - first] = off, off += bytes[i];
      parallel_for(end - first, 0, [&](size_t k) {
        const size_t i = first + k;
        const auto codes = ckpt.bytes(enc[i].weight->name);
        const auto scales = ckpt.bytes(enc[i].scale->name);
        std::memcpy(pinned.data() + at[k], codes.data(), codes.size());
        std::memcpy(pinned.data() + at[k] + round16(codes.size()), scales.data(), scales.size());
      });
      uint8_t* d = static_cast<uint8_t*>(staging(total));
      DSV4_CUDA_CHECK(cudaMemcpy(d, pinned.data(), total, cudaMemcpyHostToDevice));
      for (size_t i = first; i < end; ++i) {
        const uint8_t* codes = d + at[i - first];
        decode(*ls[i], enc[i], codes, codes + round16(enc[i].weight->data_end - enc[i].weight->data_begin), dsts[i]);
      }
      // Synchronizes: both buffers are reused by the next batch.
      require_finite_on_device(std::vector<const DenseLinear*>(ls.begin() + first, ls.begin() + end),
                               std::vector<uint16_t*>(dsts.begin() + first, dsts.begin() + end));
      first = end;
    }
  }

  DeviceLinear linear(const DenseLinear& l) {
    uint16_t* dst = alloc<uint16_t>(static_cast<size_t>(l.out * l.in));
    fill(l, dst);
    return {l.name, l.out, l.in, dst};
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

  uint64_t rounded() const { return rounded_.load(); }

  DeviceCompressor compressor(const CompressorWeights& w) {
    return {linear(w.wkv), linear(w.wgate), put(w.ape), put(w.norm), w.ratio, w.series, w.dim};
  }

 private:
  void* staging(size_t bytes) {
    if (bytes > staging_bytes_) {
      cudaFree(staging_);
      staging_ = nullptr;
      DSV4_CUDA_CHECK(cudaMalloc(&staging_, bytes));
      staging_bytes_ = bytes;
    }
    return staging_;
  }

  DeviceBlockWeights& out_;
  const Checkpoint* checkpoint_;
  const ModelConfig& config_;
  bool round_;
  std::atomic<uint64_t> rounded_{0};  // fill may run on several host threads (uploads)
  void* staging_ = nullptr;
  size_t staging_bytes_ = 0;
  unsigned long long* counts_ = nullptr;  // require_finite_on_device's counters
  size_t counts_size_ = 0;
};

// The walk shared by both entries: every tensor of `w` to the device; linears through
// Uploader::fill (values, or the checkpoint when `checkpoint` is set).

DeviceBlockWeights to_device(const BlockWeights& w, const ModelConfig& c, const Checkpoint* checkpoint, bool round,
                             PinnedHostBuffer* pinned = nullptr) {
  DeviceBlockWeights d;
  d.prefix = w.prefix;
  d.layer = w.layer;
  d.spec = w.spec;
  Uploader up(d, checkpoint, c, round);
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
  auto put_expert = [&](const ExpertWeights& e, uint16_t* dst13, uint16_t* dst2) {
    DSV4_CHECK_IN("upload", e.w1.out == I && e.w1.in == D && e.w3.out == I && e.w3.in == D && e.w2.out == D && e.w2.in == I,
                  "%s: expert matrices [%lld, %lld], [%lld, %lld], [%lld, %lld]; expected [I, D], [I, D], [D, I] with "
                  "D = %lld, I = %lld",
                  e.w1.name.c_str(), static_cast<long long>(e.w1.out), static_cast<long long>(e.w1.in),
                  static_cast<long long>(e.w3.out), static_cast<long long>(e.w3.in), static_cast<long long>(e.w2.out),
                  static_cast<long long>(e.w2.in), static_cast<long long>(D), static_cast<long long>(I));
    up.fill(e.w1, dst13);
    up.fill(e.w3, dst13 + matrix);
    up.fill(e.w2, dst2);
  };
  if (m.shared) {
    uint16_t* s13 = up.alloc<uint16_t>(2 * matrix);
    uint16_t* s2 = up.alloc<uint16_t>(matrix);
    put_expert(*m.shared, s13, s2);
    dm.shared_w13 = s13;
    dm.shared_w2 = s2;
  }
  const int E = checkpoint ? c.n_routed_experts : m.experts.count();
  DSV4_CHECK_IN("upload", E == c.n_routed_experts, "%s: %d routed experts, config has %d", w.prefix.c_str(), E,
                c.n_routed_experts);
  uint16_t* e13 = up.alloc<uint16_t>(static_cast<size_t>(E) * 2 * matrix);
  uint16_t* e2 = up.alloc<uint16_t>(static_cast<size_t>(E) * matrix);
  // From the checkpoint with a pinned buffer: every expert linear's bytes in batches (fill_many).
  std::vector<ExpertWeights> named;
  for (int e = 0; checkpoint && pinned && e < E; ++e) {
    const std::string stem = w.prefix + "ffn.experts." + std::to_string(e);
    named.push_back({{stem + ".w1", I, D, {}}, {stem + ".w3", I, D, {}}, {stem + ".w2", D, I, {}}});
  }
  const bool batched = !named.empty() && std::all_of(named.begin(), named.end(), [&](const ExpertWeights& x) {
    return up.decodes_on_gpu(x.w1) && up.decodes_on_gpu(x.w3) && up.decodes_on_gpu(x.w2);
  });
  if (batched) {
    std::vector<const DenseLinear*> ls;
    std::vector<uint16_t*> dsts;
    for (size_t e = 0; e < named.size(); ++e) {
      uint16_t* e13_at = e13 + e * 2 * matrix;
      ls.insert(ls.end(), {&named[e].w1, &named[e].w3, &named[e].w2});
      dsts.insert(dsts.end(), {e13_at, e13_at + matrix, e2 + e * matrix});
    }
    up.fill_many(ls, dsts, *pinned);
  }
  // Otherwise uploads decode and encode on the host: every expert on its own thread. Decoding
  // from the checkpoint shares one staging buffer: one expert at a time.
  parallel_for(batched ? 0 : static_cast<size_t>(E), checkpoint ? 1 : 0, [&](size_t k) {
    const int e = static_cast<int>(k);
    const std::string stem = w.prefix + "ffn.experts." + std::to_string(e);
    std::shared_ptr<const ExpertWeights> ex;
    if (checkpoint) {  // names and shapes only: fill decodes from the checkpoint
      ex = std::make_shared<const ExpertWeights>(ExpertWeights{
          {stem + ".w1", I, D, {}}, {stem + ".w3", I, D, {}}, {stem + ".w2", D, I, {}}});
    } else {
      ex = m.experts.get(e);
      DSV4_CHECK_IN("upload", ex != nullptr, "%s is missing", stem.c_str());
    }
    put_expert(*ex, e13 + static_cast<size_t>(e) * 2 * matrix, e2 + static_cast<size_t>(e) * matrix);
  });
  d.rounded = up.rounded();
  dm.w13 = e13;
  dm.w2 = e2;
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  return d;
}

}  // namespace

DeviceBlockWeights block_weights_upload(const BlockWeights& w, const ModelConfig& c, bool round_to_bf16) {
  return to_device(w, c, nullptr, round_to_bf16);
}

DeviceBlockWeights block_weights_decode_cuda(const Checkpoint& checkpoint, const ModelConfig& c,
                                             const std::string& prefix, int layer, PinnedHostBuffer* staging) {
  const BlockWeights shapes = block_weights_load(checkpoint, c, prefix, layer, /*decode_linears=*/false);
  return to_device(shapes, c, &checkpoint, false, staging);
}

DeviceMatrix device_block_matrix(DeviceBlockWeights& w, const ModelConfig& c, const std::string& module) {
  DSV4_CHECK_IN("device weights", module.starts_with(w.prefix), "%s is not in block %s", module.c_str(),
                w.prefix.c_str());
  const std::string leaf = module.substr(w.prefix.size());
  auto of = [](const DeviceLinear& l) { return DeviceMatrix{const_cast<uint16_t*>(l.w), l.out, l.in}; };
  DeviceAttention& a = w.attn;
  if (leaf == "attn.wq_a") return of(a.wq_a);
  if (leaf == "attn.wq_b") return of(a.wq_b);
  if (leaf == "attn.wkv") return of(a.wkv);
  if (leaf == "attn.wo_a") return of(a.wo_a);
  if (leaf == "attn.wo_b") return of(a.wo_b);
  if (a.compressor && leaf == "attn.compressor.wkv") return of(a.compressor->wkv);
  if (a.compressor && leaf == "attn.compressor.wgate") return of(a.compressor->wgate);
  if (a.indexer && leaf == "attn.indexer.wq_b") return of(a.indexer->wq_b);
  if (a.indexer && leaf == "attn.indexer.weights_proj") return of(a.indexer->weights_proj);
  if (a.indexer && leaf == "attn.indexer.compressor.wkv") return of(a.indexer->compressor.wkv);
  if (a.indexer && leaf == "attn.indexer.compressor.wgate") return of(a.indexer->compressor.wgate);
  if (leaf == "ffn.gate") return of(w.ffn.gate);
  const int64_t D = c.hidden_size, I = c.moe_intermediate_size;
  // w13 holds w1's rows then w3's (forward_cuda.h); w2 follows.
  auto expert = [&](const uint16_t* w13, const uint16_t* w2, const std::string& which) -> DeviceMatrix {
    if (which == "w1") return {const_cast<uint16_t*>(w13), I, D};
    if (which == "w3") return {const_cast<uint16_t*>(w13) + I * D, I, D};
    if (which == "w2") return {const_cast<uint16_t*>(w2), D, I};
    DSV4_FAIL("device weights", "%s is not an expert linear (w1, w2 or w3)", module.c_str());
  };
  if (leaf.starts_with("ffn.shared_experts.") && w.ffn.shared_w13) {
    return expert(w.ffn.shared_w13, w.ffn.shared_w2, leaf.substr(std::string("ffn.shared_experts.").size()));
  }
  const std::string routed = "ffn.experts.";
  if (leaf.starts_with(routed)) {
    const size_t dot = leaf.find('.', routed.size());
    const std::string id = leaf.substr(routed.size(), dot == std::string::npos ? std::string::npos : dot - routed.size());
    const bool digits = !id.empty() && id.size() < 6 && std::all_of(id.begin(), id.end(), ::isdigit);
    const int e = digits ? std::stoi(id) : -1;
    DSV4_CHECK_IN("device weights", e >= 0 && e < c.n_routed_experts && dot != std::string::npos,
                  "%s: no routed expert %s (the block has %d)", module.c_str(), id.c_str(), c.n_routed_experts);
    const size_t m = static_cast<size_t>(I * D);
    return expert(w.ffn.w13 + static_cast<size_t>(e) * 2 * m, w.ffn.w2 + static_cast<size_t>(e) * m,
                  leaf.substr(dot + 1));
  }
  DSV4_FAIL("device weights", "%s is not a linear of block %s", module.c_str(), w.prefix.c_str());
}

}  // namespace dsv4::model
