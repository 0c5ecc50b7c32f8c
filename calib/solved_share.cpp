// solved_share.cpp: serialization of solved modules and their broadcast (see solved_share.h).
#include "calib/solved_share.h"

#include <cstring>

#include "common/check.h"

namespace dsv4::calib {
namespace {

template <typename T>
void put(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
void put_bytes(std::string& out, const void* p, size_t n) {
  put(out, static_cast<uint64_t>(n));
  out.append(static_cast<const char*>(p), n);
}

struct Reader {
  const std::string& blob;
  size_t& pos;
  void need(size_t n) const {
    DSV4_CHECK_IN("dist", n <= blob.size() - pos, "solved-module blob truncated at byte %zu of %zu", pos, blob.size());
  }
  template <typename T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, blob.data() + pos, sizeof v);
    pos += sizeof v;
    return v;
  }
  // A length-prefixed byte run, returned as (pointer, bytes).
  std::pair<const char*, size_t> run() {
    const uint64_t n = get<uint64_t>();
    need(n);
    const char* p = blob.data() + pos;
    pos += n;
    return {p, static_cast<size_t>(n)};
  }
  template <typename T>
  std::vector<T> vec() {
    const auto [p, n] = run();
    DSV4_CHECK_IN("dist", n % sizeof(T) == 0, "solved-module blob: %zu bytes is not a whole number of elements", n);
    std::vector<T> v(n / sizeof(T));
    if (n) std::memcpy(v.data(), p, n);
    return v;
  }
  std::string str() {
    const auto [p, n] = run();
    return std::string(p, n);
  }
};

}  // namespace

std::string solved_module_serialize(const SolvedModule& m, bool include_dequant) {
  std::string out;
  put_bytes(out, m.module.data(), m.module.size());
  put(out, static_cast<uint8_t>(m.method));
  put_bytes(out, m.dequant.data(), include_dequant ? m.dequant.size() * sizeof(float) : 0);
  put(out, static_cast<uint64_t>(m.tensors.size()));
  for (const quant::EncodedTensor& t : m.tensors) {
    put_bytes(out, t.name.data(), t.name.size());
    put(out, static_cast<uint8_t>(t.dtype));
    put_bytes(out, t.shape.data(), t.shape.size() * sizeof(int64_t));
    put_bytes(out, t.bytes.data(), t.bytes.size());
  }
  put(out, m.loss);
  put(out, m.rel_error);
  put(out, m.rtn_rel_error);
  put(out, m.dampening_frac_used);
  put(out, static_cast<uint8_t>(m.fallback));
  put(out, m.tokens);
  put(out, m.seconds);
  return out;
}

SolvedModule solved_module_deserialize(const std::string& blob, size_t& pos) {
  Reader r{blob, pos};
  SolvedModule m;
  m.module = r.str();
  m.method = static_cast<SolveMethod>(r.get<uint8_t>());
  m.dequant = r.vec<float>();
  const uint64_t n = r.get<uint64_t>();
  DSV4_CHECK_IN("dist", n < 1024, "solved-module blob for %s claims %llu tensors", m.module.c_str(),
                static_cast<unsigned long long>(n));
  for (uint64_t i = 0; i < n; ++i) {
    quant::EncodedTensor t;
    t.name = r.str();
    t.dtype = static_cast<DType>(r.get<uint8_t>());
    t.shape = r.vec<int64_t>();
    const auto [p, bytes] = r.run();
    t.bytes.resize(bytes);
    if (bytes) std::memcpy(t.bytes.data(), p, bytes);
    m.tensors.push_back(std::move(t));
  }
  m.loss = r.get<double>();
  m.rel_error = r.get<double>();
  m.rtn_rel_error = r.get<double>();
  m.dampening_frac_used = r.get<double>();
  m.fallback = static_cast<quant::GptqFallback>(r.get<uint8_t>());
  m.tokens = r.get<int64_t>();
  m.seconds = r.get<double>();
  return m;
}

void solved_share(std::vector<SolvedModule>& solved, const std::vector<int>& owner, dist::Communicator& comm) {
  DSV4_CHECK_IN("dist", solved.size() == owner.size(), "%zu solved modules, %zu owners", solved.size(), owner.size());
  if (comm.world() == 1) return;
  for (int r = 0; r < comm.world(); ++r) {
    std::string blob;
    if (r == comm.rank()) {
      for (size_t i = 0; i < solved.size(); ++i) {
        if (owner[i] == r) blob += solved_module_serialize(solved[i], /*include_dequant=*/false);
      }
    }
    comm.broadcast_string(blob, r);
    if (r == comm.rank()) continue;
    size_t pos = 0;
    for (size_t i = 0; i < solved.size(); ++i) {
      if (owner[i] != r) continue;
      solved[i] = solved_module_deserialize(blob, pos);
    }
    DSV4_CHECK_IN("dist", pos == blob.size(), "rank %d sent %zu bytes of solved modules, %zu read", r, blob.size(), pos);
  }
}

}  // namespace dsv4::calib
