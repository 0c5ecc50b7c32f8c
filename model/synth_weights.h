// synth_weights.h: the bytes of one synthetic tensor (or weight + scale pair) in the release
// encodings, drawn so decoded values look like a trained model's: linear weights ~ N(0, 1/fan_in)
// with per-row and per-column magnitude structure (so block scales differ), norms around 1,
// non-trivial HC/sink/router parameters, valid distinct expert ids in tid2eid.
//
//   SynthBytes b = synth_tensor(config, tensor, seed);             // plain tensor
//   SynthPair p = synth_encoded_linear(config, weight, scale, seed); // FP8 block or MXFP4
//
// Every value depends only on (seed, tensor name, element index), never on threading.
// Tests: tests/model/test_synth.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/inventory.h"
#include "model/release_encode.h"

namespace dsv4::model {

using SynthBytes = EncodedBytes;
using SynthPair = EncodedLinear;

// A tensor with encoding kPlain.
SynthBytes synth_tensor(const ModelConfig& config, const ExpectedTensor& tensor, uint64_t seed);

// A kFp8Block or kMxfp4 weight and its kScale sibling, encoded from one drawn float matrix.
SynthPair synth_encoded_linear(const ModelConfig& config, const ExpectedTensor& weight,
                               const ExpectedTensor& scale, uint64_t seed);

}  // namespace dsv4::model
