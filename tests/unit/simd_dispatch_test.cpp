// Run-time SIMD dispatch must never change a byte: every kernel level the CPU has (SSE4.2,
// AVX2, AVX-512) against the scalar quantizers on many random and special rows, the vector F16
// conversions against the scalar rule for a quarter of all 2^32 float bit patterns (every NaN
// class and rounding case included), the CMF_SIMD / CMF_NO_SIMD override, the vectorized
// error statistics against their scalar lane order, and a multi-variant pass whose variants
// share encoded chunks against the same variants written one at a time.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>

#include "cmf/pipeline/execute.h"
#include "cmf/quant/half.h"
#include "cmf/quant/quantize.h"
#include "test_support.h"

namespace cmf::quant {
// gtest names parameters with this ("avx2" instead of raw bytes) in test names and messages.
inline void PrintTo(SimdLevel l, std::ostream* os) { *os << simd_level_name(l); }
}  // namespace cmf::quant

namespace cmf::test {
namespace {

using quant::SimdLevel;

const SimdLevel kVectorLevels[] = {SimdLevel::sse42, SimdLevel::avx2, SimdLevel::avx512};
const SimdLevel kF16Levels[] = {SimdLevel::avx2, SimdLevel::avx512};  // sse42 converts F16 with the scalar code

std::string level_name(const ::testing::TestParamInfo<SimdLevel>& info) { return quant::simd_level_name(info.param); }

// ---------------------------------------------------------------------------------------
// Each level's quantizer kernels against the scalar code.

class SimdLevelTest : public ::testing::TestWithParam<SimdLevel> {};

struct RowCase {
    const char* name;
    std::function<void(std::mt19937_64&, float*, int64_t)> fill;
};

const std::vector<RowCase>& row_cases() {
    using R = std::mt19937_64;
    auto scaled_normal = [](float s) {
        return [s](R& r, float* x, int64_t n) {
            std::normal_distribution<float> g(0.f, s);
            for (int64_t i = 0; i < n; ++i) x[i] = g(r);
        };
    };
    // sprinkles one of the specials into random super-blocks: neighbours of a non-finite
    // block must still take the vector path (and the 16-lane pairing must cope)
    auto with_specials = [](std::vector<float> specials, int every) {
        return [specials, every](R& r, float* x, int64_t n) {
            std::normal_distribution<float> g(0.f, 1.f);
            for (int64_t i = 0; i < n; ++i) x[i] = g(r);
            for (int64_t b = 0; b < n; b += 256)
                if (static_cast<int>(r() % every) == 0) {
                    const int64_t len = std::min<int64_t>(256, n - b);
                    x[b + static_cast<int64_t>(r() % static_cast<uint64_t>(len))] = specials[r() % specials.size()];
                }
        };
    };
    static const std::vector<RowCase> c = {
        {"normal", scaled_normal(1.f)},
        {"normal_small", scaled_normal(0.02f)},
        {"normal_1e-30", scaled_normal(1e-30f)},
        {"normal_1e30", scaled_normal(1e30f)},
        {"near_group_eps", scaled_normal(1e-15f)},
        {"zeros", [](R&, float* x, int64_t n) { std::fill(x, x + n, 0.f); }},
        {"negative_zeros", [](R&, float* x, int64_t n) { std::fill(x, x + n, -0.f); }},
        {"constant", [](R& r, float* x, int64_t n) {
             const float v = (r() & 1 ? -1.f : 1.f) * std::ldexp(1.f + static_cast<float>(r() % 1000) / 1000.f,
                                                                   static_cast<int>(r() % 60) - 30);
             std::fill(x, x + n, v);
         }},
        {"constant_1e-30", [](R&, float* x, int64_t n) { std::fill(x, x + n, 1e-30f); }},
        {"constant_1e30", [](R&, float* x, int64_t n) { std::fill(x, x + n, -1e30f); }},
        {"all_positive", [](R& r, float* x, int64_t n) {
             std::uniform_real_distribution<float> u(0.1f, 1.f);
             for (int64_t i = 0; i < n; ++i) x[i] = u(r);
         }},
        {"all_negative", [](R& r, float* x, int64_t n) {
             std::uniform_real_distribution<float> u(-3.f, -0.5f);
             for (int64_t i = 0; i < n; ++i) x[i] = u(r);
         }},
        {"mixed_sign_magnitude", [](R& r, float* x, int64_t n) {
             std::uniform_real_distribution<float> e(-38.f, 38.f);
             for (int64_t i = 0; i < n; ++i) x[i] = (r() & 1 ? -1.f : 1.f) * std::pow(10.f, e(r));
         }},
        {"subnormal", [](R& r, float* x, int64_t n) {
             std::uniform_real_distribution<float> u(-1.f, 1.f);
             for (int64_t i = 0; i < n; ++i) x[i] = u(r) * 1e-39f;
         }},
        {"huge_finite", [](R& r, float* x, int64_t n) {  // sums of squares overflow to inf
             std::uniform_real_distribution<float> u(-1.f, 1.f);
             for (int64_t i = 0; i < n; ++i) x[i] = u(r) * FLT_MAX;
         }},
        {"grid_ties", [](R& r, float* x, int64_t n) {
             const float s = std::ldexp(1.f, static_cast<int>(r() % 16) - 8);
             for (int64_t i = 0; i < n; ++i) x[i] = s * (static_cast<float>(r() % 33) - 16.f) * 0.5f;
         }},
        {"sparse", [](R& r, float* x, int64_t n) {
             std::normal_distribution<float> g(0.f, 1.f);
             for (int64_t i = 0; i < n; ++i) x[i] = (r() % 10 == 0) ? g(r) : 0.f;
         }},
        {"group_scales_vary", [](R& r, float* x, int64_t n) {
             std::normal_distribution<float> g(0.f, 1.f);
             std::uniform_real_distribution<float> e(-6.f, 6.f);
             float s = 1.f;
             for (int64_t i = 0; i < n; ++i) {
                 if (i % 16 == 0) s = (r() % 8 == 0) ? 0.f : std::pow(10.f, e(r));
                 x[i] = s * g(r);
             }
         }},
        {"tiny_with_outliers", [](R& r, float* x, int64_t n) {
             std::normal_distribution<float> g(0.f, 1e-3f);
             std::uniform_real_distribution<float> big(10.f, 1000.f);
             for (int64_t i = 0; i < n; ++i) x[i] = (r() % 64 == 0) ? (r() & 1 ? -1.f : 1.f) * big(r) : g(r);
         }},
        {"nan_in_some_blocks", with_specials({NAN, -NAN, f32_from_bits(0x7fc12345u), f32_from_bits(0x7f800001u)}, 3)},
        {"inf_in_some_blocks", with_specials({INFINITY, -INFINITY}, 3)},
        {"specials_everywhere", [](R& r, float* x, int64_t n) {
             const float sp[] = {INFINITY, -INFINITY, NAN, FLT_MAX, -FLT_MAX, FLT_MIN, 65504.f, 65520.f, 0.f, -0.f};
             std::normal_distribution<float> g(0.f, 1.f);
             for (int64_t i = 0; i < n; ++i) x[i] = (r() % 40 == 0) ? sp[r() % (sizeof sp / sizeof sp[0])] : g(r);
         }},
    };
    return c;
}

TEST_P(SimdLevelTest, QuantizersEqualScalarOnRandomAndSpecialRows) {
    const SimdLevel level = GetParam();
    if (!quant::cpu_supports(level))
        GTEST_SKIP() << "SKIPPED: this CPU has no " << quant::simd_level_name(level) << " (level not tested)";
    const quant::SimdKernels& ks = quant::simd_kernels(level);
    ASSERT_EQ(ks.level, level);
    struct T {
        GgmlType type;
        quant::SimdKernels::RowFn fn;
        std::vector<int64_t> lengths;  // 1, 2, 3, 5, 16 super-blocks: odd counts take the 16-lane tail
    };
    const T types[] = {
        {GgmlType::Q4_K, ks.q4_K, {256, 512, 768, 1280, 4096}},
        {GgmlType::Q5_K, ks.q5_K, {256, 512, 768, 1280, 4096}},
        {GgmlType::Q6_K, ks.q6_K, {256, 512, 768, 1280, 4096}},
        {GgmlType::Q8_0, ks.q8_0, {32, 96, 256, 800, 4096}},
    };
    std::mt19937_64 rng(0x5eed0000u + static_cast<uint64_t>(level));
    int64_t rows = 0;
    int failures = 0;
    for (const T& t : types) {
        ASSERT_NE(t.fn, nullptr) << type_display_name(t.type);
        const auto scalar = quant::detail::quantizer(t.type);
        for (const int64_t n : t.lengths) {
            const size_t rb = row_bytes(t.type, static_cast<uint64_t>(n));
            std::vector<float> x(static_cast<size_t>(n));
            std::vector<uint8_t> want(rb), got(rb);
            const int reps = n >= 4096 ? 8 : 24;
            for (const RowCase& c : row_cases()) {
                for (int rep = 0; rep < reps && failures < 5; ++rep) {
                    c.fill(rng, x.data(), n);
                    std::fill(want.begin(), want.end(), uint8_t{0xa5});
                    std::fill(got.begin(), got.end(), uint8_t{0x5a});
                    scalar(x.data(), want.data(), n, nullptr);
                    t.fn(x.data(), got.data(), n);
                    ++rows;
                    if (want == got) continue;
                    size_t off = 0;
                    while (want[off] == got[off]) ++off;
                    ++failures;
                    ADD_FAILURE() << quant::simd_level_name(level) << " " << type_display_name(t.type) << " differs from scalar: "
                                  << c.name << ", n " << n << ", byte " << off << " (block "
                                  << off / type_info(t.type).type_size << ")";
                }
            }
        }
    }
    std::cout << "[ simd     ] " << quant::simd_level_name(level) << ": " << rows
              << " rows of Q4_K/Q5_K/Q6_K/Q8_0 identical to scalar\n";
}

INSTANTIATE_TEST_SUITE_P(Levels, SimdLevelTest, ::testing::ValuesIn(kVectorLevels), level_name);

// The vector F16 row conversions of a level (AVX2+F16C, AVX-512) against the scalar rule.
class SimdF16Test : public ::testing::TestWithParam<SimdLevel> {};

TEST_P(SimdF16Test, NarrowingEqualsScalarRule) {
    const SimdLevel level = GetParam();
    if (!quant::cpu_supports(level))
        GTEST_SKIP() << "SKIPPED: this CPU has no " << quant::simd_level_name(level) << " (level not tested)";
    const quant::SimdKernels& ks = quant::simd_kernels(level);
    if (!ks.f32_to_f16) GTEST_SKIP() << "SKIPPED: this CPU has no F16C (scalar F16 path)";
    constexpr uint64_t kBatch = 1 << 20;
    std::vector<float> x(kBatch);
    std::vector<uint8_t> simd(2 * kBatch);
    uint64_t checked = 0;
    // u = i * odd (mod 2^32) walks a quarter of all patterns spread over every exponent,
    // plus every pattern within 2^19 of the f16 overflow/subnormal boundaries
    auto check = [&](size_t n) {
        ks.f32_to_f16(x.data(), simd.data(), static_cast<int64_t>(n));
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
    check(37);
    std::cout << "[ simd     ] " << quant::simd_level_name(level) << ": " << checked
              << " float patterns converted identically\n";
}

TEST_P(SimdF16Test, WideningEqualsScalarRuleForAllHalves) {
    const SimdLevel level = GetParam();
    if (!quant::cpu_supports(level))
        GTEST_SKIP() << "SKIPPED: this CPU has no " << quant::simd_level_name(level) << " (level not tested)";
    const quant::SimdKernels& ks = quant::simd_kernels(level);
    if (!ks.f16_to_f32) GTEST_SKIP() << "SKIPPED: this CPU has no F16C (scalar F16 path)";
    std::vector<uint8_t> h(2 * 65536 + 2 * 5);
    for (uint32_t i = 0; i < 65536 + 5; ++i) quant::detail::store_u16(h.data() + 2 * i, static_cast<uint16_t>(i * 40503u));
    for (uint32_t i = 0; i < 65536; ++i) quant::detail::store_u16(h.data() + 2 * i, static_cast<uint16_t>(i));
    std::vector<float> got(65536 + 5);
    ks.f16_to_f32(h.data(), got.data(), 65536 + 5);  // +5: the scalar tail too
    for (uint32_t i = 0; i < 65536 + 5; ++i) {
        const float want = quant::detail::from_f16(quant::detail::load_u16(h.data() + 2 * i));
        ASSERT_EQ(f32_bits(got[i]), f32_bits(want)) << "half 0x" << std::hex << quant::detail::load_u16(h.data() + 2 * i);
    }
}

INSTANTIATE_TEST_SUITE_P(Levels, SimdF16Test, ::testing::ValuesIn(kF16Levels), level_name);

// ---------------------------------------------------------------------------------------
// Choosing the level.

TEST(SimdDispatch, OverrideRules) {
    std::set<SimdLevel> cpu;
    auto has = [&](SimdLevel l) { return l == SimdLevel::scalar || cpu.count(l) > 0; };
    auto resolve = [&](const char* no_simd, const char* simd, std::string* w) {
        w->clear();
        return quant::resolve_simd_level(no_simd, simd, has, w);
    };
    std::string w;
    cpu = {SimdLevel::sse42, SimdLevel::avx2, SimdLevel::avx512};
    EXPECT_EQ(resolve(nullptr, nullptr, &w), SimdLevel::avx512);
    EXPECT_EQ(resolve(nullptr, "", &w), SimdLevel::avx512);
    EXPECT_EQ(resolve(nullptr, "auto", &w), SimdLevel::avx512);
    for (SimdLevel l : quant::kSimdLevels) {
        EXPECT_EQ(resolve(nullptr, quant::simd_level_name(l), &w), l);
        EXPECT_EQ(w, "");
        EXPECT_EQ(resolve("1", quant::simd_level_name(l), &w), SimdLevel::scalar);  // CMF_NO_SIMD wins
        EXPECT_EQ(resolve("0", quant::simd_level_name(l), &w), l);                   // ... unless "0"
    }
    EXPECT_EQ(resolve(nullptr, "AVX2", &w), SimdLevel::avx2);
    EXPECT_EQ(resolve("1", nullptr, &w), SimdLevel::scalar);
    EXPECT_EQ(resolve("", nullptr, &w), SimdLevel::avx512);
    EXPECT_EQ(resolve(nullptr, "neon", &w), SimdLevel::avx512);
    EXPECT_NE(w.find("ignoring CMF_SIMD=neon"), std::string::npos) << w;
    EXPECT_EQ(w.find('\n'), std::string::npos);
    // an AVX2 machine without AVX-512: never a level the CPU lacks
    cpu = {SimdLevel::sse42, SimdLevel::avx2};
    EXPECT_EQ(resolve(nullptr, nullptr, &w), SimdLevel::avx2);
    EXPECT_EQ(resolve(nullptr, "avx512", &w), SimdLevel::avx2);
    EXPECT_NE(w.find("lacks avx512; using avx2"), std::string::npos) << w;
    EXPECT_EQ(resolve(nullptr, "sse42", &w), SimdLevel::sse42);
    // a bare x86-64 (SSE2 only)
    cpu = {};
    EXPECT_EQ(resolve(nullptr, nullptr, &w), SimdLevel::scalar);
    EXPECT_EQ(resolve(nullptr, "avx2", &w), SimdLevel::scalar);
    EXPECT_NE(w.find("using scalar"), std::string::npos) << w;
}

// The process-wide choice honours the environment: `cmf --version` names the active level.
TEST(SimdDispatch, EnvironmentOverrideIsHonored) {
    SimdLevel best = SimdLevel::scalar;
    for (SimdLevel l : quant::kSimdLevels)
        if (quant::cpu_supports(l)) best = l;
    auto version = [](const std::string& env) {
        auto r = run("env -u CMF_SIMD -u CMF_NO_SIMD " + env + " " + shell_quote(CMF_BINARY) + " --version");
        EXPECT_EQ(r.exit_code, 0) << r.output;
        return r.output;
    };
    EXPECT_NE(version("").find(std::string("(simd ") + quant::simd_level_name(best) + ")"), std::string::npos);
    EXPECT_NE(version("CMF_NO_SIMD=1").find("(simd scalar)"), std::string::npos);
    EXPECT_NE(version("CMF_NO_SIMD=1 CMF_SIMD=avx2").find("(simd scalar)"), std::string::npos);
    for (SimdLevel l : quant::kSimdLevels) {
        SCOPED_TRACE(quant::simd_level_name(l));
        const std::string out = version(std::string("CMF_SIMD=") + quant::simd_level_name(l));
        if (quant::cpu_supports(l)) {
            EXPECT_NE(out.find(std::string("(simd ") + quant::simd_level_name(l) + ")"), std::string::npos) << out;
            EXPECT_EQ(out.find("CMF_SIMD"), std::string::npos) << out;  // no warning
        } else {
            EXPECT_NE(out.find("lacks"), std::string::npos) << out;
        }
    }
    const std::string bogus = version("CMF_SIMD=bogus");
    EXPECT_NE(bogus.find("ignoring CMF_SIMD=bogus"), std::string::npos) << bogus;
    EXPECT_NE(bogus.find(std::string("(simd ") + quant::simd_level_name(best) + ")"), std::string::npos) << bogus;
}

// End to end: the same checkpoint quantized at every level the CPU has gives identical files.
TEST(SimdDispatch, EveryLevelWritesTheSameFiles) {
    TempDir d;
    const fs::path ck = d.path() / "tiny";
    ASSERT_EQ(run_cmf("synth " + shell_quote(ck.string()) + " --preset tiny").exit_code, 0);
    std::map<std::string, std::string> first;  // file name -> bytes at the first level
    for (SimdLevel l : quant::kSimdLevels) {
        if (!quant::cpu_supports(l)) continue;
        SCOPED_TRACE(quant::simd_level_name(l));
        const fs::path out = d.path() / quant::simd_level_name(l);
        auto r = run(std::string("env -u CMF_NO_SIMD CMF_SIMD=") + quant::simd_level_name(l) + " " + shell_quote(CMF_BINARY) +
                     " quantize " + shell_quote(ck.string()) + " --quant q4_k_m,q5_k_m,q6_k,q8_0,f16 --quiet --out " +
                     shell_quote(out.string()));
        ASSERT_EQ(r.exit_code, 0) << r.output;
        size_t files = 0;
        for (const auto& e : fs::directory_iterator(out)) {
            ++files;
            const std::string bytes = read_file(e.path());
            const std::string name = e.path().filename().string();
            if (l == SimdLevel::scalar) first[name] = bytes;
            else EXPECT_TRUE(first.count(name) && first[name] == bytes) << name;
        }
        EXPECT_GE(files, 5u);
    }
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
