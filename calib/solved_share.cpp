// solved_share.cpp: serialization of solved modules and their broadcast (see solved_share.h).
#include "calib/solved_share.h"

#include <chrono>
#include <cstring>

#include "common/check.h"
#include "common/parallel.h"

namespace dsv4::calib {
namespace {

// Appends to a preallocated buffer: the wire image is sized first (solved_module_serialized_size),
// so the GBs of a layer's share are written once, in place, by several threads.
struct Writer {
  char* p;
  template <typename T>
  void put(const T& v) {
    std::memcpy(p, &v, sizeof v);
    p += sizeof v;
  }
  void put_bytes(const void* src, size_t n) {
    put(static_cast<uint64_t>(n));
    if (n) std::memcpy(p, src, n);
    p += n;
  }
};

struct ByteCount {
  size_t n = 0;
  template <typename T>
  void put(const T&) {
    n += sizeof(T);
  }
  void put_bytes(const void*, size_t bytes) { n += sizeof(uint64_t) + bytes; }
};

struct Reader {
  std::string_view blob;
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

// One module's wire bytes, into a Writer, or into a ByteCount that only adds them up.
template <typename Sink>
void write_module(Sink& w, const SolvedModule& m, bool include_dequant) {
  w.put_bytes(m.module.data(), m.module.size());
  w.put(static_cast<uint8_t>(m.method));
  w.put_bytes(m.dequant.data(), include_dequant ? m.dequant.size() * sizeof(float) : 0);
  w.put(static_cast<uint64_t>(m.tensors.size()));
  for (const quant::EncodedTensor& t : m.tensors) {
    w.put_bytes(t.name.data(), t.name.size());
    w.put(static_cast<uint8_t>(t.dtype));
    w.put_bytes(t.shape.data(), t.shape.size() * sizeof(int64_t));
    w.put_bytes(t.bytes.data(), t.bytes.size());
  }
  w.put(m.loss);
  w.put(m.rel_error);
  w.put(m.rtn_rel_error);
  w.put(m.dampening_frac_used);
  w.put(static_cast<uint8_t>(m.fallback));
  w.put(m.tokens);
  w.put(m.seconds);
  w.put_bytes(m.heldout.dampings.data(), m.heldout.dampings.size() * sizeof(double));
  w.put_bytes(m.heldout.errors.data(), m.heldout.errors.size() * sizeof(double));
  w.put(static_cast<int32_t>(m.heldout.chosen));
  w.put(m.heldout.tokens);
}

}  // namespace

size_t solved_module_serialized_size(const SolvedModule& m, bool include_dequant) {
  ByteCount c;
  write_module(c, m, include_dequant);
  return c.n;
}

char* solved_module_serialize_to(const SolvedModule& m, bool include_dequant, char* out) {
  Writer w{out};
  write_module(w, m, include_dequant);
  return w.p;
}

std::string solved_module_serialize(const SolvedModule& m, bool include_dequant) {
  std::string out(solved_module_serialized_size(m, include_dequant), '\0');
  char* end = solved_module_serialize_to(m, include_dequant, out.data());
  DSV4_CHECK_IN("dist", end == out.data() + out.size(), "%s: serialized %td bytes, sized %zu", m.module.c_str(),
                end - out.data(), out.size());
  return out;
}

SolvedModule solved_module_deserialize(std::string_view blob, size_t& pos) {
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
  m.heldout.dampings = r.vec<double>();
  m.heldout.errors = r.vec<double>();
  m.heldout.chosen = r.get<int32_t>();
  m.heldout.tokens = r.get<int64_t>();
  return m;
}

SolvedShareStats solved_share(std::vector<SolvedModule>& solved, const std::vector<int>& owner,
                              dist::Communicator& comm, int threads, std::vector<char>& wire_buffer) {
  DSV4_CHECK_IN("dist", solved.size() == owner.size(), "%zu solved modules, %zu owners", solved.size(), owner.size());
  SolvedShareStats stats;
  if (comm.world() == 1) return stats;
  using Clock = std::chrono::steady_clock;
  const auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  for (int r = 0; r < comm.world(); ++r) {
    std::vector<size_t> mods;  // rank r's modules, in index order on every rank
    for (size_t i = 0; i < solved.size(); ++i) {
      if (owner[i] == r) mods.push_back(i);
    }
    // The wire image: the module count, each module's size, then the modules back to back (so a
    // receiver finds every module without parsing the ones before it).
    const size_t header = 8 * (1 + mods.size());
    std::vector<uint64_t> sizes(mods.size());
    uint64_t total = header;
    auto t = Clock::now();
    if (r == comm.rank()) {
      for (size_t k = 0; k < mods.size(); ++k) total += sizes[k] = solved_module_serialized_size(solved[mods[k]], false);
    }
    comm.broadcast(&total, sizeof total, r);
    // Reused from layer to layer: GBs whose first touch costs more than their writing.
    if (wire_buffer.size() < total) wire_buffer.resize(total);
    char* const blob = wire_buffer.data();
    if (r == comm.rank()) {
      Writer w{blob};
      w.put(static_cast<uint64_t>(mods.size()));
      for (uint64_t n : sizes) w.put(n);
      std::vector<size_t> at(mods.size(), header);
      for (size_t k = 1; k < mods.size(); ++k) at[k] = at[k - 1] + sizes[k - 1];
      parallel_for(mods.size(), threads, [&](size_t k) {
        char* end = solved_module_serialize_to(solved[mods[k]], false, blob + at[k]);
        DSV4_CHECK_IN("dist", end == blob + at[k] + sizes[k], "%s: serialized %td bytes, sized %llu",
                      solved[mods[k]].module.c_str(), end - (blob + at[k]),
                      static_cast<unsigned long long>(sizes[k]));
      });
      stats.seconds_pack += since(t);
    }
    t = Clock::now();
    comm.broadcast(blob, total, r);
    stats.seconds_transfer += since(t);
    stats.bytes += total;
    if (r == comm.rank()) continue;
    t = Clock::now();
    const std::string_view wire(blob, total);
    size_t pos = 0;
    Reader head{wire, pos};
    const uint64_t count = head.get<uint64_t>();
    DSV4_CHECK_IN("dist", count == mods.size(), "rank %d sent %llu solved modules, this rank expects %zu (ownership differs)",
                  r, static_cast<unsigned long long>(count), mods.size());
    std::vector<size_t> at(mods.size());
    uint64_t end = header;
    for (size_t k = 0; k < mods.size(); ++k) {
      at[k] = end;
      end += head.get<uint64_t>();
    }
    DSV4_CHECK_IN("dist", end == total, "rank %d sent %llu bytes of solved modules, its sizes add up to %llu", r,
                  static_cast<unsigned long long>(total), static_cast<unsigned long long>(end));
    parallel_for(mods.size(), threads, [&](size_t k) {
      const size_t stop = k + 1 < mods.size() ? at[k + 1] : total;
      size_t p = at[k];
      solved[mods[k]] = solved_module_deserialize(wire.substr(0, stop), p);
      DSV4_CHECK_IN("dist", p == stop, "rank %d: solved module %s ends at byte %zu, its size says %zu", r,
                    solved[mods[k]].module.c_str(), p, stop);
    });
    stats.seconds_unpack += since(t);
  }
  return stats;
}

}  // namespace dsv4::calib
