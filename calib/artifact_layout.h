// artifact_layout.h: every tensor the artifact will hold, decided before any work starts: name,
// dtype, shape, where its bytes come from, and the segment (top level, layer L, MTP stage S) that
// produces it. The writer plans its shards from it, the pipeline fills it segment by segment, and
// `verify` checks an artifact's key set against it (DESIGN §3).
//
//   ArtifactLayout l = artifact_layout(recipe, plan, config, source);
//   for (const OutputTensor& t : l.tensors) ...   // ordered by segment, then name
//
// Rules, for each tensor of the source checkpoint:
//   - a quantized module's `.weight` (and `.scale`) become the compressed-tensors tensors of its
//     scheme (compressed_module_layout + activation_layout), named `<module>.<tensor>`;
//   - an unquantized Linear stored FP8 or MXFP4 becomes `<module>.weight` BF16, the exact decode
//     of its source (its `.scale` is dropped: no source `.scale` leaks into the artifact);
//   - everything else (BF16 linears, norms, FP32 HC/sink/bias/ape tensors, I64 tid2eid, unknown
//     extras) is copied byte for byte with its dtype and shape;
//   - with output.mtp_aliases, each MTP stage S gets `mtp.S.head.weight` and
//     `mtp.S.emb.tok_emb.weight`, byte copies of `head.weight` and `embed.weight` (vLLM's MTP
//     loader reads them there).
//   - appmana-dsv4-int keeps the source's shard names: each tensor goes to the shard its source
//     tensor (a module's `.weight`) is in, the MTP aliases to `model-mtp-shared.safetensors`; a
//     tensor is then written with the segment of the shard's order (a top-level copy stored
//     after layer L's tensors is written with layer L), which the shards allow when the source
//     is stored layer by layer, as the release is (else the writer's own shards are used).
// Tests: tests/calib/test_artifact_layout.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "calib/module_plan.h"
#include "common/safetensors.h"
#include "model/config.h"

namespace dsv4::calib {

enum class OutputOrigin : uint8_t { kCopy, kDecodeBf16, kQuantized, kAlias };
std::string_view output_origin_name(OutputOrigin o);

struct OutputTensor {
  std::string name;
  DType dtype = DType::kBF16;
  std::vector<int64_t> shape;
  OutputOrigin origin = OutputOrigin::kCopy;
  std::string source;  // kCopy / kAlias: the source tensor; kDecodeBf16 / kQuantized: the module
  int module = -1;     // index into ModulePlan::modules for kDecodeBf16 / kQuantized
  std::string leaf;    // kQuantized: the compressed-tensors name after the module ("weight_packed")
  int segment = 0;     // 0: top level; 1 + L: main layer L; 1 + num_layers + S: MTP stage S
                       // (with source shards kept, a copy may be written with a later segment)
  int shard = -1;      // index into ArtifactLayout::shard_names when the profile keeps them
};

struct ArtifactLayout {
  std::vector<OutputTensor> tensors;  // segment order, then by name
  int num_segments = 0;
  // Set when the profile keeps the source's shard names (appmana-dsv4-int): every tensor's
  // `shard`, in order, and extra index metadata; empty: the writer shards by output.shard_size.
  std::vector<std::string> shard_names;
  std::vector<std::pair<std::string, std::string>> index_metadata;
  bool index_total_size_string = false;  // the index's total_size as a decimal string (appmana's seed)
  uint64_t bytes() const;
  std::vector<TensorSpec> specs() const;  // for CheckpointWriter, same order
};

// Which segment a tensor or module name belongs to.
int artifact_segment(std::string_view name, const model::ModelConfig& config);
std::string artifact_segment_name(int segment, const model::ModelConfig& config);  // "top", "layers.3", "mtp.0"

// Whether a planned module's GPTQ solve writes weight_g_idx (actorder group on a group strategy;
// never for the grouped wo_a, which is solved per output group).
bool module_writes_g_idx(const PlannedModule& module);

ArtifactLayout artifact_layout(const Recipe& recipe, const ModulePlan& plan, const model::ModelConfig& config,
                               const Checkpoint& source);

}  // namespace dsv4::calib
