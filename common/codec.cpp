// codec.cpp: out-of-line host entry points of codec.h. The bodies are the inline host/device
// functions of codec_inline.h, so CPU callers and CUDA kernels share one implementation.
#include "common/codec.h"

#include <cstring>

#include "common/codec_inline.h"

namespace dsv4 {

float bf16_decode(uint16_t bits) { return codec::bf16_decode(bits); }
uint16_t bf16_encode(float value) { return codec::bf16_encode(value); }

float fp16_decode(uint16_t bits) { return codec::fp16_decode(bits); }
uint16_t fp16_encode(float value) { return codec::fp16_encode(value); }

float e4m3_decode(uint8_t code) { return codec::e4m3_decode(code); }
uint8_t e4m3_encode(float value) { return codec::e4m3_encode(value); }

float e8m0_decode(uint8_t code) { return codec::e8m0_decode(code); }
uint8_t e8m0_from_exponent(int exponent) { return codec::e8m0_from_exponent(exponent); }
uint8_t e8m0_encode_ceil(float value) { return codec::e8m0_encode_ceil(value); }

float e2m1_decode(uint8_t nibble) { return codec::e2m1_decode(nibble); }
uint8_t e2m1_encode(float value) { return codec::e2m1_encode(value); }

void bf16_decode_n(const void* in, float* out, size_t n) {
  const auto* bytes = static_cast<const unsigned char*>(in);
  for (size_t i = 0; i < n; ++i) {
    uint16_t bits;
    std::memcpy(&bits, bytes + 2 * i, 2);  // an unaligned load where the target allows it
    out[i] = codec::bf16_decode(bits);
  }
}

void e4m3_decode_n(const uint8_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = codec::e4m3_decode(in[i]);
}

}  // namespace dsv4
