// AVX2 versions of the hottest scalar quantizer steps, bit-identical to the scalar code in
// legacy.h / kquants.h (and so to ggml v0.5.0's reference C).
//
// The scalar algorithms sum left to right and branch per group, so they do not vectorize
// within a group. These kernels vectorize ACROSS independent groups instead: each of the 8
// float lanes runs exactly the scalar operation sequence of one group (separate mul and add,
// never FMA; the same association order; ggml's nearest_int magic-number rounding; minps /
// maxps, whose `a < b ? a : b` semantics equal the scalar comparisons including NaN; IEEE
// division and square root, which are correctly rounded in both scalar and vector form).
// Branches become per-lane masks that select exactly what the scalar code would keep.
//
// The functions carry __attribute__((target("avx2"))) only (no "fma"), so the compiler
// cannot contract mul+add even where -ffp-contract would allow it. Callers must check
// cpu_has_avx2() first; quantize.h dispatches at run time.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CMF_HAVE_AVX2_KERNELS 1
#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "cmf/quant/kquants.h"
#include "cmf/quant/legacy.h"

namespace cmf::quant::avx2 {

inline bool cpu_has_avx2() {
    static const bool has = [] {
        if (const char* e = std::getenv("CMF_NO_SIMD"); e && *e && *e != '0') return false;
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0;
    }();
    return has;
}

#define CMF_AVX2 __attribute__((target("avx2")))

inline bool cpu_has_f16c() {
    static const bool has = [] {
        if (const char* e = std::getenv("CMF_NO_SIMD"); e && *e && *e != '0') return false;
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("f16c") != 0;
    }();
    return has;
}

// F32 -> F16 of a row with the F16C instruction: round to nearest even like ggml's portable
// conversion for every non-NaN value; ggml turns each NaN into sign | 0x7e00 (dropping the
// payload, which vcvtps2ph keeps), so a group holding a NaN is redone with the scalar rule.
// F16 -> F32 with vcvtph2ps: exact, and a NaN keeps its payload with the quiet bit set, which
// is what ggml's portable conversion gives (checked for all 65536 halves in the tests).
__attribute__((target("avx2,f16c"))) inline void f16_to_f32_row(const uint8_t* in, float* out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 2 * i))));
    for (; i < n; ++i) out[i] = detail::from_f16(detail::load_u16(in + 2 * i));
}

__attribute__((target("avx2,f16c"))) inline void f32_to_f16_row(const float* x, uint8_t* out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0)
            for (int64_t l = i; l < i + 8; ++l) detail::store_u16(out + 2 * l, detail::to_f16(x[l]));
    }
    for (; i < n; ++i) detail::store_u16(out + 2 * i, detail::to_f16(x[i]));
}


CMF_AVX2 inline __m256i nearest_int8(__m256 v) {
    const __m256 biased = _mm256_add_ps(v, _mm256_set1_ps(12582912.f));
    return _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(biased), _mm256_set1_epi32(0x007fffff)),
                            _mm256_set1_epi32(0x00400000));
}

CMF_AVX2 inline __m256 fabs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

// make_qkx_quants(32, nmax, x_j, weights_j, L_j, &min_j, Laux, rmin, rdelta, nstep, false) for
// the 8 groups j of 32 consecutive floats of one super-block at once (lane j = group j), with
// the weights of search_k4_ref: sqrt(sum_sq(x_j)/32) + |x|. nstep >= 1.
// Writes L[32*j + i], scales[j], mins[j] (= the_min).
CMF_AVX2 inline void qkx_ref_8groups(const float* x, int nmax, float rmin, float rdelta, int nstep, uint8_t* L,
                                     float* scales, float* mins) {
    constexpr int n = 32;
    alignas(32) float xt[n][8];
    for (int j = 0; j < 8; ++j)
        for (int i = 0; i < n; ++i) xt[i][j] = x[32 * j + i];
    __m256 X[n], W[n];
    for (int i = 0; i < n; ++i) X[i] = _mm256_load_ps(xt[i]);

    // av_x = sqrt(sum_sq(xg, 32) / 32); weights = av_x + |x|
    __m256 ss = _mm256_setzero_ps();
    for (int i = 0; i < n; ++i) ss = _mm256_add_ps(ss, _mm256_mul_ps(X[i], X[i]));
    const __m256 av_x = _mm256_sqrt_ps(_mm256_div_ps(ss, _mm256_set1_ps(32.0f)));
    for (int i = 0; i < n; ++i) W[i] = _mm256_add_ps(av_x, fabs8(X[i]));

    __m256 vmin = X[0], vmax = X[0];
    __m256 sum_w = W[0];
    __m256 sum_x = _mm256_mul_ps(sum_w, X[0]);
    for (int i = 1; i < n; ++i) {
        vmin = _mm256_min_ps(X[i], vmin);  // x < min ? x : min
        vmax = _mm256_max_ps(X[i], vmax);  // x > max ? x : max
        sum_w = _mm256_add_ps(sum_w, W[i]);
        sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(W[i], X[i]));
    }
    const __m256 zero = _mm256_setzero_ps();
    vmin = _mm256_blendv_ps(vmin, zero, _mm256_cmp_ps(vmin, zero, _CMP_GT_OQ));  // if (min > 0) min = 0
    const __m256 dead = _mm256_cmp_ps(vmax, vmin, _CMP_LE_OQ);                   // max <= min
    const __m256 range = _mm256_sub_ps(vmax, vmin);
    const __m256i vnmax = _mm256_set1_epi32(nmax);
    const __m256i izero = _mm256_setzero_si256();
    const __m256 fnmax = _mm256_set1_ps(static_cast<float>(nmax));

    __m256 iscale = _mm256_div_ps(fnmax, range);
    __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
    __m256 best_error = zero;
    __m256i Lv[n], La[n];
    for (int i = 0; i < n; ++i) {
        __m256i l = nearest_int8(_mm256_mul_ps(iscale, _mm256_sub_ps(X[i], vmin)));
        l = _mm256_max_epi32(izero, _mm256_min_epi32(vnmax, l));
        Lv[i] = l;
        const __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(l)), vmin), X[i]);
        best_error = _mm256_add_ps(best_error, _mm256_mul_ps(W[i], _mm256_mul_ps(diff, diff)));
    }
    for (int is = 0; is <= nstep; ++is) {
        const float num = rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax);
        // scalar: (max - min) with the min of the best rounding so far
        iscale = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(vmax, vmin));
        __m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int i = 0; i < n; ++i) {
            __m256i l = nearest_int8(_mm256_mul_ps(iscale, _mm256_sub_ps(X[i], vmin)));
            l = _mm256_max_epi32(izero, _mm256_min_epi32(vnmax, l));
            La[i] = l;
            const __m256 fl = _mm256_cvtepi32_ps(l);
            const __m256 wfl = _mm256_mul_ps(W[i], fl);
            sum_l = _mm256_add_ps(sum_l, wfl);
            sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wfl, fl));
            sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wfl, X[i]));
        }
        const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
        const __m256 dpos = _mm256_cmp_ps(D, zero, _CMP_GT_OQ);
        if (_mm256_movemask_ps(dpos) == 0) continue;
        __m256 this_scale =
            _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
        __m256 this_min =
            _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
        const __m256 mpos = _mm256_cmp_ps(this_min, zero, _CMP_GT_OQ);
        this_min = _mm256_blendv_ps(this_min, zero, mpos);
        this_scale = _mm256_blendv_ps(this_scale, _mm256_div_ps(sum_xl, sum_l2), mpos);
        __m256 cur_error = zero;
        for (int i = 0; i < n; ++i) {
            const __m256 diff = _mm256_sub_ps(
                _mm256_add_ps(_mm256_mul_ps(this_scale, _mm256_cvtepi32_ps(La[i])), this_min), X[i]);
            cur_error = _mm256_add_ps(cur_error, _mm256_mul_ps(W[i], _mm256_mul_ps(diff, diff)));
        }
        const __m256 take =
            _mm256_andnot_ps(dead, _mm256_and_ps(dpos, _mm256_cmp_ps(cur_error, best_error, _CMP_LT_OQ)));
        if (_mm256_movemask_ps(take) == 0) continue;
        const __m256i takei = _mm256_castps_si256(take);
        for (int i = 0; i < n; ++i) Lv[i] = _mm256_blendv_epi8(Lv[i], La[i], takei);
        best_error = _mm256_blendv_ps(best_error, cur_error, take);
        scale = _mm256_blendv_ps(scale, this_scale, take);
        vmin = _mm256_blendv_ps(vmin, this_min, take);
    }
    // degenerate groups: L = 0, the_min = -min (min as clamped above), scale 0
    const __m256i deadi = _mm256_castps_si256(dead);
    alignas(32) int32_t lt[n][8];
    for (int i = 0; i < n; ++i)
        _mm256_store_si256(reinterpret_cast<__m256i*>(lt[i]), _mm256_andnot_si256(deadi, Lv[i]));
    for (int j = 0; j < 8; ++j)
        for (int i = 0; i < n; ++i) L[32 * j + i] = static_cast<uint8_t>(lt[i][j]);
    // dead lanes never took an update, so vmin still holds their clamped min
    _mm256_storeu_ps(mins, _mm256_xor_ps(vmin, _mm256_set1_ps(-0.0f)));  // -min
    _mm256_storeu_ps(scales, _mm256_blendv_ps(scale, zero, dead));
}

// search_k4_ref with the per-group search above (the scalar tail is the same code).
CMF_AVX2 inline void search_k4_ref(const float* x, int nmax, float rmin, float rdelta, int nstep, uint8_t* L,
                                   uint8_t* y) {
    using namespace cmf::quant::detail;
    float mins[8], scales[8];
    qkx_ref_8groups(x, nmax, rmin, rdelta, nstep, L, scales, mins);
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; ++j) {
        const auto ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
        const auto lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
        put_scale_min_k4(y + 4, j, ls < 63 ? ls : uint8_t{63}, lm < 63 ? lm : uint8_t{63});
    }
    store_f16(y, max_scale / 63.f);
    store_f16(y + 2, max_min / 63.f);
}

// requantize_k4: elementwise within a group, so plain 8-wide over the 32 weights.
CMF_AVX2 inline void requantize_k4(const float* x, const uint8_t* sc, float dd, float dmin, int nmax, uint8_t* L) {
    using namespace cmf::quant::detail;
    const __m256i vnmax = _mm256_set1_epi32(nmax);
    const __m256i izero = _mm256_setzero_si256();
    for (int j = 0; j < 8; ++j) {
        uint8_t s, m;
        get_scale_min_k4(j, sc, &s, &m);
        const float d = dd * static_cast<float>(s);
        if (d == 0) continue;
        const float dm = dmin * static_cast<float>(m);
        const __m256 vd = _mm256_set1_ps(d), vdm = _mm256_set1_ps(dm);
        alignas(32) int32_t out[32];
        for (int k = 0; k < 32; k += 8) {
            const __m256 v = _mm256_div_ps(_mm256_add_ps(_mm256_loadu_ps(x + 32 * j + k), vdm), vd);
            const __m256i l = _mm256_max_epi32(izero, _mm256_min_epi32(vnmax, nearest_int8(v)));
            _mm256_store_si256(reinterpret_cast<__m256i*>(out + k), l);
        }
        for (int k = 0; k < 32; ++k) L[32 * j + k] = static_cast<uint8_t>(out[k]);
    }
}

CMF_AVX2 inline void quantize_block_q4_K(const float* x, uint8_t* y) {
    using namespace cmf::quant::detail;
    uint8_t L[kQK_Kq];
    avx2::search_k4_ref(x, 15, -1.f, 0.1f, 20, L, y);
    avx2::requantize_k4(x, y + 4, load_f16(y), load_f16(y + 2), 15, L);
    uint8_t* q = y + 16;
    for (int j = 0; j < kQK_Kq; j += 64, q += 32)
        for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
}

CMF_AVX2 inline void quantize_block_q5_K(const float* x, uint8_t* y) {
    using namespace cmf::quant::detail;
    uint8_t L[kQK_Kq];
    avx2::search_k4_ref(x, 31, -0.5f, 0.1f, 15, L, y);
    avx2::requantize_k4(x, y + 4, load_f16(y), load_f16(y + 2), 31, L);
    pack_q5_K(L, y);
}

// True when none of the 256 values is Inf or NaN. Only then do the kernels run: with finite
// inputs every NaN that can arise is the default NaN, so the result does not depend on which
// operand the hardware propagates (compilers commute add/mul operands freely, in ggml's build
// as in ours). Blocks with non-finite inputs take the scalar code, which matches ggml's.
CMF_AVX2 inline bool all_finite_n(const float* x, int n) {
    const __m256i expo = _mm256_set1_epi32(0x7f800000);
    __m256i bad = _mm256_setzero_si256();
    for (int i = 0; i < n; i += 8) {
        const __m256i v = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)), expo);
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(v, expo));
    }
    return _mm256_testz_si256(bad, bad) != 0;
}

CMF_AVX2 inline void quantize_row_q4_K(const float* x, uint8_t* y, int64_t n) {
    for (int64_t b = 0; b < n / kQK_Kq; ++b) {
        const float* xb = x + b * kQK_Kq;
        if (all_finite_n(xb, kQK_Kq)) avx2::quantize_block_q4_K(xb, y + b * kQ4_KBytes);
        else cmf::quant::quantize_block_q4_K(xb, y + b * kQ4_KBytes);
    }
}
CMF_AVX2 inline void quantize_row_q5_K(const float* x, uint8_t* y, int64_t n) {
    for (int64_t b = 0; b < n / kQK_Kq; ++b) {
        const float* xb = x + b * kQK_Kq;
        if (all_finite_n(xb, kQK_Kq)) avx2::quantize_block_q5_K(xb, y + b * kQ5_KBytes);
        else cmf::quant::quantize_block_q5_K(xb, y + b * kQ5_KBytes);
    }
}

// make_qx_quants(16, nmax, x_j, L_j, nullptr) (weights x^2, rmse_type 1) for 8 consecutive
// groups j of 16 floats at once (lane j = group j). Writes L[16*j + i] and scales[j].
CMF_AVX2 inline void qx_8groups(const float* x, int nmax, int8_t* L, float* scales) {
    constexpr int n = 16;
    alignas(32) float xt[n][8];
    for (int j = 0; j < 8; ++j)
        for (int i = 0; i < n; ++i) xt[i][j] = x[16 * j + i];
    __m256 X[n], W[n], WX[n];
    const __m256 zero = _mm256_setzero_ps();
    __m256 vmax = zero, amax = zero;
    for (int i = 0; i < n; ++i) {
        X[i] = _mm256_load_ps(xt[i]);
        W[i] = _mm256_mul_ps(X[i], X[i]);
        WX[i] = _mm256_mul_ps(W[i], X[i]);
        const __m256 ax = fabs8(X[i]);
        const __m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
        amax = _mm256_blendv_ps(amax, ax, gt);
        vmax = _mm256_blendv_ps(vmax, X[i], gt);
    }
    const __m256 dead = _mm256_cmp_ps(amax, _mm256_set1_ps(cmf::quant::detail::kGroupMaxEps), _CMP_LT_OQ);
    const __m256i lo = _mm256_set1_epi32(-nmax), hi = _mm256_set1_epi32(nmax - 1), off = _mm256_set1_epi32(nmax);
    __m256i Lv[n];
    __m256 iscale = _mm256_div_ps(_mm256_set1_ps(static_cast<float>(-nmax)), vmax);
    __m256 sumlx = zero, suml2 = zero;
    for (int i = 0; i < n; ++i) {
        const __m256i l = _mm256_max_epi32(lo, _mm256_min_epi32(hi, nearest_int8(_mm256_mul_ps(iscale, X[i]))));
        Lv[i] = _mm256_add_epi32(l, off);
        const __m256 fl = _mm256_cvtepi32_ps(l);
        sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(WX[i], fl));
        suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(W[i], fl), fl));
    }
    __m256 scale = _mm256_blendv_ps(_mm256_div_ps(sumlx, suml2), zero, _mm256_cmp_ps(suml2, zero, _CMP_EQ_OQ));
    __m256 best = _mm256_mul_ps(scale, sumlx);
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        const float c = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is));
        iscale = _mm256_div_ps(_mm256_set1_ps(c), vmax);
        __m256i La[n];
        sumlx = suml2 = zero;
        for (int i = 0; i < n; ++i) {
            const __m256i l = _mm256_max_epi32(lo, _mm256_min_epi32(hi, nearest_int8(_mm256_mul_ps(iscale, X[i]))));
            La[i] = l;
            const __m256 fl = _mm256_cvtepi32_ps(l);
            sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(WX[i], fl));
            suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(W[i], fl), fl));
        }
        const __m256 take = _mm256_and_ps(_mm256_cmp_ps(suml2, zero, _CMP_GT_OQ),
                                          _mm256_cmp_ps(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2), _CMP_GT_OQ));
        if (_mm256_movemask_ps(take) == 0) continue;
        const __m256i takei = _mm256_castps_si256(take);
        for (int i = 0; i < n; ++i) Lv[i] = _mm256_blendv_epi8(Lv[i], _mm256_add_epi32(La[i], off), takei);
        const __m256 ns = _mm256_div_ps(sumlx, suml2);
        scale = _mm256_blendv_ps(scale, ns, take);
        best = _mm256_blendv_ps(best, _mm256_mul_ps(ns, sumlx), take);
    }
    const __m256i deadi = _mm256_castps_si256(dead);
    alignas(32) int32_t lt[n][8];
    for (int i = 0; i < n; ++i) _mm256_store_si256(reinterpret_cast<__m256i*>(lt[i]), _mm256_andnot_si256(deadi, Lv[i]));
    for (int j = 0; j < 8; ++j)
        for (int i = 0; i < n; ++i) L[16 * j + i] = static_cast<int8_t>(lt[i][j]);
    _mm256_storeu_ps(scales, _mm256_blendv_ps(scale, zero, dead));
}

// quantize_q6_K_common without importance weights, group searches 8 at a time.
CMF_AVX2 inline void quantize_block_q6_K(const float* x, uint8_t* y) {
    using namespace cmf::quant::detail;
    int8_t L[kQK_Kq];
    float scales[16];
    qx_8groups(x, 32, L, scales);
    qx_8groups(x + 128, 32, L + 128, scales + 8);
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
        const float abs_scale = std::fabs(scales[ib]);
        if (abs_scale > max_abs_scale) {
            max_abs_scale = abs_scale;
            max_scale = scales[ib];
        }
    }
    if (max_abs_scale < kGroupMaxEps) {
        std::memset(y, 0, kQ6_KBytes);
        return;
    }
    auto* sc = reinterpret_cast<int8_t*>(y + 192);
    const float iscale = -128.f / max_scale;
    store_f16(y + 208, 1 / iscale);
    for (int ib = 0; ib < 16; ++ib) sc[ib] = static_cast<int8_t>(imin(127, nearest_int(iscale * scales[ib])));
    const float dd = load_f16(y + 208);
    const __m256i lo = _mm256_set1_epi32(-32), hi = _mm256_set1_epi32(31), off = _mm256_set1_epi32(32);
    for (int j = 0; j < 16; ++j) {
        const float d = dd * static_cast<float>(sc[j]);
        if (d == 0) continue;
        const __m256 vd = _mm256_set1_ps(d);
        alignas(32) int32_t out[16];
        for (int k = 0; k < 16; k += 8) {
            const __m256i l = _mm256_max_epi32(lo, _mm256_min_epi32(hi, nearest_int8(_mm256_div_ps(_mm256_loadu_ps(x + 16 * j + k), vd))));
            _mm256_store_si256(reinterpret_cast<__m256i*>(out + k), _mm256_add_epi32(l, off));
        }
        for (int k = 0; k < 16; ++k) L[16 * j + k] = static_cast<int8_t>(out[k]);
    }
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

CMF_AVX2 inline void quantize_row_q6_K(const float* x, uint8_t* y, int64_t n) {
    for (int64_t b = 0; b < n / kQK_Kq; ++b) {
        const float* xb = x + b * kQK_Kq;
        if (all_finite_n(xb, kQK_Kq)) avx2::quantize_block_q6_K(xb, y + b * kQ6_KBytes);
        else cmf::quant::quantize_block_q6_K(xb, y + b * kQ6_KBytes);
    }
}

// Q8_0: amax is an order-independent max for finite values (|x| is never -0), d and id are the
// scalar expressions, roundf (half away from zero) is rebuilt exactly from truncation
// (t = trunc(v); v - t is exact; add sign(v) when |v - t| >= 0.5). Inf/NaN products (id = inf
// for a denormal d) give 0x80000000 from cvttps2dq like the scalar path.
CMF_AVX2 inline void quantize_block_q8_0(const float* x, uint8_t* y) {
    using namespace cmf::quant::detail;
    __m256 v[4];
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        m = _mm256_max_ps(m, fabs8(v[k]));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    const float amax = _mm_cvtss_f32(h);
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    store_f16(y, d);
    const __m256 vid = _mm256_set1_ps(id);
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    for (int k = 0; k < 4; ++k) {
        const __m256 p = _mm256_mul_ps(v[k], vid);
        const __m256 t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        const __m256 frac = fabs8(_mm256_sub_ps(p, t));
        const __m256 adj = _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ), _mm256_or_ps(one, _mm256_and_ps(p, sign)));
        const __m256i q = _mm256_cvttps_epi32(_mm256_add_ps(t, adj));
        alignas(32) int32_t out[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(out), q);
        for (int i = 0; i < 8; ++i) y[2 + 8 * k + i] = static_cast<uint8_t>(out[i] & 0xff);
    }
}

CMF_AVX2 inline void quantize_row_q8_0(const float* x, uint8_t* y, int64_t n) {
    for (int64_t b = 0; b < n / kQK; ++b) {
        const float* xb = x + b * kQK;
        if (all_finite_n(xb, kQK)) avx2::quantize_block_q8_0(xb, y + b * kQ8_0Bytes);
        else cmf::quant::quantize_block_q8_0(xb, y + b * kQ8_0Bytes);
    }
}

#undef CMF_AVX2

}  // namespace cmf::quant::avx2
#endif
