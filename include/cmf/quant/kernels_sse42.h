// SSE4.2 (4-lane __m128) versions of the hottest scalar quantizer steps, bit-identical to the
// scalar code in legacy.h / kquants.h: the kernel bodies are kernels_simd.inc, this header
// only supplies the lane type and the lane operations. F16 conversion stays scalar at this
// level (F16C comes with AVX).
//
// Every function carries __attribute__((target("sse4.2"))) only (no "fma"), so the compiler
// cannot contract mul+add. Callers must check the CPU first; kernels_dispatch.h does.
//
// The lane operations (the same names and meanings in kernels_avx2.h / kernels_avx512.h):
//   vadd vsub vmul vdiv vsqrt   IEEE lane-wise arithmetic (correctly rounded)
//   vmin(a, b) / vmax(a, b)     a < b ? a : b  /  a > b ? a : b   (minps / maxps)
//   vabs, vneg                  clear / flip the sign bit
//   vand, vor                   bitwise on float lanes
//   vtrunc                      round toward zero;  vcvtt: truncating float -> int32
//   vcvt                        int32 -> float;  vbits: reinterpret float bits as int32
//   cmp_gt/ge/lt/le/eq          ordered compares (false when either side is NaN) -> M
//   m_and(a, b), m_or(a, b), m_andnot(a, b) = ~a & b, m_any(m): some lane set
//   vblend(a, b, m), viblend(a, b, m)   m ? b : a
//   vand_m(v, m)                m ? v : 0;   vizero_where(m, v): m ? 0 : v
//   vicmp_eq                    int32 equality -> M
//   vhmax                       max over the lanes (only used on finite, non-negative lanes)
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CMF_HAVE_SSE42_KERNELS 1
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cmf/quant/kernels_common.h"
#include "cmf/quant/kquants.h"
#include "cmf/quant/legacy.h"

namespace cmf::quant::sse42 {

#define CMF_SIMD_FN __attribute__((target("sse4.2"))) inline
#define CMF_SIMD_OP __attribute__((target("sse4.2"), always_inline)) inline

inline constexpr int kLanes = 4;
using V = __m128;
using VI = __m128i;
using M = __m128;  // all-ones / all-zeros lanes

CMF_SIMD_OP V vzero() { return _mm_setzero_ps(); }
CMF_SIMD_OP V vset1(float f) { return _mm_set1_ps(f); }
CMF_SIMD_OP V vloadu(const float* p) { return _mm_loadu_ps(p); }
CMF_SIMD_OP V vloada(const float* p) { return _mm_load_ps(p); }
CMF_SIMD_OP void vstorea(float* p, V v) { _mm_store_ps(p, v); }
CMF_SIMD_OP void vstoreu(float* p, V v) { _mm_storeu_ps(p, v); }
CMF_SIMD_OP V vadd(V a, V b) { return _mm_add_ps(a, b); }
CMF_SIMD_OP V vsub(V a, V b) { return _mm_sub_ps(a, b); }
CMF_SIMD_OP V vmul(V a, V b) { return _mm_mul_ps(a, b); }
CMF_SIMD_OP V vdiv(V a, V b) { return _mm_div_ps(a, b); }
CMF_SIMD_OP V vsqrt(V a) { return _mm_sqrt_ps(a); }
CMF_SIMD_OP V vmin(V a, V b) { return _mm_min_ps(a, b); }
CMF_SIMD_OP V vmax(V a, V b) { return _mm_max_ps(a, b); }
CMF_SIMD_OP V vabs(V a) { return _mm_andnot_ps(_mm_set1_ps(-0.0f), a); }
CMF_SIMD_OP V vneg(V a) { return _mm_xor_ps(a, _mm_set1_ps(-0.0f)); }
CMF_SIMD_OP V vand(V a, V b) { return _mm_and_ps(a, b); }
CMF_SIMD_OP V vor(V a, V b) { return _mm_or_ps(a, b); }
CMF_SIMD_OP V vtrunc(V a) { return _mm_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC); }
CMF_SIMD_OP V vcvt(VI a) { return _mm_cvtepi32_ps(a); }
CMF_SIMD_OP VI vcvtt(V a) { return _mm_cvttps_epi32(a); }
CMF_SIMD_OP VI vbits(V a) { return _mm_castps_si128(a); }
CMF_SIMD_OP M cmp_gt(V a, V b) { return _mm_cmpgt_ps(a, b); }
CMF_SIMD_OP M cmp_ge(V a, V b) { return _mm_cmpge_ps(a, b); }
CMF_SIMD_OP M cmp_lt(V a, V b) { return _mm_cmplt_ps(a, b); }
CMF_SIMD_OP M cmp_le(V a, V b) { return _mm_cmple_ps(a, b); }
CMF_SIMD_OP M cmp_eq(V a, V b) { return _mm_cmpeq_ps(a, b); }
CMF_SIMD_OP M m_and(M a, M b) { return _mm_and_ps(a, b); }
CMF_SIMD_OP M m_or(M a, M b) { return _mm_or_ps(a, b); }
CMF_SIMD_OP M m_andnot(M a, M b) { return _mm_andnot_ps(a, b); }
CMF_SIMD_OP bool m_any(M m) { return _mm_movemask_ps(m) != 0; }
CMF_SIMD_OP V vblend(V a, V b, M m) { return _mm_blendv_ps(a, b, m); }
CMF_SIMD_OP V vand_m(V v, M m) { return _mm_and_ps(m, v); }
CMF_SIMD_OP VI vizero() { return _mm_setzero_si128(); }
CMF_SIMD_OP VI viset1(int i) { return _mm_set1_epi32(i); }
CMF_SIMD_OP VI viloadu(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
CMF_SIMD_OP void vistorea(int32_t* p, VI v) { _mm_store_si128(reinterpret_cast<__m128i*>(p), v); }
CMF_SIMD_OP VI viadd(VI a, VI b) { return _mm_add_epi32(a, b); }
CMF_SIMD_OP VI visub(VI a, VI b) { return _mm_sub_epi32(a, b); }
CMF_SIMD_OP VI viand(VI a, VI b) { return _mm_and_si128(a, b); }
CMF_SIMD_OP VI vimin(VI a, VI b) { return _mm_min_epi32(a, b); }
CMF_SIMD_OP VI vimax(VI a, VI b) { return _mm_max_epi32(a, b); }
CMF_SIMD_OP VI viblend(VI a, VI b, M m) { return _mm_blendv_epi8(a, b, _mm_castps_si128(m)); }
CMF_SIMD_OP VI vizero_where(M m, VI v) { return _mm_andnot_si128(_mm_castps_si128(m), v); }
CMF_SIMD_OP M vicmp_eq(VI a, VI b) { return _mm_castsi128_ps(_mm_cmpeq_epi32(a, b)); }
CMF_SIMD_OP float vhmax(V v) {
    V h = _mm_max_ps(v, _mm_movehl_ps(v, v));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}

#include "cmf/quant/kernels_simd.inc"

#undef CMF_SIMD_OP
#undef CMF_SIMD_FN

}  // namespace cmf::quant::sse42
#endif
