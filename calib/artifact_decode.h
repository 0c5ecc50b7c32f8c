// artifact_decode.h: reads dsv4-calib's own output (a compressed-tensors checkpoint with release
// names) back to fp32 weights, so the native forward, `eval` and `verify` run on an artifact
// exactly as on a release checkpoint.
//
//   model::ModelConfig c = checkpoint_config_load("out/");   // config.json + the right decoder
//   ForwardResult r = model_forward(Checkpoint::open("out/"), c, ids, {});
//   std::vector<float> w = artifact_linear_decode(ckpt, "layers.0.ffn.experts.3.w1", 128, 256);
//
// Layouts decoded: every compressed-tensors layout we write, by quant/unpack.h's
// compressed_module_decode (the list and the exact values are stated there): bf16 scales give the
// bf16-rounded product, as compressed-tensors' decompressors compute it; e4m3 / e8m0 scales give
// the fp32 product. (compressed-tensors 0.19 rounds its NVFP4 / MXFP4 decompressed weight to bf16
// as well, which changes NVFP4 values by up to half a bf16 ulp; MXFP4 products are exact in bf16;
// its pack-quantized decompressor ignores weight_g_idx, vLLM's kernels do not.)
// Cross-checked against compressed-tensors itself by tests/golden/ct_decompress_check.py.
// Tests: tests/calib/test_artifact_decode.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "model/config.h"
#include "quant/compressed_module.h"

namespace dsv4::calib {

// Whether `module` is stored in one of the compressed-tensors layouts above (it has
// `weight_packed` or `weight_scale`). A plain BF16 `weight` is not: model::linear_load reads it.
bool artifact_linear_is_compressed(const Checkpoint& checkpoint, const std::string& module);

// The dequantized weight [out, in] of a compressed module. Throws naming the module and the
// offending tensor when a tensor is missing, has the wrong dtype or shape, or the layout is none
// of the above.
std::vector<float> artifact_linear_decode(const Checkpoint& checkpoint, const std::string& module,
                                          int64_t out, int64_t in);

// The same decode from a solve's encoded tensors (SolvedModule::tensors, names without the module
// prefix): bit-identical to the solve's dequantized weight, so ranks that receive a solved module
// or a resume that replays a staged one rebuild the weight instead of moving fp32.
std::vector<float> encoded_linear_decode(const std::vector<quant::EncodedTensor>& tensors, const std::string& module,
                                         int64_t out, int64_t in);

// A user error unless `dir` looks like a checkpoint directory: a directory holding config.json and
// model.safetensors.index.json or model.safetensors. `what` names where the path came from
// ("--model", "--reference", ...; may be empty), so the message is in the user's words. Cheap:
// no file is read.
//   checkpoint_dir_check("docs", "--model");  // "docs is not a checkpoint directory (--model): ..."
void checkpoint_dir_check(const std::string& dir, const std::string& what);

// config.json of a release checkpoint or of an artifact, after checkpoint_dir_check. For an
// artifact (quant_method "compressed-tensors") the returned config carries a linear decoder so
// the model's loaders decode compressed modules through artifact_linear_decode.
model::ModelConfig checkpoint_config_load(const std::string& dir);

}  // namespace dsv4::calib
