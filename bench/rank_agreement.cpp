// rank_agreement.cpp: how far two artifacts of the same recipe agree, e.g. runs at 1, 2 and 4
// ranks (whose Hessian sums differ only in float summation order), for docs/PERFORMANCE.md.
//
//   bench_rank_agreement OUT_A OUT_B
//
// Prints, per kind of tensor: how many tensors differ at all, and for packed INT4 codes
// (`*.weight_packed`, I32 holding 8 nibbles) how many of the 4-bit codes differ; for other
// tensors how many elements differ. Tensor sets must be equal (same recipe and source).
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "common/check.h"
#include "common/dtype.h"
#include "common/safetensors.h"

namespace {

struct Tally {
  int64_t tensors = 0, tensors_differing = 0;
  int64_t elements = 0, elements_differing = 0;
};

std::string kind_of(const std::string& name) {
  const size_t dot = name.rfind('.');
  std::string leaf = dot == std::string::npos ? name : name.substr(dot + 1);
  if (name.find(".ffn.experts.") != std::string::npos) leaf = "experts " + leaf;
  return leaf;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s OUT_A OUT_B\n", argv[0]);
    return 2;
  }
  try {
    const dsv4::Checkpoint a = dsv4::Checkpoint::open(argv[1]), b = dsv4::Checkpoint::open(argv[2]);
    DSV4_CHECK_IN("bench", a.names() == b.names(), "%s and %s hold different tensor sets", argv[1], argv[2]);
    std::map<std::string, Tally> tally;
    for (const std::string& name : a.names()) {
      const auto x = a.bytes(name), y = b.bytes(name);
      const dsv4::TensorInfo& info = a.info(name);
      DSV4_CHECK_IN("bench", x.size() == y.size(), "%s differs in size", name.c_str());
      Tally& t = tally[kind_of(name)];
      ++t.tensors;
      const bool differs = std::memcmp(x.data(), y.data(), x.size()) != 0;
      t.tensors_differing += differs;
      if (name.ends_with(".weight_packed") && info.dtype == dsv4::DType::kI32) {
        // 8 offset-binary nibbles per int32 (gptq_and_formats.md §3.3).
        t.elements += static_cast<int64_t>(x.size()) * 2;
        for (size_t i = 0; differs && i < x.size(); ++i) {
          const auto u = static_cast<unsigned>(x[i]), v = static_cast<unsigned>(y[i]);
          t.elements_differing += ((u & 15u) != (v & 15u)) + ((u >> 4) != (v >> 4));
        }
      } else {
        const size_t es = dsv4::dtype_size(info.dtype);
        t.elements += static_cast<int64_t>(x.size() / es);
        for (size_t i = 0; differs && i < x.size(); i += es) t.elements_differing += std::memcmp(&x[i], &y[i], es) != 0;
      }
    }
    std::printf("%-28s %10s %10s %14s %14s %9s\n", "tensor kind", "tensors", "differ", "elements", "differ", "fraction");
    for (const auto& [kind, t] : tally) {
      std::printf("%-28s %10lld %10lld %14lld %14lld %8.4f%%\n", kind.c_str(), static_cast<long long>(t.tensors),
                  static_cast<long long>(t.tensors_differing), static_cast<long long>(t.elements),
                  static_cast<long long>(t.elements_differing),
                  t.elements ? 100.0 * static_cast<double>(t.elements_differing) / static_cast<double>(t.elements) : 0.0);
    }
  } catch (const dsv4::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
