// The "legacy" ggml block formats Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 (32 weights per block),
// plus the numeric primitives and scale searches that the k-quants (kquants.h) share.
//
// Everything here must reproduce ggml-quants.c of llama.cpp v0.5.0 bit for bit, as compiled
// for x86-64 without -march flags (SSE2 only: no FMA, so no contraction). That fixes:
//   - the order of every float operation (sums are strictly left to right, one element at a
//     time; `a*b*c` is `(a*b)*c`; int operands are converted to float first),
//   - float, never double,
//   - how out-of-range float -> small-int casts behave (see trunc_to_i8).
// The code must be compiled with -ffp-contract=off (cmf_core sets it; ISO -std=c++20 also
// defaults to it with gcc): a fused multiply-add would change the last bit of some scales.
//
// Layout: each format has a per-block quantizer working on 32 floats and writing one block,
// a per-block dequantizer, and row functions that loop over blocks. The per-block functions
// have no hidden state (the importance-weighted variants take the row statistic sigma2 and
// the block's slice of the importance matrix as arguments), so a SIMD version can process
// several blocks at once.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cmf/quant/half.h"

namespace cmf::quant {

inline constexpr int kQK = 32;  // weights per legacy block (QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0)

// Bytes per block, as in ggml-common.h's block_* structs (all little-endian, no padding).
inline constexpr size_t kQ4_0Bytes = 18;  // f16 d | 16 nibble bytes
inline constexpr size_t kQ4_1Bytes = 20;  // f16 d | f16 m | 16 nibble bytes
inline constexpr size_t kQ5_0Bytes = 22;  // f16 d | u32 high bits | 16 nibble bytes
inline constexpr size_t kQ5_1Bytes = 24;  // f16 d | f16 m | u32 high bits | 16 nibble bytes
inline constexpr size_t kQ8_0Bytes = 34;  // f16 d | 32 int8

namespace detail {

// ggml's GROUP_MAX_EPS: a group whose largest |x| is below this is treated as all zero.
inline constexpr float kGroupMaxEps = 1e-15f;

// ggml's MAX/MIN macros, `a > b ? a : b` / `a < b ? a : b`. Not std::max/std::min: those
// return the other operand when a comparison involves NaN or +-0, and ggml's choice decides
// which value survives in those cases.
inline float fmax_ggml(float a, float b) { return a > b ? a : b; }
inline int imax(int a, int b) { return a > b ? a : b; }
inline int imin(int a, int b) { return a < b ? a : b; }

// ggml's nearest_int(): adding 12582912 = 1.5 * 2^23 moves the value into the binade where
// one ulp is 1.0, so the FPU's round-to-nearest-even does the rounding, and the integer is
// read back from the low 23 mantissa bits. Ties go to even (unlike lroundf). ggml only asserts
// |v| <= 4194303 in debug builds; beyond that the result is garbage, and we return the same
// garbage because we do the same bit operations.
inline int nearest_int(float v) {
    const float biased = v + 12582912.f;
    int32_t bits;
    std::memcpy(&bits, &biased, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

// C casts such as `(int8_t)(x + 8.5f)` in ggml compile on x86-64 to cvttss2si / cvttps2dq
// (truncate toward zero into an int32) followed by keeping the low byte. A NaN or an
// out-of-range value gives the "integer indefinite" 0x80000000, whose low byte is 0. We
// spell that out because in C++ the plain cast of such values is undefined.
inline int32_t trunc_to_i32(float v) {
    if (!(v >= -2147483648.0f && v < 2147483648.0f)) return INT32_MIN;
    return static_cast<int32_t>(v);
}
inline int8_t trunc_to_i8(float v) {
    return static_cast<int8_t>(static_cast<uint8_t>(static_cast<uint32_t>(trunc_to_i32(v)) & 0xffu));
}

// ggml-base converts with its portable GGML_FP32_TO_FP16 (no F16C without -march). It rounds
// to nearest even exactly like cmf::f32_to_f16 for every non-NaN float (checked exhaustively),
// but turns every NaN into sign | 0x7e00, dropping the payload.
inline uint16_t to_f16(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>(((u >> 16) & 0x8000u) | 0x7e00u);
    return f32_to_f16(f);
}

// ggml's portable GGML_FP16_TO_FP32 builds NaNs through a float multiply, which sets the
// quiet bit; otherwise it is the exact conversion.
inline float from_f16(uint16_t h) {
    float f = f16_to_f32(h);
    if ((h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0) f = f32_from_bits(f32_bits(f) | 0x00400000u);
    return f;
}

inline uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline void store_u16(uint8_t* p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v & 0xffu);
    p[1] = static_cast<uint8_t>(v >> 8);
}
inline uint32_t load_u32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
           (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
inline void store_u32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>((v >> (8 * i)) & 0xffu);
}
inline float load_f16(const uint8_t* p) { return from_f16(load_u16(p)); }
inline void store_f16(uint8_t* p, float v) { store_u16(p, to_f16(v)); }

// ---------------------------------------------------------------------------------------
// Scale searches shared with the k-quants.

// ggml's make_qx_quants() with rmse_type 1, the only mode the formats we write use.
// Symmetric quantization of n values to integers in [-nmax, nmax-1], stored as L = q + nmax.
// Starts from the scale that maps the largest-magnitude value to -nmax, then tries 18 nearby
// scales (-(nmax + 0.1*is)/max, is = -9..9 without 0) and keeps the one maximising
// sumlx^2/suml2, i.e. the weighted least-squares fit. Weights are qw[i] when given, else x^2.
// Returns the scale (the least-squares one, not 1/iscale).
inline float make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* qw) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    auto weight = [&](int i) { return qw ? qw[i] : x[i] * x[i]; };
    float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = static_cast<int8_t>(l + nmax);
        const float w = weight(i);
        const float fl = static_cast<float>(l);
        sumlx += w * x[i] * fl;
        suml2 += w * fl * fl;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const float fl = static_cast<float>(imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i]))));
            const float w = weight(i);
            sumlx += w * x[i] * fl;
            suml2 += w * fl * fl;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i)
                L[i] = static_cast<int8_t>(nmax + imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// ggml's make_qkx2_quants() and make_qkx3_quants() (called with weights): asymmetric
// quantization x ~ scale*L + min with L in [0, nmax] and min <= 0. The two ggml functions are
// arithmetically identical when weights are given (qkx2 tests max == min, qkx3 max <= min;
// after min is clamped to <= 0, max < min cannot happen), so one implementation serves both.
// Tries iscale = (rmin + rdelta*is + nmax)/(max - min) for is = 0..nstep, solves the weighted
// least-squares scale and min for each rounding, and keeps the rounding with the smallest
// weighted error (|diff| when use_mad, diff^2 otherwise). *the_min receives -min (>= 0).
// Laux is scratch of n bytes.
inline float make_qkx_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                             uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max <= min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    auto err = [use_mad](float diff) { return use_mad ? std::fabs(diff) : diff * diff; };
    float iscale = static_cast<float>(nmax) / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        L[i] = static_cast<uint8_t>(imax(0, imin(nmax, nearest_int(iscale * (x[i] - min)))));
        const float diff = scale * static_cast<float>(L[i]) + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = static_cast<uint8_t>(l);
            const float w = weights[i];
            const float fl = static_cast<float>(l);
            sum_l += w * fl;
            sum_l2 += w * fl * fl;
            sum_xl += w * fl * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                const float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// Sum of squares over a whole row, left to right: the importance-weighted legacy quantizers
// derive sigma2 = sum/n_per_row from the full row, not from each block.
inline float row_sum_sq(const float* x, int64_t n) {
    float s = 0;
    for (int64_t j = 0; j < n; ++j) s += x[j] * x[j];
    return s;
}

// The importance weighting ggml uses everywhere: qw * sqrt(sigma2 + x^2).
inline void importance_weights(int n, const float* x, const float* qw, float sigma2, float* w) {
    for (int j = 0; j < n; ++j) w[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
}

// The high-bit word of Q5_0 / Q5_1: bit j holds bit 4 of quant j (quants 0..15 from the first
// half of the block, 16..31 from the second).
inline void pack_q5_nibbles(const uint8_t* q, uint8_t* qs, uint8_t* qh_bytes) {
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
        const uint8_t a = q[j], b = q[j + kQK / 2];
        qs[j] = static_cast<uint8_t>((a & 0x0f) | ((b & 0x0f) << 4));
        qh |= ((a & 0x10u) >> 4) << j;
        qh |= ((b & 0x10u) >> 4) << (j + kQK / 2);
    }
    store_u32(qh_bytes, qh);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------
// Q4_0: x ~ d * (q - 8), q in [0, 15].

// quantize_row_q4_0_ref: d = (value of largest magnitude) / -8, so that value maps to q = 0
// exactly and the other end is clamped at 15.
inline void quantize_block_q4_0(const float* x, uint8_t* y) {
    using namespace detail;
    float amax = 0, max = 0;
    for (int j = 0; j < kQK; ++j) {
        if (amax < std::fabs(x[j])) { amax = std::fabs(x[j]); max = x[j]; }
    }
    const float d = max / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    store_f16(y, d);
    for (int j = 0; j < kQK / 2; ++j) {
        // `MIN(15, (int8_t)(x*id + 8.5f))`: truncation of a value offset by 8.5 rounds half up.
        const int q0 = imin(15, trunc_to_i8(x[j] * id + 8.5f));
        const int q1 = imin(15, trunc_to_i8(x[j + kQK / 2] * id + 8.5f));
        y[2 + j] = static_cast<uint8_t>(static_cast<uint8_t>(q0) | static_cast<uint8_t>(q1 << 4));
    }
}

// quantize_row_q4_0_impl with an importance matrix: least-squares scale from make_qx_quants.
inline void quantize_block_q4_0_weighted(const float* x, const float* qw, float sigma2, uint8_t* y) {
    using namespace detail;
    float w[kQK];
    int8_t L[kQK];
    importance_weights(kQK, x, qw, sigma2, w);
    store_f16(y, make_qx_quants(kQK, 8, x, L, w));
    for (int j = 0; j < kQK / 2; ++j) y[2 + j] = static_cast<uint8_t>(L[j] | (L[j + kQK / 2] << 4));
}

inline void dequantize_block_q4_0(const uint8_t* y, float* x) {
    const float d = detail::load_f16(y);
    for (int j = 0; j < kQK / 2; ++j) {
        x[j] = static_cast<float>((y[2 + j] & 0x0f) - 8) * d;
        x[j + kQK / 2] = static_cast<float>((y[2 + j] >> 4) - 8) * d;
    }
}

// ---------------------------------------------------------------------------------------
// Q4_1: x ~ d * q + m, q in [0, 15].

inline void quantize_block_q4_1(const float* x, uint8_t* y) {
    using namespace detail;
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 15;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    store_f16(y, d);
    store_f16(y + 2, min);
    for (int j = 0; j < kQK / 2; ++j) {
        const int q0 = imin(15, trunc_to_i8((x[j] - min) * id + 0.5f));
        const int q1 = imin(15, trunc_to_i8((x[j + kQK / 2] - min) * id + 0.5f));
        y[4 + j] = static_cast<uint8_t>(static_cast<uint8_t>(q0) | static_cast<uint8_t>(q1 << 4));
    }
}

// quantize_row_q4_1_impl: make_qkx3_quants(32, 15, ..., -0.9, 0.05, 36 steps, squared error).
inline void quantize_block_q4_1_weighted(const float* x, const float* qw, float sigma2, uint8_t* y) {
    using namespace detail;
    float w[kQK];
    uint8_t L[kQK], Laux[kQK];
    importance_weights(kQK, x, qw, sigma2, w);
    float min;
    const float d = make_qkx_quants(kQK, 15, x, w, L, &min, Laux, -0.9f, 0.05f, 36, false);
    store_f16(y, d);
    store_f16(y + 2, -min);
    for (int j = 0; j < kQK / 2; ++j) y[4 + j] = static_cast<uint8_t>(L[j] | (L[j + kQK / 2] << 4));
}

inline void dequantize_block_q4_1(const uint8_t* y, float* x) {
    const float d = detail::load_f16(y), m = detail::load_f16(y + 2);
    for (int j = 0; j < kQK / 2; ++j) {
        x[j] = static_cast<float>(y[4 + j] & 0x0f) * d + m;
        x[j + kQK / 2] = static_cast<float>(y[4 + j] >> 4) * d + m;
    }
}

// ---------------------------------------------------------------------------------------
// Q5_0: x ~ d * (q - 16), q in [0, 31]; low nibbles in qs, bit 4 in the qh word.

inline void quantize_block_q5_0(const float* x, uint8_t* y) {
    using namespace detail;
    float amax = 0, max = 0;
    for (int j = 0; j < kQK; ++j) {
        if (amax < std::fabs(x[j])) { amax = std::fabs(x[j]); max = x[j]; }
    }
    const float d = max / -16;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    store_f16(y, d);
    uint8_t q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>(imin(31, trunc_to_i8(x[j] * id + 16.5f)));
    pack_q5_nibbles(q, y + 6, y + 2);
}

inline void quantize_block_q5_0_weighted(const float* x, const float* qw, float sigma2, uint8_t* y) {
    using namespace detail;
    float w[kQK];
    int8_t L[kQK];
    importance_weights(kQK, x, qw, sigma2, w);
    store_f16(y, make_qx_quants(kQK, 16, x, L, w));
    uint8_t q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>(L[j]);
    pack_q5_nibbles(q, y + 6, y + 2);
}

inline void dequantize_block_q5_0(const uint8_t* y, float* x) {
    const float d = detail::load_f16(y);
    const uint32_t qh = detail::load_u32(y + 2);
    for (int j = 0; j < kQK / 2; ++j) {
        const int h0 = static_cast<int>((qh >> j) << 4 & 0x10u);
        const int h1 = static_cast<int>((qh >> (j + 12)) & 0x10u);
        x[j] = static_cast<float>(((y[6 + j] & 0x0f) | h0) - 16) * d;
        x[j + kQK / 2] = static_cast<float>(((y[6 + j] >> 4) | h1) - 16) * d;
    }
}

// ---------------------------------------------------------------------------------------
// Q5_1: x ~ d * q + m, q in [0, 31].

inline void quantize_block_q5_1(const float* x, uint8_t* y) {
    using namespace detail;
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 31;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    store_f16(y, d);
    store_f16(y + 2, min);
    uint8_t q[kQK];
    // ggml casts straight to uint8_t here, with no MIN(31, ...) as the other formats have:
    // (x - min) * id stays below 31.5 for finite input.
    for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>(trunc_to_i8((x[j] - min) * id + 0.5f));
    pack_q5_nibbles(q, y + 8, y + 4);
}

// quantize_row_q5_1_impl: make_qkx3_quants(32, 31, ..., -0.9, 0.05, 36 steps, squared error).
inline void quantize_block_q5_1_weighted(const float* x, const float* qw, float sigma2, uint8_t* y) {
    using namespace detail;
    float w[kQK];
    uint8_t L[kQK], Laux[kQK];
    importance_weights(kQK, x, qw, sigma2, w);
    float min;
    const float d = make_qkx_quants(kQK, 31, x, w, L, &min, Laux, -0.9f, 0.05f, 36, false);
    store_f16(y, d);
    store_f16(y + 2, -min);
    pack_q5_nibbles(L, y + 8, y + 4);
}

inline void dequantize_block_q5_1(const uint8_t* y, float* x) {
    const float d = detail::load_f16(y), m = detail::load_f16(y + 2);
    const uint32_t qh = detail::load_u32(y + 4);
    for (int j = 0; j < kQK / 2; ++j) {
        const int h0 = static_cast<int>((qh >> j) << 4 & 0x10u);
        const int h1 = static_cast<int>((qh >> (j + 12)) & 0x10u);
        x[j] = static_cast<float>((y[8 + j] & 0x0f) | h0) * d + m;
        x[j + kQK / 2] = static_cast<float>((y[8 + j] >> 4) | h1) * d + m;
    }
}

// ---------------------------------------------------------------------------------------
// Q8_0: x ~ d * q, q in [-127, 127]. ggml ignores the importance matrix for this format.

inline void quantize_block_q8_0(const float* x, uint8_t* y) {
    using namespace detail;
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = fmax_ggml(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    store_f16(y, d);
    // roundf (half away from zero), then the truncating int8 store.
    for (int j = 0; j < kQK; ++j) y[2 + j] = static_cast<uint8_t>(trunc_to_i8(std::round(x[j] * id)));
}

inline void dequantize_block_q8_0(const uint8_t* y, float* x) {
    const float d = detail::load_f16(y);
    for (int j = 0; j < kQK; ++j) x[j] = static_cast<float>(static_cast<int8_t>(y[2 + j])) * d;
}

// ---------------------------------------------------------------------------------------
// Row functions. n is a multiple of 32 (checked by quantize.h). With imatrix == nullptr they
// are ggml's quantize_row_*_ref; with an importance matrix (n floats, one per column) they
// are quantize_row_*_impl, which also needs the sum of squares of the whole row. Q8_0 has
// no weighted variant.

namespace detail {

template <size_t BlockBytes, typename RefFn, typename WeightedFn>
inline void quantize_row_legacy(const float* x, uint8_t* y, int64_t n, const float* imatrix, RefFn ref,
                                WeightedFn weighted) {
    const int64_t nb = n / kQK;
    if (!imatrix) {
        for (int64_t b = 0; b < nb; ++b) ref(x + b * kQK, y + b * BlockBytes);
        return;
    }
    // sigma2 divides by n_per_row converted to float (int64 -> float in ggml's C).
    const float sigma2 = row_sum_sq(x, n) / static_cast<float>(n);
    for (int64_t b = 0; b < nb; ++b) weighted(x + b * kQK, imatrix + b * kQK, sigma2, y + b * BlockBytes);
}

template <size_t BlockBytes, typename Fn>
inline void dequantize_row_blocks(const uint8_t* y, float* x, int64_t n, Fn fn) {
    for (int64_t b = 0; b < n / kQK; ++b) fn(y + b * BlockBytes, x + b * kQK);
}

}  // namespace detail

inline void quantize_row_q4_0(const float* x, uint8_t* y, int64_t n, const float* imatrix) {
    detail::quantize_row_legacy<kQ4_0Bytes>(x, y, n, imatrix, quantize_block_q4_0, quantize_block_q4_0_weighted);
}
inline void quantize_row_q4_1(const float* x, uint8_t* y, int64_t n, const float* imatrix) {
    detail::quantize_row_legacy<kQ4_1Bytes>(x, y, n, imatrix, quantize_block_q4_1, quantize_block_q4_1_weighted);
}
inline void quantize_row_q5_0(const float* x, uint8_t* y, int64_t n, const float* imatrix) {
    detail::quantize_row_legacy<kQ5_0Bytes>(x, y, n, imatrix, quantize_block_q5_0, quantize_block_q5_0_weighted);
}
inline void quantize_row_q5_1(const float* x, uint8_t* y, int64_t n, const float* imatrix) {
    detail::quantize_row_legacy<kQ5_1Bytes>(x, y, n, imatrix, quantize_block_q5_1, quantize_block_q5_1_weighted);
}
inline void quantize_row_q8_0(const float* x, uint8_t* y, int64_t n, const float* /*imatrix: unused by ggml*/) {
    for (int64_t b = 0; b < n / kQK; ++b) quantize_block_q8_0(x + b * kQK, y + b * kQ8_0Bytes);
}

inline void dequantize_row_q4_0(const uint8_t* y, float* x, int64_t n) {
    detail::dequantize_row_blocks<kQ4_0Bytes>(y, x, n, dequantize_block_q4_0);
}
inline void dequantize_row_q4_1(const uint8_t* y, float* x, int64_t n) {
    detail::dequantize_row_blocks<kQ4_1Bytes>(y, x, n, dequantize_block_q4_1);
}
inline void dequantize_row_q5_0(const uint8_t* y, float* x, int64_t n) {
    detail::dequantize_row_blocks<kQ5_0Bytes>(y, x, n, dequantize_block_q5_0);
}
inline void dequantize_row_q5_1(const uint8_t* y, float* x, int64_t n) {
    detail::dequantize_row_blocks<kQ5_1Bytes>(y, x, n, dequantize_block_q5_1);
}
inline void dequantize_row_q8_0(const uint8_t* y, float* x, int64_t n) {
    detail::dequantize_row_blocks<kQ8_0Bytes>(y, x, n, dequantize_block_q8_0);
}

}  // namespace cmf::quant
