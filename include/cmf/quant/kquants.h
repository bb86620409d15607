// The ggml "k-quant" super-block formats Q2_K, Q3_K, Q4_K, Q5_K and Q6_K (256 weights per
// super-block, split into 16 groups of 16 or 8 groups of 32 that each get their own scale,
// and those scales quantized again against one f16 super-block scale).
//
// Bit-exact with ggml-quants.c of llama.cpp v0.5.0 as built for plain x86-64; see the header
// comment of legacy.h for the floating-point rules (left-to-right float sums, no FMA, ggml's
// MIN/MAX and nearest_int, x86 truncating casts) that apply here too.
//
// Each format has
//   quantize_block_<fmt>(x, y)               ggml's quantize_row_<fmt>_ref for one super-block
//   quantize_block_<fmt>_weighted(x, qw, y)  ggml's quantize_row_<fmt>_impl with an importance
//                                            matrix; qw is that super-block's 256 weights
//   dequantize_block_<fmt>(y, x)
// and row functions over consecutive super-blocks. ggml_quantize_chunk takes the weighted path
// exactly when an importance matrix is passed. Unlike the legacy formats, every statistic
// the weighted k-quants use comes from the super-block itself, so blocks are independent.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cmf/quant/legacy.h"

namespace cmf::quant {

inline constexpr int kQK_Kq = 256;  // weights per super-block (QK_K)

// Bytes per super-block and the field offsets of ggml-common.h's block_q*_K structs.
inline constexpr size_t kQ2_KBytes = 84;   // scales[16] | qs[64] | f16 d | f16 dmin
inline constexpr size_t kQ3_KBytes = 110;  // hmask[32] | qs[64] | scales[12] | f16 d
inline constexpr size_t kQ4_KBytes = 144;  // f16 d | f16 dmin | scales[12] | qs[128]
inline constexpr size_t kQ5_KBytes = 176;  // f16 d | f16 dmin | scales[12] | qh[32] | qs[128]
inline constexpr size_t kQ6_KBytes = 210;  // ql[128] | qh[64] | int8 scales[16] | f16 d

namespace detail {

// ggml's make_q3_quants() with do_rmse (the only way Q3_K calls it): symmetric quants in
// [-nmax, nmax-1] weighted by x^2, first rounded at -nmax/max, then up to 5 passes of
// coordinate descent that move one quant at a time to its least-squares optimum while that
// improves sumlx^2/suml2. Returns the scale; L receives q + nmax.
inline float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    const float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = static_cast<int8_t>(l);
        const float w = x[i] * x[i];
        const float fl = static_cast<float>(l);
        sumlx += w * x[i] * fl;
        suml2 += w * fl * fl;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            const float li = static_cast<float>(L[i]);
            float slx = sumlx - w * x[i] * li;
            if (slx > 0) {
                float sl2 = suml2 - w * li * li;
                const int new_l = imax(-nmax, imin(nmax - 1, nearest_int(x[i] * sl2 / slx)));
                if (new_l != L[i]) {
                    const float fl = static_cast<float>(new_l);
                    slx += w * x[i] * fl;
                    sl2 += w * fl * fl;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = static_cast<int8_t>(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// ggml's make_qp_quants(): quantizes the (normally non-negative) group scales or mins of a
// super-block to [0, nmax] with weights qw, used by the importance-weighted k-quants.
// Note that ggml stores nearest_int() results straight into uint8_t L[] without clamping
// below, so a negative input wraps to 255-ish and is then used as such in later sums; we
// keep L as uint8_t to reproduce that.
inline float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* qw) {
    float max = 0;
    for (int i = 0; i < n; ++i) max = fmax_ggml(max, x[i]);
    if (max < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = static_cast<float>(nmax) / max;
    for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
    const float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; ++i) {
        const float diff = x[i] - scale * static_cast<float>(L[i]);
        best_mse += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0) continue;
        const float iscale_is = (0.1f * static_cast<float>(is) + static_cast<float>(nmax)) / max;
        const float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; ++i) {
            const int l = imin(nmax, nearest_int(iscale_is * x[i]));
            const float diff = x[i] - scale_is * static_cast<float>(l);
            mse += qw[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = imin(nmax, nearest_int(iscale * x[i]));
        L[i] = static_cast<uint8_t>(l);
        const float w = qw[i];
        const float fl = static_cast<float>(l);  // the int, not the wrapped byte
        sumlx += w * x[i] * fl;
        suml2 += w * fl * fl;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = qw[i];
            const float li = static_cast<float>(L[i]);
            float slx = sumlx - w * x[i] * li;
            float sl2 = suml2 - w * li * li;
            if (slx > 0 && sl2 > 0) {
                const int new_l = imin(nmax, nearest_int(x[i] * sl2 / slx));
                if (new_l != L[i]) {
                    const float fl = static_cast<float>(new_l);
                    slx += w * x[i] * fl;
                    sl2 += w * fl * fl;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = static_cast<uint8_t>(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

inline float sum_sq(const float* x, int n) {
    float s = 0;
    for (int j = 0; j < n; ++j) s += x[j] * x[j];
    return s;
}

inline float sum(const float* x, int n) {
    float s = 0;
    for (int j = 0; j < n; ++j) s += x[j];
    return s;
}

// Four 2-bit values per byte: byte l of each 32-byte half holds quants l, l+32, l+64, l+96
// of that 128-weight half (Q2_K qs and the low bits of Q3_K).
inline void pack_2bit(const uint8_t* L, uint8_t* qs) {
    for (int j = 0; j < kQK_Kq; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                                 (L[j + l + 96] << 6));
}

// ---- Q2_K / Q3_K helpers

// Second pass of Q2_K: with the final (f16-rounded) super-block scales, re-round every weight
// of groups whose scale is non-zero. Groups with a zero scale keep the quants of the search.
inline void requantize_q2_K(const float* x, const uint8_t* scales, float dd, float dmin, uint8_t* L) {
    for (int j = 0; j < 16; ++j) {
        const float d = dd * static_cast<float>(scales[j] & 0xf);
        if (d == 0) continue;
        const float dm = dmin * static_cast<float>(scales[j] >> 4);
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] = static_cast<uint8_t>(imax(0, imin(3, nearest_int((x[16 * j + ii] + dm) / d))));
    }
}

// Q3_K keeps 16 six-bit group scales (stored +32) in 12 bytes: low nibbles of groups 0..7 in
// bytes 0..7, of groups 8..15 in the high nibbles of bytes 0..7, and the two high bits of
// group j in byte 8 + j%4 at bit 2*(j/4).
inline void put_q3_K_scale(uint8_t* sc, int j, int l) {
    if (j < 8) sc[j] = static_cast<uint8_t>(l & 0xf);
    else sc[j - 8] = static_cast<uint8_t>(sc[j - 8] | ((l & 0xf) << 4));
    l >>= 4;
    sc[j % 4 + 8] = static_cast<uint8_t>(sc[j % 4 + 8] | (l << (2 * (j / 4))));
}

inline int get_q3_K_scale(const uint8_t* sc, int j) {
    const int lo = j < 8 ? (sc[j] & 0xf) : (sc[j - 8] >> 4);
    return (lo | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

// Final Q3_K steps shared by the ref and weighted paths: re-round with the stored scales,
// then split each 3-bit quant into a high bit (hmask byte j%32, bit j/32) and two low bits.
inline void finish_q3_K(const float* x, int8_t* L, uint8_t* y) {
    uint8_t* hmask = y;
    uint8_t* qs = y + 32;
    const uint8_t* sc = y + 96;
    const float dd = load_f16(y + 108);
    for (int j = 0; j < 16; ++j) {
        const float d = dd * static_cast<float>(get_q3_K_scale(sc, j));
        if (d == 0) continue;
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] = static_cast<int8_t>(imax(-4, imin(3, nearest_int(x[16 * j + ii] / d))) + 4);
    }
    std::memset(hmask, 0, 32);
    uint8_t low[kQK_Kq];
    for (int j = 0; j < kQK_Kq; ++j) {
        int l = L[j];
        if (l > 3) {
            hmask[j % 32] = static_cast<uint8_t>(hmask[j % 32] | (1u << (j / 32)));
            l -= 4;
        }
        low[j] = static_cast<uint8_t>(l);
    }
    pack_2bit(low, qs);
}

// ---- Q4_K / Q5_K helpers

// ggml's 12-byte scale/min packing (get_scale_min_k4's inverse): groups 0..3 keep their
// 6-bit scale in byte j and min in byte j+4; groups 4..7 put low nibbles in byte j+4 and
// their top two bits in bits 6..7 of bytes j-4 (scale) and j (min). Inputs are written as
// bytes without masking, like ggml, so an out-of-range value spills into neighbouring bits.
inline void put_scale_min_k4(uint8_t* sc, int j, uint8_t ls, uint8_t lm) {
    if (j < 4) {
        sc[j] = ls;
        sc[j + 4] = lm;
    } else {
        sc[j + 4] = static_cast<uint8_t>((ls & 0xf) | ((lm & 0xf) << 4));
        sc[j - 4] = static_cast<uint8_t>(sc[j - 4] | ((ls >> 4) << 6));
        sc[j] = static_cast<uint8_t>(sc[j] | ((lm >> 4) << 6));
    }
}

inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = static_cast<uint8_t>((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// Re-round every weight against the stored 6-bit scales/mins (Q4_K: nmax 15, Q5_K: 31).
inline void requantize_k4(const float* x, const uint8_t* sc, float dd, float dmin, int nmax, uint8_t* L) {
    for (int j = 0; j < 8; ++j) {
        uint8_t s, m;
        get_scale_min_k4(j, sc, &s, &m);
        const float d = dd * static_cast<float>(s);
        if (d == 0) continue;
        const float dm = dmin * static_cast<float>(m);
        for (int ii = 0; ii < 32; ++ii)
            L[32 * j + ii] = static_cast<uint8_t>(imax(0, imin(nmax, nearest_int((x[32 * j + ii] + dm) / d))));
    }
}

// The tail of the reference Q4_K/Q5_K scale search once the 8 group scales and mins are known
// (also used by the SIMD kernels): map them linearly onto 0..63 with nearest_int against the
// largest of each (ggml takes the maxima inside the search loop: the same comparisons in the
// same order) and write d, dmin and the 12 scale bytes to y.
inline void finish_k4_ref_scales(const float* scales, const float* mins, uint8_t* y) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; ++j) {
        // `uint8_t ls = nearest_int(...)` wraps first, then MIN(63, ls) clamps the byte.
        const auto ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
        const auto lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
        put_scale_min_k4(y + 4, j, ls < 63 ? ls : uint8_t{63}, lm < 63 ? lm : uint8_t{63});
    }
    store_f16(y, max_scale / 63.f);
    store_f16(y + 2, max_min / 63.f);
}

// The reference (no imatrix) scale search of Q4_K and Q5_K: per group of 32, weights
// sqrt(mean(x^2)) + |x| and make_qkx2_quants; then the group scales and mins are mapped
// linearly onto 0..63 with nearest_int against the largest of each.
inline void search_k4_ref(const float* x, int nmax, float rmin, float rdelta, int nstep, uint8_t* L, uint8_t* y) {
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    for (int j = 0; j < 8; ++j) {
        const float* xg = x + 32 * j;
        const float av_x = std::sqrt(sum_sq(xg, 32) / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xg[l]);
        scales[j] = make_qkx_quants(32, nmax, xg, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep, false);
    }
    finish_k4_ref_scales(scales, mins, y);
}

// The importance-weighted scale search of Q4_K and Q5_K (quantize_row_q{4,5}_K_impl):
// weights qw * sqrt(sigma2 + x^2) with sigma2 = 2*mean(x^2) over the super-block,
// make_qkx3_quants per group, make_qp_quants for the group scales and mins. Q5_K clamps the
// 6-bit values to 63 before packing, Q4_K does not (they are <= 63 unless make_qp_quants
// wrapped a negative value).
inline void search_k4_weighted(const float* x, const float* qw, int nmax, bool clamp63, uint8_t* L, uint8_t* y) {
    uint8_t Laux[32], Ls[8], Lm[8];
    float weights[32], sw[8], mins[8], scales[8];
    const float sigma2 = 2 * sum_sq(x, kQK_Kq) / kQK_Kq;
    for (int j = 0; j < 8; ++j) {
        const float* xg = x + 32 * j;
        importance_weights(32, xg, qw + 32 * j, sigma2, weights);
        sw[j] = sum(weights, 32);
        scales[j] = make_qkx_quants(32, nmax, xg, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
    }
    const float d_block = make_qp_quants(8, 63, scales, Ls, sw);
    const float m_block = make_qp_quants(8, 63, mins, Lm, sw);
    for (int j = 0; j < 8; ++j) {
        uint8_t ls = Ls[j], lm = Lm[j];
        if (clamp63) {
            ls = ls < 63 ? ls : uint8_t{63};
            lm = lm < 63 ? lm : uint8_t{63};
        }
        put_scale_min_k4(y + 4, j, ls, lm);
    }
    store_f16(y, d_block);
    store_f16(y + 2, m_block);
}

// ---- Q6_K helpers

// Q6_K bit packing of the 256 quants (0..63): per 128 weights, ql byte l has quant l (low
// nibble) and l+64 (high), byte l+32 has l+32 and l+96; qh byte l has the two high bits of l,
// l+32, l+64, l+96 in that order.
inline void pack_q6_K(const int8_t* L, uint8_t* y) {
    uint8_t* ql = y;
    uint8_t* qh = y + 128;
    for (int j = 0; j < kQK_Kq; j += 128) {
        for (int l = 0; l < 32; ++l) {
            const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
            ql[l] = static_cast<uint8_t>((q1 & 0xf) | ((q3 & 0xf) << 4));
            ql[l + 32] = static_cast<uint8_t>((q2 & 0xf) | ((q4 & 0xf) << 4));
            qh[l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
        }
        ql += 64;
        qh += 32;
    }
}

// Shared by the ref and weighted Q6_K paths, which differ only in the weights of the group
// search (x^2 vs the raw importance values).
inline void quantize_q6_K_common(const float* x, const float* qw, uint8_t* y) {
    int8_t L[kQK_Kq];
    float scales[16];
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
        const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, qw ? qw + 16 * ib : nullptr);
        scales[ib] = scale;
        const float abs_scale = std::fabs(scale);
        if (abs_scale > max_abs_scale) {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }
    if (max_abs_scale < kGroupMaxEps) {  // the whole super-block becomes zero bytes
        std::memset(y, 0, kQ6_KBytes);
        return;
    }
    auto* sc = reinterpret_cast<int8_t*>(y + 192);
    const float iscale = -128.f / max_scale;
    store_f16(y + 208, 1 / iscale);
    for (int ib = 0; ib < 16; ++ib)
        sc[ib] = static_cast<int8_t>(imin(127, nearest_int(iscale * scales[ib])));
    const float dd = load_f16(y + 208);
    for (int j = 0; j < 16; ++j) {
        const float d = dd * static_cast<float>(sc[j]);
        if (d == 0) continue;
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] = static_cast<int8_t>(imax(-32, imin(31, nearest_int(x[16 * j + ii] / d))) + 32);
    }
    pack_q6_K(L, y);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------
// Q2_K: 16 groups of 16, x ~ d*sc*q - dmin*m with 2-bit q and 4-bit sc, m.

inline void quantize_block_q2_K(const float* x, uint8_t* y) {
    using namespace detail;
    uint8_t L[kQK_Kq], Laux[16];
    float weights[16], mins[16], scales[16];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; ++j) {
        for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
        // make_qkx2_quants(16, 3, ..., rmin -0.5, rdelta 0.1, 15 steps, absolute error)
        scales[j] = make_qkx_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    uint8_t* sc = y;
    if (max_scale > 0) {
        const float iscale = 15.f / max_scale;
        for (int j = 0; j < 16; ++j) sc[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
        store_f16(y + 80, max_scale / 15.f);
    } else {
        std::memset(sc, 0, 16);
        store_f16(y + 80, 0.f);
    }
    if (max_min > 0) {
        const float iscale = 15.f / max_min;
        for (int j = 0; j < 16; ++j)
            sc[j] = static_cast<uint8_t>(sc[j] | (static_cast<uint32_t>(nearest_int(iscale * mins[j])) << 4));
        store_f16(y + 82, max_min / 15.f);
    } else {
        store_f16(y + 82, 0.f);
    }
    requantize_q2_K(x, sc, load_f16(y + 80), load_f16(y + 82), L);
    pack_2bit(L, y + 16);
}

// quantize_row_q2_K_impl. Note sigma2 = mean(x^2) here, where Q3_K..Q5_K use 2*mean(x^2).
inline void quantize_block_q2_K_weighted(const float* x, const float* qw, uint8_t* y) {
    using namespace detail;
    uint8_t L[kQK_Kq], Laux[16], Ls[16], Lm[16];
    float weight[16], sw[16], mins[16], scales[16];
    const float sigma2 = sum_sq(x, kQK_Kq) / kQK_Kq;
    for (int j = 0; j < 16; ++j) {
        importance_weights(16, x + 16 * j, qw + 16 * j, sigma2, weight);
        sw[j] = sum(weight, 16);
        scales[j] = make_qkx_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
    }
    const float dm = make_qp_quants(16, 15, scales, Ls, sw);
    const float mm = make_qp_quants(16, 15, mins, Lm, sw);
    store_f16(y + 80, dm);
    store_f16(y + 82, mm);
    uint8_t* sc = y;
    for (int j = 0; j < 16; ++j) sc[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
    requantize_q2_K(x, sc, load_f16(y + 80), load_f16(y + 82), L);
    pack_2bit(L, y + 16);
}

inline void dequantize_block_q2_K(const uint8_t* y, float* x) {
    const float d = detail::load_f16(y + 80), min = detail::load_f16(y + 82);
    const uint8_t* q = y + 16;
    int is = 0;
    for (int n = 0; n < kQK_Kq; n += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; ++half) {
                const uint8_t sc = y[is++];
                const float dl = d * static_cast<float>(sc & 0xf), ml = min * static_cast<float>(sc >> 4);
                for (int l = 0; l < 16; ++l)
                    *x++ = dl * static_cast<float>((q[l + 16 * half] >> shift) & 3) - ml;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Q3_K: 16 groups of 16, x ~ d*sc*q with 3-bit q in [-4, 3] and 6-bit signed sc.

inline void quantize_block_q3_K(const float* x, uint8_t* y) {
    using namespace detail;
    int8_t L[kQK_Kq];
    float scales[16];
    float max_scale = 0, amax = 0;
    for (int j = 0; j < 16; ++j) {
        scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
        const float scale = std::fabs(scales[j]);
        if (scale > amax) {
            amax = scale;
            max_scale = scales[j];
        }
    }
    uint8_t* sc = y + 96;
    std::memset(sc, 0, 12);
    if (max_scale != 0) {
        const float iscale = -32.f / max_scale;
        for (int j = 0; j < 16; ++j) {
            // ggml keeps this in an int8_t: nearest_int wraps to 8 bits before the clamp.
            const auto l = static_cast<int8_t>(nearest_int(iscale * scales[j]));
            put_q3_K_scale(sc, j, imax(-32, imin(31, l)) + 32);
        }
        store_f16(y + 108, 1 / iscale);
    } else {
        store_f16(y + 108, 0.f);
    }
    finish_q3_K(x, L, y);
}

// quantize_row_q3_K_impl: make_qx_quants for both the groups (weights qw*sqrt(sigma2 + x^2),
// sigma2 = 2*mean(x^2)) and the 16 group scales (weights: the groups' weight sums).
inline void quantize_block_q3_K_weighted(const float* x, const float* qw, uint8_t* y) {
    using namespace detail;
    int8_t L[kQK_Kq], Ls[16];
    float scales[16], weight[16], sw[16];
    const float sigma2 = 2 * sum_sq(x, kQK_Kq) / kQK_Kq;
    for (int j = 0; j < 16; ++j) {
        importance_weights(16, x + 16 * j, qw + 16 * j, sigma2, weight);
        sw[j] = sum(weight, 16);
        scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, weight);
    }
    uint8_t* sc = y + 96;
    std::memset(sc, 0, 12);
    const float d_block = make_qx_quants(16, 32, scales, Ls, sw);
    for (int j = 0; j < 16; ++j) put_q3_K_scale(sc, j, Ls[j]);
    store_f16(y + 108, d_block);
    finish_q3_K(x, L, y);
}

inline void dequantize_block_q3_K(const uint8_t* y, float* x) {
    const uint8_t* hm = y;
    const uint8_t* q = y + 32;
    const float d_all = detail::load_f16(y + 108);
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < kQK_Kq; n += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1)) {
            for (int half = 0; half < 2; ++half) {
                const float dl = d_all * static_cast<float>(detail::get_q3_K_scale(y + 96, is++));
                for (int l = 16 * half; l < 16 * half + 16; ++l) {
                    const int v = ((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
                    *x++ = dl * static_cast<float>(v);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Q4_K: 8 groups of 32, x ~ d*sc*q - dmin*m with 4-bit q and 6-bit sc, m.

inline void quantize_block_q4_K(const float* x, uint8_t* y) {
    using namespace detail;
    uint8_t L[kQK_Kq];
    // make_qkx2_quants(32, 15, ..., rmin -1, rdelta 0.1, 20 steps, squared error)
    search_k4_ref(x, 15, -1.f, 0.1f, 20, L, y);
    requantize_k4(x, y + 4, load_f16(y), load_f16(y + 2), 15, L);
    uint8_t* q = y + 16;
    for (int j = 0; j < kQK_Kq; j += 64, q += 32)
        for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
}

inline void quantize_block_q4_K_weighted(const float* x, const float* qw, uint8_t* y) {
    using namespace detail;
    uint8_t L[kQK_Kq];
    search_k4_weighted(x, qw, 15, false, L, y);
    requantize_k4(x, y + 4, load_f16(y), load_f16(y + 2), 15, L);
    uint8_t* q = y + 16;
    for (int j = 0; j < kQK_Kq; j += 64, q += 32)
        for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
}

inline void dequantize_block_q4_K(const uint8_t* y, float* x) {
    const float d = detail::load_f16(y), min = detail::load_f16(y + 2);
    const uint8_t* q = y + 16;
    for (int is = 0; is < 8; is += 2, q += 32) {
        uint8_t sc, m;
        detail::get_scale_min_k4(is, y + 4, &sc, &m);
        const float d1 = d * static_cast<float>(sc), m1 = min * static_cast<float>(m);
        detail::get_scale_min_k4(is + 1, y + 4, &sc, &m);
        const float d2 = d * static_cast<float>(sc), m2 = min * static_cast<float>(m);
        for (int l = 0; l < 32; ++l) *x++ = d1 * static_cast<float>(q[l] & 0xf) - m1;
        for (int l = 0; l < 32; ++l) *x++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
}

// ---------------------------------------------------------------------------------------
// Q5_K: as Q4_K with 5-bit q; the fifth bits live in qh (byte l, bit 2*(j/64) + half).

namespace detail {
inline void pack_q5_K(const uint8_t* L, uint8_t* y) {
    uint8_t* qh = y + 16;
    uint8_t* ql = y + 48;
    std::memset(qh, 0, 32);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < kQK_Kq; n += 64, ql += 32) {
        for (int j = 0; j < 32; ++j) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
            if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
            ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
        }
        m1 = static_cast<uint8_t>(m1 << 2);
        m2 = static_cast<uint8_t>(m2 << 2);
    }
}
}  // namespace detail

inline void quantize_block_q5_K(const float* x, uint8_t* y) {
    using namespace detail;
    uint8_t L[kQK_Kq];
    // make_qkx2_quants(32, 31, ..., rmin -0.5, rdelta 0.1, 15 steps, squared error)
    search_k4_ref(x, 31, -0.5f, 0.1f, 15, L, y);
    requantize_k4(x, y + 4, load_f16(y), load_f16(y + 2), 31, L);
    pack_q5_K(L, y);
}

inline void quantize_block_q5_K_weighted(const float* x, const float* qw, uint8_t* y) {
    using namespace detail;
    uint8_t L[kQK_Kq];
    search_k4_weighted(x, qw, 31, true, L, y);
    requantize_k4(x, y + 4, load_f16(y), load_f16(y + 2), 31, L);
    pack_q5_K(L, y);
}

inline void dequantize_block_q5_K(const uint8_t* y, float* x) {
    const float d = detail::load_f16(y), min = detail::load_f16(y + 2);
    const uint8_t* qh = y + 16;
    const uint8_t* ql = y + 48;
    uint8_t u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2, ql += 32) {
        uint8_t sc, m;
        detail::get_scale_min_k4(is, y + 4, &sc, &m);
        const float d1 = d * static_cast<float>(sc), m1 = min * static_cast<float>(m);
        detail::get_scale_min_k4(is + 1, y + 4, &sc, &m);
        const float d2 = d * static_cast<float>(sc), m2 = min * static_cast<float>(m);
        for (int l = 0; l < 32; ++l) *x++ = d1 * static_cast<float>((ql[l] & 0xf) + ((qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l) *x++ = d2 * static_cast<float>((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        u1 = static_cast<uint8_t>(u1 << 2);
        u2 = static_cast<uint8_t>(u2 << 2);
    }
}

// ---------------------------------------------------------------------------------------
// Q6_K: 16 groups of 16, x ~ d*sc*q with 6-bit q in [-32, 31] and int8 sc.

inline void quantize_block_q6_K(const float* x, uint8_t* y) { detail::quantize_q6_K_common(x, nullptr, y); }

// quantize_row_q6_K_impl uses the importance values directly as make_qx_quants weights (the
// sqrt(sigma2 + x^2) factor of the other formats is commented out in ggml).
inline void quantize_block_q6_K_weighted(const float* x, const float* qw, uint8_t* y) {
    detail::quantize_q6_K_common(x, qw, y);
}

inline void dequantize_block_q6_K(const uint8_t* y, float* x) {
    const float d = detail::load_f16(y + 208);
    const uint8_t* ql = y;
    const uint8_t* qh = y + 128;
    const auto* sc = reinterpret_cast<const int8_t*>(y + 192);
    for (int n = 0; n < kQK_Kq; n += 128, x += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            // d * sc * q is (d * sc) * q
            x[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
            x[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
            x[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
            x[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Row functions: n is a multiple of 256 (checked by quantize.h); imatrix, when given, has n
// floats and selects the weighted quantizer for every super-block.

namespace detail {
template <size_t BlockBytes, typename RefFn, typename WeightedFn>
inline void quantize_row_k(const float* x, uint8_t* y, int64_t n, const float* imatrix, RefFn ref, WeightedFn weighted) {
    for (int64_t b = 0; b < n / kQK_Kq; ++b) {
        if (imatrix) weighted(x + b * kQK_Kq, imatrix + b * kQK_Kq, y + b * BlockBytes);
        else ref(x + b * kQK_Kq, y + b * BlockBytes);
    }
}
template <size_t BlockBytes, typename Fn>
inline void dequantize_row_k(const uint8_t* y, float* x, int64_t n, Fn fn) {
    for (int64_t b = 0; b < n / kQK_Kq; ++b) fn(y + b * BlockBytes, x + b * kQK_Kq);
}
}  // namespace detail

inline void quantize_row_q2_K(const float* x, uint8_t* y, int64_t n, const float* imatrix) {
    detail::quantize_row_k<kQ2_KBytes>(x, y, n, imatrix, quantize_block_q2_K, quantize_block_q2_K_weighted);
}
inline void quantize_row_q3_K(const float* x, uint8_t* y, int64_t n, const float* imatrix) {
    detail::quantize_row_k<kQ3_KBytes>(x, y, n, imatrix, quantize_block_q3_K, quantize_block_q3_K_weighted);
}
inline void quantize_row_q4_K(const float* x, uint8_t* y, int64_t n, const float* imatrix) {
    detail::quantize_row_k<kQ4_KBytes>(x, y, n, imatrix, quantize_block_q4_K, quantize_block_q4_K_weighted);
}
inline void quantize_row_q5_K(const float* x, uint8_t* y, int64_t n, const float* imatrix) {
    detail::quantize_row_k<kQ5_KBytes>(x, y, n, imatrix, quantize_block_q5_K, quantize_block_q5_K_weighted);
}
inline void quantize_row_q6_K(const float* x, uint8_t* y, int64_t n, const float* imatrix) {
    detail::quantize_row_k<kQ6_KBytes>(x, y, n, imatrix, quantize_block_q6_K, quantize_block_q6_K_weighted);
}

inline void dequantize_row_q2_K(const uint8_t* y, float* x, int64_t n) {
    detail::dequantize_row_k<kQ2_KBytes>(y, x, n, dequantize_block_q2_K);
}
inline void dequantize_row_q3_K(const uint8_t* y, float* x, int64_t n) {
    detail::dequantize_row_k<kQ3_KBytes>(y, x, n, dequantize_block_q3_K);
}
inline void dequantize_row_q4_K(const uint8_t* y, float* x, int64_t n) {
    detail::dequantize_row_k<kQ4_KBytes>(y, x, n, dequantize_block_q4_K);
}
inline void dequantize_row_q5_K(const uint8_t* y, float* x, int64_t n) {
    detail::dequantize_row_k<kQ5_KBytes>(y, x, n, dequantize_block_q5_K);
}
inline void dequantize_row_q6_K(const uint8_t* y, float* x, int64_t n) {
    detail::dequantize_row_k<kQ6_KBytes>(y, x, n, dequantize_block_q6_K);
}

}  // namespace cmf::quant
