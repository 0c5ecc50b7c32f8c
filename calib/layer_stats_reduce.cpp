// layer_stats_reduce.cpp: LayerStats::reduce_to_owners, the reduce step of DESIGN §2 (see
// layer_stats.h). Collective order: one all-gather of Hessian ids; per Hessian in id order
// one reduce (or all-reduce) of its [dim, dim] sum; one all-reduce of the token counts; one
// all-reduce (max) of the wanted absmax values; one all-reduce (sum) of expert token counts.
// Exact sums go as their normalized limbs (int64, an associative sum), and those left on the
// GPU are rounded to fp32 there once reduced.
#include <algorithm>
#include <set>
#include <sstream>
#include <vector>

#include "calib/layer_stats.h"
#include "common/check.h"

namespace dsv4::calib {
namespace {

// One Hessian id and width as a line of integers, for the all-gather.
std::string id_line(const HessianId& id, int64_t dim) {
  const HessianKey& k = id.key;
  return std::to_string(k.layer) + " " + std::to_string(static_cast<int>(k.input)) + " " +
         std::to_string(static_cast<int>(k.role)) + " " + std::to_string(k.expert) + " " + std::to_string(id.group) +
         " " + std::to_string(dim) + "\n";
}

std::map<HessianId, int64_t> parse_id_lines(const std::string& text) {
  std::map<HessianId, int64_t> out;
  std::istringstream in(text);
  int layer, input, role, expert, group;
  long long dim;
  while (in >> layer >> input >> role >> expert >> group >> dim) {
    HessianId id{{layer, static_cast<HessianInput>(input), static_cast<model::LinearRole>(role), expert}, group};
    out[id] = dim;
  }
  return out;
}

}  // namespace

void LayerStats::reduce_to_owners(dist::Communicator& comm, const std::map<HessianKey, std::set<int>>& owners,
                                  int num_experts) {
  // 1. Agree on the Hessians and their widths: the union over ranks.
  std::string mine;
  for (const auto& [id, slot] : slots_) mine += id_line(id, slot.dim());
  std::map<HessianId, int64_t> dims;
  for (const std::string& text : comm.all_gather_strings(mine)) {
    for (const auto& [id, d] : parse_id_lines(text)) {
      const auto [it, fresh] = dims.emplace(id, d);
      DSV4_CHECK_IN("calib", it->second == d, "ranks disagree on the width of Hessian %s (%lld vs %lld)",
                    hessian_id_describe(id).c_str(), static_cast<long long>(it->second), static_cast<long long>(d));
    }
  }
  // Hessians only other ranks saw take part with a zero sum of this rank's kind.
  for (const auto& [id, d] : dims) {
    if (!slots_.count(id)) slots_.emplace(id, fresh_slot(d));
  }

  // 2. The sums, one by one, to the ranks solving with them; then the token counts.
  std::vector<int64_t> tokens;
  for (const auto& [id, d] : dims) {
    const auto who = owners.find(id.key);
    DSV4_CHECK_IN("calib", who != owners.end() && !who->second.empty(), "no rank solves with Hessian %s",
                  hessian_id_describe(id).c_str());
    Slot& slot = slots_.at(id);
    const Slot::Buffer b = slot.reduce_buffer();
    if (who->second.size() == 1) {
      comm.reduce(b.data, b.count, b.type, dist::ReduceOp::kSum, *who->second.begin());
    } else {
      comm.all_reduce(b.data, b.count, b.type, dist::ReduceOp::kSum);
    }
    tokens.push_back(slot.tokens());
  }
  if (!tokens.empty()) comm.all_reduce(tokens.data(), tokens.size(), dist::ElemType::kI64, dist::ReduceOp::kSum);
  size_t i = 0;
  for (const auto& [id, d] : dims) {
    Slot& slot = slots_.at(id);
    slot.set_tokens(tokens[i++]);
    if (!owners.at(id.key).count(comm.rank())) {
      slots_.erase(id);  // frees the sum, on the host or the GPU
      dropped_.insert(id);
    } else if (auto* d = std::get_if<DeviceHessianSum>(&slot.sum)) {
      d->round_exact();  // the GPU solves read fp32 sums (no-op for one)
    }
  }

  // 4. Static activation absmax (every wanted module, so the list is the same on every rank).
  std::vector<float> amax;
  for (const std::string& m : wants().amax) amax.push_back(this->amax(m));
  if (!amax.empty()) comm.all_reduce(amax.data(), amax.size(), dist::ElemType::kF32, dist::ReduceOp::kMax);
  i = 0;
  for (const std::string& m : wants().amax) amax_[m] = amax[i++];

  // 5. Routed tokens per expert.
  if (num_experts > 0) {
    std::vector<int64_t> counts(static_cast<size_t>(num_experts), 0);
    for (const auto& [e, n] : expert_tokens_) {
      DSV4_CHECK_IN("calib", e >= 0 && e < num_experts, "expert %d of %d", e, num_experts);
      counts[static_cast<size_t>(e)] = n;
    }
    comm.all_reduce(counts.data(), counts.size(), dist::ElemType::kI64, dist::ReduceOp::kSum);
    expert_tokens_.clear();
    for (int e = 0; e < num_experts; ++e) {
      if (counts[static_cast<size_t>(e)]) expert_tokens_[e] = counts[static_cast<size_t>(e)];
    }
  }

  // 6. The held-out samples' Hessians to the same owners (their token counts are not reported).
  if (heldout_) heldout_->reduce_to_owners(comm, owners, 0);
  // 7. GPTAQ's ΔX·Xᵀ sums to the same owners, the same way (exact limbs at any world size).
  if (cross_) cross_->reduce_to_owners(comm, owners, 0);
}

}  // namespace dsv4::calib
