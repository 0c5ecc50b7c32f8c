// segment_commit.h: a segment's write and commit files on a background thread while the next
// segment computes (DESIGN §2, §4). The writer and the journal see segments in order: one job at
// a time. settle() waits for the job and commits it (the journal line is a collective, so it runs
// on the thread that runs every collective) and hands the report to the caller's callback.
//
//   SegmentCommitter commits(writer, checkpoint, first_sample, on_layer, report.layers);
//   commits.start(std::move(layer_report), std::move(solved), states, snapshot_due, replay_needs);
//   ... next segment: decode, pass A, solve, share ...
//   commits.settle(false);                   // before pass B overwrites the states it reads
//   commits.settle(true);                    // after the last segment
//
// The states the job snapshots must stay untouched until settle() returns. Destroying the
// committer waits for an unsettled job (and drops its result): declare it after the states'
// owner. Tests: tests/calib/test_pipeline.cpp, tests/e2e/cli_resume.sh (kills in every phase).
#pragma once

#include <functional>
#include <future>
#include <optional>
#include <vector>

#include "calib/artifact_writer.h"
#include "calib/layer_report.h"
#include "calib/module_solve.h"
#include "calib/run_checkpoint.h"

namespace dsv4::calib {

class SegmentCommitter {
 public:
  // `writer` is null on ranks that do not write, `checkpoint` null for a run that is not resumable.
  SegmentCommitter(ArtifactWriter* writer, RunCheckpoint* checkpoint, int64_t first_sample,
                   std::function<void(const LayerReport&)> on_layer, std::vector<LayerReport>& committed);

  // Starts the segment's write (rank 0) and commit files: a snapshot of `states` (this rank's
  // layer outputs; null when the segment ran no forward) when `snapshot_due`, the solved modules
  // staged for a replay when `replay_needs_weights` (else only those the writer's open shard needs).
  void start(LayerReport report, std::vector<SolvedModule> solved, const std::vector<std::vector<float>>* states,
             bool snapshot_due, bool replay_needs_weights);
  // Waits for the pending job (rethrowing its error) and commits it; no-op without one. With
  // `last` the wait counts in the job's own report (no later segment takes it).
  void settle(bool last);

 private:
  struct Files {
    RunCheckpoint::SegmentFiles files;
    int open_from_segment = 0;
    double seconds = 0.0;
  };
  struct Pending {
    LayerReport report;
    std::future<Files> job;
  };
  ArtifactWriter* writer_;
  RunCheckpoint* checkpoint_;
  int64_t first_sample_;
  std::function<void(const LayerReport&)> on_layer_;
  std::vector<LayerReport>& committed_;
  std::optional<Pending> pending_;
};

}  // namespace dsv4::calib
