// pack.h: the packers and unpackers of the compressed-tensors checkpoint formats, and the table
// of tensors (name, dtype, shape) each format writes for one Linear. Pure math on row-major
// arrays: no tensor I/O, no prefixes, no MPI (spec: shared/reference/gptq_and_formats.md §3.2,
// §3.3, §1.8). Tested in tests/quant/test_pack.cpp (the spec's worked examples bit for bit,
// round trips for every bit width with padding, exhaustive code sweeps, error messages).
//
//   auto packed = int32_pack(codes, N, K, 4);          // [N, ceil(K*4/32)] int32, weight_packed
//   auto zp = zero_point_pack(zp_codes, N, G, 4);      // [ceil(N*4/32), G] int32
//   auto bytes = fp4_pack(values, N, K);               // [N, K/2] uint8, even column low nibble
//   auto set = packed_tensor_set({.format = PackFormat::kPackQuantized, .rows = N, ...});
//
// Integer codes are always the SIGNED codes of the quantizer, q in [-2^(b-1), 2^(b-1)-1]; the
// offset to unsigned (u = q + 2^(b-1)) happens here, because that is where compressed-tensors
// does it (pack_to_int32), and doing it in one place keeps the zero-point convention
// (dequant = (u_q - u_zp) * s, no AutoGPTQ "-1") from being applied twice.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"

namespace dsv4::quant {

// --- integer codes -> int32 words (compressed-tensors pack_to_int32, 0.18 dense packing) -----

// Words per row: ceil(num_cols * bits / 32). Elements straddle words for b in {3,5,6,7}.
size_t int32_packed_cols(size_t num_cols, int bits);

// codes [rows, cols] signed, bits in [1, 8] -> [rows, int32_packed_cols(cols, bits)]. Each row is
// a little-endian bit stream: element k at bits [k*b, k*b+b), word j = bits [32j, 32j+32).
// Throws if a code is outside [-2^(b-1), 2^(b-1)-1] (naming the value and its position).
std::vector<int32_t> int32_pack(std::span<const int32_t> codes, size_t rows, size_t cols,
                                int bits);
// Inverse of int32_pack; `cols` is the unpacked width (weight_shape[1]). Throws if the padding
// bits after the last element of a row are not zero (a corrupt or mis-shaped tensor).
std::vector<int32_t> int32_unpack(std::span<const int32_t> packed, size_t rows, size_t cols,
                                  int bits);

// --- asymmetric zero points: packed along the OUTPUT dim -------------------------------------

// zero points [rows=N, groups=G] signed -> [int32_packed_cols(N, bits), G]: transpose, pack,
// transpose back (what compressed-tensors does), written directly.
std::vector<int32_t> zero_point_pack(std::span<const int32_t> zero_points, size_t rows,
                                     size_t groups, int bits);
// Inverse of zero_point_pack -> [rows, groups] signed.
std::vector<int32_t> zero_point_unpack(std::span<const int32_t> packed, size_t rows,
                                       size_t groups, int bits);

// --- FP4 (NVFP4 / MXFP4) -> uint8 (pack_fp4_to_uint8) ----------------------------------------

// values [rows, cols] exactly on the e2m1 grid (±{0,.5,1,1.5,2,3,4,6}; -0 keeps its sign) ->
// [rows, cols/2] bytes, byte = code(col 2k) | code(col 2k+1) << 4. cols must be even. Values
// off the grid (they were not quantized) are rejected, not rounded.
std::vector<uint8_t> fp4_pack(std::span<const float> values, size_t rows, size_t cols);
// Same from e2m1 codes (sign << 3 | idx, 0..15).
std::vector<uint8_t> fp4_pack_codes(std::span<const uint8_t> codes, size_t rows, size_t cols);
// [rows, cols/2] bytes -> [rows, cols] codes / values.
std::vector<uint8_t> fp4_unpack_codes(std::span<const uint8_t> packed, size_t rows, size_t cols);
std::vector<float> fp4_unpack(std::span<const uint8_t> packed, size_t rows, size_t cols);

// --- FP8 (float-quantized) -> raw float8_e4m3fn bytes ------------------------------------------

// RNE, saturating to ±448 (common/codec.h). NaN is rejected: a NaN weight/scale ratio is a bug
// upstream and must not be written as the e4m3 NaN byte.
std::vector<uint8_t> fp8_pack(std::span<const float> values);
std::vector<float> fp8_unpack(std::span<const uint8_t> bytes);

// --- the tensor set a format writes for one module (§3.2) -----------------------------------

enum class PackFormat : uint8_t {
  kPackQuantized,        // int weights 1-8 bits packed into int32 (W4A16, W8A16, W4A16_ASYM)
  kFloatQuantized,       // float8_e4m3fn weights (FP8, FP8_DYNAMIC, FP8_BLOCK)
  kNvfp4PackQuantized,   // e2m1 pairs in uint8, e4m3 group-16 scales, fp32 global scale
  kMxfp4PackQuantized,   // e2m1 pairs in uint8, e8m0 (uint8) group-32 scales
  kIntQuantized,         // int8 weights unpacked (W8A8)
  kNaiveQuantized,       // codes in their own dtype (int8 / e4m3), for schemes no other fits
};

// The compressed-tensors format string ("pack-quantized", ...) and its inverse.
std::string_view pack_format_name(PackFormat format);
std::optional<PackFormat> pack_format_from_name(std::string_view name);

// Granularity of weight_scale (kept apart from quant_args' strategy so this file stays a leaf).
enum class PackScaleLayout : uint8_t { kTensor, kChannel, kGroup, kBlock };

struct PackedTensorSetArgs {
  PackFormat format = PackFormat::kPackQuantized;
  int64_t rows = 0;  // N (output features)
  int64_t cols = 0;  // K (input features)
  int bits = 4;      // weight bits; 8 for float/int-quantized, 4 for fp4 formats
  PackScaleLayout scale_layout = PackScaleLayout::kGroup;
  int64_t group_size = 128;                    // kGroup (nvfp4: 16, mxfp4: 32)
  int64_t block_rows = 128, block_cols = 128;  // kBlock (FP8_BLOCK)
  bool symmetric = true;                       // false: weight_zero_point (pack-quantized only)
  bool actorder_group = false;                 // actorder=group: weight_g_idx
  bool float_codes = false;                    // naive-quantized: e4m3 codes, else int8
  DType model_dtype = DType::kBF16;            // weight_scale dtype where §3.2 says "model dtype"
};

struct PackedTensor {
  std::string name;  // without the module prefix: "weight_packed", "weight_scale", ...
  DType dtype;
  std::vector<int64_t> shape;
};

// The tensors written under "P." for one Linear, in the order of §3.2. Throws for combinations
// the formats do not define (asymmetric float/fp4, g_idx without groups, wrong group size for
// nvfp4/mxfp4, odd K for fp4, ...). Activation tensors (input_scale, input_global_scale) are not
// included: they depend on the activation scheme, not on the weight layout.
std::vector<PackedTensor> packed_tensor_set(const PackedTensorSetArgs& args);

}  // namespace dsv4::quant
