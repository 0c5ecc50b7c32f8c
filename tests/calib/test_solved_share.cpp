// test_solved_share.cpp: the solved-module wire format (what owners broadcast after a solve, and
// what the run journal stages), and the free-space preflight of resumable runs.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "calib/artifact_writer.h"
#include "calib/run_checkpoint.h"
#include "calib/solved_share.h"
#include "common/check.h"
#include "common/codec.h"
#include "common/fs.h"
#include "dist/communicator.h"
#include "tests/scratch_dir.h"
#include "tests/user_error.h"

namespace dsv4::calib {
namespace {

SolvedModule sample_module(const std::string& name, int salt) {
  SolvedModule m;
  m.module = name;
  m.method = SolveMethod::kGptq;
  m.codes = {1, 2, 3};  // owner-only: not on the wire
  m.dequant = {0.5f * salt, -1.25f, 3.0f, 1e-7f};
  quant::EncodedTensor a{"weight_packed", DType::kI32, {2, 1}, std::vector<std::byte>(8, std::byte{0x5a})};
  quant::EncodedTensor b{"weight_scale", DType::kBF16, {2, 1}, {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}}};
  m.tensors = {a, b};
  m.loss = 0.125 * salt;
  m.rel_error = 0.01;
  m.rtn_rel_error = 0.03;
  m.dampening_frac_used = 0.1;
  m.fallback = quant::GptqFallback::kDampingRaised;
  m.tokens = 777;
  m.seconds = 1.5;
  m.heldout = {{0.01, 1.0}, {2e-3, 3e-3, 1e-3 * salt}, 2, 96};  // calibration.heldout's choice: RTN
  return m;
}

TEST(SolvedShare, RoundTripKeepsEverythingDownstreamReads) {
  const SolvedModule a = sample_module("layers.0.ffn.experts.3.w2", 1), b = sample_module("layers.0.attn.wo_a", 2);
  const std::string blob = solved_module_serialize(a) + solved_module_serialize(b);
  size_t pos = 0;
  const SolvedModule x = solved_module_deserialize(blob, pos), y = solved_module_deserialize(blob, pos);
  EXPECT_EQ(pos, blob.size());
  for (const auto& [got, want] : {std::pair{&x, &a}, std::pair{&y, &b}}) {
    EXPECT_EQ(got->module, want->module);
    EXPECT_EQ(got->method, want->method);
    EXPECT_EQ(got->dequant, want->dequant);
    ASSERT_EQ(got->tensors.size(), want->tensors.size());
    for (size_t i = 0; i < got->tensors.size(); ++i) {
      EXPECT_EQ(got->tensors[i].name, want->tensors[i].name);
      EXPECT_EQ(got->tensors[i].dtype, want->tensors[i].dtype);
      EXPECT_EQ(got->tensors[i].shape, want->tensors[i].shape);
      EXPECT_EQ(got->tensors[i].bytes, want->tensors[i].bytes);
    }
    EXPECT_EQ(got->loss, want->loss);
    EXPECT_EQ(got->rel_error, want->rel_error);
    EXPECT_EQ(got->rtn_rel_error, want->rtn_rel_error);
    EXPECT_EQ(got->dampening_frac_used, want->dampening_frac_used);
    EXPECT_EQ(got->fallback, want->fallback);
    EXPECT_EQ(got->tokens, want->tokens);
    EXPECT_EQ(got->seconds, want->seconds);
    EXPECT_EQ(got->heldout.dampings, want->heldout.dampings);
    EXPECT_EQ(got->heldout.errors, want->heldout.errors);
    EXPECT_EQ(got->heldout.chosen, want->heldout.chosen);
    EXPECT_EQ(got->heldout.tokens, want->heldout.tokens);
    EXPECT_TRUE(got->codes.empty());
  }
}

TEST(SolvedShare, WithoutDequantKeepsTheTensors) {
  const SolvedModule m = sample_module("layers.2.ffn.experts.1.w1", 4);
  const std::string blob = solved_module_serialize(m, false);
  EXPECT_LT(blob.size(), solved_module_serialize(m).size());
  size_t pos = 0;
  const SolvedModule x = solved_module_deserialize(blob, pos);
  EXPECT_EQ(pos, blob.size());
  EXPECT_TRUE(x.dequant.empty());
  ASSERT_EQ(x.tensors.size(), m.tensors.size());
  for (size_t i = 0; i < m.tensors.size(); ++i) EXPECT_EQ(x.tensors[i].bytes, m.tensors[i].bytes);
  EXPECT_EQ(x.loss, m.loss);
}

TEST(SolvedShare, TruncatedBlobIsAnErrorNotGarbage) {
  const std::string blob = solved_module_serialize(sample_module("layers.1.attn.wq_a", 3));
  for (size_t cut : {size_t{0}, size_t{5}, blob.size() / 2, blob.size() - 1}) {
    size_t pos = 0;
    const std::string part = blob.substr(0, cut);
    EXPECT_THROW(solved_module_deserialize(part, pos), Error) << "cut at " << cut;
  }
}

// Two ranks as two threads: broadcasts only, matched by their order (as every backend matches
// collectives). A receiver waiting 2 s for a broadcast that never comes throws.
struct Mailbox {
  std::mutex m;
  std::condition_variable cv;
  std::map<int, std::vector<char>> sent;  // broadcast number -> bytes
};

class ThreadComm final : public dist::Communicator {
 public:
  ThreadComm(int rank, Mailbox& box) : Communicator(rank, 2, 2.0), box_(box) {}
  std::string_view backend() const override { return "threads"; }
  void broadcast(void* buf, size_t bytes, int root) override {
    const int seq = next_++;
    std::unique_lock lock(box_.m);
    if (root == rank()) {
      box_.sent[seq].assign(static_cast<char*>(buf), static_cast<char*>(buf) + bytes);
      box_.cv.notify_all();
      return;
    }
    if (!box_.cv.wait_for(lock, std::chrono::seconds(2), [&] { return box_.sent.count(seq) > 0; })) {
      DSV4_FAIL("dist", "rank %d: broadcast %d from rank %d never came", rank(), seq, root);
    }
    const std::vector<char>& got = box_.sent[seq];
    DSV4_CHECK_IN("dist", got.size() == bytes, "broadcast %d: %zu bytes sent, %zu expected", seq, got.size(), bytes);
    std::memcpy(buf, got.data(), bytes);
  }
  void reduce(void*, size_t, dist::ElemType, dist::ReduceOp, int) override { DSV4_FAIL("dist", "not in this test"); }
  void all_reduce(void*, size_t, dist::ElemType, dist::ReduceOp) override { DSV4_FAIL("dist", "not in this test"); }
  void all_gather(const void*, size_t, void*) override { DSV4_FAIL("dist", "not in this test"); }
  void barrier() override {}
  [[noreturn]] void abort_job(int) noexcept override { std::abort(); }

 private:
  Mailbox& box_;
  int next_ = 0;
};

// Runs solved_share on both ranks, rank r seeing `owners[r]` and holding its own modules.
struct TwoRankShare {
  std::vector<SolvedModule> solved[2];
  SolvedShareStats stats[2];
  std::string error[2];
  void run(const std::vector<int> (&owners)[2], const std::vector<std::string>& names) {
    Mailbox box;
    std::vector<std::thread> ranks;
    for (int r = 0; r < 2; ++r) {
      solved[r].assign(names.size(), {});
      for (size_t i = 0; i < names.size(); ++i) {
        if (owners[r][i] == r) solved[r][i] = sample_module(names[i], static_cast<int>(i) + 1);
      }
      ranks.emplace_back([&, r] {
        try {
          ThreadComm comm(r, box);
          std::vector<char> wire;
          stats[r] = solved_share(solved[r], owners[r], comm, 3, wire);
        } catch (const Error& e) {
          error[r] = e.what();
        }
      });
    }
    for (std::thread& t : ranks) t.join();
  }
};

TEST(SolvedShare, EveryRankEndsWithEveryModuleAndItsTensors) {
  const std::vector<std::string> names = {"layers.0.attn.wq_a", "layers.0.attn.wq_b", "layers.0.ffn.experts.0.w1",
                                          "layers.0.ffn.experts.0.w2", "layers.0.ffn.experts.0.w3"};
  const std::vector<int> owner = {0, 1, 1, 0, 1};
  TwoRankShare share;
  share.run({owner, owner}, names);
  ASSERT_EQ(share.error[0], "");
  ASSERT_EQ(share.error[1], "");
  EXPECT_GT(share.stats[0].bytes, 0u);
  EXPECT_EQ(share.stats[0].bytes, share.stats[1].bytes);
  for (int r = 0; r < 2; ++r) {
    for (size_t i = 0; i < names.size(); ++i) {
      const SolvedModule want = sample_module(names[i], static_cast<int>(i) + 1);
      const SolvedModule& got = share.solved[r][i];
      SCOPED_TRACE("rank " + std::to_string(r) + " module " + names[i]);
      EXPECT_EQ(got.module, want.module);
      EXPECT_EQ(got.loss, want.loss);
      ASSERT_EQ(got.tensors.size(), want.tensors.size());
      for (size_t t = 0; t < want.tensors.size(); ++t) EXPECT_EQ(got.tensors[t].bytes, want.tensors[t].bytes);
      // The owner keeps its dequantized weight; the others get the tensors alone.
      EXPECT_EQ(got.dequant.empty(), owner[i] != r);
    }
  }
}

TEST(SolvedShare, RanksThatDisagreeOnOwnershipFailNamingIt) {
  const std::vector<std::string> names = {"layers.0.attn.wq_a", "layers.0.attn.wq_b", "layers.0.attn.wo_a"};
  TwoRankShare share;
  share.run({{0, 0, 1}, {0, 1, 1}}, names);
  EXPECT_NE(share.error[1].find("rank 0 sent 2 solved modules, this rank expects 1"), std::string::npos)
      << share.error[1];
  EXPECT_NE(share.error[0], "");  // its peer never sends: the wait gives up, as the watchdog would
}

}  // namespace
}  // namespace dsv4::calib

namespace dsv4::calib {
namespace {

TEST(OutputSpace, RefusesWithPathAndBytesWhenTooLittleIsAvailable) {
  EXPECT_NO_THROW(output_space_check("/tmp/out_x", 1000, 500, 1500));
  try {
    output_space_check("/tmp/out_x", 1000, 500, 1499);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("/tmp/out_x"), std::string::npos) << w;
    EXPECT_NE(w.find("needs 1500 more bytes"), std::string::npos) << w;
    EXPECT_NE(w.find("1499 bytes"), std::string::npos) << w;
    EXPECT_NE(w.find("resumes"), std::string::npos) << w;
  }
  // The real filesystem of an absent directory's parent: a petabyte does not fit.
  EXPECT_THROW(output_space_check("/tmp/no/such/dir", uint64_t{1} << 50, 0), Error);
  EXPECT_NO_THROW(output_space_check("/tmp/no/such/dir", 1, 0));
}

}  // namespace
}  // namespace dsv4::calib

namespace dsv4::calib {
namespace {

// The journal's block checksum: the same bytes give the same sum; a flipped byte in the first
// block, in a later block or in a last partial word, or one more zero byte, changes it.
// Without replay a segment stages only the modules the writer's open shard still needs; with
// replay every module. Either way the encoded tensors, not the dequantized weights (a replay
// decodes the tensors). A resume reads back exactly that.
TEST(RunCheckpoint, DamagedRecordFieldIsAUserErrorNamingTheJournal) {
  // Issue 26: a committed record whose field has the wrong type made the resume end in nlohmann's
  // "[json.exception.type_error.302] ...", naming no file.
  const std::string out = dsv4::testing::scratch_path("damaged_record");
  const RunIdentity id{"r", "s", "d", 4, {}};
  {
    auto comm = dist::communicator_self();
    RunCheckpoint ck = RunCheckpoint::open_or_create(out, id, *comm, false);
    ck.commit_segment({}, ck.write_segment_files(0, {}, nullptr, 0, false, false, {}), 1);
  }
  const std::string journal = out + "/.calib_run/journal.jsonl";
  std::string text = read_file(journal);
  const size_t at = text.find("\"segment\":0");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, 11, "\"segment\":\"zero\"");
  write_file_atomic(journal, text);
  auto comm = dist::communicator_self();
  try {
    (void)RunCheckpoint::open_or_create(out, id, *comm, false);
    ADD_FAILURE() << "a damaged record must be refused";
  } catch (const Error& e) {
    EXPECT_TRUE(e.user()) << e.what();
    EXPECT_NE(std::string(e.what()).find(journal + " line 2, field \"segment\": the record is damaged (type must be "
                                         "number"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("pass --restart"), std::string::npos) << e.what();
  }
}

// A committed record without its `report` (issue 26: nlohmann's out_of_range, naming no file).
TEST(RunCheckpoint, MissingRecordFieldIsAUserErrorNamingLineAndField) {
  const std::string out = dsv4::testing::scratch_path("missing_report");
  const RunIdentity id{"r", "s", "d", 4, {}};
  {
    auto comm = dist::communicator_self();
    RunCheckpoint ck = RunCheckpoint::open_or_create(out, id, *comm, false);
    ck.commit_segment({}, ck.write_segment_files(0, {}, nullptr, 0, false, false, {}), 1);
    ck.commit_segment({}, ck.write_segment_files(1, {}, nullptr, 0, false, false, {}), 2);
  }
  const std::string journal = out + "/.calib_run/journal.jsonl";
  std::string text = read_file(journal);
  const size_t line3 = text.find("\"segment\":1");
  ASSERT_NE(line3, std::string::npos) << text;
  const size_t at = text.find("\"report\":", line3);
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, 9, "\"xreport\":");
  write_file_atomic(journal, text);
  auto comm = dist::communicator_self();
  expect_user_error([&] { (void)RunCheckpoint::open_or_create(out, id, *comm, false); },
                    {journal + " line 3, field \"report\": the record is damaged", "report", "pass --restart"});
}

// A record listing a file outside the run directory (or one that is not a regular file) was
// damaged: refused before that path is opened or checksummed.
TEST(RunCheckpoint, RecordFileOutsideTheRunDirectoryIsAUserError) {
  const std::string out = dsv4::testing::scratch_path("record_outside");
  const RunIdentity id{"r", "s", "d", 4, {}};
  {
    auto comm = dist::communicator_self();
    RunCheckpoint ck = RunCheckpoint::open_or_create(out, id, *comm, false);
    ck.commit_segment({}, ck.write_segment_files(0, {sample_module("layers.0.attn.wq_a", 1)}, nullptr, 0, false, true,
                                                 {}),
                      1);
  }
  const std::string journal = out + "/.calib_run/journal.jsonl";
  const std::string text = read_file(journal);
  const size_t at = text.find("\"file\":\"", text.find("\"staged\":{"));
  ASSERT_NE(at, std::string::npos) << text;
  const size_t value = at + 8, end = text.find('"', value);
  for (const std::string& bad : {std::string("../../journal.jsonl"), std::string("/etc/hostname")}) {
    std::string damaged = text;
    damaged.replace(value, end - value, bad);
    write_file_atomic(journal, damaged);
    auto comm = dist::communicator_self();
    expect_user_error([&] { (void)RunCheckpoint::open_or_create(out, id, *comm, false); },
                      {"\"" + bad + "\" listed in the journal is not a file name inside", "pass --restart"});
  }
}

TEST(RunCheckpoint, StagesWhatTheWriterAndTheReplayNeed) {
  const std::string out = dsv4::testing::scratch_path("staging");
  const RunIdentity id{"r", "s", "d", 4, {}};
  const std::vector<SolvedModule> solved = {sample_module("layers.0.attn.wq_a", 1), sample_module("layers.0.attn.wkv", 2),
                                            sample_module("layers.0.attn.wo_b", 3)};
  {
    auto comm = dist::communicator_self();
    RunCheckpoint ck = RunCheckpoint::open_or_create(out, id, *comm, false);
    ck.commit_segment({}, ck.write_segment_files(0, {}, nullptr, 0, false, false, {}), 1);
    ck.commit_segment({}, ck.write_segment_files(1, solved, nullptr, 0, false, false, {"layers.0.attn.wkv"}), 1);
    ck.commit_segment({}, ck.write_segment_files(2, solved, nullptr, 0, false, true, {}), 1);
    const RunCheckpoint::SegmentFiles none = ck.write_segment_files(3, solved, nullptr, 0, false, false, {});
    EXPECT_TRUE(none.staged.is_null()) << "nothing open, no replay: nothing staged";
  }
  auto comm = dist::communicator_self();
  const RunCheckpoint ck = RunCheckpoint::open_or_create(out, id, *comm, false);
  EXPECT_EQ(ck.first_segment(), 3);
  EXPECT_FALSE(ck.has_staged(0));
  ASSERT_TRUE(ck.has_staged(1));
  const std::vector<SolvedModule> writer_only = ck.staged(1);
  ASSERT_EQ(writer_only.size(), 1u);
  EXPECT_EQ(writer_only[0].module, "layers.0.attn.wkv");
  EXPECT_EQ(writer_only[0].tensors.size(), 2u);
  EXPECT_TRUE(writer_only[0].dequant.empty());
  ASSERT_TRUE(ck.has_staged(2));
  const std::vector<SolvedModule> replay = ck.staged(2);
  ASSERT_EQ(replay.size(), 3u);
  for (size_t i = 0; i < replay.size(); ++i) {
    EXPECT_EQ(replay[i].module, solved[i].module);
    EXPECT_TRUE(replay[i].dequant.empty()) << replay[i].module;
    ASSERT_EQ(replay[i].tensors.size(), solved[i].tensors.size());
    EXPECT_EQ(replay[i].tensors[0].bytes, solved[i].tensors[0].bytes);
  }
}

// States that are all bf16 values (the GPU forward's) are snapshotted as bf16, others as f32;
// both load back to the same floats, also re-partitioned for another rank's sample range.
TEST(RunCheckpoint, SnapshotsBf16StatesAtHalfTheBytesAndLoadThemBackExactly) {
  for (const bool bf16 : {true, false}) {
    const std::string out = dsv4::testing::scratch_path(bf16 ? "snap_bf16" : "snap_f32");
    const std::vector<int64_t> lengths = {3, 5, 2};
    const int64_t per_token = 4;
    std::vector<std::vector<float>> states;
    for (size_t k = 0; k < lengths.size(); ++k) {
      std::vector<float> s(static_cast<size_t>(lengths[k] * per_token));
      for (size_t i = 0; i < s.size(); ++i) {
        const float v = 0.37f * static_cast<float>(i + 7 * k) - 2.0f;
        s[i] = bf16 ? bf16_decode(bf16_encode(v)) : v;
      }
      states.push_back(std::move(s));
    }
    if (!bf16) states[1][3] = 1.0f + 1.0f / 1024.0f / 64.0f;  // one value off the bf16 grid is enough
    const RunIdentity id{"r", "s", "d", 2, {}};
    {
      auto comm = dist::communicator_self();
      RunCheckpoint ck = RunCheckpoint::open_or_create(out, id, *comm, false);
      const RunCheckpoint::SegmentFiles files = ck.write_segment_files(0, {}, &states, 0, true, false, {});
      EXPECT_EQ(files.snapshot_mine["dtype"], bf16 ? "bf16" : "f32");
      EXPECT_EQ(files.snapshot_mine["bytes"].get<int64_t>(), 10 * per_token * (bf16 ? 2 : 4));
      ck.commit_segment({}, files, 1);
    }
    auto comm = dist::communicator_self();
    const RunCheckpoint ck = RunCheckpoint::open_or_create(out, id, *comm, false);
    ASSERT_EQ(ck.snapshot_segment(), 0);
    EXPECT_EQ(ck.load_snapshot(0, 3, lengths, per_token), states);
    const std::vector<std::vector<float>> tail = ck.load_snapshot(1, 2, lengths, per_token);
    ASSERT_EQ(tail.size(), 2u);
    EXPECT_EQ(tail[0], states[1]);
    EXPECT_EQ(tail[1], states[2]);
  }
}

TEST(RunCheckpoint, FileChecksumSeesEveryByteAndTheSize) {
  const std::string path = dsv4::testing::scratch_path("checksum.bin");
  std::vector<char> bytes((33u << 20) + 5);  // three 16 MiB blocks, the last one partial
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>((i * 2654435761u) >> 13);
  auto write = [&](const std::vector<char>& b) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(b.data(), 1, b.size(), f), b.size());
    std::fclose(f);
  };
  write(bytes);
  const std::string base = file_checksum_hex(path);
  EXPECT_EQ(base.size(), 16u);
  EXPECT_EQ(file_checksum_hex(path), base);
  for (const size_t at : {size_t{3}, (size_t{17} << 20) + 9, bytes.size() - 1}) {
    std::vector<char> b = bytes;
    b[at] ^= 1;
    write(b);
    EXPECT_NE(file_checksum_hex(path), base) << "byte " << at;
  }
  std::vector<char> longer = bytes;
  longer.push_back(0);
  write(longer);
  EXPECT_NE(file_checksum_hex(path), base) << "one more zero byte";
  std::remove(path.c_str());
}

}  // namespace
}  // namespace dsv4::calib
