// artifact_decode.cpp: compressed-tensors layouts -> fp32 (see artifact_decode.h).
//
// Every layout is turned back into what our quantizer produced (QuantArgs + QParams + codes
// [+ g_idx]) and dequantized by gptq_dequant_with_g_idx, so a decoded weight is bit-identical to
// the solver's fake-quantized weight (quantizer_dequant_value: bf16 scales give the bf16-rounded
// product, fp32 / e4m3 / e8m0 scales the fp32 product).
#include "calib/artifact_decode.h"

#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <memory>
#include <span>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "common/codec.h"
#include "model/weight_decode.h"
#include "quant/gptq.h"
#include "quant/pack.h"
#include "quant/quant_args.h"
#include "quant/quantizer.h"

namespace dsv4::calib {
namespace {

constexpr const char* kComponent = "artifact";
constexpr int64_t kFp8Block = 128;  // FP8_BLOCK's block_structure, the only one our presets write

std::string dtype_str(DType t) { return std::string(dtype_name(t)); }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Where a module's tensors are read from: an artifact on disk, or the encoded tensors a solve
// produced (solved modules shared between ranks and staged for replay carry only those).
class TensorLookup {
 public:
  virtual ~TensorLookup() = default;
  virtual const TensorInfo* find(const std::string& name) const = 0;
  virtual std::span<const std::byte> bytes(const TensorInfo& t) const = 0;
  virtual const std::string& where() const = 0;  // for errors
};

class CheckpointLookup final : public TensorLookup {
 public:
  explicit CheckpointLookup(const Checkpoint& c) : c_(c) {}
  const TensorInfo* find(const std::string& name) const override { return c_.contains(name) ? &c_.info(name) : nullptr; }
  std::span<const std::byte> bytes(const TensorInfo& t) const override { return c_.bytes(t.name); }
  const std::string& where() const override { return c_.dir(); }

 private:
  const Checkpoint& c_;
};

class EncodedLookup final : public TensorLookup {
 public:
  EncodedLookup(const std::string& module, const std::vector<quant::EncodedTensor>& tensors)
      : where_("the solved tensors") {
    for (const quant::EncodedTensor& e : tensors) {
      TensorInfo t;
      t.name = module + "." + e.name;
      t.dtype = e.dtype;
      t.shape = e.shape;
      t.data_end = e.bytes.size();
      by_name_.emplace(t.name, std::pair{t, std::span<const std::byte>(e.bytes)});
    }
  }
  const TensorInfo* find(const std::string& name) const override {
    const auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &it->second.first;
  }
  std::span<const std::byte> bytes(const TensorInfo& t) const override { return by_name_.at(t.name).second; }
  const std::string& where() const override { return where_; }

 private:
  std::string where_;
  std::map<std::string, std::pair<TensorInfo, std::span<const std::byte>>> by_name_;
};

// One module's tensors, with errors that name the module, the tensor and what was expected.
class ModuleTensors {
 public:
  ModuleTensors(const TensorLookup& lookup, const std::string& module, int64_t out, int64_t in)
      : lookup_(lookup), module_(module), out_(out), in_(in) {}

  bool has(const char* suffix) const { return lookup_.find(name(suffix)) != nullptr; }
  std::string name(const char* suffix) const { return module_ + "." + suffix; }

  // The tensor's info, checked against the allowed dtypes (`layout` names the format in errors).
  const TensorInfo& get(const char* suffix, std::initializer_list<DType> dtypes, const char* layout) const {
    const std::string n = name(suffix);
    const TensorInfo* found = lookup_.find(n);
    DSV4_CHECK_IN(kComponent, found != nullptr, "%s [%lld, %lld] in %s: tensor %s is missing (%s needs it)",
                  module_.c_str(), static_cast<long long>(out_), static_cast<long long>(in_), lookup_.where().c_str(),
                  n.c_str(), layout);
    const TensorInfo& t = *found;
    bool ok = false;
    std::string expected;
    for (DType d : dtypes) {
      ok = ok || t.dtype == d;
      expected += (expected.empty() ? "" : " or ") + dtype_str(d);
    }
    DSV4_CHECK_IN(kComponent, ok, "%s in %s: tensor %s has dtype %s, expected %s (%s)", module_.c_str(),
                  lookup_.where().c_str(), n.c_str(), dtype_str(t.dtype).c_str(), expected.c_str(), layout);
    return t;
  }

  void expect_shape(const TensorInfo& t, const std::vector<int64_t>& shape, const char* layout) const {
    DSV4_CHECK_IN(kComponent, t.shape == shape, "%s [%lld, %lld] in %s: tensor %s has shape %s, expected %s (%s)",
                  module_.c_str(), static_cast<long long>(out_), static_cast<long long>(in_), lookup_.where().c_str(),
                  t.name.c_str(), shape_string(t.shape).c_str(), shape_string(shape).c_str(), layout);
  }

  [[noreturn]] void fail(const std::string& what) const {
    DSV4_FAIL(kComponent, "%s [%lld, %lld] in %s: %s", module_.c_str(), static_cast<long long>(out_),
              static_cast<long long>(in_), lookup_.where().c_str(), what.c_str());
  }

  // Raw values (memcpy: tensor data in a safetensors file need not be aligned).
  template <typename T>
  std::vector<T> values(const TensorInfo& t) const {
    const auto bytes = lookup_.bytes(t);
    std::vector<T> v(bytes.size() / sizeof(T));
    if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
    return v;
  }

  // A float tensor (BF16 / F32) widened; scale values are exactly the stored ones.
  std::vector<float> floats(const TensorInfo& t) const {
    if (t.dtype == DType::kF32) return values<float>(t);
    const auto raw = values<uint16_t>(t);
    std::vector<float> v(raw.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = bf16_decode(raw[i]);
    return v;
  }

  const TensorLookup& lookup_;
  const std::string& module_;
  const int64_t out_, in_;
};

// A model-dtype scale: BF16 (rounds the product to bf16, as compressed-tensors' dequantize in the
// scale's dtype does) or F32.
quant::ScaleDType model_scale_dtype(DType t) {
  return t == DType::kBF16 ? quant::ScaleDType::kModel : quant::ScaleDType::kF32;
}

// QParams on a [scale_rows, scale_cols] grid with the given scale values and zero points.
quant::QParams qparams_make(int64_t rows, int64_t cols, int64_t scale_rows, int64_t scale_cols,
                            std::vector<float> scale, std::vector<float> zero_point) {
  quant::QParams qp;
  qp.rows = rows;
  qp.cols = cols;
  qp.scale_rows = scale_rows;
  qp.scale_cols = scale_cols;
  if (zero_point.empty()) zero_point.assign(scale.size(), 0.0f);
  qp.scale = std::move(scale);
  qp.zero_point = std::move(zero_point);
  return qp;
}

// Group or channel (one scale column) strategy from a [N, G] scale of a K-wide weight.
void group_strategy_set(const ModuleTensors& m, const TensorInfo& scale, quant::QuantArgs* a) {
  const int64_t groups = scale.shape[1];
  if (groups == 1) {
    a->strategy = quant::Strategy::kChannel;
    a->group_size = 0;
    return;
  }
  if (groups <= 0 || m.in_ % groups != 0) {
    m.fail("tensor " + scale.name + " has shape " + shape_string(scale.shape) + ": " + std::to_string(groups) +
           " groups do not divide the " + std::to_string(m.in_) + " input columns");
  }
  a->strategy = quant::Strategy::kGroup;
  a->group_size = static_cast<int>(m.in_ / groups);
}

// pack-quantized: weight_packed I32 [N, ceil(K*b/32)] + weight_scale [N, G] + weight_shape
// [+ weight_zero_point I32 [ceil(N*b/32), G]] [+ weight_g_idx I32 [K]].
std::vector<float> pack_quantized_decode(const ModuleTensors& m) {
  const char* kLayout = "pack-quantized";
  const int64_t n = m.out_, k = m.in_;
  const TensorInfo& packed = m.get("weight_packed", {DType::kI32}, kLayout);
  const TensorInfo& shape = m.get("weight_shape", {DType::kI64, DType::kI32}, kLayout);
  m.expect_shape(shape, {2}, kLayout);
  std::vector<int64_t> dims;
  if (shape.dtype == DType::kI64) {
    dims = m.values<int64_t>(shape);
  } else {
    for (int32_t v : m.values<int32_t>(shape)) dims.push_back(v);
  }
  if (dims != std::vector<int64_t>{n, k}) {
    m.fail("tensor " + shape.name + " holds " + shape_string(dims) + ", expected " + shape_string({n, k}));
  }
  // Bits from the packed width: ceil(K*b/32) grows with b, strictly once K >= 32.
  if (packed.shape.size() != 2 || packed.shape[0] != n) {
    m.fail("tensor " + packed.name + " has shape " + shape_string(packed.shape) + ", expected [" + std::to_string(n) +
           ", ceil(" + std::to_string(k) + "*bits/32)] (" + kLayout + ")");
  }
  std::vector<int> bits;
  for (int b = 1; b <= 8; ++b) {
    if (static_cast<int64_t>(quant::int32_packed_cols(static_cast<size_t>(k), b)) == packed.shape[1]) bits.push_back(b);
  }
  if (bits.size() != 1) {
    std::string widths;
    for (int b = 1; b <= 8; ++b) {
      widths += (b > 1 ? ", " : "") + std::to_string(quant::int32_packed_cols(static_cast<size_t>(k), b));
    }
    m.fail("tensor " + packed.name + " has shape " + shape_string(packed.shape) +
           (bits.empty() ? ": its width fits no bit width 1-8" : ": its width fits several bit widths") +
           " (1-8 bits pack " + std::to_string(k) + " columns into " + widths + " words)");
  }
  quant::QuantArgs a;
  a.num_bits = bits[0];
  a.type = quant::QuantType::kInt;

  const TensorInfo& scale = m.get("weight_scale", {DType::kBF16, DType::kF32}, kLayout);
  if (scale.shape.size() != 2 || scale.shape[0] != n) {
    m.fail("tensor " + scale.name + " has shape " + shape_string(scale.shape) + ", expected [" + std::to_string(n) +
           ", groups] (" + kLayout + ")");
  }
  group_strategy_set(m, scale, &a);
  a.scale_dtype = model_scale_dtype(scale.dtype);
  const int64_t groups = scale.shape[1];

  std::vector<float> zero_point;
  a.symmetric = !m.has("weight_zero_point");
  if (!a.symmetric) {
    const TensorInfo& zp = m.get("weight_zero_point", {DType::kI32}, kLayout);
    m.expect_shape(zp, {static_cast<int64_t>(quant::int32_packed_cols(static_cast<size_t>(n), a.num_bits)), groups},
                   kLayout);
    for (int32_t v : quant::zero_point_unpack(m.values<int32_t>(zp), static_cast<size_t>(n),
                                              static_cast<size_t>(groups), a.num_bits)) {
      zero_point.push_back(static_cast<float>(v));
    }
  }
  std::vector<int32_t> g_idx;
  if (m.has("weight_g_idx")) {
    const TensorInfo& gi = m.get("weight_g_idx", {DType::kI32}, kLayout);
    m.expect_shape(gi, {k}, kLayout);
    g_idx = m.values<int32_t>(gi);
    for (size_t c = 0; c < g_idx.size(); ++c) {
      if (g_idx[c] < 0 || g_idx[c] >= groups) {
        m.fail("tensor " + gi.name + "[" + std::to_string(c) + "] = " + std::to_string(g_idx[c]) + " is outside [0, " +
               std::to_string(groups) + "), the groups of weight_scale");
      }
    }
  }
  const std::vector<int32_t> codes = quant::int32_unpack(m.values<int32_t>(packed), static_cast<size_t>(n),
                                                         static_cast<size_t>(k), a.num_bits);
  return quant::gptq_dequant_with_g_idx(a, qparams_make(n, k, n, groups, m.floats(scale), std::move(zero_point)),
                                        codes, g_idx);
}

// nvfp4-pack-quantized (weight_scale F8_E4M3 + weight_global_scale) or mxfp4-pack-quantized
// (weight_scale U8 e8m0): weight_packed U8 [N, K/2], two e2m1 codes a byte, even column low.
std::vector<float> fp4_decode(const ModuleTensors& m) {
  const int64_t n = m.out_, k = m.in_;
  const TensorInfo& scale_info = m.get("weight_scale", {DType::kF8E4M3, DType::kU8, DType::kF8E8M0},
                                       "nvfp4-/mxfp4-pack-quantized");
  const bool nvfp4 = scale_info.dtype == DType::kF8E4M3;
  const char* layout = nvfp4 ? "nvfp4-pack-quantized" : "mxfp4-pack-quantized";
  if (k % 2 != 0) m.fail(std::string(layout) + " needs an even number of input columns");
  const TensorInfo& packed = m.get("weight_packed", {DType::kU8}, layout);
  m.expect_shape(packed, {n, k / 2}, layout);
  const int64_t group = nvfp4 ? 16 : 32;
  m.expect_shape(scale_info, {n, ceil_div(k, group)}, layout);

  quant::QuantArgs a;
  a.num_bits = 4;
  a.type = quant::QuantType::kFloat;
  a.group_size = static_cast<int>(group);
  const int64_t groups = scale_info.shape[1];
  const auto raw = m.values<uint8_t>(scale_info);
  std::vector<float> scale(raw.size());
  quant::QParams qp;
  if (nvfp4) {
    a.strategy = quant::Strategy::kTensorGroup;
    a.scale_dtype = quant::ScaleDType::kE4m3;
    for (size_t i = 0; i < raw.size(); ++i) scale[i] = e4m3_decode(raw[i]);
    const TensorInfo& gs = m.get("weight_global_scale", {DType::kF32, DType::kBF16}, layout);
    if (gs.shape != std::vector<int64_t>{1} && !gs.shape.empty()) m.expect_shape(gs, {1}, layout);
    qp = qparams_make(n, k, n, groups, std::move(scale), {});
    qp.has_global_scale = true;
    // compressed-tensors: effective scale = weight_scale / weight_global_scale (the reciprocal of
    // ModelOpt's weight_scale_2), in fp32.
    qp.global_scale = m.floats(gs)[0];
  } else {
    if (m.has("weight_global_scale")) {
      m.fail("tensor " + m.name("weight_global_scale") + " is present but weight_scale is " +
             dtype_str(scale_info.dtype) + " (e8m0, mxfp4-pack-quantized has no global scale; nvfp4 needs F8_E4M3)");
    }
    a.strategy = quant::Strategy::kGroup;
    a.scale_dtype = quant::ScaleDType::kE8m0;
    for (size_t i = 0; i < raw.size(); ++i) scale[i] = e8m0_decode(raw[i]);
    qp = qparams_make(n, k, n, groups, std::move(scale), {});
    qp.scale_e8m0 = raw;
  }
  const auto nibbles =
      quant::fp4_unpack_codes(m.values<uint8_t>(packed), static_cast<size_t>(n), static_cast<size_t>(k));
  const std::vector<int32_t> codes(nibbles.begin(), nibbles.end());
  return quant::gptq_dequant_with_g_idx(a, qp, codes, {});
}

// float-/int-/naive-quantized: `weight` F8_E4M3 or I8 [N, K] + weight_scale [1] (tensor), [N, 1]
// (channel), [N, G] (group) or, for FP8, [ceil(N/128), ceil(K/128)] (block) [+ weight_zero_point
// with the scale's shape, int only].
std::vector<float> unpacked_decode(const ModuleTensors& m) {
  const int64_t n = m.out_, k = m.in_;
  const TensorInfo& weight =
      m.get("weight", {DType::kF8E4M3, DType::kI8}, "float-/int-quantized (weight_scale present)");
  const bool fp8 = weight.dtype == DType::kF8E4M3;
  const char* layout = fp8 ? "float-quantized (FP8)" : "int-quantized (int8)";
  m.expect_shape(weight, {n, k}, layout);
  const TensorInfo& scale = m.get("weight_scale", {DType::kBF16, DType::kF32}, layout);

  quant::QuantArgs a;
  a.num_bits = 8;
  a.type = fp8 ? quant::QuantType::kFloat : quant::QuantType::kInt;
  a.scale_dtype = model_scale_dtype(scale.dtype);
  const std::vector<int64_t> block_shape = {ceil_div(n, kFp8Block), ceil_div(k, kFp8Block)};
  int64_t scale_rows = 0, scale_cols = 0;
  if (scale.shape.empty() || scale.shape == std::vector<int64_t>{1}) {
    a.strategy = quant::Strategy::kTensor;
    scale_rows = scale_cols = 1;
  } else if (scale.shape.size() == 2 && scale.shape[0] == n && (n > 1 || scale.shape != block_shape || !fp8)) {
    group_strategy_set(m, scale, &a);
    scale_rows = n;
    scale_cols = scale.shape[1];
  } else if (fp8 && scale.shape == block_shape) {
    a.strategy = quant::Strategy::kBlock;
    a.block_structure = {static_cast<int>(kFp8Block), static_cast<int>(kFp8Block)};
    scale_rows = block_shape[0];
    scale_cols = block_shape[1];
  } else {
    m.fail("tensor " + m.name("weight_scale") + " has shape " + shape_string(scale.shape) +
           ", expected [1] (tensor), " + shape_string({n, 1}) + " (channel), [" + std::to_string(n) + ", G] (group)" +
           (fp8 ? " or " + shape_string(block_shape) + " (128x128 block)" : std::string()) + " (" + layout + ")");
  }
  std::vector<float> zero_point;
  a.symmetric = !m.has("weight_zero_point");
  if (!a.symmetric) {
    if (fp8) m.fail("tensor " + m.name("weight_zero_point") + " is present, but FP8 weights are symmetric only");
    const TensorInfo& zp = m.get("weight_zero_point", {DType::kI8, DType::kI32}, layout);
    if (zp.shape != scale.shape) m.expect_shape(zp, scale.shape, layout);
    if (zp.dtype == DType::kI8) {
      for (int8_t v : m.values<int8_t>(zp)) zero_point.push_back(v);
    } else {
      for (int32_t v : m.values<int32_t>(zp)) zero_point.push_back(static_cast<float>(v));
    }
  }
  std::vector<int32_t> codes(static_cast<size_t>(n * k));
  if (fp8) {
    const auto raw = m.values<uint8_t>(weight);
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = raw[i];
  } else {
    const auto raw = m.values<int8_t>(weight);
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = raw[i];
  }
  return quant::gptq_dequant_with_g_idx(
      a, qparams_make(n, k, scale_rows, scale_cols, m.floats(scale), std::move(zero_point)), codes, {});
}

// Routes compressed modules to artifact_linear_decode; declines the rest (release layouts and
// plain BF16 weights), so model::linear_load decodes them as usual.
class CompressedTensorsDecoder final : public model::LinearDecoder {
 public:
  bool decode(const Checkpoint& ckpt, const std::string& module, int64_t out, int64_t in,
              std::vector<float>* w) const override {
    if (!artifact_linear_is_compressed(ckpt, module)) return false;
    *w = artifact_linear_decode(ckpt, module, out, in);
    return true;
  }
};

}  // namespace

bool artifact_linear_is_compressed(const Checkpoint& ckpt, const std::string& module) {
  return ckpt.contains(module + ".weight_packed") || ckpt.contains(module + ".weight_scale");
}

namespace {

std::vector<float> decode_module(const TensorLookup& lookup, const std::string& module, int64_t out, int64_t in) {
  const ModuleTensors m(lookup, module, out, in);
  DSV4_CHECK_IN(kComponent, out > 0 && in > 0, "%s in %s: expected a weight shape > 0, got [%lld, %lld]",
                module.c_str(), lookup.where().c_str(), static_cast<long long>(out), static_cast<long long>(in));
  if (m.has("weight_packed")) {
    const TensorInfo& packed = *lookup.find(m.name("weight_packed"));
    if (packed.dtype == DType::kI32) return pack_quantized_decode(m);
    if (packed.dtype == DType::kU8) return fp4_decode(m);
    m.fail("tensor " + packed.name + " has dtype " + dtype_str(packed.dtype) +
           ", expected I32 (pack-quantized) or U8 (nvfp4-/mxfp4-pack-quantized)");
  }
  if (m.has("weight_scale")) {
    if (!m.has("weight")) {
      m.fail("tensor " + m.name("weight_scale") + " is present but neither " + m.name("weight_packed") + " nor " +
             m.name("weight") + " is");
    }
    return unpacked_decode(m);
  }
  m.fail("not in a compressed-tensors layout (no " + m.name("weight_packed") + " or " + m.name("weight_scale") + ")");
}

}  // namespace

std::vector<float> artifact_linear_decode(const Checkpoint& ckpt, const std::string& module, int64_t out,
                                          int64_t in) {
  return decode_module(CheckpointLookup(ckpt), module, out, in);
}

std::vector<float> encoded_linear_decode(const std::vector<quant::EncodedTensor>& tensors, const std::string& module,
                                         int64_t out, int64_t in) {
  return decode_module(EncodedLookup(module, tensors), module, out, in);
}

void checkpoint_dir_check(const std::string& dir, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string where = what.empty() ? "" : " (" + what + ")";
  const char* held = "a checkpoint directory (the release download, `dsv4-calib make-model` output or a dsv4-calib "
                     "artifact) holds config.json, model.safetensors.index.json (or one model.safetensors) and the "
                     "*.safetensors shards";
  DSV4_USER_CHECK("checkpoint", fs::is_directory(dir, ec), "%s is not a checkpoint directory%s: %s; %s", dir.c_str(),
                  where.c_str(), fs::exists(dir, ec) ? "it is a file" : "there is no such directory", held);
  const bool has_config = fs::exists(fs::path(dir) / "config.json", ec);
  const bool has_weights = fs::exists(fs::path(dir) / "model.safetensors.index.json", ec) ||
                           fs::exists(fs::path(dir) / "model.safetensors", ec);
  DSV4_USER_CHECK("checkpoint", has_config && has_weights, "%s is not a checkpoint directory%s: it has no %s; %s",
                  dir.c_str(), where.c_str(),
                  !has_config ? (has_weights ? "config.json" : "config.json and no model.safetensors.index.json")
                              : "model.safetensors.index.json or model.safetensors",
                  held);
}

model::ModelConfig checkpoint_config_load(const std::string& dir) {
  checkpoint_dir_check(dir, "");
  model::ModelConfig c = model::ModelConfig::from_file(dir + "/config.json");
  const nlohmann::json& src = c.source;
  if (src.is_object() && src.contains("quantization_config") && src["quantization_config"].is_object()) {
    const nlohmann::json& q = src["quantization_config"];
    if (q.contains("quant_method") && q["quant_method"] == "compressed-tensors") {
      c.linear_decoder = std::make_shared<CompressedTensorsDecoder>();
    }
  }
  return c;
}

}  // namespace dsv4::calib
