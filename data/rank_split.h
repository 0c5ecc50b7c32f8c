// rank_split.h: which calibration samples each rank processes.
//
//   SampleRange r = rank_split_range(768, /*rank=*/3, /*world=*/8);   // [288, 384)
//   for (int64_t i = r.begin; i < r.end; ++i) process(samples[i]);
//   int owner = rank_split_owner(300, 768, 8);                        // 3
//
// Rule: the samples, in their canonical order (the order the seeded selection produced them, the
// same on every rank), are cut into `world` contiguous blocks; the first num_samples % world
// ranks get one sample more. So every sample is on exactly one rank, loads differ by at most one
// sample, and the union over ranks is the same list for any world size: the world size changes
// only where the cuts are, never which samples are used. Contiguous blocks (not a stride) keep a
// rank's samples one range, so activation snapshots can be stored per sample range and a resume
// with another world size re-cuts them (DESIGN §4). With block > 1 the cut is the same over
// blocks of `block` consecutive samples (the last may be short; loads then differ by less than
// two blocks), so that every block is on one
// rank whatever the world size: the GPU forward runs a block per call, and its results must not
// depend on which other samples shared the call (issue 29).
// Tests: tests/data/test_sampling.cpp.
#pragma once

#include <cstdint>

namespace dsv4::data {

struct SampleRange {
  int64_t begin = 0;  // first sample index
  int64_t end = 0;    // one past the last
  int64_t size() const { return end - begin; }
};

SampleRange rank_split_range(int64_t num_samples, int rank, int world, int64_t block = 1);
int rank_split_owner(int64_t sample, int64_t num_samples, int world, int64_t block = 1);

}  // namespace dsv4::data
