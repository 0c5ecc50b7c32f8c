// checkpoint_audit.cpp: inventory check and family summary of a checkpoint (see header).
#include "model/checkpoint_audit.h"

#include <set>
#include <unordered_map>

#include "common/check.h"
#include "model/inventory.h"

namespace dsv4::model {
namespace {

void add_dtype(std::string& list, std::string_view dtype) {
  for (size_t pos = 0; pos <= list.size();) {
    const size_t comma = list.find(',', pos);
    const size_t end = comma == std::string::npos ? list.size() : comma;
    if (list.compare(pos, end - pos, dtype) == 0) return;
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (!list.empty()) list += ",";
  list += dtype;
}

}  // namespace

AuditReport checkpoint_audit(const Checkpoint& ckpt, const ModelConfig& config) {
  AuditReport r;
  const std::vector<std::string> names = ckpt.names();
  r.mtp_stages = inventory_mtp_stages(names);
  r.shards = static_cast<int>(ckpt.shard_files().size());
  r.index_total_size = ckpt.index_total_size();

  for (const auto& n : names) {
    const TensorInfo& t = ckpt.info(n);
    FamilyStats& f = r.families[tensor_family(n)];
    f.count++;
    f.bytes += t.bytes();
    add_dtype(f.dtypes, dtype_name(t.dtype));
    r.tensors++;
    r.bytes += t.bytes();
  }

  const auto expected = inventory_expected(config, r.mtp_stages);
  std::unordered_map<std::string, const ExpectedTensor*> by_name;
  for (const auto& e : expected) {
    by_name[e.name] = &e;
    r.expected_tensors++;
    r.expected_bytes += e.bytes();
    if (!ckpt.contains(e.name)) {
      r.missing.push_back(e.name);
      continue;
    }
    const TensorInfo& t = ckpt.info(e.name);
    if (t.dtype != e.dtype || t.shape != e.shape) {
      r.mismatched.push_back(e.name + ": " + std::string(dtype_name(t.dtype)) + " " +
                             shape_string(t.shape) + ", expected " + std::string(dtype_name(e.dtype)) +
                             " " + shape_string(e.shape));
    }
  }
  for (const auto& n : names) {
    if (!by_name.count(n)) r.unexpected.push_back(n);
  }
  // The field's pipelines silently dropped MTP; a checkpoint with fewer MTP stages than its config
  // declares is damaged (or was written by such a pipeline), not a smaller model.
  if (r.mtp_stages != config.num_nextn_predict_layers) {
    r.problems.push_back("config.json has num_nextn_predict_layers = " +
                         std::to_string(config.num_nextn_predict_layers) + " but the checkpoint holds " +
                         std::to_string(r.mtp_stages) + " MTP stage(s) (mtp.N. tensors)");
  }
  if (r.index_total_size != 0 && r.index_total_size != r.bytes) {
    r.problems.push_back("index metadata.total_size is " + std::to_string(r.index_total_size) +
                         " but the tensors hold " + std::to_string(r.bytes) + " bytes");
  }
  return r;
}

}  // namespace dsv4::model
