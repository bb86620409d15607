// Run-time choice of the quantizer kernels: one binary runs on every x86-64 machine and takes
// the widest kernels the CPU offers. Every level gives the same bytes (the kernels are
// bit-identical to the scalar code, which is bit-identical to ggml); only the speed differs.
//
//   level    kernels                                    CPU needs
//   avx512   kernels_avx512.h (16 lanes) + F16 rows      AVX512F, AVX512BW, AVX512VL, AVX512DQ
//   avx2     kernels_avx2.h (8 lanes) + F16C rows        AVX2 (F16 rows also F16C)
//   sse42    kernels_sse42.h (4 lanes), scalar F16 rows  SSE4.2
//   scalar   legacy.h / kquants.h only                   -
//
// The level is chosen once per process (first use): the best the CPU has, unless
//   CMF_NO_SIMD=1 (any non-empty value but "0")  -> scalar (wins over CMF_SIMD);
//   CMF_SIMD=scalar|sse42|avx2|avx512            -> that level; if the CPU lacks it, the best
//                                                   level below it that it has, with a warning
//                                                   line on stderr (never an unsupported level);
//   CMF_SIMD=auto or empty                        -> the best level;
//   CMF_SIMD=<anything else>                      -> a warning line on stderr, the best level.
// The override exists for testing and for comparing speeds; it never changes output bytes.
#pragma once

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

#include "cmf/quant/kernels_avx2.h"
#include "cmf/quant/kernels_avx512.h"
#include "cmf/quant/kernels_sse42.h"

namespace cmf::quant {

enum class SimdLevel : int { scalar = 0, sse42 = 1, avx2 = 2, avx512 = 3 };

inline constexpr SimdLevel kSimdLevels[] = {SimdLevel::scalar, SimdLevel::sse42, SimdLevel::avx2, SimdLevel::avx512};

inline const char* simd_level_name(SimdLevel l) {
    switch (l) {
        case SimdLevel::scalar: return "scalar";
        case SimdLevel::sse42: return "sse42";
        case SimdLevel::avx2: return "avx2";
        case SimdLevel::avx512: return "avx512";
    }
    return "?";
}

// Parses a CMF_SIMD value (case-insensitive); false for an unknown name.
inline bool parse_simd_level(const std::string& s, SimdLevel* out) {
    std::string v;
    for (char c : s) v += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (SimdLevel l : kSimdLevels)
        if (v == simd_level_name(l)) {
            *out = l;
            return true;
        }
    return false;
}

// What the hardware (and OS: __builtin_cpu_supports checks that XSAVE state is enabled)
// offers, ignoring the environment.
inline bool cpu_supports(SimdLevel l) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    switch (l) {
        case SimdLevel::scalar: return true;
        case SimdLevel::sse42: return __builtin_cpu_supports("sse4.2") != 0;
        case SimdLevel::avx2: return __builtin_cpu_supports("avx2") != 0;
        case SimdLevel::avx512:
            return __builtin_cpu_supports("avx512f") != 0 && __builtin_cpu_supports("avx512bw") != 0 &&
                   __builtin_cpu_supports("avx512vl") != 0 && __builtin_cpu_supports("avx512dq") != 0;
    }
    return false;
#else
    return l == SimdLevel::scalar;
#endif
}

// F16C (CPUID.1:ECX bit 29; clang's __builtin_cpu_supports has no "f16c") on an AVX2 CPU.
inline bool cpu_has_f16c() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
    return (ecx & (1u << 29)) != 0 && cpu_supports(SimdLevel::avx2);
#else
    return false;
#endif
}

// The best level at or below `cap` that supported(level) allows.
template <typename Supported>
SimdLevel best_simd_level_upto(SimdLevel cap, Supported supported) {
    for (int l = static_cast<int>(cap); l > 0; --l)
        if (supported(static_cast<SimdLevel>(l))) return static_cast<SimdLevel>(l);
    return SimdLevel::scalar;
}

// The level for the given CMF_NO_SIMD / CMF_SIMD values (null = unset) on a CPU described by
// supported(level); *warning gets a one-line message when the request cannot be honored
// as written (unknown name, or a level the CPU lacks). Pure, so the tests can drive it.
template <typename Supported>
SimdLevel resolve_simd_level(const char* no_simd, const char* simd, Supported supported, std::string* warning) {
    if (no_simd && *no_simd && std::string(no_simd) != "0") return SimdLevel::scalar;
    const SimdLevel best = best_simd_level_upto(SimdLevel::avx512, supported);
    if (!simd || !*simd || std::string(simd) == "auto") return best;
    SimdLevel want;
    if (!parse_simd_level(simd, &want)) {
        if (warning)
            *warning = std::string("cmf: ignoring CMF_SIMD=") + simd +
                       " (expected scalar, sse42, avx2, avx512 or auto); using " + simd_level_name(best);
        return best;
    }
    const SimdLevel got = best_simd_level_upto(want, supported);
    if (got != want && warning)
        *warning = std::string("cmf: CMF_SIMD=") + simd + " but this CPU lacks " + simd_level_name(want) + "; using " +
                   simd_level_name(got);
    return got;
}

// The active level, chosen once per process from the CPU and the environment.
inline SimdLevel simd_level() {
    static const SimdLevel level = [] {
        std::string warning;
        const SimdLevel l = resolve_simd_level(std::getenv("CMF_NO_SIMD"), std::getenv("CMF_SIMD"),
                                               [](SimdLevel x) { return cpu_supports(x); }, &warning);
        if (!warning.empty()) std::fprintf(stderr, "%s\n", warning.c_str());
        return l;
    }();
    return level;
}

inline const char* simd_level_name() { return simd_level_name(simd_level()); }

// The kernels of one level. Null members: that level has no kernel for it (use the scalar
// code in legacy.h / kquants.h).
struct SimdKernels {
    using RowFn = void (*)(const float*, uint8_t*, int64_t);
    SimdLevel level = SimdLevel::scalar;
    RowFn q4_K = nullptr, q5_K = nullptr, q6_K = nullptr, q8_0 = nullptr;  // reference (no imatrix) paths
    void (*f32_to_f16)(const float*, uint8_t*, int64_t) = nullptr;
    void (*f16_to_f32)(const uint8_t*, float*, int64_t) = nullptr;
};

// The kernel table of a level. The caller must know the CPU supports it (cpu_supports).
inline const SimdKernels& simd_kernels(SimdLevel l) {
#if defined(CMF_HAVE_SSE42_KERNELS) && defined(CMF_HAVE_AVX2_KERNELS) && defined(CMF_HAVE_AVX512_KERNELS)
    static const SimdKernels sse = {SimdLevel::sse42, sse42::quantize_row_q4_K, sse42::quantize_row_q5_K,
                                    sse42::quantize_row_q6_K, sse42::quantize_row_q8_0, nullptr, nullptr};
    static const SimdKernels a2 = {SimdLevel::avx2, avx2::quantize_row_q4_K, avx2::quantize_row_q5_K,
                                   avx2::quantize_row_q6_K, avx2::quantize_row_q8_0,
                                   cpu_has_f16c() ? avx2::f32_to_f16_row : nullptr,
                                   cpu_has_f16c() ? avx2::f16_to_f32_row : nullptr};
    static const SimdKernels a512 = {SimdLevel::avx512, avx512::quantize_row_q4_K, avx512::quantize_row_q5_K,
                                     avx512::quantize_row_q6_K, avx512::quantize_row_q8_0,
                                     avx512::f32_to_f16_row, avx512::f16_to_f32_row};
    switch (l) {
        case SimdLevel::sse42: return sse;
        case SimdLevel::avx2: return a2;
        case SimdLevel::avx512: return a512;
        case SimdLevel::scalar: break;
    }
#endif
    static const SimdKernels none{};
    (void)l;
    return none;
}

// The kernels of the active level.
inline const SimdKernels& active_kernels() {
    static const SimdKernels& k = simd_kernels(simd_level());
    return k;
}

}  // namespace cmf::quant
