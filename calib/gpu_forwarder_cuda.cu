// gpu_forwarder_cuda.cu: GpuForwarder on CUDA (see gpu_forwarder.h).
#include <cublas_v2.h>
#include <cusolverDn.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>

#include "calib/gpu_forwarder.h"
#include "calib/layer_stats_cuda.h"
#include "calib/run_estimate.h"
#include "common/check.h"
#include "common/codec.h"
#include "common/device_arena.h"
#include "common/log.h"
#include "common/parallel.h"
#include "common/pinned_host.h"
#include "model/forward_cuda.h"
#include "model/rope.h"
#include "quant/gptq_batch_cuda.h"

namespace dsv4::calib {
namespace {


// Pinned staging for bulk device-to-host copies: a few batches per layer at full width.
constexpr size_t kStagingBytes = 512u << 20;

class CudaForwarder final : public GpuForwarder {
 public:
  CudaForwarder(const model::ModelConfig& c, uint64_t hessian_bytes, int device, bool hessians_on_device)
      : c_(c), hessians_on_device_(hessians_on_device) {
    int count = 0;
    DSV4_CHECK_IN("calibrate", cudaGetDeviceCount(&count) == cudaSuccess && device < count,
                  "--device cuda: no CUDA device %d (%d visible)", device, count);
    DSV4_CUDA_CHECK(cudaSetDevice(device));
    DSV4_CUDA_CHECK(cudaStreamCreate(&stream_));
    DSV4_CUBLAS_CHECK(cublasCreate(&blas_));
    DSV4_CUSOLVER_CHECK(cusolverDnCreate(&solver_));
    size_t free_bytes = 0, total = 0;
    DSV4_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
    const GpuMemoryPlan plan = gpu_memory_plan(c, hessian_bytes);  // what `dsv4-calib plan` prints
    DSV4_CHECK_IN("calibrate", free_bytes > plan.minimum(),
                  "GPU %d has %.2f GB free; one block's weights need %.2f GB and its Hessians %.2f GB, plus %.2f GB "
                  "of workspace and at least %.2f GB for activations (dsv4-calib plan prints this)",
                  device, free_bytes / 1e9, plan.weights / 1e9, hessian_bytes / 1e9, plan.workspace / 1e9,
                  plan.min_arena / 1e9);
    arena_ = std::make_unique<DeviceArena>(free_bytes - plan.kept());
    log_info("GPU %d: %.1f GB arena for activations and solves; kept %.1f GB for one block's weights, %.1f GB for its Hessians",
             device, arena_->capacity() / 1e9, plan.weights / 1e9, hessian_bytes / 1e9);
  }
  ~CudaForwarder() override {
    stats_.reset();
    cusolverDnDestroy(solver_);
    cublasDestroy(blas_);
    cudaStreamDestroy(stream_);
  }

  void decode_block(const Checkpoint& checkpoint, const std::string& prefix, int layer) override {
    const auto t = std::chrono::steady_clock::now();
    block_.reset();  // its memory is the next block's
    block_.emplace(model::block_weights_decode_cuda(checkpoint, c_, prefix, layer));
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

  void run(const std::vector<std::vector<int64_t>>& samples, std::vector<std::vector<float>>& states,
           LayerStats* stats, bool write_back) override {
    using Clock = std::chrono::steady_clock;
    auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
    DSV4_CHECK_IN("calibrate", block_.has_value(), "GPU forward without a block on the device");
    const model::DeviceBlockWeights& dw = *block_;
    double forward = 0, stats_down = 0;
    auto t = Clock::now();
    // Pass A's collector; it lives until the next pass A when its sums stay here for the solves.
    std::optional<DeviceLayerStats>& dev = stats_;
    if (stats) {
      dev.reset();  // the previous layer's sums (its LayerStats is gone)
      dev.emplace(stats->all_experts(), stats->w2_input(), blas_, stream_);
      for (const std::string& m : stats->wanted_hessians()) dev->want_hessian(m);
      for (const std::string& m : stats->wanted_amax()) dev->want_amax(m);
    }
    const bool collecting = stats != nullptr;
    std::map<int64_t, std::vector<size_t>> by_length;
    for (size_t s = 0; s < samples.size(); ++s) by_length[static_cast<int64_t>(samples[s].size())].push_back(s);
    const int64_t flat = c_.hc_dim();
    for (const auto& [tokens, group] : by_length) {
      if (tokens == 0) continue;
      const int64_t rows = static_cast<int64_t>(group.size()) * tokens;
      ArenaScope scope(*arena_);
      uint16_t* x = arena_->take<uint16_t>(static_cast<size_t>(rows * flat), "HC states (block input)");
      uint16_t* y = arena_->take<uint16_t>(static_cast<size_t>(rows * flat), "HC states (block output)");
      int64_t* ids = arena_->take<int64_t>(static_cast<size_t>(rows), "token ids");
      // States go up and come down through the pinned staging buffer, a chunk of samples at a
      // time, converted on all cores (96 samples of 512 tokens are 3.2 GB of fp32 states).
      const size_t per_sample = static_cast<size_t>(tokens * flat);
      std::vector<uint16_t> fallback;  // a sample larger than the staging buffer
      uint16_t* buf = reinterpret_cast<uint16_t*>(staging_.data());
      size_t per_chunk = staging_.size() / (per_sample * 2);
      if (per_chunk == 0) {
        fallback.resize(per_sample);
        buf = fallback.data();
        per_chunk = 1;
      }
      for (size_t k : group) {
        DSV4_CHECK_IN("calibrate", states[k].size() == per_sample, "state of sample %zu has %zu values", k,
                      states[k].size());
      }
      for (size_t k0 = 0; k0 < group.size(); k0 += per_chunk) {
        const size_t n = std::min(per_chunk, group.size() - k0);
        parallel_for(n, 0, [&](size_t j) {
          const float* st = states[group[k0 + j]].data();
          for (size_t i = 0; i < per_sample; ++i) buf[j * per_sample + i] = bf16_encode(st[i]);
        });
        DSV4_CUDA_CHECK(cudaMemcpyAsync(x + k0 * per_sample, buf, n * per_sample * 2, cudaMemcpyHostToDevice, stream_));
        DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));  // before the buffer is refilled
      }
      std::vector<int64_t> host_ids(static_cast<size_t>(rows));
      for (size_t k = 0; k < group.size(); ++k) {
        std::copy(samples[group[k]].begin(), samples[group[k]].end(), host_ids.begin() + k * tokens);
      }
      DSV4_CUDA_CHECK(cudaMemcpyAsync(ids, host_ids.data(), host_ids.size() * 8, cudaMemcpyHostToDevice, stream_));
      const model::DeviceRopeTable rope(model::rope_table_build(c_, model::rope_is_compressed(dw.spec), tokens));
      if (collecting) dev->next_pass();
      const model::CudaForwardContext ctx{.stream = stream_, .blas = blas_, .arena = arena_.get(),
                                          .taps = collecting ? &*dev : nullptr, .prefix = dw.prefix,
                                          .all_experts = stats && stats->all_experts()};
      t = Clock::now();
      model::block_forward_cuda(dw, c_, rope.view(), x, ids, static_cast<int64_t>(group.size()), tokens, y, ctx);
      DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));
      forward += since(t);
      for (size_t k0 = 0; write_back && k0 < group.size(); k0 += per_chunk) {
        const size_t n = std::min(per_chunk, group.size() - k0);
        DSV4_CUDA_CHECK(cudaMemcpyAsync(buf, y + k0 * per_sample, n * per_sample * 2, cudaMemcpyDeviceToHost, stream_));
        DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));
        parallel_for(n, 0, [&](size_t j) {
          float* st = states[group[k0 + j]].data();
          for (size_t i = 0; i < per_sample; ++i) st[i] = bf16_decode(buf[j * per_sample + i]);
        });
      }
    }
    t = Clock::now();
    if (collecting) {
      dev->download_into(*stats, &staging_, hessians_on_device_);
      if (!hessians_on_device_) dev.reset();
    }
    stats_down = since(t);
    // Where a GPU pass spends its time (the next optimisation targets, docs/PERFORMANCE.md).
    log_info("%s GPU pass %s: forward %.2f s (%zu length groups), statistics to host %.2f s", dw.prefix.c_str(),
             stats ? "A" : "B", forward, by_length.size(), stats_down);
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
    ArenaScope scope(*arena_);
    out.results = quant::gptq_solve_batch_cuda(blas_, solver_, args, io, static_cast<int>(modules.size()), hessians,
                                               rows, cols, opts, stream_, *arena_, 32, &errors);
    out.rel_error = std::move(errors.rel_error);
    out.rtn_rel_error = std::move(errors.rtn_rel_error);
    return out;
  }

  uint64_t arena_bytes() const override { return arena_->capacity(); }
  uint64_t arena_high_water() const override { return arena_->high_water(); }

 private:
  const model::ModelConfig c_;
  const bool hessians_on_device_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  cusolverDnHandle_t solver_ = nullptr;
  std::unique_ptr<DeviceArena> arena_;
  PinnedHostBuffer staging_{kStagingBytes};  // bulk copies to the host (Hessians, encoded tensors)
  std::optional<model::DeviceBlockWeights> block_;
  std::optional<DeviceLayerStats> stats_;  // pass A's, while its sums stay here (hessians_on_device)

  model::DeviceMatrix device_block_matrix(const std::string& module) {
    DSV4_CHECK_IN("calibrate", block_.has_value(), "%s: no block on the GPU", module.c_str());
    return model::device_block_matrix(*block_, c_, module);
  }
};

}  // namespace

std::unique_ptr<GpuForwarder> gpu_forwarder_create(const model::ModelConfig& config, uint64_t hessian_bytes,
                                                   int device, bool hessians_on_device) {
  return std::make_unique<CudaForwarder>(config, hessian_bytes, device, hessians_on_device);
}

}  // namespace dsv4::calib
