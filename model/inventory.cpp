// inventory.cpp: builds the expected tensor list of a release-layout checkpoint (see
// inventory.h). Every shape here is checked by the exact totals test: the full config must give
// the real release's 69,187 tensors and 159,609,485,896 bytes.
#include "model/inventory.h"

#include <cctype>
#include <map>
#include <set>

#include "common/check.h"

namespace dsv4::model {
namespace {

// Collects tensors of one scope ("", "layers.3.", "mtp.0.") with their layer index.
class Builder {
 public:
  Builder(const ModelConfig& config, std::vector<ExpectedTensor>& out) : c_(config), out_(out) {}

  void plain(const std::string& name, DType dtype, std::vector<int64_t> shape, int expert = -1) {
    ExpectedTensor t;
    t.name = prefix_ + name;
    t.dtype = dtype;
    t.shape = shape;
    t.logical_shape = std::move(shape);
    t.layer = layer_;
    t.expert = expert;
    out_.push_back(std::move(t));
  }

  // A linear stored FP8 e4m3 with 128×128 block scales: `<stem>.weight` + `<stem>.scale`.
  void fp8_linear(const std::string& stem, int64_t out_features, int64_t in_features) {
    const int64_t b = c_.fp8_block;
    push_pair(stem, DType::kF8E4M3, {out_features, in_features}, TensorEncoding::kFp8Block,
              {ceil_div(out_features, b), ceil_div(in_features, b)}, {out_features, in_features},
              -1);
  }

  // A routed expert linear in the checkpoint's expert format.
  void expert_linear(const std::string& stem, int64_t out_features, int64_t in_features,
                     int expert) {
    if (c_.expert_dtype == "fp4") {
      DSV4_CHECK_IN("inventory", in_features % 32 == 0,
                    "MXFP4 expert %s has %lld inputs, not a multiple of 32", stem.c_str(),
                    static_cast<long long>(in_features));
      push_pair(stem, DType::kI8, {out_features, in_features / 2}, TensorEncoding::kMxfp4,
                {out_features, in_features / 32}, {out_features, in_features}, expert);
    } else {
      const int64_t b = c_.fp8_block;
      push_pair(stem, DType::kF8E4M3, {out_features, in_features}, TensorEncoding::kFp8Block,
                {ceil_div(out_features, b), ceil_div(in_features, b)},
                {out_features, in_features}, expert);
    }
  }

  void set_scope(const std::string& prefix, int layer) {
    prefix_ = prefix;
    layer_ = layer;
  }

 private:
  static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

  void push_pair(const std::string& stem, DType dtype, std::vector<int64_t> shape,
                 TensorEncoding encoding, std::vector<int64_t> scale_shape,
                 std::vector<int64_t> logical, int expert) {
    ExpectedTensor w;
    w.name = prefix_ + stem + ".weight";
    w.dtype = dtype;
    w.shape = std::move(shape);
    w.logical_shape = logical;
    w.encoding = encoding;
    w.layer = layer_;
    w.expert = expert;
    ExpectedTensor s;
    s.name = prefix_ + stem + ".scale";
    // The release stores power-of-two scales as e8m0; V4-Flash-Base reportedly uses float32.
    s.dtype = c_.scale_fmt == "ue8m0" ? DType::kF8E8M0 : DType::kF32;
    s.shape = scale_shape;
    s.logical_shape = std::move(scale_shape);
    s.encoding = TensorEncoding::kScale;
    s.layer = layer_;
    s.expert = expert;
    out_.push_back(std::move(w));
    out_.push_back(std::move(s));
  }

  const ModelConfig& c_;
  std::vector<ExpectedTensor>& out_;
  std::string prefix_;
  int layer_ = -1;
};

void add_hc(Builder& b, const ModelConfig& c, const std::string& site) {
  b.plain("hc_" + site + "_fn", DType::kF32, {c.hc_mix(), c.hc_dim()});
  b.plain("hc_" + site + "_base", DType::kF32, {c.hc_mix()});
  b.plain("hc_" + site + "_scale", DType::kF32, {3});
}

void add_hc_head(Builder& b, const ModelConfig& c) {
  b.plain("hc_head_fn", DType::kF32, {c.hc_mult, c.hc_dim()});
  b.plain("hc_head_base", DType::kF32, {c.hc_mult});
  b.plain("hc_head_scale", DType::kF32, {1});
}

// The compressor of a CSA/HCA layer, or of the indexer (dim = head_dim or index_head_dim).
void add_compressor(Builder& b, const ModelConfig& c, const std::string& stem, const LayerSpec& s,
                    int64_t dim) {
  const int64_t width = s.compressor_series() * dim;
  b.plain(stem + ".wkv.weight", DType::kBF16, {width, c.hidden_size});
  b.plain(stem + ".wgate.weight", DType::kBF16, {width, c.hidden_size});
  b.plain(stem + ".ape", DType::kF32, {s.compress_ratio, width});
  b.plain(stem + ".norm.weight", DType::kBF16, {dim});
}

// One decoder block (main layer or MTP stage) in the builder's current scope.
void add_block(Builder& b, const ModelConfig& c, const LayerSpec& s) {
  const int64_t d = c.hidden_size;
  const int64_t kv_dim = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;
  b.plain("attn_norm.weight", DType::kBF16, {d});
  b.plain("ffn_norm.weight", DType::kBF16, {d});
  add_hc(b, c, "attn");
  add_hc(b, c, "ffn");

  b.fp8_linear("attn.wq_a", c.q_lora_rank, d);
  b.plain("attn.q_norm.weight", DType::kBF16, {c.q_lora_rank});
  b.fp8_linear("attn.wq_b", c.q_dim(), c.q_lora_rank);
  b.fp8_linear("attn.wkv", kv_dim, d);
  b.plain("attn.kv_norm.weight", DType::kBF16, {kv_dim});
  b.fp8_linear("attn.wo_a", c.o_dim(), c.o_group_in());
  b.fp8_linear("attn.wo_b", d, c.o_dim());
  b.plain("attn.attn_sink", DType::kF32, {c.num_heads});
  if (s.has_compressor()) add_compressor(b, c, "attn.compressor", s, c.head_dim);
  if (s.has_indexer()) {
    b.fp8_linear("attn.indexer.wq_b", static_cast<int64_t>(c.index_n_heads) * c.index_head_dim,
                 c.q_lora_rank);
    b.plain("attn.indexer.weights_proj.weight", DType::kBF16, {c.index_n_heads, d});
    add_compressor(b, c, "attn.indexer.compressor", s, c.index_head_dim);
  }

  b.plain("ffn.gate.weight", DType::kBF16, {c.n_routed_experts, d});
  if (s.routing == RoutingKind::kHash) {
    b.plain("ffn.gate.tid2eid", DType::kI64, {c.vocab_size, c.num_experts_per_tok});
  } else {
    b.plain("ffn.gate.bias", DType::kF32, {c.n_routed_experts});
  }
  const int64_t shared_inter = static_cast<int64_t>(c.moe_intermediate_size) * c.n_shared_experts;
  if (c.n_shared_experts > 0) {
    b.fp8_linear("ffn.shared_experts.w1", shared_inter, d);
    b.fp8_linear("ffn.shared_experts.w3", shared_inter, d);
    b.fp8_linear("ffn.shared_experts.w2", d, shared_inter);
  }
  const int64_t inter = c.moe_intermediate_size;
  for (int e = 0; e < c.n_routed_experts; ++e) {
    const std::string stem = "ffn.experts." + std::to_string(e);
    b.expert_linear(stem + ".w1", inter, d, e);
    b.expert_linear(stem + ".w3", inter, d, e);
    b.expert_linear(stem + ".w2", d, inter, e);
  }
}

}  // namespace

uint64_t ExpectedTensor::bytes() const {
  uint64_t n = dtype_size(dtype);
  for (int64_t v : shape) n *= static_cast<uint64_t>(v);
  return n;
}

std::vector<ExpectedTensor> inventory_expected(const ModelConfig& c, int mtp_stages) {
  c.check();
  DSV4_CHECK_IN("inventory", mtp_stages >= 0, "negative MTP stage count %d", mtp_stages);
  std::vector<ExpectedTensor> out;
  Builder b(c, out);
  const int64_t d = c.hidden_size;

  b.set_scope("", -1);
  b.plain("embed.weight", DType::kBF16, {c.vocab_size, d});
  for (int l = 0; l < c.num_layers; ++l) {
    b.set_scope("layers." + std::to_string(l) + ".", l);
    add_block(b, c, c.layer(l));
  }
  b.set_scope("", -1);
  b.plain("norm.weight", DType::kBF16, {d});
  b.plain("head.weight", DType::kBF16, {c.vocab_size, d});
  add_hc_head(b, c);

  for (int s = 0; s < mtp_stages; ++s) {
    b.set_scope("mtp." + std::to_string(s) + ".", c.num_layers + s);
    // The MTP stage's own tensors, then a full sliding-window decoder block. It shares the
    // top-level embed and head (there is no mtp.N.embed / mtp.N.head in the release).
    b.fp8_linear("e_proj", d, d);
    b.fp8_linear("h_proj", d, d);
    b.plain("enorm.weight", DType::kBF16, {d});
    b.plain("hnorm.weight", DType::kBF16, {d});
    b.plain("norm.weight", DType::kBF16, {d});
    add_hc_head(b, c);
    add_block(b, c, c.mtp_layer(s));
  }
  return out;
}

InventoryTotals inventory_totals(const std::vector<ExpectedTensor>& tensors) {
  InventoryTotals t;
  for (const auto& e : tensors) {
    ++t.tensors;
    t.bytes += e.bytes();
  }
  return t;
}

int inventory_mtp_stages(const std::vector<std::string>& names) {
  std::set<int> stages;
  for (const auto& n : names) {
    if (n.rfind("mtp.", 0) != 0) continue;
    size_t i = 4;
    int stage = 0;
    bool digits = false;
    while (i < n.size() && std::isdigit(static_cast<unsigned char>(n[i]))) {
      stage = stage * 10 + (n[i] - '0');
      digits = true;
      ++i;
    }
    DSV4_CHECK_IN("inventory", digits && i < n.size() && n[i] == '.',
                  "tensor '%s' starts with 'mtp.' but not 'mtp.<stage>.'", n.c_str());
    stages.insert(stage);
  }
  int expected = 0;
  for (int s : stages) {
    DSV4_CHECK_IN("inventory", s == expected,
                  "MTP stages are not contiguous: found mtp.%d. but no mtp.%d. tensors", s,
                  expected);
    ++expected;
  }
  return static_cast<int>(stages.size());
}

std::string tensor_family(std::string_view name) {
  // Replace the number after "layers.", "experts." and "mtp." (each followed by '.') by '*'.
  static const char* kIndexed[] = {"layers.", "experts.", "mtp."};
  std::string out;
  size_t i = 0;
  while (i < name.size()) {
    bool replaced = false;
    for (const char* key : kIndexed) {
      const std::string_view k(key);
      const bool at_segment_start = i == 0 || name[i - 1] == '.';
      if (at_segment_start && name.substr(i, k.size()) == k) {
        size_t j = i + k.size();
        while (j < name.size() && std::isdigit(static_cast<unsigned char>(name[j]))) ++j;
        if (j > i + k.size() && (j == name.size() || name[j] == '.')) {
          out.append(k);
          out.push_back('*');
          i = j;
          replaced = true;
          break;
        }
      }
    }
    if (!replaced) out.push_back(name[i++]);
  }
  return out;
}

}  // namespace dsv4::model
