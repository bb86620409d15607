// AVX2 (8-lane __m256) versions of the hottest scalar quantizer steps, bit-identical to the
// scalar code in legacy.h / kquants.h: the kernel bodies are kernels_simd.inc (see there for
// how lanes map to groups), this header supplies the lane type and the lane operations (their
// meanings are listed in kernels_sse42.h) plus the F16C row conversions.
//
// Every function carries __attribute__((target("avx2"))) (the F16 rows "avx2,f16c"), never
// "fma", so the compiler cannot contract mul+add. Callers must check the CPU first;
// kernels_dispatch.h does.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CMF_HAVE_AVX2_KERNELS 1
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cmf/quant/kernels_common.h"
#include "cmf/quant/kquants.h"
#include "cmf/quant/legacy.h"

namespace cmf::quant::avx2 {

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

#define CMF_SIMD_FN __attribute__((target("avx2"))) inline
#define CMF_SIMD_OP __attribute__((target("avx2"), always_inline)) inline

inline constexpr int kLanes = 8;
using V = __m256;
using VI = __m256i;
using M = __m256;  // all-ones / all-zeros lanes

CMF_SIMD_OP V vzero() { return _mm256_setzero_ps(); }
CMF_SIMD_OP V vset1(float f) { return _mm256_set1_ps(f); }
CMF_SIMD_OP V vloadu(const float* p) { return _mm256_loadu_ps(p); }
CMF_SIMD_OP V vloada(const float* p) { return _mm256_load_ps(p); }
CMF_SIMD_OP void vstorea(float* p, V v) { _mm256_store_ps(p, v); }
CMF_SIMD_OP void vstoreu(float* p, V v) { _mm256_storeu_ps(p, v); }
CMF_SIMD_OP V vadd(V a, V b) { return _mm256_add_ps(a, b); }
CMF_SIMD_OP V vsub(V a, V b) { return _mm256_sub_ps(a, b); }
CMF_SIMD_OP V vmul(V a, V b) { return _mm256_mul_ps(a, b); }
CMF_SIMD_OP V vdiv(V a, V b) { return _mm256_div_ps(a, b); }
CMF_SIMD_OP V vsqrt(V a) { return _mm256_sqrt_ps(a); }
CMF_SIMD_OP V vmin(V a, V b) { return _mm256_min_ps(a, b); }
CMF_SIMD_OP V vmax(V a, V b) { return _mm256_max_ps(a, b); }
CMF_SIMD_OP V vabs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
CMF_SIMD_OP V vneg(V a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.0f)); }
CMF_SIMD_OP V vand(V a, V b) { return _mm256_and_ps(a, b); }
CMF_SIMD_OP V vor(V a, V b) { return _mm256_or_ps(a, b); }
CMF_SIMD_OP V vtrunc(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC); }
CMF_SIMD_OP V vcvt(VI a) { return _mm256_cvtepi32_ps(a); }
CMF_SIMD_OP VI vcvtt(V a) { return _mm256_cvttps_epi32(a); }
CMF_SIMD_OP VI vbits(V a) { return _mm256_castps_si256(a); }
CMF_SIMD_OP M cmp_gt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
CMF_SIMD_OP M cmp_ge(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
CMF_SIMD_OP M cmp_lt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
CMF_SIMD_OP M cmp_le(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
CMF_SIMD_OP M cmp_eq(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
CMF_SIMD_OP M m_and(M a, M b) { return _mm256_and_ps(a, b); }
CMF_SIMD_OP M m_or(M a, M b) { return _mm256_or_ps(a, b); }
CMF_SIMD_OP M m_andnot(M a, M b) { return _mm256_andnot_ps(a, b); }
CMF_SIMD_OP bool m_any(M m) { return _mm256_movemask_ps(m) != 0; }
CMF_SIMD_OP V vblend(V a, V b, M m) { return _mm256_blendv_ps(a, b, m); }
CMF_SIMD_OP V vand_m(V v, M m) { return _mm256_and_ps(m, v); }
CMF_SIMD_OP VI vizero() { return _mm256_setzero_si256(); }
CMF_SIMD_OP VI viset1(int i) { return _mm256_set1_epi32(i); }
CMF_SIMD_OP VI viloadu(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
CMF_SIMD_OP void vistorea(int32_t* p, VI v) { _mm256_store_si256(reinterpret_cast<__m256i*>(p), v); }
CMF_SIMD_OP VI viadd(VI a, VI b) { return _mm256_add_epi32(a, b); }
CMF_SIMD_OP VI visub(VI a, VI b) { return _mm256_sub_epi32(a, b); }
CMF_SIMD_OP VI viand(VI a, VI b) { return _mm256_and_si256(a, b); }
CMF_SIMD_OP VI vimin(VI a, VI b) { return _mm256_min_epi32(a, b); }
CMF_SIMD_OP VI vimax(VI a, VI b) { return _mm256_max_epi32(a, b); }
CMF_SIMD_OP VI viblend(VI a, VI b, M m) { return _mm256_blendv_epi8(a, b, _mm256_castps_si256(m)); }
CMF_SIMD_OP VI vizero_where(M m, VI v) { return _mm256_andnot_si256(_mm256_castps_si256(m), v); }
CMF_SIMD_OP M vicmp_eq(VI a, VI b) { return _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, b)); }
CMF_SIMD_OP float vhmax(V v) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}

#include "cmf/quant/kernels_simd.inc"

#undef CMF_SIMD_OP
#undef CMF_SIMD_FN

}  // namespace cmf::quant::avx2
#endif
