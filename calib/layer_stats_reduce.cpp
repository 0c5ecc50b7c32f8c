// layer_stats_reduce.cpp: LayerStats::reduce_to_owners, the reduce step of DESIGN §2 (see
// layer_stats.h). Collective order: one all-gather of key maps; per Hessian key in sorted order
// one reduce (or all-reduce) of its [dim, dim] sum; one all-reduce of the token counts; one
// all-reduce (max) of the wanted absmax values; one all-reduce (sum) of expert token counts.
#include <algorithm>
#include <set>
#include <sstream>
#include <vector>

#include "calib/layer_stats.h"
#include "common/check.h"
#include "common/device.h"

namespace dsv4::calib {
namespace {

std::string module_of(const std::string& module_group) { return module_group.substr(0, module_group.find('#')); }

}  // namespace

void LayerStats::reduce_to_owners(dist::Communicator& comm, const std::function<int(const std::string&)>& owner,
                                  int num_experts) {
  // 1. Agree on the keys: module#group -> key (and the key's dim), the union over ranks.
  std::string mine;
  for (const auto& [mg, key] : key_) mine += mg + "\t" + key + "\t" + std::to_string(acc_.at(key).dim()) + "\n";
  std::map<std::string, int64_t> dims;
  for (const std::string& text : comm.all_gather_strings(mine)) {
    std::istringstream in(text);
    std::string mg, key, dim;
    while (std::getline(in, mg, '\t') && std::getline(in, key, '\t') && std::getline(in, dim)) {
      const int64_t d = std::stoll(dim);
      const auto [it, fresh] = dims.emplace(key, d);
      DSV4_CHECK_IN("calib", it->second == d, "ranks disagree on the width of Hessian %s (%lld vs %lld)", key.c_str(),
                    static_cast<long long>(it->second), static_cast<long long>(d));
      const auto [kt, kfresh] = key_.emplace(mg, key);
      DSV4_CHECK_IN("calib", kt->second == key, "ranks map %s to different Hessians (%s vs %s)", mg.c_str(),
                    kt->second.c_str(), key.c_str());
    }
  }
  // Keys only other ranks saw take part with a zero sum, where this rank's sums live.
  for (const auto& [key, d] : dims) {
    Slot& slot = acc_[key];
    if (slot.held()) continue;
    if (!sums_on_device_) {
      slot.acc = std::make_unique<quant::HessianAccumulator>(d);
      continue;
    }
    const size_t bytes = static_cast<size_t>(d * d) * sizeof(float);
    std::shared_ptr<void> zeros(device_alloc(bytes), [](void* p) { device_free(p); });
    device_upload(zeros.get(), std::vector<float>(static_cast<size_t>(d * d), 0.0f).data(), bytes);
    device_zeros_.push_back(zeros);
    slot.device_sum = static_cast<float*>(zeros.get());
    slot.device_dim = d;
  }

  // 2. Who consumes each key.
  std::map<std::string, std::set<int>> consumers;
  for (const auto& [mg, key] : key_) consumers[key].insert(owner(module_of(mg)));

  // 3. The sums, key by key, to their owners; then the token counts.
  std::vector<int64_t> tokens;
  for (const auto& [key, d] : dims) {
    Slot& slot = acc_.at(key);
    const std::set<int>& who = consumers.at(key);
    float* sum = slot.acc ? slot.acc->sum().data() : slot.device_sum;
    const size_t count = static_cast<size_t>(d * d);
    if (who.size() == 1) {
      comm.reduce(sum, count, dist::ElemType::kF32, dist::ReduceOp::kSum, *who.begin());
    } else {
      comm.all_reduce(sum, count, dist::ElemType::kF32, dist::ReduceOp::kSum);
    }
    tokens.push_back(slot.tokens());
  }
  if (!tokens.empty()) comm.all_reduce(tokens.data(), tokens.size(), dist::ElemType::kI64, dist::ReduceOp::kSum);
  size_t i = 0;
  for (const auto& [key, d] : dims) {
    Slot& slot = acc_.at(key);
    if (slot.acc) {
      slot.acc->set_num_tokens(tokens[i++]);
    } else {
      slot.device_tokens = tokens[i++];
    }
    if (!consumers.at(key).count(comm.rank())) {
      slot.acc.reset();
      slot.device_sum = nullptr;  // the collector frees it with the rest
      dropped_.insert(key);
    }
  }

  // 4. Static activation absmax (every wanted module, so the list is the same on every rank).
  std::vector<float> amax;
  for (const std::string& m : want_amax_) amax.push_back(this->amax(m));
  if (!amax.empty()) comm.all_reduce(amax.data(), amax.size(), dist::ElemType::kF32, dist::ReduceOp::kMax);
  i = 0;
  for (const std::string& m : want_amax_) amax_[m] = amax[i++];

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
}

}  // namespace dsv4::calib
