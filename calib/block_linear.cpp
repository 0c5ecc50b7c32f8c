// block_linear.cpp: block linears by name and pass B's substitution (see block_linear.h).
#include "calib/block_linear.h"

#include <array>
#include <utility>

#include "common/check.h"
#include "common/parallel.h"

namespace dsv4::calib {

const model::DenseLinear* block_linear(const model::BlockWeights& w, const std::string& module) {
  DSV4_CHECK_IN("pipeline", module.starts_with(w.prefix), "%s is not in block %s", module.c_str(), w.prefix.c_str());
  const std::string leaf = module.substr(w.prefix.size());
  const model::AttentionWeights& a = w.attn;
  if (leaf == "attn.wq_a") return &a.wq_a;
  if (leaf == "attn.wq_b") return &a.wq_b;
  if (leaf == "attn.wkv") return &a.wkv;
  if (leaf == "attn.wo_a") return &a.wo_a;
  if (leaf == "attn.wo_b") return &a.wo_b;
  if (a.compressor && leaf == "attn.compressor.wkv") return &a.compressor->wkv;
  if (a.compressor && leaf == "attn.compressor.wgate") return &a.compressor->wgate;
  if (a.indexer && leaf == "attn.indexer.wq_b") return &a.indexer->wq_b;
  if (a.indexer && leaf == "attn.indexer.weights_proj") return &a.indexer->weights_proj;
  if (a.indexer && leaf == "attn.indexer.compressor.wkv") return &a.indexer->compressor.wkv;
  if (a.indexer && leaf == "attn.indexer.compressor.wgate") return &a.indexer->compressor.wgate;
  if (w.ffn.shared && leaf == "ffn.shared_experts.w1") return &w.ffn.shared->w1;
  if (w.ffn.shared && leaf == "ffn.shared_experts.w2") return &w.ffn.shared->w2;
  if (w.ffn.shared && leaf == "ffn.shared_experts.w3") return &w.ffn.shared->w3;
  DSV4_FAIL("pipeline", "%s is not a linear the block forward uses", module.c_str());
}

model::DenseLinear* block_linear(model::BlockWeights& w, const std::string& module) {
  // The const lookup on a block the caller may modify.
  return const_cast<model::DenseLinear*>(block_linear(std::as_const(w), module));
}

std::vector<float> block_source_weight(const model::BlockWeights* block, const Checkpoint& source,
                                       const model::ModelConfig& config, const PlannedModule& m) {
  if (!block) return model::linear_load(source, config, m.names.release, m.rows, m.cols).w;
  if (m.expert < 0) return block_linear(*block, m.names.release)->w;
  auto e = block->ffn.experts.get(m.expert);
  return expert_linear(*e, m.names.release)->w;
}

void block_substitute(model::BlockWeights& w, const model::ModelConfig& c, const std::vector<const PlannedModule*>& mods,
                      std::vector<SolvedModule>& solved) {
  bool any_expert = false;
  for (size_t i = 0; i < mods.size(); ++i) {
    if (mods[i]->expert >= 0) {
      any_expert = true;
      continue;
    }
    block_linear(w, mods[i]->names.release)->w = solved[i].dequant;
  }
  if (!any_expert) return;
  // Each expert's linears: the solved ones from their dequantized weights, any other decoded from
  // the source; an expert whose three linears were all solved is never decoded (at full width
  // that decode is 24 MB of MXFP4 per expert). Experts on all cores.
  std::vector<std::array<const SolvedModule*, 3>> by_expert(static_cast<size_t>(c.n_routed_experts), {nullptr, nullptr, nullptr});
  for (size_t i = 0; i < mods.size(); ++i) {
    if (mods[i]->expert < 0) continue;
    const std::string& name = mods[i]->names.release;
    const int slot = name.ends_with(".w1") ? 0 : name.ends_with(".w3") ? 1 : 2;
    by_expert[static_cast<size_t>(mods[i]->expert)][static_cast<size_t>(slot)] = &solved[i];
  }
  std::vector<model::ExpertWeights> experts(static_cast<size_t>(c.n_routed_experts));
  parallel_for(experts.size(), 0, [&](size_t e) {
    const auto& mine = by_expert[e];
    const int64_t D = c.hidden_size, I = c.moe_intermediate_size;
    const std::string stem = w.prefix + "ffn.experts." + std::to_string(e) + ".";
    model::ExpertWeights& x = experts[e];
    if (mine[0] && mine[1] && mine[2]) {
      x = {{stem + "w1", I, D, {}}, {stem + "w3", I, D, {}}, {stem + "w2", D, I, {}}};
    } else {
      x = *w.ffn.experts.get(static_cast<int>(e));
    }
    model::DenseLinear* linears[3] = {&x.w1, &x.w3, &x.w2};
    for (int k = 0; k < 3; ++k) {
      if (mine[static_cast<size_t>(k)]) linears[k]->w = mine[static_cast<size_t>(k)]->dequant;
    }
  });
  w.ffn.experts = model::ExpertSource::from_memory(std::move(experts));
}

}  // namespace dsv4::calib
