// decode_bandwidth.cu: GPU weight-decode bandwidth against the device's copy bandwidth (issue 8,
// goal ≥ 70%). Bandwidth = (bytes read + bytes written) / time, for the decoders and for a
// device-to-device cudaMemcpy of the same output size; 3 warm-up calls, then the mean of 20.
//
//   bench_decode_bandwidth        # prints one line per case; docs/PERFORMANCE.md has the numbers
//
// Shapes: the FP8 attention/shared weights of a few layers ([32768, 4096] e4m3, 128×128 e8m0
// scales) and 64 routed experts' w1 stacked ([131072, 4096] MXFP4, e8m0 per 32), to fp32 and bf16.
#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

#include "bench/cuda_timing.h"
#include "common/check.h"
#include "model/weight_decode_cuda.h"

namespace {

double mean_ms(const auto& f, cudaStream_t s) { return cuda_mean_ms(f, s, 3, 20); }

void report(const char* name, double bytes, double ms, double copy_gbs) {
  const double gbs = bytes / (ms * 1e-3) / 1e9;
  std::printf("%-34s %8.3f ms %8.1f GB/s  %5.1f%% of copy\n", name, ms, gbs, 100.0 * gbs / copy_gbs);
}

}  // namespace

int main() {
  try {
    cudaStream_t s = bench_device_stream();
    const int64_t fr = 32768, fc = 4096, mr = 131072, mc = 4096;
    const size_t out_bytes = static_cast<size_t>(mr * mc) * 4;  // the largest output
    uint8_t *codes = nullptr, *scales = nullptr;
    void *out = nullptr, *copy_src = nullptr;
    DSV4_CUDA_CHECK(cudaMalloc(&codes, static_cast<size_t>(fr * fc)));
    DSV4_CUDA_CHECK(cudaMalloc(&scales, static_cast<size_t>(mr * mc / 32)));
    DSV4_CUDA_CHECK(cudaMalloc(&out, out_bytes));
    DSV4_CUDA_CHECK(cudaMalloc(&copy_src, out_bytes));
    DSV4_CUDA_CHECK(cudaMemset(codes, 0x3c, static_cast<size_t>(fr * fc)));
    DSV4_CUDA_CHECK(cudaMemset(scales, 127, static_cast<size_t>(mr * mc / 32)));

    // Copy ceiling: D2D memcpy of the fp32 FP8-decode output size (reads and writes it).
    const size_t copy_bytes = static_cast<size_t>(fr * fc) * 4;
    const double copy_ms = mean_ms([&] { cudaMemcpyAsync(out, copy_src, copy_bytes, cudaMemcpyDeviceToDevice, s); }, s);
    const double copy_gbs = 2.0 * static_cast<double>(copy_bytes) / (copy_ms * 1e-3) / 1e9;
    std::printf("%-34s %8.3f ms %8.1f GB/s\n", "cudaMemcpy D2D 512 MiB", copy_ms, copy_gbs);

    const double fp8_in = static_cast<double>(fr * fc) + static_cast<double>((fr / 128) * (fc / 128));
    report("fp8 [32768,4096] -> fp32", fp8_in + 4.0 * fr * fc,
           mean_ms([&] {
             dsv4::model::weight_decode_fp8_block_cuda(codes, scales, dsv4::DType::kF8E8M0, fr, fc, 128,
                                                       static_cast<float*>(out), nullptr, s);
           }, s), copy_gbs);
    report("fp8 [32768,4096] -> bf16", fp8_in + 2.0 * fr * fc,
           mean_ms([&] {
             dsv4::model::weight_decode_fp8_block_cuda(codes, scales, dsv4::DType::kF8E8M0, fr, fc, 128, nullptr,
                                                       static_cast<uint16_t*>(out), s);
           }, s), copy_gbs);
    // MXFP4 codes reuse the FP8 buffer's first half (mr*mc/2 = fr*fc bytes).
    const double mx_in = static_cast<double>(mr * mc) / 2 + static_cast<double>(mr * mc) / 32;
    report("mxfp4 [131072,4096] -> fp32", mx_in + 4.0 * mr * mc,
           mean_ms([&] {
             dsv4::model::weight_decode_mxfp4_cuda(codes, scales, dsv4::DType::kF8E8M0, mr, mc,
                                                   static_cast<float*>(out), nullptr, s);
           }, s), copy_gbs);
    report("mxfp4 [131072,4096] -> bf16", mx_in + 2.0 * mr * mc,
           mean_ms([&] {
             dsv4::model::weight_decode_mxfp4_cuda(codes, scales, dsv4::DType::kF8E8M0, mr, mc, nullptr,
                                                   static_cast<uint16_t*>(out), s);
           }, s), copy_gbs);
    cudaFree(codes);
    cudaFree(scales);
    cudaFree(out);
    cudaFree(copy_src);
    cudaStreamDestroy(s);
  } catch (const dsv4::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
