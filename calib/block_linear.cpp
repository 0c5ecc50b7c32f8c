// block_linear.cpp: block linears by name and pass B's substitution (see block_linear.h).
#include "calib/block_linear.h"

#include <vector>
#include <utility>

#include "common/check.h"
#include "common/parallel.h"

namespace dsv4::calib {

const model::DenseLinear* block_linear(const model::BlockWeights& w, const PlannedModule& m) {
  using model::LinearRole;
  DSV4_CHECK_IN("pipeline", m.names.release.starts_with(w.prefix), "%s is not in block %s", m.names.release.c_str(),
                w.prefix.c_str());
  const model::AttentionWeights& a = w.attn;
  const model::DenseLinear* l = nullptr;
  switch (m.role) {
    case LinearRole::kAttnWqA: l = &a.wq_a; break;
    case LinearRole::kAttnWqB: l = &a.wq_b; break;
    case LinearRole::kAttnWkv: l = &a.wkv; break;
    case LinearRole::kAttnWoA: l = &a.wo_a; break;
    case LinearRole::kAttnWoB: l = &a.wo_b; break;
    case LinearRole::kCompressorWkv: l = a.compressor ? &a.compressor->wkv : nullptr; break;
    case LinearRole::kCompressorWgate: l = a.compressor ? &a.compressor->wgate : nullptr; break;
    case LinearRole::kIndexerWqB: l = a.indexer ? &a.indexer->wq_b : nullptr; break;
    case LinearRole::kIndexerWeightsProj: l = a.indexer ? &a.indexer->weights_proj : nullptr; break;
    case LinearRole::kIndexerCompressorWkv: l = a.indexer ? &a.indexer->compressor.wkv : nullptr; break;
    case LinearRole::kIndexerCompressorWgate: l = a.indexer ? &a.indexer->compressor.wgate : nullptr; break;
    case LinearRole::kSharedW1: l = w.ffn.shared ? &w.ffn.shared->w1 : nullptr; break;
    case LinearRole::kSharedW2: l = w.ffn.shared ? &w.ffn.shared->w2 : nullptr; break;
    case LinearRole::kSharedW3: l = w.ffn.shared ? &w.ffn.shared->w3 : nullptr; break;
    default: break;  // routed experts (expert_linear), head and MTP projections: not in a block
  }
  DSV4_CHECK_IN("pipeline", l != nullptr, "%s is not a linear the block forward uses", m.names.release.c_str());
  return l;
}

model::DenseLinear* block_linear(model::BlockWeights& w, const PlannedModule& m) {
  // The const lookup on a block the caller may modify.
  return const_cast<model::DenseLinear*>(block_linear(std::as_const(w), m));
}

std::vector<float> block_source_weight(const model::BlockWeights* block, const Checkpoint& source,
                                       const model::ModelConfig& config, const PlannedModule& m) {
  if (!block) return model::linear_load(source, config, m.names.release, m.rows, m.cols).w;
  if (m.expert < 0) return block_linear(*block, m)->w;
  auto e = block->ffn.experts.get(m.expert);
  return expert_linear(*e, m.role)->w;
}

void block_substitute(model::BlockWeights& w, const model::ModelConfig& c, const std::vector<const PlannedModule*>& mods,
                      std::vector<SolvedModule>& solved) {
  bool any_expert = false;
  for (size_t i = 0; i < mods.size(); ++i) {
    if (mods[i]->expert >= 0) {
      any_expert = true;
      continue;
    }
    block_linear(w, *mods[i])->w = solved[i].dequant;
  }
  if (!any_expert) return;
  // Each expert's linears: the solved ones from their dequantized weights, any other decoded from
  // the source; an expert whose three linears were all solved is never decoded (at full width
  // that decode is 24 MB of MXFP4 per expert). Experts on all cores.
  using Solved = std::pair<model::LinearRole, const SolvedModule*>;
  std::vector<std::vector<Solved>> by_expert(static_cast<size_t>(c.n_routed_experts));
  for (size_t i = 0; i < mods.size(); ++i) {
    if (mods[i]->expert >= 0) by_expert[static_cast<size_t>(mods[i]->expert)].push_back({mods[i]->role, &solved[i]});
  }
  std::vector<model::ExpertWeights> experts(static_cast<size_t>(c.n_routed_experts));
  parallel_for(experts.size(), 0, [&](size_t e) {
    const std::vector<Solved>& mine = by_expert[e];
    const int64_t D = c.hidden_size, I = c.moe_intermediate_size;
    const std::string stem = w.prefix + "ffn.experts." + std::to_string(e) + ".";
    model::ExpertWeights& x = experts[e];
    if (mine.size() == 3) {  // w1, w2 and w3 all solved
      x = {{stem + "w1", I, D, {}}, {stem + "w3", I, D, {}}, {stem + "w2", D, I, {}}};
    } else {
      x = *w.ffn.experts.get(static_cast<int>(e));
    }
    for (const auto& [role, s] : mine) expert_linear(x, role)->w = s->dequant;
  });
  w.ffn.experts = model::ExpertSource::from_memory(std::move(experts));
}

}  // namespace dsv4::calib
