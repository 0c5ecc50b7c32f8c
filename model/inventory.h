// inventory.h: the tensors a DeepSeek-V4 checkpoint in the release layout must hold, derived
// from a ModelConfig: release name, safetensors dtype, on-disk shape, and how it is encoded.
//
//   auto tensors = inventory_expected(config, /*mtp_stages=*/1);
//   InventoryTotals t = inventory_totals(tensors);   // flash(43, 256): 69187 tensors, 159609485896 B
//   int stages = inventory_mtp_stages(ckpt.names()); // from the mtp.N. prefixes actually present
//
// Order: embed, layers 0..N-1, the final norm/head/hc_head, then the MTP stages (the release
// keeps MTP in its last shard). Within a quantized linear the weight precedes its `.scale`.
// Reference: ../shared/reference/dsv4_architecture.md §2. Tests: tests/model/test_inventory.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "model/config.h"

namespace dsv4::model {

// How a tensor's bytes encode values.
enum class TensorEncoding {
  kPlain,     // BF16 / F32 / I64 values as they are
  kFp8Block,  // F8_E4M3 weight; sibling `.scale` holds one scale per 128×128 block
  kMxfp4,     // I8 weight, two e2m1 codes per byte (low nibble = even input); `.scale` per 32
  kScale,     // the `.scale` of a kFp8Block or kMxfp4 weight
};

struct ExpectedTensor {
  std::string name;
  DType dtype = DType::kBF16;
  std::vector<int64_t> shape;          // on disk
  std::vector<int64_t> logical_shape;  // [out, in] of the decoded weight (= shape unless packed)
  TensorEncoding encoding = TensorEncoding::kPlain;
  int layer = -1;   // -1: top level; 0..num_layers-1: main layer; num_layers + s: MTP stage s
  int expert = -1;  // routed expert index, or -1

  uint64_t bytes() const;
};

struct InventoryTotals {
  uint64_t tensors = 0;
  uint64_t bytes = 0;
};

std::vector<ExpectedTensor> inventory_expected(const ModelConfig& config, int mtp_stages);
InventoryTotals inventory_totals(const std::vector<ExpectedTensor>& tensors);

// Number of MTP stages in a list of tensor names: the distinct `mtp.N.` prefixes. Throws if they
// are not exactly 0..K-1 (a gap means a damaged checkpoint, and guessing would drop a stage).
int inventory_mtp_stages(const std::vector<std::string>& names);

// The family of a tensor name: layer, expert and MTP indices replaced by '*', e.g.
// "layers.7.ffn.experts.31.w1.scale" -> "layers.*.ffn.experts.*.w1.scale".
std::string tensor_family(std::string_view name);

}  // namespace dsv4::model
