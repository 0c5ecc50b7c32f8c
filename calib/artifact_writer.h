// artifact_writer.h: streams the artifact's shards segment by segment as the pipeline finishes
// them, then writes the side files. Shards and the index are committed only by finish(), so a
// failed run leaves no partial checkpoint that could pass for a finished one.
//
//   ArtifactWriter w(recipe.output, layout, source, config);   // refuses a non-empty out dir
//   w.write_segment(0, {});                                    // top level: copies only
//   w.write_segment(1 + L, solved_of_layer_L);                 // quantized + copied + decoded
//   w.finish({{"config.json", cfg.dump(2)}, {"recipe.yaml", ...}});
//
// Per tensor (artifact_layout.h): copies and aliases stream from the source mapping untouched;
// decoded modules are widened to fp32 by the model's decoder and narrowed to BF16, which is
// exact for FP8 e4m3 × e8m0 and e2m1 × e8m0 values; quantized tensors come from the solved
// modules, checked against the layout's dtype and shape.
// Tests: tests/calib/test_pipeline.cpp (through whole runs).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "calib/artifact_layout.h"
#include "calib/module_solve.h"
#include "calib/recipe.h"

namespace dsv4::calib {

class ArtifactWriter {
 public:
  ArtifactWriter(const OutputSection& output, const ArtifactLayout& layout, const Checkpoint& source,
                 const model::ModelConfig& config);
  ~ArtifactWriter();

  // Resumable runs (run_checkpoint.h). Commit every shard as soon as it is complete, reporting
  // it; before the first write only.
  void commit_shards_as_written(std::function<void(const std::string& shard_name)> on_commit);
  // Continue a run whose segments before `segment` are committed: shards before the one holding
  // the segment's first tensor are on disk; the earlier tensors of that shard are written again
  // from `staged(s)` (the solved modules of segment s; copies and decodes come from the source).
  void resume_at(int segment, const std::function<std::vector<SolvedModule>(int)>& staged);
  // The lowest segment with a tensor in a shard not yet committed (num_segments when all are).
  int open_from_segment() const;
  // The quantized modules of `segment` with a tensor in a shard not yet committed: what a resume
  // would write again from the staged modules (the others are on disk for good).
  std::set<std::string> modules_in_open_shard(int segment) const;
  // The shard names the layout gives (known before writing).
  static std::vector<std::string> planned_shard_names(const ArtifactLayout& layout, uint64_t shard_bytes);

  // Writes every tensor of `segment` (segments in increasing order, each once). `solved` holds
  // the quantized modules of the segment by release name.
  void write_segment(int segment, const std::map<std::string, const SolvedModule*>& solved);
  // After the last segment: commits the shards and index, then writes each (file name, content)
  // atomically, and copies the source's tokenizer files when output.copy_tokenizer.
  void finish(const std::vector<std::pair<std::string, std::string>>& files);

  const std::string& dir() const { return dir_; }
  const std::vector<std::string>& shard_names() const;
  uint64_t bytes_written() const { return bytes_written_; }

 private:
  std::string dir_;
  bool copy_tokenizer_;
  const ArtifactLayout& layout_;
  const Checkpoint& source_;
  int fp8_block_;
  std::unique_ptr<CheckpointWriter> writer_;
  size_t next_ = 0;       // next layout index to write
  int next_segment_ = 0;
  uint64_t bytes_written_ = 0;
};

// Throws unless `dir` is usable as an output directory: set, absent or empty, not the source.
// (calibrate_run checks through RunCheckpoint, which also accepts an interrupted run to resume.)
void artifact_out_dir_check(const std::string& dir, const std::string& source_dir);

// Free-space preflight: throws naming `dir`, the bytes needed (artifact and run-state parts: the
// activation snapshots and the weights staged for replay) and
// the bytes available when the filesystem holding `dir` (or its nearest existing parent) has less
// than `artifact_bytes + snapshot_bytes` available. `available` < 0: ask the filesystem.
void output_space_check(const std::string& dir, uint64_t artifact_bytes, uint64_t snapshot_bytes,
                        int64_t available = -1);

// The tokenizer and generation files copied from a model directory beside its weights.
std::vector<std::string> tokenizer_file_names();

}  // namespace dsv4::calib
