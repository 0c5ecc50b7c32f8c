// sampling.h: seeded selection of calibration samples from a list of records, with truncation
// or packing to seq_len. Knows nothing about files or tokenizers: records are numbered 0..n-1
// and turned into token ids by a caller-supplied encoder, so this file is testable alone.
//
//   SamplingOptions o{.num_samples = 768, .seq_len = 512, .min_len = 16, .seed = 42};
//   Selection s = sampling_select(num_records, o, [&](int64_t r) { return encode(r); });
//   s.samples[i].ids                 // <= seq_len ids (== seq_len when packing)
//   s.samples[i].spans               // which record tokens it came from
//
// Algorithm (deterministic on every platform and for every world size):
//   1. order = a Fisher-Yates shuffle of 0..n-1 driven by SplitMix64 seeded with `seed`
//      (common/rng.h). Never std::shuffle / std::uniform_int_distribution: their algorithms
//      are unspecified, so libstdc++ and libc++ would pick different samples.
//   2. Walk `order`; encode each record lazily (only as many as needed). A record with fewer
//      than min_len ids is dropped. (Malformed records never get here: the reader leaves them
//      out of the record list or stops.)
//   3. Without packing, a record becomes one sample, cut to its first seq_len ids (seq_len 0:
//      no cut). With packing, the kept records' ids are concatenated in walk order and cut into
//      samples of exactly seq_len ids; a record may straddle two samples; the tail that does
//      not fill a sample is dropped.
//   4. Stop at num_samples samples (0: use every record). Asking for more than the records can
//      give is an error that states what was found.
// Tests: tests/data/test_sampling.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace dsv4::data {

struct SamplingOptions {
  int64_t num_samples = 0;  // 0: every record (every full pack when packing)
  int64_t seq_len = 512;    // max ids per sample; exact length when packing; 0: no limit (no packing)
  int64_t min_len = 1;      // records with fewer ids are dropped
  uint64_t seed = 42;
  bool packing = false;
  void check() const;       // throws naming the bad field
};

// ids [token_begin, token_begin + num_tokens) of record `record`'s encoding.
struct SampleSpan {
  int64_t record = 0;
  int64_t token_begin = 0;
  int64_t num_tokens = 0;
};

struct SelectedSample {
  std::vector<int32_t> ids;
  std::vector<SampleSpan> spans;  // one without packing; one or more with packing
};

struct SelectionStats {
  int64_t records_encoded = 0;   // encoder calls
  int64_t records_too_short = 0; // fewer than min_len ids
  int64_t records_truncated = 0; // longer than seq_len (without packing)
  int64_t tokens_dropped = 0;    // cut by truncation, or the unfilled packing tail
};

struct Selection {
  std::vector<SelectedSample> samples;  // canonical order
  SelectionStats stats;
};

using RecordEncoder = std::function<std::vector<int32_t>(int64_t record)>;

// The seeded permutation of [0, num_records) of step 1.
std::vector<int64_t> sampling_order(int64_t num_records, uint64_t seed);
Selection sampling_select(int64_t num_records, const SamplingOptions& options, const RecordEncoder& encode);

}  // namespace dsv4::data
