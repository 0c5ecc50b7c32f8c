// segment_commit.cpp: the background write and the in-order commit (see segment_commit.h).
#include "calib/segment_commit.h"

#include <map>
#include <set>
#include <string>

#include "common/stopwatch.h"
#include "dist/run_phase.h"

namespace dsv4::calib {

SegmentCommitter::SegmentCommitter(ArtifactWriter* writer, RunCheckpoint* checkpoint, int64_t first_sample,
                                   std::function<void(const LayerReport&)> on_layer,
                                   std::vector<LayerReport>& committed)
    : writer_(writer), checkpoint_(checkpoint), first_sample_(first_sample), on_layer_(std::move(on_layer)),
      committed_(committed) {}

void SegmentCommitter::start(LayerReport report, std::vector<SolvedModule> solved,
                             const std::vector<std::vector<float>>* states, bool snapshot_due,
                             bool replay_needs_weights) {
  const int seg = report.segment;
  const std::string name = report.name;
  auto job = [this, seg, name, states, snapshot_due, replay_needs_weights, solved = std::move(solved)] {
    struct ClearPhase {
      ~ClearPhase() { dist::RunPhase::clear_background(); }
    } clear_phase;
    const auto t0 = SteadyClock::now();
    Files f;
    dist::RunPhase::set_background(name, "write");
    std::set<std::string> writer_needs;
    if (writer_) {
      std::map<std::string, const SolvedModule*> by_name;
      for (const SolvedModule& m : solved) by_name[m.module] = &m;
      writer_->write_segment(seg, by_name);
      f.open_from_segment = writer_->open_from_segment();
      writer_needs = writer_->modules_in_open_shard(seg);
    }
    if (checkpoint_) {
      f.files = checkpoint_->write_segment_files(seg, solved, states, first_sample_, snapshot_due,
                                                 replay_needs_weights, writer_needs);
    }
    f.seconds = seconds_since(t0);
    return f;
  };
  pending_.emplace(Pending{std::move(report), std::async(std::launch::async, std::move(job))});
}

void SegmentCommitter::settle(bool last) {
  if (!pending_) return;
  const auto waited_from = SteadyClock::now();
  Files f = pending_->job.get();  // rethrows the job's error here
  LayerReport lr = std::move(pending_->report);
  pending_.reset();
  lr.seconds_write = f.seconds;
  if (last) {
    const double waited = seconds_since(waited_from);
    lr.seconds_wait += waited;
    lr.seconds += waited;
  }
  if (checkpoint_) checkpoint_->commit_segment(layer_report_json(lr), f.files, f.open_from_segment);
  if (on_layer_) on_layer_(lr);
  committed_.push_back(std::move(lr));
}

}  // namespace dsv4::calib
