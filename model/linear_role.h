// linear_role.h: what a Linear of a DeepSeek-V4 block is, as a type: parsed once from its release
// module name, so that code downstream switches on a role instead of testing name suffixes.
//
//   std::optional<LinearRole> r = linear_role_parse("layers.3.ffn.experts.7.w1");   // kExpertW1
//   linear_role_parse("layers.3.attn.indexer.compressor.wkv");     // kIndexerCompressorWkv
//   linear_role_parse("mtp.0.e_proj");                             // kMtpEProj
//   linear_role_parse("layers.3.ffn.gate");                        // nullopt: the router is no Linear
//
// Roles are the same in a main layer and an MTP block (`mtp.S.attn.wq_a` is kAttnWqA).
// Tests: tests/model/test_linear_role.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace dsv4::model {

enum class LinearRole : uint8_t {
  kAttnWqA, kAttnWqB, kAttnWkv, kAttnWoA, kAttnWoB,  // attention
  kCompressorWkv, kCompressorWgate,                  // attn.compressor (CSA/HCA)
  kIndexerWqB, kIndexerWeightsProj,                  // attn.indexer (CSA)
  kIndexerCompressorWkv, kIndexerCompressorWgate,    // attn.indexer.compressor
  kSharedW1, kSharedW2, kSharedW3,                   // ffn.shared_experts
  kExpertW1, kExpertW2, kExpertW3,                   // ffn.experts.E
  kHead, kMtpEProj, kMtpHProj,                       // top-level head; MTP input projections
};

// The role of a release module name, or nullopt when it names no Linear.
std::optional<LinearRole> linear_role_parse(std::string_view release_module);
// The leaf a role has under its block prefix ("attn.wq_a", "ffn.experts.E.w1" with E for the
// expert index, "head"), for messages and tables.
std::string_view linear_role_leaf(LinearRole role);

// w1 and w3 (gate and up) of the routed or shared experts: one input, one fused GEMM in vLLM.
inline bool linear_role_is_w13(LinearRole r) {
  return r == LinearRole::kExpertW1 || r == LinearRole::kExpertW3 || r == LinearRole::kSharedW1 ||
         r == LinearRole::kSharedW3;
}
inline bool linear_role_is_routed_expert(LinearRole r) {
  return r == LinearRole::kExpertW1 || r == LinearRole::kExpertW2 || r == LinearRole::kExpertW3;
}

}  // namespace dsv4::model
