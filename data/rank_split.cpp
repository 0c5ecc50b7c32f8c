// rank_split.cpp: contiguous, balanced blocks of samples per rank (rule in rank_split.h).
#include "data/rank_split.h"

#include <algorithm>

#include "common/check.h"

namespace dsv4::data {

namespace {

int64_t blocks_of(int64_t num_samples, int64_t block) {
  DSV4_CHECK_IN("data", block >= 1, "sample block %lld, expected >= 1", static_cast<long long>(block));
  return (num_samples + block - 1) / block;
}

}  // namespace

SampleRange rank_split_range(int64_t num_samples, int rank, int world, int64_t block) {
  DSV4_CHECK_IN("data", num_samples >= 0, "num_samples %lld, expected >= 0", static_cast<long long>(num_samples));
  if (block != 1) {
    const SampleRange b = rank_split_range(blocks_of(num_samples, block), rank, world);
    return {std::min(b.begin * block, num_samples), std::min(b.end * block, num_samples)};
  }
  DSV4_CHECK_IN("data", world >= 1, "world size %d, expected >= 1", world);
  DSV4_CHECK_IN("data", rank >= 0 && rank < world, "rank %d, expected 0 <= rank < world size %d", rank, world);
  DSV4_CHECK_IN("data", num_samples >= 0, "num_samples %lld, expected >= 0", static_cast<long long>(num_samples));
  const int64_t base = num_samples / world;
  const int64_t extra = num_samples % world;  // ranks [0, extra) take base + 1
  const int64_t begin = rank * base + (rank < extra ? rank : extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

int rank_split_owner(int64_t sample, int64_t num_samples, int world, int64_t block) {
  DSV4_CHECK_IN("data", sample >= 0 && sample < num_samples, "sample %lld, expected 0 <= sample < %lld",
                static_cast<long long>(sample), static_cast<long long>(num_samples));
  if (block > 1) return rank_split_owner(sample / block, blocks_of(num_samples, block), world);
  DSV4_CHECK_IN("data", world >= 1, "world size %d, expected >= 1", world);
  const int64_t base = num_samples / world;
  const int64_t extra = num_samples % world;
  // The first `extra` ranks hold (base + 1) samples each, covering [0, extra * (base + 1)).
  const int64_t big = extra * (base + 1);
  if (sample < big) return static_cast<int>(sample / (base + 1));
  return static_cast<int>(extra + (sample - big) / base);
}

}  // namespace dsv4::data
