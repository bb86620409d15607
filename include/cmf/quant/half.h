// IEEE half (F16) and bfloat16 (BF16) conversions, bit-exact with ggml and numpy.
//
// - BF16 -> F32 is exact: the 16 bits become the high half of the float.
// - F32 -> F16 rounds to nearest, ties to even, with subnormals, overflow to inf and NaN kept
//   NaN: what numpy's astype(float16) and ggml's GGML_COMPUTE_FP32_TO_FP16 (F16C) both do.
// - F32 -> BF16 rounds to nearest even and keeps NaN quiet, as ggml_compute_fp32_to_bf16 does.
// - round_to_f16(x) is x rounded to the nearest half and widened back: what a float result
//   becomes when torch stores it in a float16 tensor (c10::Half arithmetic computes in float
//   and rounds once to half, nearest even).
#pragma once

#include <cstdint>
#include <cstring>

namespace cmf {

inline float f32_from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

inline uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 64);  // quiet NaN
    return static_cast<uint16_t>((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0) return f32_from_bits(sign);
        // subnormal: value = man * 2^-24, exact in float
        float v = static_cast<float>(man) * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
}

inline uint16_t f32_to_f16(float f) {
    const uint32_t u = f32_bits(f);
    const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN
    if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
    if (a < 0x38800000u) {
        // result is subnormal or zero: round a * 2^24 to an integer, ties to even
        if (a < 0x33000000u) return sign;  // below half the smallest subnormal
        const uint32_t e = a >> 23;
        const uint32_t m = (a & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126u - e;  // 14 + (113 - e) - 1 ... = bits to drop
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1u);
        const uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return static_cast<uint16_t>(sign | r);
    }
    uint32_t r = a - 0x38000000u;  // rebias exponent 127 -> 15
    const uint32_t rem = r & 0x1fffu;
    r >>= 13;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
}

inline float round_to_f16(float f) { return f16_to_f32(f32_to_f16(f)); }

}  // namespace cmf
