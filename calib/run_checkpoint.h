// run_checkpoint.h: what makes a run resumable after a kill at any instant (DESIGN §4). The run
// state lives in OUT/.calib_run/ beside the shards being written:
//
//   journal.jsonl        header (recipe, source and data hashes, shard names), then one fsync'd
//                        line per committed segment: its report, the shards committed with it
//                        (bytes, FNV-1a 64), the staged file, the activation snapshot
//   solved/seg-NNNNN.bin the segment's solved modules (solved_share.h format, encoded tensors
//                        only): those with a tensor in a shard still open (the writer re-emits
//                        them on resume), or all of them while no later snapshot exists (replay
//                        decodes them to the weights pass B used)
//   snap/seg-NNNNN/samples-B-E.f32   layer outputs of samples [B, E), written by the rank that
//                        owns them, every run.checkpoint_every layers; any world size can load
//                        them (ranges are re-partitioned on load). `.bf16` instead when every
//                        value is a bf16 value (the GPU forward's states): half the bytes, the
//                        same floats on load
//
// Every file is written to a temporary name, fsync'd, renamed, the directory fsync'd; the journal
// line is appended after everything it names is durable, so a kill loses at most the segments in
// flight: the one being computed and the one whose files are still being written (the pipeline
// overlaps the two). An append cut short leaves a fragment that the next resume cuts off before it
// appends (run_journal.h). finish() removes .calib_run after the artifact's index is committed.
// The run's lock, .calib_run/lock (run_lock.h), survives --restart and an unstarted run state.
//
//   RunCheckpoint ck = RunCheckpoint::open_or_create(out, identity, shard_names, comm, restart);
//   if (ck.resuming()) { ck.first_segment(); ck.snapshot_segment(); ck.load_snapshot(...); ck.staged(seg); }
//   files = ck.write_segment_files(seg, solved, states, first_sample, snapshot_due, replay);
//   ck.commit_segment(report_json, files, open_from_segment);      // every rank, in segment order
//
// Resume refuses (naming what changed, suggesting --restart) when the recipe, the source or the
// calibration data differ from the journal's, and when a committed shard or staged file fails its
// checksum. Tests: tests/e2e/cli_resume.sh (kills at random instants and at every phase).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "calib/module_solve.h"
#include "dist/communicator.h"

namespace dsv4::calib {

struct RunIdentity {
  std::string recipe_fnv, source_fnv, data_fnv;  // hex FNV-1a 64
  int num_segments = 0;
  std::vector<std::string> shard_names;
};

class RunCheckpoint {
 public:
  // `out` must be absent or empty (a new run) or hold a journal (resume; restart=true wipes the
  // run state and the shards it lists, then starts fresh). Any other content is refused.
  static RunCheckpoint open_or_create(const std::string& out, const RunIdentity& identity, dist::Communicator& comm,
                                      bool restart);
  // The same refusal, on its own and cheap, so that a run can refuse an occupied `out` before it
  // loads any data: a user error unless `out` is absent, empty, holds a journal (an interrupted
  // run, which open_or_create then checks against this run's identity), or holds only the run
  // state of a run killed before its journal existed (open_or_create starts that one over).
  static void out_dir_check(const std::string& out);

  bool resuming() const { return first_segment_ > 0; }
  int first_segment() const { return first_segment_; }  // the next segment to compute
  // Segment reports of the committed segments (layer_report_json), in order.
  const std::vector<nlohmann::ordered_json>& committed_reports() const { return reports_; }
  // The newest committed snapshot: the states after this segment (-1: none).
  int snapshot_segment() const { return snapshot_segment_; }
  // This rank's states [first_sample, first_sample + n) after snapshot_segment(); lengths are the
  // token counts of ALL samples (every rank has them), per_token the floats per token.
  std::vector<std::vector<float>> load_snapshot(int64_t first_sample, int64_t n, const std::vector<int64_t>& lengths,
                                                int64_t per_token) const;
  // Whether a committed segment's solved modules are staged, and loading them (throws if not).
  bool has_staged(int segment) const { return staged_segments_.count(segment) > 0; }
  std::vector<SolvedModule> staged(int segment) const;

  // Called by the writer (rank 0) for every shard it commits; recorded in the next journal line.
  void on_shard_committed(const std::string& shard_name);

  // A segment's commit is two steps, so that its files can be written on a background thread
  // while the pipeline computes the next segment:
  //   1. write_segment_files (every rank, after the segment is written on rank 0 and `states`
  //      hold this rank's layer outputs, samples from first_sample): this rank's snapshot part
  //      when due, and on rank 0 the staged modules. It touches neither the communicator nor the
  //      journal state.
  //   2. commit_segment (every rank, in segment order, on the thread that runs the collectives):
  //      gathers the snapshot records, appends the journal line (rank 0), drops what is no
  //      longer needed. `open_from_segment`: the lowest segment whose tensors are still in an
  //      open shard (rank 0's writer, read after step 1's segment was written).
  struct SegmentFiles {
    int segment = -1;
    bool snapshot = false;                                // taken (every rank agrees)
    nlohmann::ordered_json snapshot_mine = nullptr;       // this rank's file record; null: none
    nlohmann::ordered_json staged = nullptr;              // rank 0: the staged file record, or null
  };
  // Without replay only the modules `writer_needs` names are staged (the writer's open shard;
  // empty: none); with replay every solved module. Staged modules hold their encoded tensors,
  // not the dequantized weight (a replay decodes the tensors: encoded_linear_decode).
  SegmentFiles write_segment_files(int segment, const std::vector<SolvedModule>& solved,
                                   const std::vector<std::vector<float>>* states, int64_t first_sample,
                                   bool snapshot_due, bool replay_needs_it,
                                   const std::set<std::string>& writer_needs) const;
  void commit_segment(const nlohmann::ordered_json& report, const SegmentFiles& files, int open_from_segment);
  // After the artifact's index is committed (rank 0): removes .calib_run.
  void finish();

  const std::string& run_dir() const { return run_dir_; }

 private:
  RunCheckpoint(std::string out, dist::Communicator& comm) : out_(std::move(out)), comm_(&comm) {}
  void append(const nlohmann::ordered_json& line);
  std::string staged_path(int segment) const;
  std::string snapshot_dir(int segment) const;

  std::string out_, run_dir_;
  dist::Communicator* comm_;
  int first_segment_ = 0;
  int snapshot_segment_ = -1;
  nlohmann::ordered_json snapshot_files_;  // [{file, begin, end, bytes, sum64}] of snapshot_segment_
  std::vector<nlohmann::ordered_json> reports_;
  std::map<int, bool> staged_segments_;          // staged files present -> needed for replay
  nlohmann::ordered_json pending_shards_ = nlohmann::ordered_json::array();
};

// FNV-1a 64 of a file's bytes, as 16 hex digits (streamed): the checksum of journals written
// before file_checksum_hex, still accepted on resume.
std::string file_fnv_hex(const std::string& path);
// The journal's file checksum, 16 hex digits: FNV-1a 64 over 8-byte words of each 16 MiB block,
// the blocks read and hashed on all cores, their digests and the size folded in order. Shards
// are GBs at full width: the byte-serial FNV read them back at about 1 GB/s on one core.
std::string file_checksum_hex(const std::string& path);

}  // namespace dsv4::calib
