// rtn_layer.cu: data-free rounding of one MoE layer's 768 expert matrices on the GPU (issue 8):
// observer (min-max or MSE), fake quantization and the compressed-tensors encoding, per scheme.
// Timed on chunks of 64 matrices of each shape (3 warm-up calls, mean of 5) and scaled to the
// layer's 512 × [2048, 4096] + 256 × [4096, 2048]; the bandwidth line counts the fp32 weights read
// once by each stage and the int32 codes written and read, against a device-to-device copy.
//
//   bench_rtn_layer        # one line per scheme; docs/PERFORMANCE.md has the numbers
#include <cuda_runtime.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "bench/cuda_timing.h"
#include "common/check.h"
#include "common/device_arena.h"
#include "quant/compressed_module.h"
#include "quant/observer_cuda.h"
#include "quant/pack_cuda.h"
#include "quant/quantizer.h"
#include "quant/quantizer_cuda.h"

namespace {

using namespace dsv4::quant;

__global__ void fill_normalish(float* w, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9e3779b1u ^ seed;
    h ^= h >> 15; h *= 0x2c1b3c6du; h ^= h >> 12; h *= 0x297a2d39u; h ^= h >> 15;
    // Sum of four uniform bytes: a bell shape with tails, like trained weights.
    const float s = static_cast<float>((h & 255u) + ((h >> 8) & 255u) + ((h >> 16) & 255u) + (h >> 24)) - 510.0f;
    w[i] = s * 4e-5f;
  }
}

struct Times { double observe = 0, quantize = 0, encode = 0; };

Times time_chunk(const QuantArgs& args, PackFormat format, int count, int64_t rows, int64_t cols, float* w,
                 int32_t* codes, cudaStream_t s) {
  int64_t sr = 0, sc = 0;
  qparams_shape(args, rows, cols, &sr, &sc);
  const size_t cells = static_cast<size_t>(count * sr * sc);
  float *scale = nullptr, *zp = nullptr, *gs = nullptr;
  uint8_t* e8m0 = nullptr;
  DSV4_CUDA_CHECK(cudaMalloc(&scale, cells * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&zp, cells * 4));
  DSV4_CUDA_CHECK(cudaMalloc(&e8m0, cells));
  DSV4_CUDA_CHECK(cudaMalloc(&gs, static_cast<size_t>(count) * 4));
  const QParamsCuda qp{scale, zp, e8m0, gs};
  dsv4::DeviceArena arena(observer_cuda_scratch_bytes(args, count, rows, cols) + (1 << 20));
  std::vector<std::unique_ptr<char, decltype(&cudaFree)>> bufs;
  std::vector<void*> outs;
  for (const EncodedTensor& t : compressed_module_layout(format, args, rows, cols, false)) {
    size_t bytes = dsv4::dtype_size(t.dtype) * static_cast<size_t>(count);
    for (int64_t v : t.shape) bytes *= static_cast<size_t>(v);
    void* p = nullptr;
    DSV4_CUDA_CHECK(cudaMalloc(&p, bytes));
    bufs.emplace_back(static_cast<char*>(p), &cudaFree);
    outs.push_back(p);
  }
  Times t;
  t.observe = cuda_mean_ms([&] { observer_qparams_cuda(args, w, count, rows, cols, nullptr, qp, arena, s); }, s, 3, 5);
  t.quantize = cuda_mean_ms([&] { quantizer_quantize_cuda(args, w, count, rows, cols, qp, codes, nullptr, s); }, s, 3, 5);
  t.encode = cuda_mean_ms([&] { compressed_module_encode_cuda(format, args, qp, codes, count, rows, cols, outs, arena, s); },
                          s, 3, 5);
  cudaFree(scale);
  cudaFree(zp);
  cudaFree(e8m0);
  cudaFree(gs);
  return t;
}

}  // namespace

int main() {
  try {
    cudaStream_t s = bench_device_stream();
    const int chunk = 64;
    const size_t per = 2048ull * 4096ull;
    float *w = nullptr, *copy_dst = nullptr;
    int32_t* codes = nullptr;
    DSV4_CUDA_CHECK(cudaMalloc(&w, per * chunk * 4));
    DSV4_CUDA_CHECK(cudaMalloc(&copy_dst, per * chunk * 4));
    DSV4_CUDA_CHECK(cudaMalloc(&codes, per * chunk * 4));
    fill_normalish<<<4096, 256, 0, s>>>(w, per * chunk, 1234u);
    DSV4_CUDA_CHECK_LAUNCH();
    const double copy_ms =
        cuda_mean_ms([&] { cudaMemcpyAsync(copy_dst, w, per * chunk * 4, cudaMemcpyDeviceToDevice, s); }, s, 3, 10);
    const double copy_gbs = 2.0 * static_cast<double>(per * chunk * 4) / (copy_ms * 1e-3) / 1e9;
    std::printf("copy: %.1f GB/s (read + write)\n", copy_gbs);
    std::printf("%-22s %10s %10s %10s %9s %14s\n", "scheme (768 matrices)", "observe s", "quantize s", "encode s",
                "layer s", "quantize %copy");
    struct Scheme { const char* label; const char* preset; bool mse; PackFormat format; };
    const Scheme schemes[] = {
        {"W4A16 minmax", "W4A16", false, PackFormat::kPackQuantized},
        {"W4A16 mse", "W4A16", true, PackFormat::kPackQuantized},
        {"W4A16_ASYM minmax", "W4A16_ASYM", false, PackFormat::kPackQuantized},
        {"INT4_G32 mse", "INT4_G32", true, PackFormat::kPackQuantized},
        {"NVFP4 minmax", "NVFP4", false, PackFormat::kNvfp4PackQuantized},
        {"NVFP4 mse", "NVFP4", true, PackFormat::kNvfp4PackQuantized},
        {"MXFP4A16 minmax", "MXFP4A16", false, PackFormat::kMxfp4PackQuantized},
        {"FP8_BLOCK minmax", "FP8_BLOCK", false, PackFormat::kFloatQuantized},
        {"W8A16_CHANNEL minmax", "W8A16_CHANNEL", false, PackFormat::kPackQuantized},
    };
    for (const Scheme& sch : schemes) {
      QuantArgs args = quant_args_preset(sch.preset);
      if (sch.mse) args.observer = ObserverKind::kMse;
      // 512 matrices [2048, 4096] (w1/w3) and 256 [4096, 2048] (w2), as 8 + 4 chunks of 64.
      const Times a = time_chunk(args, sch.format, chunk, 2048, 4096, w, codes, s);
      const Times b = time_chunk(args, sch.format, chunk, 4096, 2048, w, codes, s);
      const double obs = (8 * a.observe + 4 * b.observe) * 1e-3, q = (8 * a.quantize + 4 * b.quantize) * 1e-3,
                   enc = (8 * a.encode + 4 * b.encode) * 1e-3;
      // quantize reads fp32 weights and writes int32 codes: 8 bytes per weight.
      const double q_gbs = 768.0 * static_cast<double>(per) * 8.0 / q / 1e9;
      std::printf("%-22s %10.3f %10.3f %10.3f %9.3f %13.1f%%\n", sch.label, obs, q, enc, obs + q + enc,
                  100.0 * q_gbs / copy_gbs);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_rtn_layer: %s\n", e.what());
    return 1;
  }
}
