// Run-time SIMD dispatch must never change a byte: the F16C conversion against the scalar rule
// for a quarter of all 2^32 float bit patterns (every NaN class and rounding case included),
// the vectorized error statistics against their scalar lane order, and a multi-variant pass
// whose variants share encoded chunks against the same variants written one at a time.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "cmf/pipeline/execute.h"
#include "cmf/quant/half.h"
#include "cmf/quant/quantize.h"
#include "test_support.h"

namespace cmf::test {
namespace {

TEST(SimdDispatch, F16cConversionEqualsScalarRule) {
#ifdef CMF_HAVE_AVX2_KERNELS
    if (!quant::avx2::cpu_has_f16c()) GTEST_SKIP() << "SKIPPED: this CPU has no F16C (scalar path only)";
    constexpr uint64_t kBatch = 1 << 20;
    std::vector<float> x(kBatch);
    std::vector<uint8_t> simd(2 * kBatch);
    uint64_t checked = 0;
    // u = i * odd (mod 2^32) walks a quarter of all patterns spread over every exponent,
    // plus every pattern within 2^16 of the f16 overflow/subnormal boundaries
    auto check = [&](size_t n) {
        quant::avx2::f32_to_f16_row(x.data(), simd.data(), static_cast<int64_t>(n));
        for (size_t k = 0; k < n; ++k) {
            uint16_t h;
            std::memcpy(&h, simd.data() + 2 * k, 2);
            const uint16_t want = quant::detail::to_f16(x[k]);
            ASSERT_EQ(h, want) << "f32 bits 0x" << std::hex << f32_bits(x[k]);
        }
        checked += n;
    };
    for (uint64_t base = 0; base < (1ull << 30); base += kBatch) {
        for (uint64_t k = 0; k < kBatch; ++k) {
            const uint32_t u = static_cast<uint32_t>((base + k) * 2654435761ull);
            std::memcpy(&x[k], &u, 4);
        }
        check(kBatch);
    }
    for (uint32_t edge : {0x477ff000u, 0x38800000u, 0x33000000u, 0x7f800000u}) {
        for (uint32_t sign : {0u, 0x80000000u}) {
            for (uint64_t k = 0; k < kBatch; ++k) {
                const uint32_t u = sign | static_cast<uint32_t>((edge - (1u << 19)) + k);
                std::memcpy(&x[k], &u, 4);
            }
            check(kBatch);
        }
    }
    // odd lengths take the scalar tail
    check(13);
    std::cout << "[ simd     ] " << checked << " float patterns converted identically\n";
#else
    GTEST_SKIP() << "SKIPPED: no x86-64 SIMD kernels in this build";
#endif
}

TEST(SimdDispatch, F16cWideningEqualsScalarRuleForAllHalves) {
#ifdef CMF_HAVE_AVX2_KERNELS
    if (!quant::avx2::cpu_has_f16c()) GTEST_SKIP() << "SKIPPED: this CPU has no F16C (scalar path only)";
    std::vector<uint8_t> h(2 * 65536 + 2 * 5);
    for (uint32_t i = 0; i < 65536 + 5; ++i) quant::detail::store_u16(h.data() + 2 * i, static_cast<uint16_t>(i * 40503u));
    for (uint32_t i = 0; i < 65536; ++i) quant::detail::store_u16(h.data() + 2 * i, static_cast<uint16_t>(i));
    std::vector<float> got(65536 + 5);
    quant::avx2::f16_to_f32_row(h.data(), got.data(), 65536 + 5);  // +5: the scalar tail too
    for (uint32_t i = 0; i < 65536 + 5; ++i) {
        const float want = quant::detail::from_f16(quant::detail::load_u16(h.data() + 2 * i));
        ASSERT_EQ(f32_bits(got[i]), f32_bits(want)) << "half 0x" << std::hex << quant::detail::load_u16(h.data() + 2 * i);
    }
#else
    GTEST_SKIP() << "SKIPPED: no x86-64 SIMD kernels in this build";
#endif
}

TEST(SimdDispatch, ErrorStatisticsIndependentOfInstructionSet) {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (uint64_t n : {1ull, 7ull, 8ull, 9ull, 255ull, 256ull, 4096ull, 4103ull}) {
        std::vector<float> x(n), q(n);
        for (uint64_t k = 0; k < n; ++k) {
            x[k] = nd(rng) * 3.f;
            q[k] = x[k] + nd(rng) * 0.01f;
        }
        if (n > 8) {
            x[3] = INFINITY;  // an infinite source value gives an infinite / NaN error: same both ways
            q[5] = -0.0f;
        }
        ErrorStat scalar, dispatched;
        detail::accumulate_error_lanes<8>(x.data(), q.data(), n, scalar);
        accumulate_error(x.data(), q.data(), n, dispatched);
        EXPECT_EQ(std::memcmp(&scalar.sum_sq_err, &dispatched.sum_sq_err, 8), 0) << n;
        EXPECT_EQ(std::memcmp(&scalar.sum_sq_ref, &dispatched.sum_sq_ref, 8), 0) << n;
        EXPECT_EQ(std::memcmp(&scalar.max_abs, &dispatched.max_abs, 8), 0) << n;
        EXPECT_EQ(scalar.n, n);
        EXPECT_EQ(dispatched.n, n);
    }
}

// q4_k_s and q4_k_m share most tensor types, so the one-pass run encodes those once and writes
// the bytes to both files; every file (and quality report) must equal a single-variant run's.
TEST(SimdDispatch, SharedEncodingsGiveTheSingleVariantFiles) {
    TempDir d;
    const fs::path ck = d.path() / "tiny";
    ASSERT_EQ(run_cmf("synth " + shell_quote(ck.string()) + " --preset tiny").exit_code, 0);
    const fs::path all = d.path() / "all";
    auto r = run_cmf("quantize " + shell_quote(ck.string()) + " --quant q4_k_s,q4_k_m,q6_k,q8_0 --quiet --out " +
                     shell_quote(all.string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const char* v : {"q4_k_s", "q4_k_m", "q6_k", "q8_0"}) {
        SCOPED_TRACE(v);
        const fs::path one = d.path() / v;
        auto r1 = run_cmf("quantize " + shell_quote(ck.string()) + " --quant " + v + " --quiet --out " + shell_quote(one.string()));
        ASSERT_EQ(r1.exit_code, 0) << r1.output;
        size_t files = 0;
        for (const auto& e : fs::directory_iterator(one)) {
            ++files;
            ASSERT_TRUE(fs::exists(all / e.path().filename())) << e.path();
            EXPECT_EQ(read_file(e.path()), read_file(all / e.path().filename())) << e.path().filename();
        }
        EXPECT_GE(files, 2u);  // the GGUF and its quality report
    }
}

}  // namespace
}  // namespace cmf::test
