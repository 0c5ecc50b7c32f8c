// weights_import.h: a release checkpoint's tensor values taken from a checkpoint of unencoded
// (F32 or BF16) weights, for `make-model --weights DIR`: a model trained elsewhere (e.g. with
// transformers' DeepseekV4ForCausalLM, tests/fixtures/trained_tiny/train.py) becomes a checkpoint in
// the exact release layout, rounded as the release rounds (release_encode.h).
//
//   const Checkpoint src = Checkpoint::open(dir);
//   const WeightsImport in(src, config, inventory_expected(config, stages));  // checks everything
//   EncodedLinear e = in.linear(weight, scale);   EncodedBytes b = in.plain(norm);
//
// Each release tensor is looked up under its release name, else under its transformers name
// (NameMap::hf_tensor): `model.layers.3.self_attn.q_a_proj.weight`, and for a routed expert its
// slice of the stacked `mlp.experts.gate_up_proj` [E, 2I, D] (w1 rows [0, I), w3 rows [I, 2I)) or
// `mlp.experts.down_proj` [E, D, I]. The MTP block has no transformers names: `mtp.S.*` release
// names only. `.scale` tensors are computed, never read. The constructor checks, before anything
// is written, that every tensor is found with the logical shape and an accepted dtype (F32/BF16;
// I64 for tid2eid), that none holds NaN or infinity, and that no source tensor is left unused (a
// misspelled name would otherwise be a silently missing weight); errors name the directory, the
// tensor and what was expected.
// Tests: tests/model/test_weights_import.cpp.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "model/config.h"
#include "model/inventory.h"
#include "model/release_encode.h"

namespace dsv4::model {

class WeightsImport {
 public:
  // `src` must outlive this object. `tensors`: the release inventory to fill.
  WeightsImport(const Checkpoint& src, const ModelConfig& config, const std::vector<ExpectedTensor>& tensors);

  // A kPlain tensor: BF16/F32 rounded from the source values, I64 copied.
  EncodedBytes plain(const ExpectedTensor& tensor) const;
  // A kFp8Block or kMxfp4 weight and its scale, encoded from the source values.
  EncodedLinear linear(const ExpectedTensor& weight, const ExpectedTensor& scale, int64_t fp8_block) const;

  // implementation details
  // Where a release tensor's values sit in the source: rows [row0, row0 + rows) of `name` seen as
  // [*, cols] (an expert's slice of a stacked tensor starts at that expert's first row).
  struct Slice {
    std::string name;
    int64_t row0 = 0;
    int64_t rows = 0;
    int64_t cols = 0;
  };

 private:
  const Checkpoint& src_;
  std::map<std::string, Slice> slices_;  // by release tensor name

  const Slice& slice_of(const ExpectedTensor& tensor) const;
  void row_read(const Slice& s, int64_t i, float* out) const;
};

}  // namespace dsv4::model
