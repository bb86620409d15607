// AVX-512 (16-lane __m512, AVX512F/BW/VL/DQ) versions of the hottest scalar quantizer steps,
// bit-identical to the scalar code in legacy.h / kquants.h: the kernel bodies are
// kernels_simd.inc (16 lanes = two Q4_K/Q5_K super-blocks or one Q6_K super-block at once),
// this header supplies the lane type and the lane operations (their meanings are listed in
// kernels_sse42.h; masks are __mmask16 here) plus 16-wide F16 row conversions.
//
// Every function carries __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))),
// never "fma", so the compiler cannot contract mul+add. Callers must check the CPU first;
// kernels_dispatch.h does.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CMF_HAVE_AVX512_KERNELS 1
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cmf/quant/kernels_common.h"
#include "cmf/quant/kquants.h"
#include "cmf/quant/legacy.h"

namespace cmf::quant::avx512 {

#define CMF_SIMD_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) inline
#define CMF_SIMD_OP __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"), always_inline)) inline

// GCC 12 warns that the plain forms of several AVX-512 intrinsics read an uninitialized
// `__Y` (its _mm512_undefined_* idiom, GCC bug 105593). The zero-masking forms with an
// all-ones mask compile to the same unmasked instructions and leave nothing undefined.
inline constexpr __mmask16 kAll = 0xffff;

// F32 <-> F16 rows with the AVX-512F forms of vcvtps2ph / vcvtph2ps: the same instructions
// as F16C, 16 at a time, with the same rule for NaN (see kernels_avx2.h): a group of 16 that
// holds a NaN is redone with ggml's scalar rule (sign | 0x7e00).
CMF_SIMD_FN void f16_to_f32_row(const uint8_t* in, float* out, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_maskz_cvtph_ps(kAll, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 2 * i))));
    for (; i < n; ++i) out[i] = detail::from_f16(detail::load_u16(in + 2 * i));
}

CMF_SIMD_FN void f32_to_f16_row(const float* x, uint8_t* out, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2 * i), _mm512_maskz_cvtps_ph(kAll, v, _MM_FROUND_TO_NEAREST_INT));
        if (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) != 0)
            for (int64_t l = i; l < i + 16; ++l) detail::store_u16(out + 2 * l, detail::to_f16(x[l]));
    }
    for (; i < n; ++i) detail::store_u16(out + 2 * i, detail::to_f16(x[i]));
}

inline constexpr int kLanes = 16;
using V = __m512;
using VI = __m512i;
using M = __mmask16;

CMF_SIMD_OP V vzero() { return _mm512_setzero_ps(); }
CMF_SIMD_OP V vset1(float f) { return _mm512_set1_ps(f); }
CMF_SIMD_OP V vloadu(const float* p) { return _mm512_loadu_ps(p); }
CMF_SIMD_OP V vloada(const float* p) { return _mm512_load_ps(p); }
CMF_SIMD_OP void vstorea(float* p, V v) { _mm512_store_ps(p, v); }
CMF_SIMD_OP void vstoreu(float* p, V v) { _mm512_storeu_ps(p, v); }
CMF_SIMD_OP V vadd(V a, V b) { return _mm512_add_ps(a, b); }
CMF_SIMD_OP V vsub(V a, V b) { return _mm512_sub_ps(a, b); }
CMF_SIMD_OP V vmul(V a, V b) { return _mm512_mul_ps(a, b); }
CMF_SIMD_OP V vdiv(V a, V b) { return _mm512_div_ps(a, b); }
CMF_SIMD_OP V vsqrt(V a) { return _mm512_maskz_sqrt_ps(kAll, a); }
CMF_SIMD_OP V vmin(V a, V b) { return _mm512_maskz_min_ps(kAll, a, b); }
CMF_SIMD_OP V vmax(V a, V b) { return _mm512_maskz_max_ps(kAll, a, b); }
CMF_SIMD_OP V vabs(V a) { return _mm512_andnot_ps(_mm512_set1_ps(-0.0f), a); }
CMF_SIMD_OP V vneg(V a) { return _mm512_xor_ps(a, _mm512_set1_ps(-0.0f)); }
CMF_SIMD_OP V vand(V a, V b) { return _mm512_and_ps(a, b); }
CMF_SIMD_OP V vor(V a, V b) { return _mm512_or_ps(a, b); }
CMF_SIMD_OP V vtrunc(V a) { return _mm512_maskz_roundscale_ps(kAll, a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC); }
CMF_SIMD_OP V vcvt(VI a) { return _mm512_maskz_cvtepi32_ps(kAll, a); }
CMF_SIMD_OP VI vcvtt(V a) { return _mm512_maskz_cvttps_epi32(kAll, a); }
CMF_SIMD_OP VI vbits(V a) { return _mm512_castps_si512(a); }
CMF_SIMD_OP M cmp_gt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
CMF_SIMD_OP M cmp_ge(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
CMF_SIMD_OP M cmp_lt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
CMF_SIMD_OP M cmp_le(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
CMF_SIMD_OP M cmp_eq(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
CMF_SIMD_OP M m_and(M a, M b) { return static_cast<M>(a & b); }
CMF_SIMD_OP M m_or(M a, M b) { return static_cast<M>(a | b); }
CMF_SIMD_OP M m_andnot(M a, M b) { return static_cast<M>(~a & b); }
CMF_SIMD_OP bool m_any(M m) { return m != 0; }
CMF_SIMD_OP V vblend(V a, V b, M m) { return _mm512_mask_blend_ps(m, a, b); }
CMF_SIMD_OP V vand_m(V v, M m) { return _mm512_maskz_mov_ps(m, v); }
CMF_SIMD_OP VI vizero() { return _mm512_setzero_si512(); }
CMF_SIMD_OP VI viset1(int i) { return _mm512_set1_epi32(i); }
CMF_SIMD_OP VI viloadu(const void* p) { return _mm512_loadu_si512(p); }
CMF_SIMD_OP void vistorea(int32_t* p, VI v) { _mm512_store_si512(p, v); }
CMF_SIMD_OP VI viadd(VI a, VI b) { return _mm512_add_epi32(a, b); }
CMF_SIMD_OP VI visub(VI a, VI b) { return _mm512_sub_epi32(a, b); }
CMF_SIMD_OP VI viand(VI a, VI b) { return _mm512_and_si512(a, b); }
CMF_SIMD_OP VI vimin(VI a, VI b) { return _mm512_maskz_min_epi32(kAll, a, b); }
CMF_SIMD_OP VI vimax(VI a, VI b) { return _mm512_maskz_max_epi32(kAll, a, b); }
CMF_SIMD_OP VI viblend(VI a, VI b, M m) { return _mm512_mask_blend_epi32(m, a, b); }
CMF_SIMD_OP VI vizero_where(M m, VI v) { return _mm512_maskz_mov_epi32(static_cast<M>(~m), v); }
CMF_SIMD_OP M vicmp_eq(VI a, VI b) { return _mm512_cmpeq_epi32_mask(a, b); }
CMF_SIMD_OP float vhmax(V v) {
    const __m256 q = _mm256_max_ps(_mm512_maskz_extractf32x8_ps(0xff, v, 0), _mm512_maskz_extractf32x8_ps(0xff, v, 1));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(q), _mm256_extractf128_ps(q, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}

#include "cmf/quant/kernels_simd.inc"

#undef CMF_SIMD_OP
#undef CMF_SIMD_FN

}  // namespace cmf::quant::avx512
#endif
