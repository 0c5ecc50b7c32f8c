// gpu_forwarder_cuda.cu: GpuForwarder on CUDA (see gpu_forwarder.h).
#include <cublas_v2.h>
#include <cusolverDn.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>

#include "calib/gpu_forwarder.h"
#include "calib/layer_stats_cuda.h"
#include "calib/run_estimate.h"
#include "common/check.h"
#include "common/codec.h"
#include "common/device_arena.h"
#include "common/finite_scan_cuda.h"
#include "common/log.h"
#include "common/parallel.h"
#include "common/pinned_host.h"
#include "model/forward_cuda.h"
#include "model/rope.h"
#include "quant/compressed_module.h"
#include "quant/gptq_batch_cuda.h"
#include "quant/turboquant_cuda.h"
#include "quant/unpack_cuda.h"

namespace dsv4::calib {
namespace {


// Pinned staging for bulk device-to-host copies: a few batches per layer at full width.
constexpr size_t kStagingBytes = 512u << 20;

constexpr size_t align256(size_t n) { return (n + 255) / 256 * 256; }

class CudaForwarder final : public GpuForwarder {
 public:
  CudaForwarder(const model::ModelConfig& c, const GpuForwarderOptions& o)
      : c_(c), hessians_on_device_(o.hessians_on_device), sample_block_(o.sample_block), first_sample_(o.first_sample) {
    const int device = o.device;
    int count = 0;
    DSV4_CHECK_IN("calibrate", cudaGetDeviceCount(&count) == cudaSuccess && device < count,
                  "--device cuda: no CUDA device %d (%d visible)", device, count);
    DSV4_CUDA_CHECK(cudaSetDevice(device));
    DSV4_CUDA_CHECK(cudaStreamCreate(&stream_));
    DSV4_CUBLAS_CHECK(cublasCreate(&blas_));
    DSV4_CUSOLVER_CHECK(cusolverDnCreate(&solver_));
    size_t free_bytes = 0, total = 0;
    DSV4_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
    const GpuMemoryPlan plan = gpu_memory_plan(c, o.hessian_bytes, o.state_tokens);  // what `dsv4-calib plan` prints
    const bool capped = o.memory_limit > 0;
    DSV4_CHECK_IN("calibrate", !capped || o.memory_limit <= free_bytes,
                  "--gpu-memory %.2f GB: GPU %d has only %.2f GB free (of %.2f GB); ranks sharing it must ask for "
                  "less in all",
                  o.memory_limit / 1e9, device, free_bytes / 1e9, total / 1e9);
    const uint64_t budget = capped ? o.memory_limit : free_bytes;
    DSV4_CHECK_IN("calibrate", budget > plan.minimum(),
                  "GPU %d: %s %.2f GB; one block's weights need %.2f GB, its Hessians %.2f GB and the HC states "
                  "%.2f GB, plus %.2f GB of workspace and at least %.2f GB for activations (dsv4-calib plan prints "
                  "this; fewer samples per rank need less)",
                  device, capped ? "--gpu-memory gives this rank" : "has free", budget / 1e9, plan.weights / 1e9,
                  plan.hessians / 1e9, plan.states / 1e9, plan.workspace / 1e9, plan.min_arena / 1e9);
    if (plan.states > 0) {
      void* p = nullptr;
      DSV4_CUDA_CHECK(cudaMalloc(&p, plan.states));
      states_ = static_cast<uint16_t*>(p);
      state_capacity_ = plan.states / 2;
    }
    kept_ = plan.kept();
    arena_ = std::make_unique<DeviceArena>(budget - kept_);
    log_info("GPU %d: %.1f GB arena for activations and solves; kept %.1f GB for one block's weights, %.1f GB for its "
             "Hessians, %.1f GB for the HC states",
             device, arena_->capacity() / 1e9, plan.weights / 1e9, plan.hessians / 1e9, plan.states / 1e9);
  }
  ~CudaForwarder() override {
    cudaFree(states_);
    cusolverDnDestroy(solver_);
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
  }

  void decode_block(const Checkpoint& checkpoint, const std::string& prefix, int layer) override {
    const auto t = std::chrono::steady_clock::now();
    block_.reset();  // its memory is the next block's
    block_.emplace(model::block_weights_decode_cuda(checkpoint, c_, prefix, layer, &staging_));
    log_info("%s: decoded on the GPU in %.2f s (%.2f GB)", prefix.c_str(),
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count(), block_->bytes / 1e9);
  }

  void upload_block(const model::BlockWeights& w) override {
    block_.reset();
    block_.emplace(model::block_weights_upload(w, c_, /*round_to_bf16=*/true));
    if (block_->rounded > 0) {
      log_info("%s: %llu weight values rounded to bf16 for the GPU forward", w.prefix.c_str(),
               static_cast<unsigned long long>(block_->rounded));
    }
  }

  void put_weight(const std::string& module, const std::vector<float>& w) override {
    const model::DeviceMatrix m = device_block_matrix(module);
    DSV4_CHECK_IN("calibrate", static_cast<int64_t>(w.size()) == m.rows * m.cols,
                  "%s: %zu solved values for its [%lld, %lld] weights", module.c_str(), w.size(),
                  static_cast<long long>(m.rows), static_cast<long long>(m.cols));
    std::vector<uint16_t> bits(w.size());
    for (size_t i = 0; i < w.size(); ++i) bits[i] = bf16_encode(w[i]);
    DSV4_CUDA_CHECK(cudaMemcpyAsync(m.w, bits.data(), bits.size() * 2, cudaMemcpyHostToDevice, stream_));
    DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));  // `bits` is pageable and about to go
  }

  std::vector<char> put_encoded(const std::vector<EncodedWeight>& weights) override {
    std::vector<char> put(weights.size(), 0);
    struct Item {
      size_t index;
      model::DeviceMatrix m;
      std::vector<const quant::EncodedTensor*> tensors;
      std::vector<size_t> offsets;  // of each tensor in the item's bytes, 256-byte aligned
      size_t bytes = 0;
    };
    std::vector<Item> items;
    for (size_t i = 0; i < weights.size(); ++i) {
      const EncodedWeight& e = weights[i];
      Item it{i, device_block_matrix(e.module), {}};
      it.tensors = quant::compressed_module_in_layout(e.format, e.args, it.m.rows, it.m.cols, *e.tensors, nullptr);
      if (it.tensors.empty()) continue;  // the caller decodes it on the host
      for (const quant::EncodedTensor* t : it.tensors) {
        it.offsets.push_back(it.bytes);
        it.bytes += align256(t->bytes.size());
      }
      items.push_back(std::move(it));
    }
    if (items.empty()) return put;
    const auto t0 = std::chrono::steady_clock::now();
    // Two halves of the staging buffer and of a device buffer: chunk c fills half c % 2 while the
    // previous chunk's upload and decodes run from the other one. A half holds the largest module
    // and at most half of the staging buffer or of what the arena has left.
    size_t total = 0, largest = 0;
    for (const Item& it : items) total += it.bytes, largest = std::max(largest, it.bytes);
    const size_t staging_half = staging_.size() / 2 / 256 * 256;
    const size_t room = (arena_->capacity() - arena_->used()) / 2 / 256 * 256;
    const size_t half = std::min(staging_half, std::max(largest, std::min(room, align256((total + 1) / 2))));
    ArenaScope scope(*arena_);
    std::byte* dev = arena_->take<std::byte>(2 * half, "encoded tensors");
    cudaEvent_t done[2];
    for (cudaEvent_t& e : done) DSV4_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    bool pending[2] = {false, false};
    int h = 0;
    for (size_t first = 0; first < items.size(); h ^= 1) {
      size_t end = first, bytes = 0;
      while (end < items.size() && bytes + items[end].bytes <= half) bytes += items[end++].bytes;
      DSV4_CHECK_IN("calibrate", end > first, "%s: %zu encoded bytes exceed half the %zu-byte staging buffer",
                    weights[items[first].index].module.c_str(), items[first].bytes, staging_.size());
      if (pending[h]) DSV4_CUDA_CHECK(cudaEventSynchronize(done[h]));
      char* host = staging_.data() + h * half;
      std::vector<size_t> at(end - first, 0);
      for (size_t k = 1; k < at.size(); ++k) at[k] = at[k - 1] + items[first + k - 1].bytes;
      parallel_for(at.size(), 0, [&](size_t k) {
        const Item& it = items[first + k];
        for (size_t j = 0; j < it.tensors.size(); ++j) {
          std::memcpy(host + at[k] + it.offsets[j], it.tensors[j]->bytes.data(), it.tensors[j]->bytes.size());
        }
      });
      DSV4_CUDA_CHECK(cudaMemcpyAsync(dev + h * half, host, bytes, cudaMemcpyHostToDevice, stream_));
      for (size_t k = 0; k < at.size(); ++k) {
        const Item& it = items[first + k];
        const EncodedWeight& e = weights[it.index];
        std::vector<const void*> inputs;
        for (size_t off : it.offsets) inputs.push_back(dev + h * half + at[k] + off);
        quant::compressed_module_decode_cuda(e.format, e.args, inputs, it.m.rows, it.m.cols, it.m.w, stream_);
        put[it.index] = 1;
      }
      DSV4_CUDA_CHECK(cudaEventRecord(done[h], stream_));
      pending[h] = true;
      first = end;
    }
    DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the staging buffer is free again
    for (cudaEvent_t e : done) cudaEventDestroy(e);
    log_info("%zu solved modules decoded into the block from %.2f GB of encoded tensors in %.2f s", items.size(),
             total / 1e9, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return put;
  }

  void load_states(const std::vector<std::vector<int64_t>>& samples,
                   const std::vector<std::vector<float>>& states) override {
    DSV4_CHECK_IN("calibrate", states.size() == samples.size(), "%zu states for %zu samples", states.size(),
                  samples.size());
    const auto t = std::chrono::steady_clock::now();
    const int64_t flat = c_.hc_dim();
    // One forward call per (block, length): with sample blocks, what a call computes depends only
    // on its block (forward_sample_block), whichever rank runs it.
    std::map<std::pair<int64_t, int64_t>, std::vector<size_t>> by_call;  // (block, length) -> samples
    for (size_t s = 0; s < samples.size(); ++s) {
      const int64_t block = sample_block_ > 0 ? (first_sample_ + static_cast<int64_t>(s)) / sample_block_ : 0;
      by_call[{block, static_cast<int64_t>(samples[s].size())}].push_back(s);
    }
    groups_.clear();
    size_t at = 0;
    for (auto& [block_length, members] : by_call) {
      const int64_t tokens = block_length.second;
      for (size_t k : members) {
        DSV4_CHECK_IN("calibrate", states[k].size() == static_cast<size_t>(tokens * flat),
                      "state of sample %zu has %zu values, not %lld tokens x %lld", k, states[k].size(),
                      static_cast<long long>(tokens), static_cast<long long>(flat));
      }
      groups_.push_back({tokens, std::move(members), at});
      at += groups_.back().samples.size() * static_cast<size_t>(tokens * flat);
    }
    DSV4_CHECK_IN("calibrate", at <= state_capacity_,
                  "%zu HC state values for the GPU, which was planned for %zu (the samples changed)", at, state_capacity_);
    // Through the pinned staging buffer, a chunk of samples at a time, converted on all cores.
    copy_states([&](size_t k, uint16_t* dst, size_t n) {
      const float* src = states[k].data();
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_encode(src[i]);
    }, cudaMemcpyHostToDevice);
    log_info("HC states of %zu samples to the GPU in %.2f s (%.2f GB of bf16)", samples.size(),
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count(), at * 2 / 1e9);
  }

  void store_states(std::vector<std::vector<float>>& states) const override {
    size_t count = 0;
    for (const StateGroup& g : groups_) count += g.samples.size();
    states.resize(count);
    const int64_t flat = c_.hc_dim();
    for (const StateGroup& g : groups_) {
      for (size_t k : g.samples) states[k].resize(static_cast<size_t>(g.tokens * flat));
    }
    copy_states([&](size_t k, uint16_t* src, size_t n) {
      float* dst = states[k].data();
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_decode(src[i]);
    }, cudaMemcpyDeviceToHost);
  }

  int64_t run(const std::vector<std::vector<int64_t>>& samples, LayerStats* stats, bool write_back) override {
    using Clock = std::chrono::steady_clock;
    auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
    DSV4_CHECK_IN("calibrate", block_.has_value(), "GPU forward without a block on the device");
    const model::DeviceBlockWeights& dw = *block_;
    double forward = 0, stats_down = 0;
    // Pass A's collector; where the sums stay on the GPU, `stats` takes them over.
    std::optional<DeviceLayerStats> dev;
    if (stats) dev.emplace(stats->wants(), stats->w2_input(), stats->sums(), blas_, stream_);
    const bool collecting = stats != nullptr;
    const int64_t flat = c_.hc_dim();
    size_t held = 0;
    for (const StateGroup& g : groups_) held += g.samples.size();
    DSV4_CHECK_IN("calibrate", held == samples.size(), "GPU forward of %zu samples; %zu have states on the GPU",
                  samples.size(), held);
    int64_t non_finite = 0;  // among the block's outputs (calib/state_finite.h)
    for (const StateGroup& g : groups_) {
      if (g.tokens == 0) continue;
      const int64_t n = static_cast<int64_t>(g.samples.size()), rows = n * g.tokens;
      ArenaScope scope(*arena_);
      uint16_t* x = states_ + g.offset;
      uint16_t* y = arena_->take<uint16_t>(static_cast<size_t>(rows * flat), "HC states (block output)");
      int64_t* ids = arena_->take<int64_t>(static_cast<size_t>(rows), "token ids");
      std::vector<int64_t> host_ids(static_cast<size_t>(rows));
      for (size_t k = 0; k < g.samples.size(); ++k) {
        const std::vector<int64_t>& s = samples[g.samples[k]];
        DSV4_CHECK_IN("calibrate", static_cast<int64_t>(s.size()) == g.tokens,
                      "sample %zu has %zu tokens; its states on the GPU have %lld", g.samples[k], s.size(),
                      static_cast<long long>(g.tokens));
        std::copy(s.begin(), s.end(), host_ids.begin() + static_cast<int64_t>(k) * g.tokens);
      }
      DSV4_CUDA_CHECK(cudaMemcpyAsync(ids, host_ids.data(), host_ids.size() * 8, cudaMemcpyHostToDevice, stream_));
      const model::DeviceRopeTable rope(model::rope_table_build(c_, model::rope_is_compressed(dw.spec), g.tokens));
      if (collecting) dev->next_pass();
      const model::CudaForwardContext ctx{.stream = stream_, .blas = blas_, .arena = arena_.get(),
                                          .taps = collecting ? &*dev : nullptr, .prefix = dw.prefix,
                                          .all_experts = collecting && stats->all_experts()};
      const auto t = Clock::now();
      model::block_forward_cuda(dw, c_, rope.view(), x, ids, n, g.tokens, y, ctx);
      unsigned long long* count = arena_->take<unsigned long long>(1, "non-finite count");
      DSV4_CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(*count), stream_));
      non_finite_count_bf16_cuda(stream_, y, static_cast<size_t>(rows * flat), count);
      // The output becomes the next input in place (a device copy, ~1 ms per GB).
      if (write_back) {
        DSV4_CUDA_CHECK(cudaMemcpyAsync(x, y, static_cast<size_t>(rows * flat) * 2, cudaMemcpyDeviceToDevice, stream_));
      }
      DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));  // before `host_ids` and the arena go
      unsigned long long group_count = 0;
      DSV4_CUDA_CHECK(cudaMemcpy(&group_count, count, sizeof(group_count), cudaMemcpyDeviceToHost));
      non_finite += static_cast<int64_t>(group_count);
      forward += since(t);
    }
    // Statistics of outputs that hold NaN are not taken: the executor refuses the pass by its count
    // (calib/state_finite.h) before anything reads them, with a message naming the layer, where the
    // exact sums' own check would raise an internal error.
    if (non_finite > 0) return non_finite;
    const auto t = Clock::now();
    if (collecting) dev->download_into(*stats, &staging_, hessians_on_device_);
    stats_down = since(t);
    // Where a GPU pass spends its time (the next optimisation targets, docs/PERFORMANCE.md).
    log_info("%s GPU pass %s: forward %.2f s (%zu forward calls), statistics to host %.2f s", dw.prefix.c_str(),
             stats ? "A" : "B", forward, groups_.size(), stats_down);
    return non_finite;
  }

  GpuGptqBatchResult gptq_batch(const quant::QuantArgs& args, const quant::GptqOptions& opts,
                                const std::vector<std::string>& modules, const std::vector<const float*>& hessians,
                                int64_t rows, int64_t cols, const GpuGptqBatchOptions& batch) override {
    std::vector<model::DeviceMatrix> slots;
    for (const std::string& m : modules) {
      slots.push_back(device_block_matrix(m));
      DSV4_CHECK_IN("calibrate", slots.back().rows == rows && slots.back().cols == cols,
                    "%s is [%lld, %lld] on the GPU; its batch solves [%lld, %lld]", m.c_str(),
                    static_cast<long long>(slots.back().rows), static_cast<long long>(slots.back().cols),
                    static_cast<long long>(rows), static_cast<long long>(cols));
    }
    const int64_t n = rows * cols;
    quant::GptqBatchIo io;
    io.load = [&](int i, float* dst, quant::DeviceStream s) { model::f32_from_bf16_cuda(slots[i].w, n, dst, s); };
    if (batch.into_block) {
      io.store = [&](int i, const float* dequant, quant::DeviceStream s) {
        model::bf16_from_f32_cuda(dequant, n, slots[i].w, s);
      };
    }
    GpuGptqBatchResult out;
    io.host_dequant = batch.host_dequant;
    io.host_codes = !batch.encode;
    io.encode = batch.encode;
    io.encoded = &out.encoded;
    io.staging = &staging_;
    io.hessian_sum_tokens = batch.hessian_sum_tokens;
    quant::GptqBatchErrors errors;
    errors.trace_from_sweep = quant::kBatchTraceFromSweep;
    ArenaScope scope(*arena_);
    out.results = quant::gptq_solve_batch_cuda(blas_, solver_, args, io, static_cast<int>(modules.size()), hessians,
                                               rows, cols, opts, stream_, *arena_, 32, &errors);
    out.rel_error = std::move(errors.rel_error);
    out.rtn_rel_error = std::move(errors.rtn_rel_error);
    return out;
  }

  quant::TqResult turboquant_encode(const std::string& module, int bits, int group_size) override {
    const model::DeviceMatrix m = device_block_matrix(module);
    const quant::TqCodec codec(bits, group_size);
    const int64_t n = m.rows * m.cols, groups = m.rows * quant::tq_groups_per_row(m.cols, group_size);
    ArenaScope scope(*arena_);
    float* w = arena_->take<float>(static_cast<size_t>(n), "turboquant weight");
    float* dequant = arena_->take<float>(static_cast<size_t>(n), "turboquant dequant");
    float* norms = arena_->take<float>(static_cast<size_t>(groups), "turboquant norms");
    uint8_t* packed = arena_->take<uint8_t>(static_cast<size_t>(groups * codec.group_bytes()), "turboquant codes");
    model::f32_from_bf16_cuda(m.w, n, w, stream_);
    quant::tq_quantize_cuda(bits, group_size, w, m.rows, m.cols, packed, norms, dequant, stream_);
    quant::TqResult r;
    std::vector<uint8_t> host_packed(static_cast<size_t>(groups * codec.group_bytes()));
    r.norms.resize(static_cast<size_t>(groups));
    r.dequant.resize(static_cast<size_t>(n));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(host_packed.data(), packed, host_packed.size(), cudaMemcpyDeviceToHost, stream_));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(r.norms.data(), norms, r.norms.size() * 4, cudaMemcpyDeviceToHost, stream_));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(r.dequant.data(), dequant, r.dequant.size() * 4, cudaMemcpyDeviceToHost, stream_));
    DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));
    r.indices = quant::tq_unpack(codec, host_packed.data(), groups);
    return r;
  }

  uint64_t arena_bytes() const override { return arena_->capacity(); }
  uint64_t arena_high_water() const override { return arena_->high_water(); }
  uint64_t kept_bytes() const override { return kept_; }

 private:
  const model::ModelConfig c_;
  const bool hessians_on_device_;
  const int64_t sample_block_, first_sample_;  // GpuForwarderOptions
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  cusolverDnHandle_t solver_ = nullptr;
  std::unique_ptr<DeviceArena> arena_;
  mutable PinnedHostBuffer staging_{kStagingBytes};  // bulk copies (states, Hessians, encoded tensors)
  std::optional<model::DeviceBlockWeights> block_;
  // The HC states on the GPU: samples of one length back to back, group after group.
  struct StateGroup {
    int64_t tokens = 0;
    std::vector<size_t> samples;  // indices into the pipeline's samples
    size_t offset = 0;            // first value in states_
  };
  uint16_t* states_ = nullptr;  // bf16, planned (GpuMemoryPlan::states)
  size_t state_capacity_ = 0;   // values
  uint64_t kept_ = 0;           // GpuMemoryPlan::kept()
  std::vector<StateGroup> groups_;

  // Every sample's states between the GPU and the host through the pinned staging buffer, a
  // chunk of samples at a time; `convert(k, staging, n)` fills or drains sample k's n values on
  // all cores (before the upload, after the download). A sample larger than the buffer goes
  // through a pageable one of its own.
  template <typename Convert>
  void copy_states(const Convert& convert, cudaMemcpyKind kind) const {
    const int64_t flat = c_.hc_dim();
    for (const StateGroup& g : groups_) {
      const size_t per_sample = static_cast<size_t>(g.tokens * flat);
      if (per_sample == 0) continue;
      std::vector<uint16_t> fallback;
      uint16_t* buf = reinterpret_cast<uint16_t*>(staging_.data());
      size_t per_chunk = staging_.size() / (per_sample * 2);
      if (per_chunk == 0) {
        fallback.resize(per_sample);
        buf = fallback.data();
        per_chunk = 1;
      }
      for (size_t k0 = 0; k0 < g.samples.size(); k0 += per_chunk) {
        const size_t n = std::min(per_chunk, g.samples.size() - k0);
        uint16_t* dev = states_ + g.offset + k0 * per_sample;
        if (kind == cudaMemcpyHostToDevice) {
          parallel_for(n, 0, [&](size_t j) { convert(g.samples[k0 + j], buf + j * per_sample, per_sample); });
          DSV4_CUDA_CHECK(cudaMemcpyAsync(dev, buf, n * per_sample * 2, kind, stream_));
          DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));  // before the buffer is refilled
        } else {
          DSV4_CUDA_CHECK(cudaMemcpyAsync(buf, dev, n * per_sample * 2, kind, stream_));
          DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));
          parallel_for(n, 0, [&](size_t j) { convert(g.samples[k0 + j], buf + j * per_sample, per_sample); });
        }
      }
    }
  }

  model::DeviceMatrix device_block_matrix(const std::string& module) {
    DSV4_CHECK_IN("calibrate", block_.has_value(), "%s: no block on the GPU", module.c_str());
    return model::device_block_matrix(*block_, c_, module);
  }
};

}  // namespace

std::unique_ptr<GpuForwarder> gpu_forwarder_create(const model::ModelConfig& config, const GpuForwarderOptions& options) {
  return std::make_unique<CudaForwarder>(config, options);
}

}  // namespace dsv4::calib
