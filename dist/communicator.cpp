// communicator.cpp: the backend-independent helpers and the single-process communicator.
#include "dist/communicator.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/check.h"

namespace dsv4::dist {

size_t elem_size(ElemType t) {
  switch (t) {
    case ElemType::kF32: return 4;
    case ElemType::kF64: return 8;
    case ElemType::kI64: return 8;
    case ElemType::kU8: return 1;
  }
  return 1;
}

void Communicator::broadcast_string(std::string& s, int root) {
  uint64_t n = s.size();
  broadcast(&n, sizeof n, root);
  if (rank() != root) s.assign(n, '\0');
  if (n) broadcast(s.data(), n, root);
}

std::vector<std::string> Communicator::all_gather_strings(const std::string& mine) {
  const uint64_t n = mine.size();
  std::vector<uint64_t> lens(static_cast<size_t>(world()));
  all_gather(&n, sizeof n, lens.data());
  const uint64_t longest = *std::max_element(lens.begin(), lens.end());
  std::vector<std::string> out(static_cast<size_t>(world()));
  if (longest == 0) return out;
  std::string padded(longest, '\0');
  std::memcpy(padded.data(), mine.data(), mine.size());
  std::string all(longest * static_cast<size_t>(world()), '\0');
  all_gather(padded.data(), longest, all.data());
  for (int r = 0; r < world(); ++r) out[static_cast<size_t>(r)] = all.substr(static_cast<size_t>(r) * longest, lens[static_cast<size_t>(r)]);
  return out;
}

namespace {

class SelfCommunicator final : public Communicator {
 public:
  SelfCommunicator() : Communicator(0, 1, 0.0) {}
  std::string_view backend() const override { return "self"; }
  void reduce(void*, size_t, ElemType, ReduceOp, int root) override { check_root(root); }
  void all_reduce(void*, size_t, ElemType, ReduceOp) override {}
  void broadcast(void*, size_t, int root) override { check_root(root); }
  void all_gather(const void* in, size_t bytes, void* out) override {
    if (bytes) std::memmove(out, in, bytes);
  }
  void barrier() override {}
  [[noreturn]] void abort_job(int exit_code) noexcept override {
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(exit_code);
  }

 private:
  static void check_root(int root) { DSV4_CHECK_IN("dist", root == 0, "root rank %d in a world of 1", root); }
};

}  // namespace

std::unique_ptr<Communicator> communicator_self() { return std::make_unique<SelfCommunicator>(); }

}  // namespace dsv4::dist
