// layer_stats_cuda.cu: DeviceLayerStats, pass A's collector on the GPU (see layer_stats_cuda.h).
#include "calib/layer_stats_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>

#include "common/check.h"
#include "common/codec_inline.h"
#include "common/cuda_grid.h"
#include "common/parallel.h"
#include "common/pinned_host.h"
#include "quant/hessian_cuda.h"

namespace dsv4::calib {
namespace {

// max |x| over [rows, cols] (row stride ld) into *out: non-negative floats order as their bits.
__global__ void amax_kernel(const uint16_t* x, int64_t rows, int64_t cols, int64_t ld, float* out) {
  float m = 0.0f;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < rows * cols;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    m = fmaxf(m, fabsf(codec::bf16_decode(x[(i / cols) * ld + i % cols])));
  }
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  if (threadIdx.x % 32 == 0) atomicMax(reinterpret_cast<unsigned int*>(out), __float_as_uint(m));
}

// y[r, c] = x[r, c] · w[r] in fp32 (the CPU's product), and the rows with w != 0 counted.
__global__ void weight_rows_kernel(const uint16_t* x, int64_t rows, int64_t cols, int64_t ld, const float* w,
                                   float* y, unsigned long long* counted) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < rows * cols;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i % cols;
    y[i] = __fmul_rn(codec::bf16_decode(x[r * ld + c]), w[r]);
    if (c == 0 && w[r] != 0.0f) atomicAdd(counted, 1ull);
  }
}

template <typename T>
T* device_alloc(size_t count, std::vector<std::shared_ptr<void>>& memory) {
  void* p = nullptr;
  DSV4_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)));
  memory.emplace_back(p, [](void* q) { cudaFree(q); });
  return static_cast<T*>(p);
}

}  // namespace

DeviceLayerStats::DeviceLayerStats(StatsWants wants, W2Input w2_input, model::BlasHandle blas,
                                   model::DeviceStream stream)
    : w2_input_(w2_input), blas_(blas), stream_(stream), taps_(std::move(wants)) {}

DeviceLayerStats::~DeviceLayerStats() { cudaStreamSynchronize(stream_); }

DeviceLayerStats::Slot& DeviceLayerStats::slot_for(const HessianId& id, int64_t dim) {
  Slot& slot = slots_[id];
  if (!slot.s) {
    const size_t bytes = static_cast<size_t>(dim * dim) * sizeof(float);
    slot.dim = dim;
    slot.memory = device_memory(bytes);
    slot.s = static_cast<float*>(slot.memory.get());
    DSV4_CUDA_CHECK(cudaMemsetAsync(slot.s, 0, bytes, stream_));
  }
  DSV4_CHECK_IN("calib", slot.dim == dim, "tap for %s has %lld columns, its Hessian %lld",
                hessian_id_describe(id).c_str(), static_cast<long long>(dim), static_cast<long long>(slot.dim));
  return slot;
}

float* DeviceLayerStats::amax_slot(const std::string& module) {
  float*& p = amax_[module];
  if (!p) {
    p = device_alloc<float>(1, memory_);
    DSV4_CUDA_CHECK(cudaMemsetAsync(p, 0, sizeof(float), stream_));
  }
  return p;
}

void DeviceLayerStats::add_rows(Slot& slot, const uint16_t* x, int64_t rows, int64_t cols, int64_t ld,
                                const float* weights) {
  if (!weights) {
    quant::hessian_sum_cuda(blas_, x, rows, cols, slot.s, stream_, ld);
    slot.tokens += rows;
    return;
  }
  // Weighted w2: rows scaled by their routing weight in fp32; unrouted rows (weight 0) add
  // nothing and are not counted as tokens (LayerStats skips them).
  const size_t need = static_cast<size_t>(rows * cols);
  if (need > scratch_elems_) {
    scratch_ = device_alloc<float>(need, memory_);
    scratch_elems_ = need;
  }
  if (!slot.counted) {
    slot.counted = device_alloc<int64_t>(1, memory_);
    DSV4_CUDA_CHECK(cudaMemsetAsync(slot.counted, 0, sizeof(int64_t), stream_));
  }
  weight_rows_kernel<<<grid_blocks(rows * cols, 256, 1 << 16), 256, 0, stream_>>>(
      x, rows, cols, ld, weights, scratch_, reinterpret_cast<unsigned long long*>(slot.counted));
  DSV4_CUDA_CHECK_LAUNCH();
  quant::hessian_sum_f32_cuda(blas_, scratch_, rows, cols, slot.s, stream_);
}

void DeviceLayerStats::on_tap(const model::DeviceTapEvent& e) {
  if (e.rows == 0 || e.modules.empty()) return;
  DSV4_CHECK_IN("calib", e.batch == 1 || static_cast<int>(e.modules.size()) == e.batch,
                "tap batch of %d with %zu module names", e.batch, e.modules.size());
  const int64_t ld = e.ld ? e.ld : e.cols;
  for (int b = 0; b < e.batch; ++b) {
    const uint16_t* x = e.x + b * e.batch_stride;
    const std::vector<std::string> one = e.batch > 1 ? std::vector<std::string>{e.modules[b]} : std::vector<std::string>{};
    const std::vector<std::string>& mods = e.batch > 1 ? one : e.modules;
    for (const std::string& m : mods) {
      if (!taps_.wants_amax(m)) continue;
      amax_kernel<<<grid_blocks(e.rows * e.cols, 256, 1024), 256, 0, stream_>>>(x, e.rows, e.cols, ld, amax_slot(m));
      DSV4_CUDA_CHECK_LAUNCH();
    }
    const std::optional<HessianId> id = taps_.route(mods, e.group);
    if (!id) continue;
    Slot& slot = slot_for(*id, e.cols);
    if (id->key.all_experts() && slot.last_pass == pass_) continue;  // every expert repeats the same rows
    slot.last_pass = pass_;
    const bool weighted = e.row_weights != nullptr && w2_input_ == W2Input::kWeighted;
    add_rows(slot, x, e.rows, e.cols, ld, weighted ? e.row_weights + b * e.rows : nullptr);
  }
}

void DeviceLayerStats::on_expert_tokens(const std::string&, int expert, int64_t count) {
  expert_tokens_[expert] += count;
}

void DeviceLayerStats::download_into(LayerStats& host, PinnedHostBuffer* staging, bool sums_stay) {
  std::vector<std::pair<const HessianId*, Slot*>> slots;
  for (auto& [id, slot] : slots_) slots.push_back({&id, &slot});
  std::vector<int64_t> counted(slots.size(), 0);
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i].second->counted) {
      DSV4_CUDA_CHECK(cudaMemcpyAsync(&counted[i], slots[i].second->counted, sizeof(int64_t), cudaMemcpyDeviceToHost,
                                      stream_));
    }
  }
  auto small_stats = [&] {
    for (const auto& [module, p] : amax_) {
      float a = 0.0f;
      DSV4_CUDA_CHECK(cudaMemcpy(&a, p, sizeof(float), cudaMemcpyDeviceToHost));
      host.import_amax(module, a);
    }
    for (const auto& [e, n] : expert_tokens_) host.on_expert_tokens("", e, n);
  };
  if (sums_stay) {  // the sums are complete once the stream is (the token counts come with it)
    DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));
    for (size_t i = 0; i < slots.size(); ++i) {
      Slot& slot = *slots[i].second;
      host.import_device_hessian(*slots[i].first, {std::move(slot.memory), slot.dim, slot.tokens + counted[i]});
    }
    slots_.clear();
    small_stats();
    return;
  }
  // Batches of slots that fit the pinned staging buffer come down in one go and are unpacked on
  // all cores; without one (or for a slot larger than it) each slot is copied on its own.
  std::vector<std::optional<quant::HessianAccumulator>> acc(slots.size());
  const size_t cap = staging ? staging->size() : 0;
  for (size_t first = 0; first < slots.size();) {
    size_t end = first, bytes = 0;
    while (end < slots.size()) {
      const size_t b = static_cast<size_t>(slots[end].second->dim * slots[end].second->dim) * sizeof(float);
      if (bytes + b > cap) break;
      bytes += b;
      ++end;
    }
    if (end == first) {  // direct
      const Slot& slot = *slots[first].second;
      acc[first].emplace(slot.dim);
      DSV4_CUDA_CHECK(cudaMemcpyAsync(acc[first]->sum().data(), slot.s,
                                      static_cast<size_t>(slot.dim * slot.dim) * sizeof(float), cudaMemcpyDeviceToHost,
                                      stream_));
      DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));
      first = end + 1;
      continue;
    }
    std::vector<size_t> offset;
    size_t at = 0;
    for (size_t i = first; i < end; ++i) {
      const size_t b = static_cast<size_t>(slots[i].second->dim * slots[i].second->dim) * sizeof(float);
      DSV4_CUDA_CHECK(cudaMemcpyAsync(staging->data() + at, slots[i].second->s, b, cudaMemcpyDeviceToHost, stream_));
      offset.push_back(at);
      at += b;
    }
    DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));
    parallel_for(end - first, 0, [&](size_t k) {
      const size_t i = first + k;
      acc[i].emplace(slots[i].second->dim);
      std::memcpy(acc[i]->sum().data(), staging->data() + offset[k], acc[i]->sum().size() * sizeof(float));
    });
    first = end;
  }
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the token counts
  for (size_t i = 0; i < slots.size(); ++i) {
    acc[i]->set_num_tokens(slots[i].second->tokens + counted[i]);
    host.import_hessian(*slots[i].first, std::move(*acc[i]));
  }
  small_stats();
}

uint64_t DeviceLayerStats::hessian_bytes() const {
  uint64_t b = 0;
  for (const auto& [key, slot] : slots_) b += static_cast<uint64_t>(slot.dim * slot.dim) * sizeof(float);
  return b;
}

}  // namespace dsv4::calib
