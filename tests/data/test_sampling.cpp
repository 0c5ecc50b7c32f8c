// test_sampling.cpp: seeded selection, truncation and packing (data/sampling.h), the split over
// ranks (data/rank_split.h) and the sample hashes (data/sample_hash.h), with a fake encoder so
// no tokenizer is involved. The rank tests are the done-when: the same options and seed
// give the same samples on 1, 2, 3 and 8 ranks, each sample on exactly one rank, loads within one.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "common/check.h"
#include "data/calib_data.h"
#include "data/rank_split.h"
#include "data/sample_hash.h"
#include "data/sampling.h"

namespace dsv4::data {
namespace {

// Record r encodes to 1 + (r * 7) % 23 ids, each r * 1000 + position: every id names its record
// and position, so a test can tell exactly which tokens a sample holds.
std::vector<int32_t> fake_ids(int64_t r) {
  std::vector<int32_t> ids(static_cast<size_t>(1 + (r * 7) % 23));
  for (size_t k = 0; k < ids.size(); ++k) ids[k] = static_cast<int32_t>(r * 1000 + static_cast<int64_t>(k));
  return ids;
}

Selection select(int64_t records, const SamplingOptions& o, int64_t* calls = nullptr) {
  return sampling_select(records, o, [calls](int64_t r) {
    if (calls != nullptr) ++*calls;
    return fake_ids(r);
  });
}

// ---- sampling_order -------------------------------------------------------------------------

TEST(SamplingOrder, IsASeededPermutation) {
  const std::vector<int64_t> a = sampling_order(1000, 42);
  EXPECT_EQ(a, sampling_order(1000, 42));
  EXPECT_NE(a, sampling_order(1000, 43));
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> iota(1000);
  std::iota(iota.begin(), iota.end(), 0);
  EXPECT_EQ(sorted, iota);
  EXPECT_NE(a, iota) << "seed 42 left 1000 records in file order";
  EXPECT_TRUE(sampling_order(0, 1).empty());
  EXPECT_EQ(sampling_order(1, 1), std::vector<int64_t>{0});
}

TEST(SamplingOrder, PinnedValues) {
  // The order is part of what a seed means in a recipe: a change of the shuffle (or of
  // SplitMix64) would silently change every calibration set, so it is pinned. Reproduced
  // independently in Python (SplitMix64 seeded mix64(42 ^ fnv1a64("data.sampling_order")),
  // rejection-sampled below(i + 1), Fisher-Yates from the back).
  const std::vector<int64_t> order = sampling_order(10, 42);
  const std::vector<int64_t> pinned = {6, 9, 5, 8, 2, 4, 7, 0, 1, 3};
  EXPECT_EQ(order, pinned);
}

// ---- sampling_select ------------------------------------------------------------------------

TEST(SamplingSelect, TruncatesDropsShortAndIsLazy) {
  SamplingOptions o{.num_samples = 20, .seq_len = 10, .min_len = 4, .seed = 7};
  int64_t calls = 0;
  const Selection s = select(500, o, &calls);
  ASSERT_EQ(s.samples.size(), 20u);
  EXPECT_EQ(calls, s.stats.records_encoded);
  EXPECT_LT(calls, 60) << "the encoder should run only until 20 samples are found, not over all 500 records";
  EXPECT_GT(s.stats.records_too_short, 0) << "fake lengths 1..23 with min_len 4 must drop some records";
  EXPECT_GT(s.stats.records_truncated, 0);
  EXPECT_EQ(s.stats.records_too_short + static_cast<int64_t>(s.samples.size()), s.stats.records_encoded);
  const std::vector<int64_t> order = sampling_order(500, 7);
  size_t next = 0;
  for (const SelectedSample& x : s.samples) {
    ASSERT_EQ(x.spans.size(), 1u);
    const int64_t r = x.spans[0].record;
    // Samples come in shuffled order, skipping only records that are too short.
    while (order[next] != r) {
      ASSERT_LT(static_cast<int64_t>(fake_ids(order[next]).size()), o.min_len) << "record " << order[next] << " skipped";
      ++next;
    }
    ++next;
    const std::vector<int32_t> full = fake_ids(r);
    const size_t keep = std::min<size_t>(full.size(), 10);
    EXPECT_EQ(x.ids, std::vector<int32_t>(full.begin(), full.begin() + keep)) << "record " << r;
    EXPECT_GE(x.ids.size(), 4u);
    EXPECT_EQ(x.spans[0].num_tokens, static_cast<int64_t>(keep));
  }
}

TEST(SamplingSelect, PackingFillsExactLengthsAndSpansPointAtTheTokens) {
  SamplingOptions o{.num_samples = 15, .seq_len = 32, .min_len = 3, .seed = 11, .packing = true};
  const Selection s = select(400, o);
  ASSERT_EQ(s.samples.size(), 15u);
  int64_t straddling = 0;
  for (size_t i = 0; i < s.samples.size(); ++i) {
    const SelectedSample& x = s.samples[i];
    ASSERT_EQ(x.ids.size(), 32u) << "packed sample " << i;
    size_t pos = 0;
    for (const SampleSpan& sp : x.spans) {
      const std::vector<int32_t> full = fake_ids(sp.record);
      ASSERT_LE(sp.token_begin + sp.num_tokens, static_cast<int64_t>(full.size()));
      for (int64_t k = 0; k < sp.num_tokens; ++k) {
        ASSERT_EQ(x.ids[pos++], full[static_cast<size_t>(sp.token_begin + k)]) << "sample " << i << " record " << sp.record;
      }
      straddling += sp.token_begin > 0;
    }
    EXPECT_EQ(pos, 32u);
  }
  EXPECT_GT(straddling, 0) << "some record must continue into the next packed sample";
}

TEST(SamplingSelect, AllRecordsWhenNumSamplesIsZero) {
  SamplingOptions o{.num_samples = 0, .seq_len = 0, .min_len = 1, .seed = 3};
  const Selection s = select(37, o);
  ASSERT_EQ(s.samples.size(), 37u);
  std::set<int64_t> records;
  for (const auto& x : s.samples) {
    records.insert(x.spans[0].record);
    EXPECT_EQ(x.ids, fake_ids(x.spans[0].record)) << "seq_len 0 must not cut";
  }
  EXPECT_EQ(records.size(), 37u);
}

TEST(SamplingSelect, ErrorsNameTheShortfallAndBadOptions) {
  SamplingOptions o{.num_samples = 100, .seq_len = 8, .min_len = 20, .seed = 1};
  try {
    select(50, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("min_len = 20 exceeds seq_len = 8"), std::string::npos) << e.what();
  }
  o.seq_len = 64;
  try {
    select(50, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    // A user error in the user's words: the flag and recipe key, the records there are, no file:line.
    EXPECT_TRUE(e.user()) << e.what();
    EXPECT_NE(std::string(e.what()).find("asked for 100 samples (--num-samples, or dataset.num_samples in the recipe) "
                                         "but the data has 50 records"),
              std::string::npos)
        << e.what();
    EXPECT_EQ(std::string(e.what()).find("sampling.cpp"), std::string::npos) << e.what();
  }
  EXPECT_THROW(select(10, {.num_samples = 1, .seq_len = 0, .packing = true}), Error);
  EXPECT_THROW(select(10, {.num_samples = -1}), Error);
  EXPECT_THROW(select(10, {.min_len = 0}), Error);
}

// ---- rank_split -----------------------------------------------------------------------------

TEST(RankSplit, BlocksCoverEverySampleOnceAndBalance) {
  for (int64_t n : {0, 1, 5, 7, 8, 9, 768, 769}) {
    for (int world : {1, 2, 3, 8}) {
      int64_t next = 0, min_load = INT64_MAX, max_load = 0;
      for (int rank = 0; rank < world; ++rank) {
        const SampleRange r = rank_split_range(n, rank, world);
        ASSERT_EQ(r.begin, next) << "n " << n << " world " << world << " rank " << rank;
        for (int64_t i = r.begin; i < r.end; ++i) ASSERT_EQ(rank_split_owner(i, n, world), rank) << "sample " << i;
        next = r.end;
        min_load = std::min(min_load, r.size());
        max_load = std::max(max_load, r.size());
      }
      EXPECT_EQ(next, n) << "world " << world;
      EXPECT_LE(max_load - min_load, 1) << "n " << n << " world " << world;
    }
  }
  EXPECT_THROW(rank_split_range(10, 2, 2), Error);
  EXPECT_THROW(rank_split_range(10, 0, 0), Error);
  EXPECT_THROW(rank_split_owner(10, 10, 2), Error);
}

// Blocks of samples: each block whole on one rank at any world size, ranks' loads within two
// blocks of each other (one more block, and the short last block), the union every sample once;
// block 1 is the plain split.
TEST(RankSplit, SampleBlocksStayWholeOnOneRank) {
  for (int64_t n : {0, 1, 5, 7, 8, 9, 96, 97}) {
    for (int64_t block : {1, 3, 4}) {
      for (int world : {1, 2, 3, 8}) {
        int64_t next = 0, min_load = INT64_MAX, max_load = 0;
        for (int rank = 0; rank < world; ++rank) {
          const SampleRange r = rank_split_range(n, rank, world, block);
          ASSERT_EQ(r.begin, next) << "n " << n << " block " << block << " world " << world << " rank " << rank;
          ASSERT_TRUE(r.begin % block == 0 || r.begin == n) << "a block cut at " << r.begin;
          for (int64_t i = r.begin; i < r.end; ++i) ASSERT_EQ(rank_split_owner(i, n, world, block), rank) << i;
          next = r.end;
          min_load = std::min(min_load, r.size());
          max_load = std::max(max_load, r.size());
        }
        EXPECT_EQ(next, n);
        EXPECT_LT(max_load - min_load, 2 * block) << "n " << n << " block " << block << " world " << world;
        if (block == 1) {
          EXPECT_EQ(rank_split_range(n, world - 1, world, 1).begin, rank_split_range(n, world - 1, world).begin);
        }
      }
    }
  }
  EXPECT_EQ(rank_split_range(10, 1, 2, 4).begin, 8);  // blocks [0,4) [4,8) | [8,10)
  EXPECT_THROW(rank_split_range(10, 0, 2, 0), Error);
}

TEST(RankSplit, SameSamplesForOneTwoThreeAndEightRanks) {
  // Each simulated rank runs the whole selection itself, as ranks do, then keeps its block.
  for (bool packing : {false, true}) {
    SamplingOptions o{.num_samples = 61, .seq_len = 16, .min_len = 2, .seed = 42, .packing = packing};
    std::vector<std::vector<int32_t>> reference;
    for (int world : {1, 2, 3, 8}) {
      std::vector<std::vector<int32_t>> gathered;
      std::vector<int64_t> loads;
      for (int rank = 0; rank < world; ++rank) {
        const Selection s = select(300, o);
        const SampleRange r = rank_split_range(static_cast<int64_t>(s.samples.size()), rank, world);
        loads.push_back(r.size());
        for (int64_t i = r.begin; i < r.end; ++i) gathered.push_back(s.samples[static_cast<size_t>(i)].ids);
      }
      if (world == 1) reference = gathered;
      ASSERT_EQ(gathered.size(), 61u) << "world " << world;
      EXPECT_EQ(gathered, reference) << "world " << world << (packing ? " packed" : "");
      EXPECT_LE(*std::max_element(loads.begin(), loads.end()) - *std::min_element(loads.begin(), loads.end()), 1);
      // Each sample exactly once: the ids are distinct per sample (record*1000 + position).
      std::set<std::vector<int32_t>> unique(gathered.begin(), gathered.end());
      EXPECT_EQ(unique.size(), gathered.size()) << "world " << world;
    }
  }
}

// ---- sample_hash ----------------------------------------------------------------------------

nlohmann::json fixture() {
  std::ifstream in(std::string(DSV4_SOURCE_DIR) + "/tests/data/chat_fixture/chat_cases.json");
  EXPECT_TRUE(in.good()) << "missing tests/data/chat_fixture/chat_cases.json (tests/data/make_chat_fixture.py)";
  return nlohmann::json::parse(in);
}

TEST(SampleHash, MatchesThePythonDefinition) {
  // Vectors computed by tests/data/make_chat_fixture.py from the definition in sample_hash.h.
  const nlohmann::json f = fixture();
  ASSERT_GE(f["hash_vectors"].size(), 4u);
  for (const auto& v : f["hash_vectors"]) {
    const std::vector<int32_t> ids = v["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(sample_hash_hex(sample_hash(ids)), v["hash"].get<std::string>()) << v["ids"].dump();
  }
  for (const auto& v : f["list_hash_vectors"]) {
    const auto samples = v["samples"].get<std::vector<std::vector<int32_t>>>();
    EXPECT_EQ(sample_hash_hex(sample_list_hash(samples)), v["hash"].get<std::string>()) << v["samples"].dump();
  }
  EXPECT_EQ(sample_hash_hex(sample_hash({})), "cbf29ce484222325");  // the FNV-1a 64 offset basis
}

TEST(SampleHash, ChangesWithOneTokenAndWithTheCutBetweenSamples) {
  std::vector<int32_t> ids = {0, 128803, 3085, 344, 1};
  const uint64_t h = sample_hash(ids);
  ids[2] += 1;
  EXPECT_NE(sample_hash(ids), h);
  EXPECT_NE(sample_list_hash(std::vector<std::vector<int32_t>>{{1, 2}, {3}}),
            sample_list_hash(std::vector<std::vector<int32_t>>{{1}, {2, 3}}));
  EXPECT_NE(sample_list_hash(std::vector<std::vector<int32_t>>{{1}}),
            sample_list_hash(std::vector<std::vector<int32_t>>{{1}, {}}));
}

TEST(SampleHash, ManifestHashChangesWhenOneTokenChanges) {
  CalibData d;
  d.options.files = {"a.jsonl"};
  d.files = {{"a.jsonl", DatasetFormat::kJsonl, 100, 3}};
  d.num_records = 3;
  for (int64_t r = 0; r < 3; ++r) d.samples.push_back({fake_ids(r + 5), {{0, r + 1, r, 0, 0}}});
  const nlohmann::ordered_json m1 = calib_data_manifest(d);
  EXPECT_EQ(m1["hash_algorithm"], kSampleHashAlgorithm);
  EXPECT_EQ(m1["samples_hash"], sample_hash_hex(calib_data_hash(d)));
  ASSERT_EQ(m1["samples"].size(), 3u);
  EXPECT_EQ(m1["samples"][1]["hash"], sample_hash_hex(sample_hash(d.samples[1].ids)));
  EXPECT_EQ(m1["num_tokens"], d.num_tokens());

  d.samples[1].ids[3] += 1;  // one token of one sample
  const nlohmann::ordered_json m2 = calib_data_manifest(d);
  EXPECT_NE(m2["samples_hash"], m1["samples_hash"]);
  EXPECT_NE(m2["samples"][1]["hash"], m1["samples"][1]["hash"]);
  EXPECT_EQ(m2["samples"][0]["hash"], m1["samples"][0]["hash"]);
  EXPECT_EQ(m2["samples"][2]["hash"], m1["samples"][2]["hash"]);
}

}  // namespace
}  // namespace dsv4::data
