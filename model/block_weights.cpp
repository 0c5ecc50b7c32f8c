// block_weights.cpp: decodes one block's release tensors to fp32 (see block_weights.h).
#include "model/block_weights.h"

#include <algorithm>
#include <cstring>

#include "common/check.h"
#include "common/finite_scan.h"
#include "common/codec.h"
#include "common/parallel.h"
#include "model/weight_decode.h"

namespace dsv4::model {
namespace {

const TensorInfo& info_checked(const Checkpoint& ckpt, const std::string& name,
                               const std::vector<int64_t>& expected_shape) {
  const TensorInfo& t = ckpt.info(name);
  DSV4_CHECK_IN("weights", t.shape == expected_shape, "%s in %s has shape %s, expected %s",
                name.c_str(), ckpt.dir().c_str(), shape_string(t.shape).c_str(),
                shape_string(expected_shape).c_str());
  return t;
}

// Decoded experts of a whole layer above this size are not cached (a full-width layer is 26 GB).
constexpr uint64_t kExpertCacheBytes = 2ull << 30;

}  // namespace

std::vector<float> weight_load_f32(const Checkpoint& ckpt, const std::string& name,
                                   const std::vector<int64_t>& expected_shape) {
  const TensorInfo& t = info_checked(ckpt, name, expected_shape);
  const auto bytes = ckpt.bytes(name);
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (t.dtype == DType::kF32) {
    std::memcpy(out.data(), bytes.data(), bytes.size());
  } else if (t.dtype == DType::kBF16) {
    // Chunked over all cores: head.weight alone is 530 M values at Flash widths.
    constexpr size_t kChunk = 1 << 20;
    parallel_for((out.size() + kChunk - 1) / kChunk, 0, [&](size_t k) {
      const size_t begin = k * kChunk;
      bf16_decode_n(bytes.data() + 2 * begin, out.data() + begin, std::min(kChunk, out.size() - begin));
    });
  } else if (t.dtype == DType::kF16) {
    for (size_t i = 0; i < out.size(); ++i) {
      uint16_t b;
      std::memcpy(&b, bytes.data() + 2 * i, 2);
      out[i] = fp16_decode(b);
    }
  } else {
    DSV4_FAIL("weights", "%s in %s has dtype %s; expected F32, BF16 or F16", name.c_str(),
              ckpt.dir().c_str(), std::string(dtype_name(t.dtype)).c_str());
  }
  require_finite(non_finite_scan(out.data(), out.size()), name, ckpt.dir());
  return out;
}

DenseLinear linear_load(const Checkpoint& ckpt, const ModelConfig& config, const std::string& module,
                        int64_t out, int64_t in) {
  DenseLinear l{module, out, in, {}};
  if (config.linear_decoder != nullptr && config.linear_decoder->decode(ckpt, module, out, in, &l.w)) {
    DSV4_CHECK_IN("weights", l.w.size() == static_cast<size_t>(out * in),
                  "the linear decoder returned %zu values for %s [%lld, %lld] in %s", l.w.size(),
                  module.c_str(), static_cast<long long>(out), static_cast<long long>(in), ckpt.dir().c_str());
    return l;
  }
  l.w.clear();  // a decoder that declined must not leave a partial result behind
  const std::string weight = module + ".weight";
  if (ckpt.contains(module + ".scale")) {
    const TensorInfo& t = ckpt.info(weight);
    // MXFP4 packs two inputs per byte; FP8 stores the logical shape.
    const std::vector<int64_t> stored = t.dtype == DType::kI8 ? std::vector<int64_t>{out, in / 2}
                                                              : std::vector<int64_t>{out, in};
    info_checked(ckpt, weight, stored);
    l.w = weight_decode_linear(ckpt, module, config.fp8_block);
  } else {
    l.w = weight_load_f32(ckpt, weight, {out, in});
  }
  return l;
}

// ---- ExpertSource ---------------------------------------------------------------------------

ExpertSource::ExpertSource(ExpertSource&& o) noexcept
    : checkpoint_(o.checkpoint_), prefix_(std::move(o.prefix_)), hidden_(o.hidden_), inter_(o.inter_),
      fp8_block_(o.fp8_block_), linear_decoder_(std::move(o.linear_decoder_)), count_(o.count_),
      cache_all_(o.cache_all_), cache_(std::move(o.cache_)) {}

ExpertSource& ExpertSource::operator=(ExpertSource&& o) noexcept {
  checkpoint_ = o.checkpoint_;
  prefix_ = std::move(o.prefix_);
  hidden_ = o.hidden_;
  inter_ = o.inter_;
  fp8_block_ = o.fp8_block_;
  linear_decoder_ = std::move(o.linear_decoder_);
  count_ = o.count_;
  cache_all_ = o.cache_all_;
  cache_ = std::move(o.cache_);
  return *this;
}

ExpertSource::ExpertSource(const Checkpoint* checkpoint, const ModelConfig& config,
                           const std::string& block_prefix)
    : checkpoint_(checkpoint), prefix_(block_prefix + "ffn.experts."), hidden_(config.hidden_size),
      inter_(config.moe_intermediate_size), fp8_block_(config.fp8_block), linear_decoder_(config.linear_decoder),
      count_(config.n_routed_experts) {
  const uint64_t decoded_bytes = static_cast<uint64_t>(count_) * 3 * hidden_ * inter_ * sizeof(float);
  cache_all_ = decoded_bytes <= kExpertCacheBytes;
  cache_.resize(static_cast<size_t>(count_));
}

ExpertSource ExpertSource::from_memory(std::vector<ExpertWeights> experts) {
  ExpertSource s;
  s.count_ = static_cast<int>(experts.size());
  s.cache_all_ = true;
  for (auto& e : experts) s.cache_.push_back(std::make_shared<const ExpertWeights>(std::move(e)));
  return s;
}

std::shared_ptr<const ExpertWeights> ExpertSource::get(int expert) const {
  DSV4_CHECK_IN("weights", expert >= 0 && expert < count_, "expert %d outside [0, %d)", expert, count_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cache_[static_cast<size_t>(expert)]) return cache_[static_cast<size_t>(expert)];
  }
  DSV4_CHECK_IN("weights", checkpoint_ != nullptr, "expert %d has no weights", expert);
  // Decoding happens outside the lock so several experts decode in parallel.
  ModelConfig shape_only;
  shape_only.fp8_block = static_cast<int>(fp8_block_);
  shape_only.linear_decoder = linear_decoder_;  // artifacts: experts are compressed-tensors modules
  const std::string stem = prefix_ + std::to_string(expert);
  auto e = std::make_shared<ExpertWeights>();
  e->w1 = linear_load(*checkpoint_, shape_only, stem + ".w1", inter_, hidden_);
  e->w3 = linear_load(*checkpoint_, shape_only, stem + ".w3", inter_, hidden_);
  e->w2 = linear_load(*checkpoint_, shape_only, stem + ".w2", hidden_, inter_);
  if (cache_all_) {
    std::lock_guard<std::mutex> lock(mutex_);
    cache_[static_cast<size_t>(expert)] = e;
  }
  return e;
}

// ---- block ----------------------------------------------------------------------------------

namespace {

HcWeights hc_load(const Checkpoint& ckpt, const ModelConfig& c, const std::string& stem) {
  return {weight_load_f32(ckpt, stem + "_fn", {c.hc_mix(), c.hc_dim()}),
          weight_load_f32(ckpt, stem + "_base", {c.hc_mix()}),
          weight_load_f32(ckpt, stem + "_scale", {3})};
}

// A linear's values, or only its name and shape when the caller decodes it elsewhere (the GPU).
DenseLinear linear_or_shape(const Checkpoint& ckpt, const ModelConfig& c, const std::string& module, int64_t out,
                            int64_t in, bool decode) {
  if (decode) return linear_load(ckpt, c, module, out, in);
  DSV4_CHECK_IN("weights", ckpt.contains(module + ".weight") || c.linear_decoder != nullptr, "%s.weight is missing in %s",
                module.c_str(), ckpt.dir().c_str());
  return {module, out, in, {}};
}

CompressorWeights compressor_load(const Checkpoint& ckpt, const ModelConfig& c, const std::string& stem,
                                  const LayerSpec& spec, int64_t dim, bool decode) {
  CompressorWeights w;
  w.ratio = spec.compress_ratio;
  w.series = spec.compressor_series();
  w.dim = dim;
  const int64_t width = w.series * dim;
  w.wkv = linear_or_shape(ckpt, c, stem + ".wkv", width, c.hidden_size, decode);
  w.wgate = linear_or_shape(ckpt, c, stem + ".wgate", width, c.hidden_size, decode);
  w.ape = weight_load_f32(ckpt, stem + ".ape", {w.ratio, width});
  w.norm = weight_load_f32(ckpt, stem + ".norm.weight", {dim});
  return w;
}

AttentionWeights attention_load(const Checkpoint& ckpt, const ModelConfig& c, const std::string& p,
                                const LayerSpec& spec, bool decode) {
  const int64_t d = c.hidden_size;
  const int64_t kv_dim = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
  AttentionWeights w;
  w.wq_a = linear_or_shape(ckpt, c, p + "attn.wq_a", c.q_lora_rank, d, decode);
  w.q_norm = weight_load_f32(ckpt, p + "attn.q_norm.weight", {c.q_lora_rank});
  w.wq_b = linear_or_shape(ckpt, c, p + "attn.wq_b", c.q_dim(), c.q_lora_rank, decode);
  w.wkv = linear_or_shape(ckpt, c, p + "attn.wkv", kv_dim, d, decode);
  w.kv_norm = weight_load_f32(ckpt, p + "attn.kv_norm.weight", {kv_dim});
  w.wo_a = linear_or_shape(ckpt, c, p + "attn.wo_a", c.o_dim(), c.o_group_in(), decode);
  w.wo_b = linear_or_shape(ckpt, c, p + "attn.wo_b", d, c.o_dim(), decode);
  w.sink = weight_load_f32(ckpt, p + "attn.attn_sink", {c.num_heads});
  if (spec.has_compressor()) w.compressor = compressor_load(ckpt, c, p + "attn.compressor", spec, c.head_dim, decode);
  if (spec.has_indexer()) {
    IndexerWeights ix;
    ix.wq_b = linear_or_shape(ckpt, c, p + "attn.indexer.wq_b",
                          static_cast<int64_t>(c.index_n_heads) * c.index_head_dim, c.q_lora_rank, decode);
    ix.weights_proj = linear_or_shape(ckpt, c, p + "attn.indexer.weights_proj", c.index_n_heads, d, decode);
    ix.compressor = compressor_load(ckpt, c, p + "attn.indexer.compressor", spec, c.index_head_dim, decode);
    w.indexer = std::move(ix);
  }
  return w;
}

MoeWeights moe_load(const Checkpoint& ckpt, const ModelConfig& c, const std::string& p,
                    const LayerSpec& spec, bool decode) {
  const int64_t d = c.hidden_size;
  MoeWeights w;
  w.gate = linear_or_shape(ckpt, c, p + "ffn.gate", c.n_routed_experts, d, decode);
  if (spec.routing == RoutingKind::kHash) {
    const std::string name = p + "ffn.gate.tid2eid";
    const TensorInfo& t = info_checked(ckpt, name, {c.vocab_size, c.num_experts_per_tok});
    DSV4_CHECK_IN("weights", t.dtype == DType::kI64 || t.dtype == DType::kI32,
                  "%s has dtype %s; expected I64 (or I32)", name.c_str(), std::string(dtype_name(t.dtype)).c_str());
    const auto bytes = ckpt.bytes(name);
    w.tid2eid.resize(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < w.tid2eid.size(); ++i) {
      if (t.dtype == DType::kI64) {
        std::memcpy(&w.tid2eid[i], bytes.data() + 8 * i, 8);
      } else {
        int32_t v;
        std::memcpy(&v, bytes.data() + 4 * i, 4);
        w.tid2eid[i] = v;
      }
      DSV4_CHECK_IN("weights", w.tid2eid[i] >= 0 && w.tid2eid[i] < c.n_routed_experts,
                    "%s[%zu] = %lld is not an expert id in [0, %d)", name.c_str(), i,
                    static_cast<long long>(w.tid2eid[i]), c.n_routed_experts);
    }
  } else {
    w.bias = weight_load_f32(ckpt, p + "ffn.gate.bias", {c.n_routed_experts});
  }
  if (c.n_shared_experts > 0) {
    const int64_t inter = static_cast<int64_t>(c.moe_intermediate_size) * c.n_shared_experts;
    ExpertWeights s;
    s.w1 = linear_or_shape(ckpt, c, p + "ffn.shared_experts.w1", inter, d, decode);
    s.w3 = linear_or_shape(ckpt, c, p + "ffn.shared_experts.w3", inter, d, decode);
    s.w2 = linear_or_shape(ckpt, c, p + "ffn.shared_experts.w2", d, inter, decode);
    w.shared = std::move(s);
  }
  w.experts = ExpertSource(&ckpt, c, p);
  return w;
}

}  // namespace

BlockWeights block_weights_load(const Checkpoint& ckpt, const ModelConfig& c, const std::string& prefix,
                                int layer, bool decode_linears) {
  BlockWeights w;
  w.prefix = prefix;
  w.layer = layer;
  w.spec = c.layer(layer);
  w.attn_norm = weight_load_f32(ckpt, prefix + "attn_norm.weight", {c.hidden_size});
  w.ffn_norm = weight_load_f32(ckpt, prefix + "ffn_norm.weight", {c.hidden_size});
  w.hc_attn = hc_load(ckpt, c, prefix + "hc_attn");
  w.hc_ffn = hc_load(ckpt, c, prefix + "hc_ffn");
  w.attn = attention_load(ckpt, c, prefix, w.spec, decode_linears);
  w.ffn = moe_load(ckpt, c, prefix, w.spec, decode_linears);
  return w;
}

}  // namespace dsv4::model
