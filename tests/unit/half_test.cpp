#include "cmf/quant/half.h"

#include <gtest/gtest.h>
#include <immintrin.h>

#include <cmath>
#include <random>

namespace {

// The hardware F16C conversion (round to nearest even) is the reference ggml uses on x86.
__attribute__((target("f16c"))) uint16_t hw_f32_to_f16(float f) {
    return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("f16c"))) float hw_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

bool have_f16c() { return __builtin_cpu_supports("avx2"); }

TEST(Half, F16RoundTripAllHalves) {
    if (!have_f16c()) GTEST_SKIP() << "SKIPPED: CPU without F16C";
    for (uint32_t h = 0; h < 0x10000; ++h) {
        float a = cmf::f16_to_f32(static_cast<uint16_t>(h));
        float b = hw_f16_to_f32(static_cast<uint16_t>(h));
        if (std::isnan(b)) {
            ASSERT_TRUE(std::isnan(a)) << h;
            continue;
        }
        ASSERT_EQ(cmf::f32_bits(a), cmf::f32_bits(b)) << h;
        ASSERT_EQ(cmf::f32_to_f16(a), h) << h;
    }
}

TEST(Half, F32ToF16MatchesHardwareOnEveryExponent) {
    if (!have_f16c()) GTEST_SKIP() << "SKIPPED: CPU without F16C";
    std::mt19937 rng(7);
    // every exponent, random mantissas, plus the mantissa edge cases around ties
    for (uint32_t e = 0; e < 256; ++e) {
        for (int i = 0; i < 4000; ++i) {
            uint32_t man = rng() & 0x7fffffu;
            if (i < 8) man = (0x1000u * i) | (i & 1);  // ties and near-ties
            uint32_t u = (e << 23) | man | ((i & 2) ? 0x80000000u : 0);
            float f = cmf::f32_from_bits(u);
            if (std::isnan(f)) continue;
            ASSERT_EQ(cmf::f32_to_f16(f), hw_f32_to_f16(f)) << std::hex << u;
        }
    }
}

TEST(Half, Bf16IsExactHighHalf) {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        float f = cmf::bf16_to_f32(static_cast<uint16_t>(h));
        ASSERT_EQ(cmf::f32_bits(f), h << 16);
        if (!std::isnan(f)) ASSERT_EQ(cmf::f32_to_bf16(f), h);
    }
}

}  // namespace
