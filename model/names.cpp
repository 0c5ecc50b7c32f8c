// names.cpp: the release <-> transformers 5.17 <-> vLLM 0.33 name table and the small pattern
// engine that runs it in both directions. Sources and open points: names.h.
#include "model/names.h"

#include <string>

namespace dsv4::model {
namespace {

// Where a rule applies: top level, every decoder block (main layers and MTP blocks alike), or only
// the MTP head (the parts of `mtp.S.` that are not a decoder block).
enum class Scope { kTop, kBlock, kMtp };
// kParam: the pattern is a tensor (no module). kWeight: module with `.weight`. kScaled: module
// with `.weight` and an FP8/MXFP4 `.scale`.
enum class Leaf { kParam, kWeight, kScaled };
// Row sizes of the two shards of a fused output dim, for the row ranges of NameAlias.
enum class Rows { kNone, kWqaWkv, kCompressor, kIndexerCompressor, kSharedGateUp, kExpertGateUp };

struct Rule {
  Scope scope;
  Leaf leaf;
  const char* release;  // relative to the scope prefix; {E} = expert index
  const char* hf;       // transformers module (or tensor for kParam); nullptr = none
  const char* vllm;     // vLLM module (or tensor for kParam)
  int shard = -1;       // position in vLLM's fused module (and transformers' fused experts)
  Rows rows = Rows::kNone;
  const char* hf_fused = nullptr;    // transformers tensor stacked over experts
  const char* vllm_fused = nullptr;  // vLLM tensor stem stacked over experts (+ "weight", ...)
};

using S = Scope;
using L = Leaf;
using R = Rows;

// clang-format off
constexpr Rule kRules[] = {
  // scope     leaf       release                          transformers 5.17                                   vLLM 0.33
  {S::kTop,   L::kWeight, "embed",                         "model.embed_tokens",                               "model.embed_tokens"},
  {S::kTop,   L::kWeight, "head",                          "lm_head",                                          "lm_head"},
  {S::kTop,   L::kWeight, "norm",                          "model.norm",                                       "model.norm"},
  {S::kTop,   L::kParam,  "hc_head_fn",                    "model.hc_head.hc_fn",                              "model.hc_head_fn"},
  {S::kTop,   L::kParam,  "hc_head_base",                  "model.hc_head.hc_base",                            "model.hc_head_base"},
  {S::kTop,   L::kParam,  "hc_head_scale",                 "model.hc_head.hc_scale",                           "model.hc_head_scale"},
  {S::kBlock, L::kWeight, "attn_norm",                     "input_layernorm",                                  "attn_norm"},
  {S::kBlock, L::kWeight, "ffn_norm",                      "post_attention_layernorm",                         "ffn_norm"},
  {S::kBlock, L::kParam,  "hc_attn_fn",                    "attn_hc.fn",                                       "hc_attn_fn"},
  {S::kBlock, L::kParam,  "hc_attn_base",                  "attn_hc.base",                                     "hc_attn_base"},
  {S::kBlock, L::kParam,  "hc_attn_scale",                 "attn_hc.scale",                                    "hc_attn_scale"},
  {S::kBlock, L::kParam,  "hc_ffn_fn",                     "ffn_hc.fn",                                        "hc_ffn_fn"},
  {S::kBlock, L::kParam,  "hc_ffn_base",                   "ffn_hc.base",                                      "hc_ffn_base"},
  {S::kBlock, L::kParam,  "hc_ffn_scale",                  "ffn_hc.scale",                                     "hc_ffn_scale"},
  {S::kBlock, L::kScaled, "attn.wq_a",                     "self_attn.q_a_proj",                               "attn.fused_wqa_wkv", 0, R::kWqaWkv},
  {S::kBlock, L::kWeight, "attn.q_norm",                   "self_attn.q_a_norm",                               "attn.q_norm"},
  {S::kBlock, L::kScaled, "attn.wq_b",                     "self_attn.q_b_proj",                               "attn.wq_b"},
  {S::kBlock, L::kScaled, "attn.wkv",                      "self_attn.kv_proj",                                "attn.fused_wqa_wkv", 1, R::kWqaWkv},
  {S::kBlock, L::kWeight, "attn.kv_norm",                  "self_attn.kv_norm",                                "attn.kv_norm"},
  {S::kBlock, L::kScaled, "attn.wo_a",                     "self_attn.o_a_proj",                               "attn.wo_a"},
  {S::kBlock, L::kScaled, "attn.wo_b",                     "self_attn.o_b_proj",                               "attn.wo_b"},
  {S::kBlock, L::kParam,  "attn.attn_sink",                "self_attn.sinks",                                  "attn.attn_sink"},
  {S::kBlock, L::kWeight, "attn.compressor.wkv",           "self_attn.compressor.kv_proj",                     "attn.compressor.fused_wkv_wgate", 0, R::kCompressor},
  {S::kBlock, L::kWeight, "attn.compressor.wgate",         "self_attn.compressor.gate_proj",                   "attn.compressor.fused_wkv_wgate", 1, R::kCompressor},
  {S::kBlock, L::kParam,  "attn.compressor.ape",           "self_attn.compressor.position_bias",               "attn.compressor.ape"},
  {S::kBlock, L::kWeight, "attn.compressor.norm",          "self_attn.compressor.kv_norm",                     "attn.compressor.norm"},
  {S::kBlock, L::kScaled, "attn.indexer.wq_b",             "self_attn.compressor.indexer.q_b_proj",            "attn.indexer.wq_b"},
  {S::kBlock, L::kWeight, "attn.indexer.weights_proj",     "self_attn.compressor.indexer.scorer.weights_proj", "attn.indexer.weights_proj"},
  {S::kBlock, L::kWeight, "attn.indexer.compressor.wkv",   "self_attn.compressor.indexer.kv_proj",             "attn.indexer.compressor.fused_wkv_wgate", 0, R::kIndexerCompressor},
  {S::kBlock, L::kWeight, "attn.indexer.compressor.wgate", "self_attn.compressor.indexer.gate_proj",           "attn.indexer.compressor.fused_wkv_wgate", 1, R::kIndexerCompressor},
  {S::kBlock, L::kParam,  "attn.indexer.compressor.ape",   "self_attn.compressor.indexer.position_bias",       "attn.indexer.compressor.ape"},
  {S::kBlock, L::kWeight, "attn.indexer.compressor.norm",  "self_attn.compressor.indexer.kv_norm",             "attn.indexer.compressor.norm"},
  {S::kBlock, L::kWeight, "ffn.gate",                      "mlp.gate",                                         "ffn.gate"},
  {S::kBlock, L::kParam,  "ffn.gate.bias",                 "mlp.gate.e_score_correction_bias",                 "ffn.gate.e_score_correction_bias"},
  {S::kBlock, L::kParam,  "ffn.gate.tid2eid",              "mlp.gate.tid2eid",                                 "ffn.gate.tid2eid"},
  {S::kBlock, L::kScaled, "ffn.shared_experts.w1",         "mlp.shared_experts.gate_proj",                     "ffn.shared_experts.gate_up_proj", 0, R::kSharedGateUp},
  {S::kBlock, L::kScaled, "ffn.shared_experts.w3",         "mlp.shared_experts.up_proj",                       "ffn.shared_experts.gate_up_proj", 1, R::kSharedGateUp},
  {S::kBlock, L::kScaled, "ffn.shared_experts.w2",         "mlp.shared_experts.down_proj",                     "ffn.shared_experts.down_proj"},
  // Routed experts: transformers fuses them into 3-D parameters but llm-compressor calibrates
  // per-expert Linears under these module names; vLLM has one FusedMoE module per layer.
  {S::kBlock, L::kScaled, "ffn.experts.{E}.w1",            "mlp.experts.{E}.gate_proj",                        "ffn.experts", 0, R::kExpertGateUp, "mlp.experts.gate_up_proj", "ffn.experts.w13_"},
  {S::kBlock, L::kScaled, "ffn.experts.{E}.w3",            "mlp.experts.{E}.up_proj",                          "ffn.experts", 1, R::kExpertGateUp, "mlp.experts.gate_up_proj", "ffn.experts.w13_"},
  {S::kBlock, L::kScaled, "ffn.experts.{E}.w2",            "mlp.experts.{E}.down_proj",                        "ffn.experts", -1, R::kNone, "mlp.experts.down_proj", "ffn.experts.w2_"},
  // MTP head (vLLM: model.layers.{N+S}.*, outside mtp_block); transformers has no MTP.
  {S::kMtp,   L::kScaled, "e_proj",                        nullptr,                                            "e_proj"},
  {S::kMtp,   L::kScaled, "h_proj",                        nullptr,                                            "h_proj"},
  {S::kMtp,   L::kWeight, "enorm",                         nullptr,                                            "enorm"},
  {S::kMtp,   L::kWeight, "hnorm",                         nullptr,                                            "hnorm"},
  {S::kMtp,   L::kWeight, "norm",                          nullptr,                                            "shared_head.norm"},
  {S::kMtp,   L::kParam,  "hc_head_fn",                    nullptr,                                            "hc_head_fn"},
  {S::kMtp,   L::kParam,  "hc_head_base",                  nullptr,                                            "hc_head_base"},
  {S::kMtp,   L::kParam,  "hc_head_scale",                 nullptr,                                            "hc_head_scale"},
};
// clang-format on

// Scope prefixes per naming. {L} = main layer, {S} = MTP stage, {M} = num_layers + S (vLLM numbers
// MTP blocks after the main layers). A null transformers prefix means "no transformers name".
struct Variant {
  Scope scope;
  const char* release;
  const char* hf;
  const char* vllm;
};
constexpr Variant kVariants[] = {
    {Scope::kTop, "", "", ""},
    {Scope::kBlock, "layers.{L}.", "model.layers.{L}.", "model.layers.{L}."},
    {Scope::kBlock, "mtp.{S}.", nullptr, "model.layers.{M}.mtp_block."},
    {Scope::kMtp, "mtp.{S}.", nullptr, "model.layers.{M}."},
};

enum class Kind { kModule, kWeight, kScale, kParam };

struct Captures {
  int layer = -1;
  int stage = -1;
  int expert = -1;
};

}  // namespace

struct NameMap::Form {
  const Rule* rule;
  Kind kind;
  std::string release, hf, vllm;  // full patterns; hf empty = no transformers name
  bool tensor() const { return kind != Kind::kModule; }
};

namespace {

// Matches a whole name against a pattern, capturing the numbers. Numbers are canonical decimals
// (no sign, no leading zero) within the config's bounds, so `layers.007` or `experts.256` (of 256)
// match nothing instead of aliasing another name.
bool pattern_match(std::string_view pattern, std::string_view name, const ModelConfig& c,
                   Captures& caps) {
  size_t k = 0;
  for (size_t p = 0; p < pattern.size();) {
    if (pattern[p] != '{') {
      if (k >= name.size() || name[k] != pattern[p]) return false;
      ++p, ++k;
      continue;
    }
    const char slot = pattern[p + 1];
    p += 3;
    const size_t start = k;
    while (k < name.size() && name[k] >= '0' && name[k] <= '9' && k - start < 9) ++k;
    if (k == start || (k - start > 1 && name[start] == '0')) return false;
    if (k < name.size() && name[k] >= '0' && name[k] <= '9') return false;  // more than 9 digits
    const int v = std::stoi(std::string(name.substr(start, k - start)));
    switch (slot) {
      case 'L':
        if (v >= c.num_layers) return false;
        caps.layer = v;
        break;
      case 'S':
        caps.stage = v;
        break;
      case 'M':
        if (v < c.num_layers) return false;
        caps.stage = v - c.num_layers;
        break;
      case 'E':
        if (v >= c.n_routed_experts) return false;
        caps.expert = v;
        break;
      default:
        return false;
    }
  }
  return k == name.size();
}

std::string pattern_build(std::string_view pattern, const ModelConfig& c, const Captures& caps) {
  std::string out;
  for (size_t p = 0; p < pattern.size();) {
    if (pattern[p] != '{') {
      out += pattern[p++];
      continue;
    }
    const char slot = pattern[p + 1];
    p += 3;
    out += std::to_string(slot == 'L'   ? caps.layer
                          : slot == 'S' ? caps.stage
                          : slot == 'M' ? c.num_layers + caps.stage
                                        : caps.expert);
  }
  return out;
}

// Rows [begin, end) that shard `rule.shard` occupies in its fused tensor, in weight rows or, for
// a scale, in scale rows (MXFP4 scales are per row; FP8 block scales per fp8_block rows).
void fill_rows(const Rule& rule, Kind kind, const ModelConfig& c, const Captures& caps,
               NameAlias& a) {
  if (rule.shard < 0 || rule.rows == Rows::kNone || kind == Kind::kModule) return;
  const int index = caps.layer >= 0 ? caps.layer : c.num_layers + caps.stage;
  const int ratio =
      index < static_cast<int>(c.compress_ratios.size()) ? c.compress_ratios[index] : 0;
  const int64_t series = ratio == 4 ? 2 : 1;  // CSA's compressor pools two overlapping series
  int64_t first = 0, second = 0;
  switch (rule.rows) {
    case Rows::kWqaWkv:
      first = c.q_lora_rank, second = c.head_dim;
      break;
    case Rows::kCompressor:
      first = second = series * c.head_dim;
      break;
    case Rows::kIndexerCompressor:
      first = second = series * c.index_head_dim;
      break;
    case Rows::kSharedGateUp:
      first = second = int64_t{c.moe_intermediate_size} * c.n_shared_experts;
      break;
    case Rows::kExpertGateUp:
      first = second = c.moe_intermediate_size;
      break;
    case Rows::kNone:
      return;
  }
  int64_t begin = rule.shard == 0 ? 0 : first;
  int64_t size = rule.shard == 0 ? first : second;
  const bool per_row_scale = rule.rows == Rows::kExpertGateUp && c.expert_dtype == "fp4";
  if (kind == Kind::kScale && !per_row_scale) {
    const int64_t block = c.fp8_block;
    if (begin % block != 0) return;  // the shard starts inside a scale block: no clean slice
    begin /= block;
    size = (size + block - 1) / block;
  }
  a.row_begin = begin;
  a.row_end = begin + size;
}

}  // namespace

NameMap::NameMap(const ModelConfig& config) : config_(config) {
  config_.source = nlohmann::json::object();  // not needed here; keeps copies cheap
  const char* expert_scale = config_.expert_dtype == "fp4" ? "weight_scale" : "weight_scale_inv";
  for (const Rule& r : kRules) {
    for (const Variant& v : kVariants) {
      if (v.scope != r.scope) continue;
      const bool has_hf = v.hf != nullptr && r.hf != nullptr;
      const std::string rel = std::string(v.release) + r.release;
      const std::string hf = has_hf ? std::string(v.hf) + r.hf : "";
      const std::string vl = std::string(v.vllm) + r.vllm;
      if (r.leaf == Leaf::kParam) {
        forms_.push_back({&r, Kind::kParam, rel, hf, vl});
        continue;
      }
      forms_.push_back({&r, Kind::kModule, rel, hf, vl});
      const std::string hf_stem = has_hf && r.hf_fused ? std::string(v.hf) + r.hf_fused : "";
      const std::string vl_stem = r.vllm_fused ? std::string(v.vllm) + r.vllm_fused : "";
      forms_.push_back({&r, Kind::kWeight, rel + ".weight",
                        !has_hf      ? ""
                        : r.hf_fused ? hf_stem
                                     : hf + ".weight",
                        r.vllm_fused ? vl_stem + "weight" : vl + ".weight"});
      if (r.leaf == Leaf::kScaled)
        forms_.push_back({&r, Kind::kScale, rel + ".scale",
                          !has_hf      ? ""
                          : r.hf_fused ? hf_stem + "_scale_inv"
                                       : hf + ".weight_scale_inv",
                          r.vllm_fused ? vl_stem + expert_scale : vl + ".weight_scale_inv"});
    }
  }
}

NameMap::~NameMap() = default;
NameMap::NameMap(const NameMap&) = default;
NameMap& NameMap::operator=(const NameMap&) = default;

std::optional<std::string> NameMap::hf_module(std::string_view release_module) const {
  for (const Form& f : forms_) {
    Captures caps;
    if (f.kind == Kind::kModule && !f.hf.empty() &&
        pattern_match(f.release, release_module, config_, caps))
      return pattern_build(f.hf, config_, caps);
  }
  return std::nullopt;
}

std::optional<std::string> NameMap::release_module_from_hf(std::string_view hf_module) const {
  for (const Form& f : forms_) {
    Captures caps;
    if (f.kind == Kind::kModule && !f.hf.empty() && pattern_match(f.hf, hf_module, config_, caps))
      return pattern_build(f.release, config_, caps);
  }
  return std::nullopt;
}

std::optional<NameAlias> NameMap::vllm_module(std::string_view release_module) const {
  for (const Form& f : forms_) {
    Captures caps;
    if (f.kind != Kind::kModule || !pattern_match(f.release, release_module, config_, caps))
      continue;
    NameAlias a{pattern_build(f.vllm, config_, caps)};
    a.shard = f.rule->shard;
    if (f.rule->vllm_fused) a.expert = caps.expert;
    return a;
  }
  return std::nullopt;
}

std::vector<std::string> NameMap::release_modules_from_vllm(std::string_view vllm_module) const {
  std::vector<std::string> out;
  for (const Form& f : forms_) {
    Captures caps;
    if (f.kind != Kind::kModule || !pattern_match(f.vllm, vllm_module, config_, caps)) continue;
    if (f.rule->vllm_fused == nullptr) {
      out.push_back(pattern_build(f.release, config_, caps));
      continue;
    }
    for (caps.expert = 0; caps.expert < config_.n_routed_experts;
         ++caps.expert)  // one FusedMoE holds all
      out.push_back(pattern_build(f.release, config_, caps));
  }
  return out;
}

std::optional<std::string> NameMap::release_module_of(std::string_view release_tensor) const {
  for (const Form& f : forms_) {
    Captures caps;
    if ((f.kind == Kind::kWeight || f.kind == Kind::kScale) &&
        pattern_match(f.release, release_tensor, config_, caps))
      return std::string(release_tensor.substr(0, release_tensor.rfind('.')));
  }
  return std::nullopt;
}

std::optional<NameAlias> NameMap::hf_tensor(std::string_view release_tensor) const {
  for (const Form& f : forms_) {
    Captures caps;
    if (!f.tensor() || !pattern_match(f.release, release_tensor, config_, caps)) continue;
    if (f.hf.empty()) return std::nullopt;  // MTP: transformers ignores mtp.* on load
    NameAlias a{pattern_build(f.hf, config_, caps)};
    if (f.rule->hf_fused) {
      a.expert = caps.expert;
      a.shard = f.rule->shard;
      fill_rows(*f.rule, f.kind, config_, caps, a);
    }
    return a;
  }
  return std::nullopt;
}

std::optional<std::string> NameMap::release_tensor_from_hf(std::string_view hf_tensor) const {
  for (const Form& f : forms_) {
    Captures caps;
    if (f.tensor() && !f.hf.empty() && f.rule->hf_fused == nullptr &&
        pattern_match(f.hf, hf_tensor, config_, caps))
      return pattern_build(f.release, config_, caps);
  }
  return std::nullopt;
}

std::optional<NameAlias> NameMap::vllm_tensor(std::string_view release_tensor) const {
  for (const Form& f : forms_) {
    Captures caps;
    if (!f.tensor() || !pattern_match(f.release, release_tensor, config_, caps)) continue;
    NameAlias a{pattern_build(f.vllm, config_, caps)};
    a.shard = f.rule->shard;
    if (f.rule->vllm_fused) a.expert = caps.expert;
    fill_rows(*f.rule, f.kind, config_, caps, a);
    return a;
  }
  return std::nullopt;
}

}  // namespace dsv4::model
