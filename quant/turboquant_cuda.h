// turboquant_cuda.h: the TurboQuant encoder on the GPU (CUDA builds): the CPU reference
// tq_quantize + tq_pack (quant/turboquant.h) bit for bit, packed bytes, norms and dequant alike.
// One thread block per (row, group); the fp32 steps are upstream's and the CPU's (sign products,
// the butterfly by strides 1, 2, 4 ..., one IEEE division by float(√G), x / n, c[idx] · norm), and
// the two norms are the double sums of the squares in index order (each square exact in double),
// summed by one thread so the order is the CPU's; no -use_fast_math (IEEE division and sqrt).
//
//   tq_quantize_cuda(3, 128, d_w, rows, cols, d_packed, d_norms, d_dequant, stream);
//
// d_w: [rows, cols] f32; d_packed: [rows·groups, G·bits/8] u8; d_norms: [rows, groups] f32;
// d_dequant: [rows, cols] f32, or null. Group sizes 8..1024 (one thread per element). Only
// enqueues on `stream`, and allocates nothing (the codebook and the signs, as bit masks, travel
// as the kernel's parameter), so it runs inside the pipeline's arena (calib/gpu_forwarder.h).
// Tests: tests/quant/test_turboquant_cuda.cu.
#pragma once

#include <cstdint>

struct CUstream_st;

namespace dsv4::quant {

void tq_quantize_cuda(int bits, int group_size, const float* w, int64_t rows, int64_t cols, uint8_t* packed,
                      float* norms, float* dequant, CUstream_st* stream);

}  // namespace dsv4::quant
