// linear_role.cpp: release module name -> LinearRole (see linear_role.h).
#include "model/linear_role.h"

#include <string>

namespace dsv4::model {
namespace {

struct RoleLeaf {
  LinearRole role;
  std::string_view leaf;  // as written after the block prefix; "E" stands for the expert index
};

// Longest leaves first where one ends another (attn.indexer.compressor.wkv before
// attn.compressor.wkv is not needed: the match is on the whole leaf).
constexpr RoleLeaf kLeaves[] = {
    {LinearRole::kAttnWqA, "attn.wq_a"},
    {LinearRole::kAttnWqB, "attn.wq_b"},
    {LinearRole::kAttnWkv, "attn.wkv"},
    {LinearRole::kAttnWoA, "attn.wo_a"},
    {LinearRole::kAttnWoB, "attn.wo_b"},
    {LinearRole::kCompressorWkv, "attn.compressor.wkv"},
    {LinearRole::kCompressorWgate, "attn.compressor.wgate"},
    {LinearRole::kIndexerWqB, "attn.indexer.wq_b"},
    {LinearRole::kIndexerWeightsProj, "attn.indexer.weights_proj"},
    {LinearRole::kIndexerCompressorWkv, "attn.indexer.compressor.wkv"},
    {LinearRole::kIndexerCompressorWgate, "attn.indexer.compressor.wgate"},
    {LinearRole::kSharedW1, "ffn.shared_experts.w1"},
    {LinearRole::kSharedW2, "ffn.shared_experts.w2"},
    {LinearRole::kSharedW3, "ffn.shared_experts.w3"},
    {LinearRole::kExpertW1, "ffn.experts.E.w1"},
    {LinearRole::kExpertW2, "ffn.experts.E.w2"},
    {LinearRole::kExpertW3, "ffn.experts.E.w3"},
    {LinearRole::kHead, "head"},
    {LinearRole::kMtpEProj, "e_proj"},
    {LinearRole::kMtpHProj, "h_proj"},
};

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
  }
  return true;
}

// The leaf after "layers.N." or "mtp.N." ("head" has no block); empty when the name has neither.
std::string_view block_leaf(std::string_view name) {
  for (std::string_view scope : {std::string_view("layers."), std::string_view("mtp.")}) {
    if (!name.starts_with(scope)) continue;
    const std::string_view rest = name.substr(scope.size());
    const size_t dot = rest.find('.');
    if (dot == std::string_view::npos || !all_digits(rest.substr(0, dot))) return {};
    return rest.substr(dot + 1);
  }
  return {};
}

}  // namespace

std::optional<LinearRole> linear_role_parse(std::string_view name) {
  if (name == "head") return LinearRole::kHead;
  std::string_view leaf = block_leaf(name);
  if (leaf.empty()) return std::nullopt;
  // A routed expert's index becomes "E".
  std::string normalized;
  constexpr std::string_view kExperts = "ffn.experts.";
  if (leaf.starts_with(kExperts)) {
    const std::string_view rest = leaf.substr(kExperts.size());
    const size_t dot = rest.find('.');
    if (dot == std::string_view::npos || !all_digits(rest.substr(0, dot))) return std::nullopt;
    normalized = std::string(kExperts) + "E" + std::string(rest.substr(dot));
    leaf = normalized;
  }
  for (const RoleLeaf& r : kLeaves) {
    if (r.role != LinearRole::kHead && r.leaf == leaf) return r.role;
  }
  return std::nullopt;
}

std::string_view linear_role_leaf(LinearRole role) {
  for (const RoleLeaf& r : kLeaves) {
    if (r.role == role) return r.leaf;
  }
  return "?";
}

}  // namespace dsv4::model
