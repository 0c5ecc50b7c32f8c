// checkpoint_audit.h: compares an opened checkpoint with the inventory its config implies and
// summarises it by tensor family. Used by `dsv4-calib inspect` and, later, by the run's
// preflight, so a damaged or foreign checkpoint is rejected before hours of work.
//
//   Checkpoint ckpt = Checkpoint::open(dir);
//   AuditReport r = checkpoint_audit(ckpt, ModelConfig::from_file(dir + "/config.json"));
//   if (!r.ok()) for (auto& m : r.missing) ...
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "model/config.h"

namespace dsv4::model {

struct FamilyStats {
  uint64_t count = 0;
  uint64_t bytes = 0;
  std::string dtypes;  // comma-separated distinct dtypes seen
};

struct AuditReport {
  int mtp_stages = 0;              // from the mtp.N. prefixes present
  uint64_t tensors = 0;
  uint64_t bytes = 0;              // sum of tensor bytes
  uint64_t expected_tensors = 0;
  uint64_t expected_bytes = 0;
  int shards = 0;
  uint64_t index_total_size = 0;   // 0 without an index
  std::map<std::string, FamilyStats> families;
  std::vector<std::string> missing;     // expected, absent
  std::vector<std::string> unexpected;  // present, not expected
  std::vector<std::string> mismatched;  // "name: dtype F32, expected BF16" etc.
  std::vector<std::string> problems;    // checkpoint-level (index total_size, ...)

  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty() && problems.empty(); }
};

AuditReport checkpoint_audit(const Checkpoint& checkpoint, const ModelConfig& config);

}  // namespace dsv4::model
