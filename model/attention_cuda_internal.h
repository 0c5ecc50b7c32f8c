// attention_cuda_internal.h: the parts of attention_forward_cuda in attention_compressor_cuda.cu
// (not part of the model API): the KV compressor and the lightning indexer's scores.
#pragma once

#include <cstdint>

#include "model/forward_cuda.h"

namespace dsv4::model {

// model/attention_compressor.cpp on the GPU for `sequences` sequences of `tokens` each:
// entries [sequences, tokens / ratio, dim] bf16 (pooled in fp32, rounded, normalised, rounded,
// rotated at w·ratio, rounded). Projections are bf16 GEMMs with fp32 outputs (the reference's
// fp32 compressor on bf16 inputs).
void compressor_forward_cuda(const DeviceCompressor& w, const ModelConfig& config, const DeviceRope& rope,
                             const uint16_t* x_attn, int64_t sequences, int64_t tokens, uint16_t* entries,
                             const CudaForwardContext& ctx);

// model/attention_indexer.cpp indexer_scores on the GPU: scores [sequences·tokens, W] fp32
// (−inf where entry w is not visible to the query).
void indexer_scores_cuda(const DeviceAttention::Indexer& w, const ModelConfig& config, const DeviceRope& rope,
                         const uint16_t* x_attn, const uint16_t* qr, int64_t sequences, int64_t tokens, float* scores,
                         const CudaForwardContext& ctx);

}  // namespace dsv4::model
