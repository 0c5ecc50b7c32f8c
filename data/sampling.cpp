// sampling.cpp: seeded shuffle, lazy encoding, min-length filter, truncation or packing
// (algorithm in sampling.h).
#include "data/sampling.h"

#include <algorithm>
#include <utility>

#include "common/check.h"
#include "common/rng.h"

namespace dsv4::data {
namespace {

// Packs ids into samples of exactly seq_len, remembering which record each piece came from.
class Packer {
 public:
  explicit Packer(int64_t seq_len) : seq_len_(seq_len) {}

  // Appends record `record`'s ids; emits every sample that fills up, until `limit` samples
  // exist (limit 0: no limit). Returns the number of ids not used because the limit was hit.
  int64_t add(int64_t record, const std::vector<int32_t>& ids, std::vector<SelectedSample>& out, int64_t limit) {
    int64_t pos = 0;
    const int64_t n = static_cast<int64_t>(ids.size());
    while (pos < n) {
      if (limit > 0 && static_cast<int64_t>(out.size()) >= limit) return n - pos;
      const int64_t take = std::min<int64_t>(n - pos, seq_len_ - static_cast<int64_t>(current_.ids.size()));
      current_.ids.insert(current_.ids.end(), ids.begin() + pos, ids.begin() + pos + take);
      current_.spans.push_back({record, pos, take});
      pos += take;
      if (static_cast<int64_t>(current_.ids.size()) == seq_len_) {
        out.push_back(std::move(current_));
        current_ = {};
      }
    }
    return 0;
  }
  int64_t pending_tokens() const { return static_cast<int64_t>(current_.ids.size()); }

 private:
  int64_t seq_len_;
  SelectedSample current_;
};

}  // namespace

void SamplingOptions::check() const {
  DSV4_USER_CHECK("data", num_samples >= 0, "num_samples = %lld, expected >= 0 (0 = all)",
                  static_cast<long long>(num_samples));
  DSV4_USER_CHECK("data", seq_len >= 0, "seq_len = %lld, expected >= 0", static_cast<long long>(seq_len));
  DSV4_USER_CHECK("data", min_len >= 1, "min_len = %lld, expected >= 1", static_cast<long long>(min_len));
  DSV4_USER_CHECK("data", !packing || seq_len > 0, "packing needs seq_len > 0, got %lld",
                  static_cast<long long>(seq_len));
  DSV4_USER_CHECK("data", seq_len == 0 || min_len <= seq_len,
                  "min_len = %lld exceeds seq_len = %lld: every sample would be dropped",
                  static_cast<long long>(min_len), static_cast<long long>(seq_len));
}

std::vector<int64_t> sampling_order(int64_t num_records, uint64_t seed) {
  DSV4_CHECK_IN("data", num_records >= 0, "num_records = %lld, expected >= 0", static_cast<long long>(num_records));
  std::vector<int64_t> order(static_cast<size_t>(num_records));
  for (int64_t i = 0; i < num_records; ++i) order[i] = i;
  // Fisher-Yates from the back: position i takes a uniform pick from [0, i]. The key keeps this
  // stream apart from any other use of the same recipe seed.
  Rng rng(rng_seed_for(seed, "data.sampling_order"));
  for (int64_t i = num_records - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i) + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

Selection sampling_select(int64_t num_records, const SamplingOptions& options, const RecordEncoder& encode) {
  options.check();
  Selection sel;
  SelectionStats& st = sel.stats;
  Packer packer(options.seq_len);
  const int64_t want = options.num_samples;
  for (int64_t record : sampling_order(num_records, options.seed)) {
    if (want > 0 && static_cast<int64_t>(sel.samples.size()) >= want) break;
    std::vector<int32_t> ids = encode(record);
    ++st.records_encoded;
    const int64_t n = static_cast<int64_t>(ids.size());
    if (n < options.min_len) {
      ++st.records_too_short;
      continue;
    }
    if (options.packing) {
      st.tokens_dropped += packer.add(record, ids, sel.samples, want);
      continue;
    }
    const int64_t keep = options.seq_len > 0 ? std::min(n, options.seq_len) : n;
    if (keep < n) {
      ++st.records_truncated;
      st.tokens_dropped += n - keep;
      ids.resize(static_cast<size_t>(keep));
    }
    sel.samples.push_back({std::move(ids), {{record, 0, keep}}});
  }
  st.tokens_dropped += packer.pending_tokens();
  const int64_t got = static_cast<int64_t>(sel.samples.size());
  // Both are the user's to fix (ask for fewer samples, or give more data), so they say so in
  // the words of the command line and the recipe.
  DSV4_USER_CHECK("data", want == 0 || got == want,
                  "asked for %lld samples (--num-samples, or dataset.num_samples in the recipe) but the data has %lld "
                  "records, which give %lld samples (%lld shorter than min_len %lld%s): pass --num-samples %lld or "
                  "fewer, or add data",
                  static_cast<long long>(want), static_cast<long long>(num_records), static_cast<long long>(got),
                  static_cast<long long>(st.records_too_short), static_cast<long long>(options.min_len),
                  options.packing ? ", packed" : "", static_cast<long long>(got));
  DSV4_USER_CHECK("data", got > 0, "the data gives no samples: %lld records, %lld shorter than min_len %lld%s",
                  static_cast<long long>(num_records), static_cast<long long>(st.records_too_short),
                  static_cast<long long>(options.min_len),
                  options.packing ? ", too few tokens for one packed sample" : "");
  return sel;
}

}  // namespace dsv4::data
