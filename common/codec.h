// codec.h: scalar encoders/decoders for the number formats of the DeepSeek-V4 release and of
// compressed-tensors outputs. All are pure functions, exhaustively tested in
// tests/common/test_codec.cpp. Encoders round to nearest, ties to even (RNE).
//
//   float w = e4m3_decode(code) * e8m0_decode(scale_byte);   // FP8 block dequantisation
//   uint8_t c = e4m3_encode(w / s);                           // saturates to ±448
//   float v = e2m1_decode(nibble) * e8m0_decode(s);           // MXFP4 dequantisation
//
// Formats:
//   bf16  1-8-7, IEEE-like; encode RNE, NaN stays NaN (quiet), overflow rounds to ±inf.
//   fp16  1-5-10 IEEE binary16; encode RNE with subnormals, overflow to ±inf, NaN preserved.
//   e4m3  OCP FP8 E4M3FN: bias 7, no infinities, S.1111.111 = NaN, max ±448, min subnormal 2^-9.
//         encode: RNE, |x| beyond 448 (and ±inf) saturates to ±448, NaN -> 0x7F/0xFF (sign kept).
//   e8m0  unsigned power of two: byte b -> 2^(b-127); b = 255 is NaN; b = 0 is 2^-127.
//   e2m1  OCP FP4: codes 0..7 = 0, .5, 1, 1.5, 2, 3, 4, 6, codes 8..15 the same negated.
//         encode: clamp to ±6, RNE on the grid (0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2,
//         3.5->4, 5->4); sign kept, so -0.1 -> code 8 (-0); NaN -> code 0 (e2m1 has no NaN).
//
// The bodies live in common/codec_inline.h (namespace dsv4::codec, host + device), so CUDA
// kernels use the same code; the functions below are out-of-line wrappers for host callers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dsv4 {

float bf16_decode(uint16_t bits);
uint16_t bf16_encode(float value);

float fp16_decode(uint16_t bits);
uint16_t fp16_encode(float value);

float e4m3_decode(uint8_t code);
uint8_t e4m3_encode(float value);
inline constexpr float kE4m3Max = 448.0f;

float e8m0_decode(uint8_t code);
// Byte for 2^exponent; exponent is clamped to [-127, 127] (255 is reserved for NaN).
uint8_t e8m0_from_exponent(int exponent);
// Smallest power of two >= value, as an e8m0 byte (the "never clips" scale rule
// s = 2^ceil(log2(amax / qmax)) is e8m0_encode_ceil(amax / qmax)). value <= 2^-127 (incl. 0)
// gives byte 0; value > 2^127 gives 254; NaN gives 255.
uint8_t e8m0_encode_ceil(float value);

float e2m1_decode(uint8_t nibble);  // only the low 4 bits are read
uint8_t e2m1_encode(float value);   // returns 0..15
inline constexpr float kE2m1Max = 6.0f;

// Bulk decoders (row-major, n elements) used by the weight decoders and tests. bf16_decode_n reads
// `in` at any alignment: a mapped checkpoint's BF16 tensor may start at an odd byte (after an
// FP8 scale tensor of odd size), where a uint16_t load is undefined (found by the asan preset).
void bf16_decode_n(const void* in, float* out, size_t n);
void e4m3_decode_n(const uint8_t* in, float* out, size_t n);

}  // namespace dsv4
