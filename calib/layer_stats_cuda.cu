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
#include "quant/hessian_exact.h"
#include "quant/hessian_exact_cuda.h"

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

DeviceLayerStats::DeviceLayerStats(StatsWants wants, W2Input w2_input, HessianSums sums, model::BlasHandle blas,
                                   model::DeviceStream stream)
    : w2_input_(w2_input), exact_(sums == HessianSums::kExact), blas_(blas), stream_(stream), taps_(std::move(wants)) {
  if (exact_) {
    status_ = device_alloc<int>(1, memory_);
    DSV4_CUDA_CHECK(cudaMemsetAsync(status_, 0, sizeof(int), stream_));
  }
}

DeviceLayerStats::~DeviceLayerStats() { cudaStreamSynchronize(stream_); }

DeviceLayerStats::Slot& DeviceLayerStats::slot_for(const HessianId& id, int64_t dim) {
  Slot& slot = slots_[id];
  if (!slot.memory) {
    const size_t entries = static_cast<size_t>(dim * dim);
    const size_t bytes = entries * hessian_sum_entry_bytes(exact_);
    slot.dim = dim;
    slot.memory = device_memory(bytes);
    if (exact_) {
      slot.limbs = static_cast<int64_t*>(slot.memory.get());
    } else {
      slot.s = static_cast<float*>(slot.memory.get());
    }
    DSV4_CUDA_CHECK(cudaMemsetAsync(slot.memory.get(), 0, bytes, stream_));
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

float* DeviceLayerStats::gram_scratch(int64_t dim) {
  const size_t need = static_cast<size_t>(dim * dim);
  if (need > gram_elems_) {
    gram_ = device_alloc<float>(need, memory_);
    gram_elems_ = need;
  }
  DSV4_CUDA_CHECK(cudaMemsetAsync(gram_, 0, need * sizeof(float), stream_));
  return gram_;
}

void DeviceLayerStats::add_rows(Slot& slot, const uint16_t* x, int64_t rows, int64_t cols, int64_t ld,
                                const float* weights) {
  // An exact sum takes this call's rows as one fp32 Gram, added to its limbs exactly.
  float* s = exact_ ? gram_scratch(cols) : slot.s;
  if (!weights) {
    quant::hessian_sum_cuda(blas_, x, rows, cols, s, stream_, ld);
    slot.tokens += rows;
  } else {
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
    quant::hessian_sum_f32_cuda(blas_, scratch_, rows, cols, s, stream_);
  }
  if (!exact_) return;
  const int64_t entries = cols * cols;
  if (slot.adds == (int64_t{1} << 20)) {  // the limbs' carry-free budget (hessian_exact.h)
    quant::hessian_exact_normalize_cuda(slot.limbs, entries, stream_);
    slot.adds = 0;
  }
  quant::hessian_exact_add_cuda(s, entries, slot.limbs, status_, stream_);
  ++slot.adds;
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

void DeviceLayerStats::finish_exact_sums() {
  if (!exact_) return;
  for (auto& [id, slot] : slots_) {
    quant::hessian_exact_normalize_cuda(slot.limbs, slot.dim * slot.dim, stream_);
    slot.adds = 0;
  }
  int status = 0;
  DSV4_CUDA_CHECK(cudaMemcpyAsync(&status, status_, sizeof(int), cudaMemcpyDeviceToHost, stream_));
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));
  quant::hessian_exact_status_check(status);
}

void DeviceLayerStats::download_into(LayerStats& host, PinnedHostBuffer* staging, bool sums_stay) {
  DSV4_CHECK_IN("calib", exact_ == (host.sums() == HessianSums::kExact), "the GPU's %s Hessian sums into %s ones",
                exact_ ? "exact" : "fp32", exact_ ? "fp32" : "exact");
  std::vector<int64_t> counted;
  for (auto& [id, slot] : slots_) {
    counted.push_back(0);
    if (slot.counted) {
      DSV4_CUDA_CHECK(cudaMemcpyAsync(&counted.back(), slot.counted, sizeof(int64_t), cudaMemcpyDeviceToHost, stream_));
    }
  }
  finish_exact_sums();
  if (sums_stay) {  // the sums are complete once the stream is (the token counts come with it)
    DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));
    size_t i = 0;
    for (auto& [id, slot] : slots_) {
      const int64_t tokens = slot.tokens + counted[i++];
      host.import_device_hessian(id, DeviceHessianSum(std::move(slot.memory), slot.dim, tokens, exact_));
    }
    slots_.clear();
  } else {
    download_sums(host, staging, counted);
  }
  for (const auto& [module, p] : amax_) {
    float a = 0.0f;
    DSV4_CUDA_CHECK(cudaMemcpy(&a, p, sizeof(float), cudaMemcpyDeviceToHost));
    host.import_amax(module, a);
  }
  for (const auto& [e, n] : expert_tokens_) host.on_expert_tokens("", e, n);
}

// Batches of slots that fit the pinned staging buffer come down in one go and are unpacked on
// all cores; without one (or for a slot larger than it) each slot is copied on its own.
void DeviceLayerStats::download_sums(LayerStats& host, PinnedHostBuffer* staging, const std::vector<int64_t>& counted) {
  std::vector<Slot*> slots;
  for (auto& [id, slot] : slots_) slots.push_back(&slot);
  auto bytes_of = [&](const Slot* slot) {
    return static_cast<size_t>(slot->dim * slot->dim) * hessian_sum_entry_bytes(exact_);
  };
  std::vector<std::optional<quant::HessianAccumulator>> acc(slots.size());
  std::vector<std::vector<int64_t>> exact(slots.size());
  auto unpack = [&](size_t i, const void* bytes) {
    const Slot& slot = *slots[i];
    if (exact_) {
      exact[i].resize(bytes_of(&slot) / sizeof(int64_t));
      std::memcpy(exact[i].data(), bytes, bytes_of(&slot));
    } else {
      acc[i].emplace(slot.dim);
      std::memcpy(acc[i]->sum().data(), bytes, bytes_of(&slot));
    }
  };
  const size_t cap = staging ? staging->size() : 0;
  for (size_t first = 0; first < slots.size();) {
    size_t end = first, bytes = 0;
    while (end < slots.size() && bytes + bytes_of(slots[end]) <= cap) bytes += bytes_of(slots[end++]);
    if (end == first) {  // direct
      std::vector<unsigned char> one(bytes_of(slots[first]));
      DSV4_CUDA_CHECK(
          cudaMemcpyAsync(one.data(), slots[first]->memory.get(), one.size(), cudaMemcpyDeviceToHost, stream_));
      DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));
      unpack(first++, one.data());
      continue;
    }
    std::vector<size_t> offset;
    for (size_t i = first, at = 0; i < end; at += bytes_of(slots[i++])) {
      DSV4_CUDA_CHECK(cudaMemcpyAsync(staging->data() + at, slots[i]->memory.get(), bytes_of(slots[i]),
                                      cudaMemcpyDeviceToHost, stream_));
      offset.push_back(at);
    }
    DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));
    parallel_for(end - first, 0, [&](size_t k) { unpack(first + k, staging->data() + offset[k]); });
    first = end;
  }
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the token counts
  size_t i = 0;
  for (const auto& [id, slot] : slots_) {
    const int64_t tokens = slot.tokens + counted[i];
    if (exact_) {
      host.import_exact_hessian(id, quant::HessianExactSum::from_limbs(slot.dim, std::move(exact[i]), tokens));
    } else {
      acc[i]->set_num_tokens(tokens);
      host.import_hessian(id, std::move(*acc[i]));
    }
    ++i;
  }
}

uint64_t DeviceLayerStats::hessian_bytes() const {
  uint64_t b = 0;
  for (const auto& [key, slot] : slots_) {
    b += static_cast<uint64_t>(slot.dim * slot.dim) * hessian_sum_entry_bytes(exact_);
  }
  return b;
}

}  // namespace dsv4::calib
