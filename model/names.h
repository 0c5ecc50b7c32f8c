// names.h: one rule table that maps DeepSeek-V4 names between the release checkpoint,
// transformers 5.17 (`DeepseekV4ForCausalLM`) and vLLM, for modules (recipe targets) and tensors.
//
//   NameMap names(ModelConfig::flash());
//   names.hf_module("layers.3.ffn.experts.7.w1")
//       -> "model.layers.3.mlp.experts.7.gate_proj"
//   names.release_module_from_hf("model.layers.3.self_attn.q_a_proj") -> "layers.3.attn.wq_a"
//   names.vllm_module("layers.3.attn.wkv")
//       -> {"model.layers.3.attn.fused_wqa_wkv", shard 1}
//   names.release_modules_from_vllm("model.layers.3.attn.fused_wqa_wkv")
//       -> {"layers.3.attn.wq_a", "layers.3.attn.wkv"}
//   names.hf_tensor("layers.3.ffn.experts.7.w3.weight")
//       -> {"model.layers.3.mlp.experts.gate_up_proj", expert 7, shard 1, rows [2048, 4096)}
//   names.release_tensor_from_hf("model.layers.3.self_attn.sinks") -> "layers.3.attn.attn_sink"
//   names.vllm_tensor("layers.3.ffn.experts.7.w1.scale")
//       -> {"model.layers.3.ffn.experts.w13_weight_scale", expert 7, shard 0, rows [0, 2048)}
//   names.hf_tensor("mtp.0.attn.wq_a.weight")              -> nullopt (transformers has no MTP)
//
// Module names: a release module is a tensor name without its trailing ".weight"/".scale"
// (`layers.3.attn.wq_a`). The transformers module names are the per-expert ones llm-compressor
// calibrates against after linearizing the fused experts
// (`model.layers.3.mlp.experts.7.gate_proj`), so a recipe written for llm-compressor matches
// through release_module_from_hf(). vLLM fuses some release modules; their alias is the fused
// module plus the shard index (and expert index).
//
// Sources, and what was confirmed from each:
//   - transformers 5.17.0 wheel: conversion_mapping.py ("deepseek_v4": the WeightRenaming list and
//     the two WeightConverters that stack experts.*.w1/w3 into experts.gate_up_proj [E, 2I, D]
//     (w1 rows first) and w2 into experts.down_proj [E, D, I]); modeling_deepseek_v4.py (module
//     tree: self_attn.{q_a_proj,q_a_norm,q_b_proj,kv_proj,kv_norm,o_a_proj,o_b_proj,sinks},
//     compressor.{kv_proj,gate_proj,position_bias,kv_norm,indexer.{q_b_proj,kv_proj,gate_proj,
//     position_bias,kv_norm,scorer.weights_proj}}, mlp.{gate.{weight,e_score_correction_bias,
//     tid2eid},shared_experts.{gate,up,down}_proj,experts}, attn_hc/ffn_hc.{fn,base,scale},
//     hc_head.{hc_fn,hc_base,hc_scale}; base_model_prefix "model"; mtp.* ignored on load);
//     quantizers/quantizer_finegrained_fp8.py (`.scale` -> `.weight_scale_inv`);
//     integrations/finegrained_fp8.py (fused expert scales `gate_up_proj_scale_inv`,
//     `down_proj_scale_inv`).
//   - vLLM 0.33.0 wheel: vllm/models/deepseek_v4/nvidia/model.py (_make_deepseek_v4_weights_mapper:
//     prefixes layers./embed./norm./hc_head -> model.*, head.weight -> lm_head.weight,
//     embed.weight -> embed_tokens.weight, .ffn.gate.bias -> .ffn.gate.e_score_correction_bias,
//     .shared_experts.w2 -> .shared_experts.down_proj, FP8 `.scale` -> `.weight_scale_inv`,
//     MXFP4 `experts.E.wK.scale` -> `.weight_scale`, mtp.* dropped; load_weights'
//     stacked_params_mapping gate_up_proj <- w1 (0), w3 (1); attn.fused_wqa_wkv <- attn.wq_a (0),
//     attn.wkv (1); compressor.fused_wkv_wgate <- compressor.wkv (0), compressor.wgate (1), the
//     latter also hitting attn.indexer.compressor.*; experts through
//     fused_moe_make_expert_params_mapping: experts.E.w1/w3 -> experts.w13_* (w1 rows first),
//     w2 -> experts.w2_*; with expert_dtype fp8 every scale is `weight_scale_inv`) and
//     vllm/models/deepseek_v4/nvidia/mtp.py (mtp.S.* -> model.layers.{N+S}.*; e_proj, h_proj,
//     enorm, hnorm, hc_head_* stay on that layer; mtp.S.norm -> shared_head.norm; everything else
//     goes under .mtp_block.; only wq_a/wkv and shared w1/w3 are stacked there).
//     The mapping was checked by replaying that code on every release name of §2.
// Unconfirmed / version-dependent:
//   - vLLM names move between versions: the GitHub file vllm/model_executor/models/deepseek_v4.py
//     (commit 023da1fc) instead put ffn_norm, ffn.gate.{weight,bias,tid2eid} under
//     ffn.norm_gate.{norm,gate,e_score_correction_bias,tid2eid} and the attention compressor under
//     attn.mla_attn.compressor. This table follows the 0.33.0 release.
//   - transformers' names of the routed experts' scales for an MXFP4 source (the FP8 quantizer
//     unpacks FP4; only the FP8 expert path names `*_scale_inv` explicitly).
//   - vLLM's MTP aliases `mtp.S.head.weight` / `mtp.S.emb.tok_emb.weight` (read by mtp.py, absent
//     from the release) are not in the table.
// Reference: ../shared/reference/dsv4_architecture.md §2.6. Tests: tests/model/test_names.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/config.h"

namespace dsv4::model {

// A name in another naming, plus where the release tensor/module sits inside it when that naming
// fuses several release tensors into one.
struct NameAlias {
  std::string name;
  int expert = -1;  // >= 0: index along the leading expert axis of a tensor stacked over experts
  int shard = -1;   // >= 0: position among the tensors concatenated along the output rows
  // Rows [row_begin, row_end) of the (per-expert) fused tensor that this tensor occupies; -1 when
  // not fused, for modules, or for an FP8 block scale whose shard is not block aligned.
  int64_t row_begin = -1;
  int64_t row_end = -1;
};

class NameMap {
 public:
  // Layer/expert bounds, MTP layer numbering in vLLM, expert scale names and fused row ranges all
  // come from the config.
  explicit NameMap(const ModelConfig& config);
  ~NameMap();
  NameMap(const NameMap&);
  NameMap& operator=(const NameMap&);

  // Module names (tensor names without .weight/.scale). nullopt: unknown, or no counterpart.
  std::optional<std::string> hf_module(std::string_view release_module) const;
  std::optional<std::string> release_module_from_hf(std::string_view hf_module) const;
  std::optional<NameAlias> vllm_module(std::string_view release_module) const;
  // Every release module a vLLM module holds (both shards of a fused one; all experts of
  // `...ffn.experts`), in table order then expert order; empty when unknown.
  std::vector<std::string> release_modules_from_vllm(std::string_view vllm_module) const;
  // The release module owning a release tensor (`layers.3.attn.wq_a.scale` ->
  // `layers.3.attn.wq_a`); nullopt for plain parameters such as `layers.3.hc_attn_fn`.
  std::optional<std::string> release_module_of(std::string_view release_tensor) const;

  // Tensor names. hf_tensor: the name transformers loads the tensor as (`.scale` as the FP8
  // quantizer's `weight_scale_inv`); nullopt for MTP tensors and unknown names.
  std::optional<NameAlias> hf_tensor(std::string_view release_tensor) const;
  // Inverse of hf_tensor for tensors transformers does not fuse (fused expert tensors: nullopt).
  std::optional<std::string> release_tensor_from_hf(std::string_view hf_tensor) const;
  std::optional<NameAlias> vllm_tensor(std::string_view release_tensor) const;

  struct Form;  // one compiled name pattern per rule, scope and leaf (names.cpp)

 private:
  ModelConfig config_;
  std::vector<Form> forms_;
};

}  // namespace dsv4::model
