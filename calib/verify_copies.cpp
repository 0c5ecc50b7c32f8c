// verify_copies.cpp: the checks of the unquantized tensors against their origin (verify.h), in one
// parallel pass: byte copies of the source (`fp32_bit_exact`, `copies_bit_exact`), exact BF16
// decodes of FP8/MXFP4 Linears (`decoded_bf16_exact`), the MTP block (`mtp_source_exact`) and its
// aliases of head.weight / embed.weight (`mtp_aliases`).
#include "calib/verify_check.h"

#include <algorithm>
#include <cstring>

#include "common/check.h"
#include "common/codec.h"
#include "common/parallel.h"
#include "model/weight_decode.h"

namespace dsv4::calib::verify_detail {

namespace {

// Compares one non-quantized layout tensor with what its origin says it must be; empty: equal.
std::string compare_tensor(const OutputTensor& t, const Checkpoint& art, const Checkpoint& src, int fp8_block) {
  if (!art.contains(t.name)) return t.name + ": missing";
  const TensorInfo& i = art.info(t.name);
  if (i.dtype != t.dtype || i.shape != t.shape) {
    return t.name + ": " + spec_string(i.dtype, i.shape) + ", expected " + spec_string(t.dtype, t.shape);
  }
  const auto a = art.bytes(t.name);
  if (t.origin == OutputOrigin::kDecodeBf16) {
    const std::vector<float> w = model::weight_decode_linear(src, t.source, fp8_block);
    if (a.size() != w.size() * 2) return t.name + ": byte size does not match the decoded source";
    int64_t bad = 0, first = -1;
    for (size_t k = 0; k < w.size(); ++k) {
      uint16_t v;
      std::memcpy(&v, a.data() + 2 * k, 2);
      if (v != bf16_encode(w[k])) {
        if (first < 0) first = static_cast<int64_t>(k);
        ++bad;
      }
    }
    if (bad == 0) return "";
    uint16_t v;
    std::memcpy(&v, a.data() + 2 * first, 2);
    return strfmt("%s: %lld of %zu elements differ from bf16(decode(%s)) (first at %lld: %g, expected %g)",
                  t.name.c_str(), ll(bad), w.size(), t.source.c_str(),
                  ll(first), bf16_decode(v), bf16_decode(bf16_encode(w[first])));
  }
  const auto s = src.bytes(t.source);
  if (s.size() != a.size()) return t.name + ": byte size differs from " + t.source;
  if (std::memcmp(a.data(), s.data(), a.size()) == 0) return "";
  const size_t es = std::max<size_t>(1, dtype_size(t.dtype));
  int64_t bad = 0, first = -1;
  for (size_t k = 0; k < a.size(); k += es) {
    if (std::memcmp(a.data() + k, s.data() + k, es) != 0) {
      if (first < 0) first = static_cast<int64_t>(k / es);
      ++bad;
    }
  }
  return strfmt("%s: %lld of %zu elements differ from source %s (first at %lld)", t.name.c_str(),
                ll(bad), a.size() / es, t.source.c_str(), ll(first));
}

}  // namespace

void copies_check(const Expected& e, const Checkpoint& art, const Checkpoint& src, int threads, CopyChecks& cc) {
  std::vector<const OutputTensor*> todo;
  for (const OutputTensor& t : e.layout.tensors) {
    if (t.origin != OutputOrigin::kQuantized) todo.push_back(&t);
  }
  std::vector<std::string> result(todo.size());
  parallel_for(todo.size(), threads, [&](size_t i) {
    try {
      result[i] = compare_tensor(*todo[i], art, src, e.config.fp8_block);
    } catch (const std::exception& ex) {
      result[i] = todo[i]->name + ": " + clip(ex.what(), 200);
    }
  });
  for (size_t i = 0; i < todo.size(); ++i) {
    const OutputTensor& t = *todo[i];
    const bool mtp = artifact_segment(t.name, e.config) > e.config.num_layers;  // t.segment may be a later write segment
    std::vector<VerifyCheck*> into;
    if (t.origin == OutputOrigin::kAlias) {
      into.push_back(&cc.aliases);
    } else {
      if (t.origin == OutputOrigin::kCopy && t.dtype == DType::kF32) into.push_back(&cc.fp32);
      if (mtp) into.push_back(&cc.mtp);
      else if (t.origin == OutputOrigin::kDecodeBf16) into.push_back(&cc.decoded);
      else if (t.dtype != DType::kF32) into.push_back(&cc.copies);
    }
    for (VerifyCheck* c : into) result[i].empty() ? note_ok(*c) : note_fail(*c, result[i]);
  }
  finish(cc.fp32, strfmt("%lld FP32 tensors byte-identical to the source", ll(passed(cc.fp32))));
  finish(cc.copies, strfmt("%lld kept tensors byte-identical", ll(passed(cc.copies))));
  finish(cc.decoded, strfmt("%lld unquantized FP8/MXFP4 Linears equal to their exact BF16 decode",
                            ll(passed(cc.decoded))));
  finish(cc.mtp, strfmt("%lld MTP tensors equal to the source (bytes or exact decode)",
                        ll(passed(cc.mtp))));
  const bool want_aliases = e.recipe.output.mtp_aliases && cc.aliases.checked == 0 &&
                            std::any_of(e.layout.tensors.begin(), e.layout.tensors.end(),
                                        [&](const OutputTensor& t) { return artifact_segment(t.name, e.config) > e.config.num_layers; });
  if (want_aliases) note_fail(cc.aliases, "output.mtp_aliases is set but the layout has no alias");
  finish(cc.aliases, e.recipe.output.mtp_aliases
                         ? strfmt("%lld aliases byte-identical to head.weight / embed.weight",
                                  ll(passed(cc.aliases)))
                         : std::string("output.mtp_aliases is off"));
}

}  // namespace dsv4::calib::verify_detail
