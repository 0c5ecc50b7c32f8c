// pack.cpp: compressed-tensors packers/unpackers and the per-format tensor table (see pack.h;
// spec gptq_and_formats.md §3.2-3.3). Tested in tests/quant/test_pack.cpp.
#include "quant/pack.h"

#include <array>
#include <cmath>

#include "common/check.h"
#include "common/codec.h"

namespace dsv4::quant {
namespace {

constexpr const char* kComponent = "pack";

void check_bits(int bits) {
  DSV4_CHECK_IN(kComponent, bits >= 1 && bits <= 8,
                "expected integer bits in [1, 8] (pack-quantized), got %d", bits);
}

void check_size(size_t got, size_t rows, size_t cols, const char* what) {
  DSV4_CHECK_IN(kComponent, got == rows * cols,
                "%s has %zu elements, expected [%zu, %zu] = %zu", what, got, rows, cols,
                rows * cols);
}

// Writes the `count` codes at codes[0], codes[stride], ... as one little-endian bit stream of
// `bits`-wide offset-binary fields into words out[0], out[out_stride], ... (all words zeroed
// first, which is also the u = 0 padding). One routine serves rows (stride 1) and the
// zero-point columns (stride G), so the two layouts cannot drift apart.
void stream_pack(const int32_t* codes, size_t stride, size_t count, int bits, int32_t* out,
                 size_t out_stride, size_t row, size_t col_of_first, bool codes_are_columns) {
  const int32_t qmin = -(1 << (bits - 1));
  const int32_t qmax = (1 << (bits - 1)) - 1;
  const size_t words = int32_packed_cols(count, bits);
  std::vector<uint32_t> acc(words, 0u);
  for (size_t k = 0; k < count; ++k) {
    const int32_t q = codes[k * stride];
    if (q < qmin || q > qmax) {
      const size_t r = codes_are_columns ? k : row;
      const size_t c = codes_are_columns ? col_of_first : k;
      DSV4_CHECK_IN(kComponent, q >= qmin && q <= qmax,
                    "code %d at [%zu, %zu] is outside the int%d range [%d, %d]", q, r, c, bits,
                    qmin, qmax);
    }
    const uint32_t u = static_cast<uint32_t>(q - qmin);
    const size_t bit = k * static_cast<size_t>(bits);
    const size_t word = bit / 32;
    const unsigned shift = static_cast<unsigned>(bit % 32);
    acc[word] |= u << shift;
    // A field that crosses a word boundary (b = 3, 5, 6, 7) continues in the next word's low bits.
    if (shift + static_cast<unsigned>(bits) > 32) acc[word + 1] |= u >> (32 - shift);
  }
  for (size_t j = 0; j < words; ++j) out[j * out_stride] = static_cast<int32_t>(acc[j]);
}

// Inverse of stream_pack. The bits after the last field must be zero: compressed-tensors pads
// with u = 0, so anything else means the tensor or the claimed shape is wrong.
void stream_unpack(const int32_t* packed, size_t packed_stride, size_t count, int bits,
                   int32_t* codes, size_t stride, const char* what, size_t index) {
  const int32_t qmin = -(1 << (bits - 1));
  const uint32_t mask = (1u << bits) - 1u;
  const size_t words = int32_packed_cols(count, bits);
  auto word_at = [&](size_t j) { return static_cast<uint32_t>(packed[j * packed_stride]); };
  for (size_t k = 0; k < count; ++k) {
    const size_t bit = k * static_cast<size_t>(bits);
    const size_t word = bit / 32;
    const unsigned shift = static_cast<unsigned>(bit % 32);
    uint32_t u = word_at(word) >> shift;
    if (shift + static_cast<unsigned>(bits) > 32) u |= word_at(word + 1) << (32 - shift);
    codes[k * stride] = static_cast<int32_t>(u & mask) + qmin;
  }
  const size_t used_bits = count * static_cast<size_t>(bits);
  const unsigned tail = static_cast<unsigned>(used_bits % 32);
  if (words > 0 && tail != 0) {
    const uint32_t padding = word_at(words - 1) >> tail;
    DSV4_CHECK_IN(kComponent, padding == 0,
                  "padding bits of %s %zu are 0x%x, expected 0 (%zu elements of int%d in %zu "
                  "words)",
                  what, index, padding, count, bits, words);
  }
}

void check_fp4_shape(size_t got, size_t rows, size_t cols, size_t per_row, const char* what) {
  DSV4_CHECK_IN(kComponent, cols % 2 == 0,
                "expected an even number of columns for fp4 packing, got [%zu, %zu]", rows,
                cols);
  check_size(got, rows, per_row, what);
}

}  // namespace

size_t int32_packed_cols(size_t num_cols, int bits) {
  check_bits(bits);
  return (num_cols * static_cast<size_t>(bits) + 31) / 32;
}

std::vector<int32_t> int32_pack(std::span<const int32_t> codes, size_t rows, size_t cols,
                                int bits) {
  check_bits(bits);
  check_size(codes.size(), rows, cols, "int codes");
  const size_t words = int32_packed_cols(cols, bits);
  std::vector<int32_t> out(rows * words);
  for (size_t r = 0; r < rows; ++r) {
    stream_pack(codes.data() + r * cols, 1, cols, bits, out.data() + r * words, 1, r, 0, false);
  }
  return out;
}

std::vector<int32_t> int32_unpack(std::span<const int32_t> packed, size_t rows, size_t cols,
                                  int bits) {
  check_bits(bits);
  const size_t words = int32_packed_cols(cols, bits);
  check_size(packed.size(), rows, words, "weight_packed");
  std::vector<int32_t> codes(rows * cols);
  for (size_t r = 0; r < rows; ++r) {
    stream_unpack(packed.data() + r * words, 1, cols, bits, codes.data() + r * cols, 1, "row",
                  r);
  }
  return codes;
}

std::vector<int32_t> zero_point_pack(std::span<const int32_t> zero_points, size_t rows,
                                     size_t groups, int bits) {
  check_bits(bits);
  check_size(zero_points.size(), rows, groups, "zero points");
  const size_t words = int32_packed_cols(rows, bits);
  std::vector<int32_t> out(words * groups);
  for (size_t g = 0; g < groups; ++g) {
    stream_pack(zero_points.data() + g, groups, rows, bits, out.data() + g, groups, 0, g, true);
  }
  return out;
}

std::vector<int32_t> zero_point_unpack(std::span<const int32_t> packed, size_t rows,
                                       size_t groups, int bits) {
  check_bits(bits);
  const size_t words = int32_packed_cols(rows, bits);
  check_size(packed.size(), words, groups, "weight_zero_point");
  std::vector<int32_t> zero_points(rows * groups);
  for (size_t g = 0; g < groups; ++g) {
    stream_unpack(packed.data() + g, groups, rows, bits, zero_points.data() + g, groups,
                  "zero-point column", g);
  }
  return zero_points;
}

std::vector<uint8_t> fp4_pack_codes(std::span<const uint8_t> codes, size_t rows, size_t cols) {
  check_fp4_shape(codes.size(), rows, cols, cols, "fp4 codes");
  std::vector<uint8_t> out(rows * cols / 2);
  for (size_t i = 0; i < codes.size(); ++i) {
    DSV4_CHECK_IN(kComponent, codes[i] < 16, "e2m1 code %u at [%zu, %zu] is not in [0, 15]",
                  static_cast<unsigned>(codes[i]), i / cols, i % cols);
    // Row length is even, so flat index parity is column parity: even column -> low nibble.
    out[i / 2] |= static_cast<uint8_t>(codes[i] << ((i % 2) * 4));
  }
  return out;
}

std::vector<uint8_t> fp4_pack(std::span<const float> values, size_t rows, size_t cols) {
  check_fp4_shape(values.size(), rows, cols, cols, "fp4 values");
  std::vector<uint8_t> codes(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const float v = values[i];
    const uint8_t c = e2m1_encode(v);
    // Exact grid membership, sign included (so -0 -> code 8); NaN and |v| > 6 fail here too.
    const float back = e2m1_decode(c);
    DSV4_CHECK_IN(kComponent, back == v && std::signbit(back) == std::signbit(v),
                  "value %g at [%zu, %zu] is not on the e2m1 grid (nearest %g); quantize first",
                  static_cast<double>(v), i / cols, i % cols, static_cast<double>(back));
    codes[i] = c;
  }
  return fp4_pack_codes(codes, rows, cols);
}

std::vector<uint8_t> fp4_unpack_codes(std::span<const uint8_t> packed, size_t rows,
                                      size_t cols) {
  check_fp4_shape(packed.size(), rows, cols, cols / 2, "weight_packed (fp4)");
  std::vector<uint8_t> codes(rows * cols);
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = (packed[i / 2] >> ((i % 2) * 4)) & 0xF;
  return codes;
}

std::vector<float> fp4_unpack(std::span<const uint8_t> packed, size_t rows, size_t cols) {
  const std::vector<uint8_t> codes = fp4_unpack_codes(packed, rows, cols);
  std::vector<float> values(codes.size());
  for (size_t i = 0; i < codes.size(); ++i) values[i] = e2m1_decode(codes[i]);
  return values;
}

std::vector<uint8_t> fp8_pack(std::span<const float> values) {
  std::vector<uint8_t> bytes(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    DSV4_CHECK_IN(kComponent, !std::isnan(values[i]),
                  "NaN at element %zu; expected a finite weight/scale ratio for fp8", i);
    bytes[i] = e4m3_encode(values[i]);
  }
  return bytes;
}

std::vector<float> fp8_unpack(std::span<const uint8_t> bytes) {
  std::vector<float> values(bytes.size());
  e4m3_decode_n(bytes.data(), values.data(), bytes.size());
  return values;
}

// --- formats and tensor sets ----------------------------------------------------------------

namespace {

struct FormatName {
  PackFormat format;
  std::string_view name;
};
constexpr std::array<FormatName, 6> kFormatNames = {{
    {PackFormat::kPackQuantized, "pack-quantized"},
    {PackFormat::kFloatQuantized, "float-quantized"},
    {PackFormat::kNvfp4PackQuantized, "nvfp4-pack-quantized"},
    {PackFormat::kMxfp4PackQuantized, "mxfp4-pack-quantized"},
    {PackFormat::kIntQuantized, "int-quantized"},
    {PackFormat::kNaiveQuantized, "naive-quantized"},
}};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// weight_scale shape for the float/int layouts; fp4 formats always use kGroup.
std::vector<int64_t> scale_shape(const PackedTensorSetArgs& a) {
  switch (a.scale_layout) {
    case PackScaleLayout::kTensor: return {1};
    case PackScaleLayout::kChannel: return {a.rows, 1};
    case PackScaleLayout::kGroup:
      DSV4_CHECK_IN(kComponent, a.group_size > 0, "expected group_size > 0, got %lld",
                    static_cast<long long>(a.group_size));
      return {a.rows, ceil_div(a.cols, a.group_size)};
    case PackScaleLayout::kBlock:
      DSV4_CHECK_IN(kComponent, a.block_rows > 0 && a.block_cols > 0,
                    "expected block sizes > 0, got [%lld, %lld]",
                    static_cast<long long>(a.block_rows), static_cast<long long>(a.block_cols));
      return {ceil_div(a.rows, a.block_rows), ceil_div(a.cols, a.block_cols)};
  }
  DSV4_FAIL(kComponent, "unknown scale layout %d", static_cast<int>(a.scale_layout));
}

void check_model_dtype(DType t) {
  DSV4_CHECK_IN(kComponent, t == DType::kBF16 || t == DType::kF16 || t == DType::kF32,
                "expected a float model dtype (BF16/F16/F32) for weight_scale, got %s",
                std::string(dtype_name(t)).c_str());
}

void check_no_g_idx(const PackedTensorSetArgs& a) {
  DSV4_CHECK_IN(kComponent, !a.actorder_group,
                "actorder=group (weight_g_idx) is only defined for pack-quantized, not %s",
                std::string(pack_format_name(a.format)).c_str());
}

void check_symmetric(const PackedTensorSetArgs& a) {
  DSV4_CHECK_IN(kComponent, a.symmetric,
                "asymmetric weights are only defined for pack-quantized, not %s",
                std::string(pack_format_name(a.format)).c_str());
}

void check_fp4(const PackedTensorSetArgs& a, int64_t group) {
  DSV4_CHECK_IN(kComponent, a.bits == 4, "expected 4 bits for %s, got %d",
                std::string(pack_format_name(a.format)).c_str(), a.bits);
  DSV4_CHECK_IN(kComponent, a.scale_layout == PackScaleLayout::kGroup && a.group_size == group,
                "expected group scales of size %lld for %s, got layout %d size %lld",
                static_cast<long long>(group), std::string(pack_format_name(a.format)).c_str(),
                static_cast<int>(a.scale_layout), static_cast<long long>(a.group_size));
  DSV4_CHECK_IN(kComponent, a.cols % 2 == 0,
                "expected an even K for fp4 packing, got weight [%lld, %lld]",
                static_cast<long long>(a.rows), static_cast<long long>(a.cols));
  check_symmetric(a);
  check_no_g_idx(a);
}

}  // namespace

std::string_view pack_format_name(PackFormat format) {
  for (const auto& f : kFormatNames) {
    if (f.format == format) return f.name;
  }
  DSV4_FAIL(kComponent, "unknown PackFormat %d", static_cast<int>(format));
}

std::optional<PackFormat> pack_format_from_name(std::string_view name) {
  for (const auto& f : kFormatNames) {
    if (f.name == name) return f.format;
  }
  return std::nullopt;
}

std::vector<PackedTensor> packed_tensor_set(const PackedTensorSetArgs& a) {
  DSV4_CHECK_IN(kComponent, a.rows > 0 && a.cols > 0,
                "expected a weight shape > 0, got [%lld, %lld]", static_cast<long long>(a.rows),
                static_cast<long long>(a.cols));
  std::vector<PackedTensor> set;
  switch (a.format) {
    case PackFormat::kPackQuantized: {
      check_bits(a.bits);
      check_model_dtype(a.model_dtype);
      DSV4_CHECK_IN(kComponent,
                    a.scale_layout == PackScaleLayout::kGroup ||
                        a.scale_layout == PackScaleLayout::kChannel,
                    "expected group or channel scales for pack-quantized, got layout %d",
                    static_cast<int>(a.scale_layout));
      DSV4_CHECK_IN(kComponent, !a.actorder_group || a.scale_layout == PackScaleLayout::kGroup,
                    "actorder=group needs group scales (weight_g_idx maps columns to groups)");
      const std::vector<int64_t> scale = scale_shape(a);
      set.push_back({"weight_packed", DType::kI32,
                     {a.rows, static_cast<int64_t>(int32_packed_cols(a.cols, a.bits))}});
      set.push_back({"weight_scale", a.model_dtype, scale});
      set.push_back({"weight_shape", DType::kI64, {2}});
      if (!a.symmetric) {
        // Zero points are packed along the OUTPUT dim (dim 0), one column per group.
        set.push_back({"weight_zero_point", DType::kI32,
                       {static_cast<int64_t>(int32_packed_cols(a.rows, a.bits)), scale[1]}});
      }
      if (a.actorder_group) set.push_back({"weight_g_idx", DType::kI32, {a.cols}});
      break;
    }
    case PackFormat::kFloatQuantized:
      DSV4_CHECK_IN(kComponent, a.bits == 8, "expected 8 bits for float-quantized (e4m3), got %d",
                    a.bits);
      check_model_dtype(a.model_dtype);
      check_symmetric(a);
      check_no_g_idx(a);
      set.push_back({"weight", DType::kF8E4M3, {a.rows, a.cols}});
      set.push_back({"weight_scale", a.model_dtype, scale_shape(a)});
      break;
    case PackFormat::kNvfp4PackQuantized:
      check_fp4(a, 16);
      set.push_back({"weight_packed", DType::kU8, {a.rows, a.cols / 2}});
      set.push_back({"weight_scale", DType::kF8E4M3, scale_shape(a)});
      set.push_back({"weight_global_scale", DType::kF32, {1}});
      break;
    case PackFormat::kMxfp4PackQuantized:
      check_fp4(a, 32);
      set.push_back({"weight_packed", DType::kU8, {a.rows, a.cols / 2}});
      set.push_back({"weight_scale", DType::kU8, scale_shape(a)});
      break;
    case PackFormat::kIntQuantized:
      // int8 storage; compressed-tensors also writes narrower int codes (W4A8) this way.
      DSV4_CHECK_IN(kComponent, a.bits >= 1 && a.bits <= 8,
                    "expected 1-8 bits for int-quantized (int8 storage), got %d", a.bits);
      check_model_dtype(a.model_dtype);
      // §3.2 defines only the symmetric int8 layout; an asymmetric zero point's dtype and
      // shape are not specified there, so refuse rather than guess.
      check_symmetric(a);
      check_no_g_idx(a);
      set.push_back({"weight", DType::kI8, {a.rows, a.cols}});
      set.push_back({"weight_scale", a.model_dtype, scale_shape(a)});
      break;
    case PackFormat::kNaiveQuantized:
      // compressed-tensors' NaiveQuantizationCompressor: the codes in the "closest pytorch
      // dtype" of the args (int8 for int <= 8 bits, e4m3 for fp8), same tensors as the two above.
      DSV4_CHECK_IN(kComponent, a.float_codes ? a.bits == 8 : a.bits >= 1 && a.bits <= 8,
                    "expected 8 bits (fp8) or 1-8 bits (int) for naive-quantized, got %d %s",
                    a.bits, a.float_codes ? "float" : "int");
      check_model_dtype(a.model_dtype);
      check_symmetric(a);
      check_no_g_idx(a);
      set.push_back({"weight", a.float_codes ? DType::kF8E4M3 : DType::kI8, {a.rows, a.cols}});
      set.push_back({"weight_scale", a.model_dtype, scale_shape(a)});
      break;
    default:
      DSV4_FAIL(kComponent, "unknown PackFormat %d", static_cast<int>(a.format));
  }
  return set;
}

}  // namespace dsv4::quant
