// gpu_qparams.h: device buffers for the qparams of a batch of matrices (QParamsCuda) and their
// host QParams, for the GPU tests of the observer and the quantizer (tests/quant/*_cuda.cu). CUDA
// builds only.
//
//   GpuQParams qp(args, count, rows, cols);
//   observer_qparams_cuda(args, w, count, rows, cols, nullptr, qp.device(), arena, stream);
//   QParams host = qp.host(args, b);       // matrix b's, as the CPU observer returns them
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "quant/observer.h"
#include "quant/observer_cuda.h"
#include "quant/quantizer.h"
#include "tests/device_buffer.h"

namespace dsv4::quant {

// Device qparams for `count` matrices of args' grid, and their host QParams.
struct GpuQParams {
  int64_t rows, cols, scale_rows = 0, scale_cols = 0;
  int count;
  DeviceBuffer<float> scale, zero_point, global_scale;
  DeviceBuffer<uint8_t> e8m0;
  GpuQParams(const QuantArgs& args, int n, int64_t r, int64_t c)
      : rows(r), cols(c), count(n), scale(cells(args, n, r, c)), zero_point(cells(args, n, r, c)),
        global_scale(static_cast<size_t>(n)), e8m0(cells(args, n, r, c)) {
    qparams_shape(args, rows, cols, &scale_rows, &scale_cols);
  }
  static size_t cells(const QuantArgs& args, int n, int64_t r, int64_t c) {
    int64_t sr = 0, sc = 0;
    qparams_shape(args, r, c, &sr, &sc);
    return static_cast<size_t>(n * sr * sc);
  }
  QParamsCuda device() { return {scale.p, zero_point.p, e8m0.p, global_scale.p}; }
  QParams host(const QuantArgs& args, int b) const {
    const size_t per = static_cast<size_t>(scale_rows * scale_cols), off = static_cast<size_t>(b) * per;
    QParams qp;
    qp.rows = rows;
    qp.cols = cols;
    qp.scale_rows = scale_rows;
    qp.scale_cols = scale_cols;
    const std::vector<float> s = scale.get(), z = zero_point.get(), g = global_scale.get();
    const std::vector<uint8_t> e = e8m0.get();
    qp.scale.assign(s.begin() + off, s.begin() + off + per);
    qp.zero_point.assign(z.begin() + off, z.begin() + off + per);
    if (args.scale_dtype == ScaleDType::kE8m0) qp.scale_e8m0.assign(e.begin() + off, e.begin() + off + per);
    if (args.strategy == Strategy::kTensorGroup) {
      qp.has_global_scale = true;
      qp.global_scale = g[static_cast<size_t>(b)];
    }
    return qp;
  }
};

}  // namespace dsv4::quant
