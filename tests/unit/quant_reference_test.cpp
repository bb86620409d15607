// Property test: cmf's quantizers and dequantizers against the real thing.
//
// dlopen()s the prebuilt libggml-base.so of llama.cpp v0.5.0 that tests/llama/setup.sh
// installs (cmf::test::ggml_bin_dir()), and checks on many random rows that
//   ggml_quantize_chunk(type, rows, imatrix)  ==  cmf::quantize_rows(type, rows, imatrix)
// byte for byte, and that cmf::dequantize_row gives the same float bits as ggml's
// dequantize_row_* (on those outputs and on random block bytes).
//
// Without the library the test fails (pointing at setup.sh); CMF_ALLOW_MISSING_GGML=1 turns
// that into a visible skip. CMF_QUANT_SEED=<n> changes the random seed.
//
// quantize_rows runs the SIMD kernels of the best level the CPU has; ctest reruns the
// comparison with CMF_NO_SIMD=1 and CMF_SIMD=sse42 / avx2 / avx512 (tests/quant_scalar.cmake).
// Under CMF_SIMD the test checks that level is the active one, and skips visibly when the
// CPU lacks it.
#include "cmf/quant/quantize.h"

#include <dlfcn.h>

#include <algorithm>
#include <cfloat>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace cmf {
// gtest prints parameters with this (e.g. "Q4_K" instead of raw bytes) in failure messages.
inline void PrintTo(GgmlType t, std::ostream* os) { *os << type_display_name(t); }
}  // namespace cmf

namespace {

using cmf::GgmlType;

// ---------------------------------------------------------------------------------------
// The reference library.

using QuantizeChunkFn = size_t (*)(int type, const float* src, void* dst, int64_t start, int64_t nrows,
                                   int64_t n_per_row, const float* imatrix);
using QuantizeInitFn = void (*)(int type);
using DequantizeFn = void (*)(const void* src, float* dst, int64_t n);

struct GgmlLib {
    void* handle = nullptr;
    QuantizeChunkFn quantize_chunk = nullptr;
    QuantizeInitFn quantize_init = nullptr;
    std::string error;  // why it could not be loaded
    std::string path;

    DequantizeFn dequantizer(GgmlType t) const {
        const char* name = nullptr;
        switch (t) {
            case GgmlType::F16: name = "ggml_fp16_to_fp32_row"; break;
            case GgmlType::BF16: name = "ggml_bf16_to_fp32_row"; break;
            case GgmlType::Q4_0: name = "dequantize_row_q4_0"; break;
            case GgmlType::Q4_1: name = "dequantize_row_q4_1"; break;
            case GgmlType::Q5_0: name = "dequantize_row_q5_0"; break;
            case GgmlType::Q5_1: name = "dequantize_row_q5_1"; break;
            case GgmlType::Q8_0: name = "dequantize_row_q8_0"; break;
            case GgmlType::Q2_K: name = "dequantize_row_q2_K"; break;
            case GgmlType::Q3_K: name = "dequantize_row_q3_K"; break;
            case GgmlType::Q4_K: name = "dequantize_row_q4_K"; break;
            case GgmlType::Q5_K: name = "dequantize_row_q5_K"; break;
            case GgmlType::Q6_K: name = "dequantize_row_q6_K"; break;
            default: return nullptr;
        }
        return reinterpret_cast<DequantizeFn>(dlsym(handle, name));
    }
};

const GgmlLib& ggml_lib() {
    static const GgmlLib lib = [] {
        GgmlLib l;
        l.path = (cmf::test::ggml_bin_dir() / "libggml-base.so").string();
        if (!std::filesystem::exists(l.path)) {
            l.error = "reference library " + l.path + " not found";
            return l;
        }
        l.handle = dlopen(l.path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!l.handle) {
            l.error = std::string("dlopen failed: ") + dlerror();
            return l;
        }
        l.quantize_chunk = reinterpret_cast<QuantizeChunkFn>(dlsym(l.handle, "ggml_quantize_chunk"));
        l.quantize_init = reinterpret_cast<QuantizeInitFn>(dlsym(l.handle, "ggml_quantize_init"));
        if (!l.quantize_chunk || !l.quantize_init) {
            l.error = l.path + " does not export ggml_quantize_chunk / ggml_quantize_init";
            l.handle = nullptr;
        }
        return l;
    }();
    return lib;
}

bool allow_missing_ggml() {
    const char* e = std::getenv("CMF_ALLOW_MISSING_GGML");
    return e && std::string(e) == "1";
}

#define REQUIRE_GGML()                                                                                  \
    do {                                                                                                \
        const auto& lib_ = ggml_lib();                                                                  \
        if (!lib_.handle) {                                                                             \
            const std::string msg_ = lib_.error +                                                       \
                                     ". Run tests/llama/setup.sh to install the llama.cpp v0.5.0 "      \
                                     "reference (or set CMF_NODE_DIR to an existing install).";         \
            if (allow_missing_ggml()) GTEST_SKIP() << "SKIPPED (CMF_ALLOW_MISSING_GGML=1): " << msg_;   \
            FAIL() << msg_ << " Set CMF_ALLOW_MISSING_GGML=1 to skip instead.";                         \
        }                                                                                               \
    } while (0)

// ---------------------------------------------------------------------------------------
// Random rows.

uint64_t base_seed() {
    if (const char* e = std::getenv("CMF_QUANT_SEED"); e && *e) return std::strtoull(e, nullptr, 10);
    return 20240917;
}

float log_uniform(std::mt19937_64& rng, float lo, float hi) {
    std::uniform_real_distribution<float> u(std::log(lo), std::log(hi));
    return std::exp(u(rng));
}

float round_to_bf16(float f) { return cmf::bf16_to_f32(cmf::f32_to_bf16(f)); }

struct Distribution {
    const char* name;
    std::function<void(std::mt19937_64&, float*, int64_t)> fill;
};

const std::vector<Distribution>& distributions() {
    using R = std::mt19937_64;
    static const std::vector<Distribution> d = {
        {"normal", [](R& r, float* x, int64_t n) {
             std::normal_distribution<float> g(0.f, log_uniform(r, 1e-3f, 10.f));
             for (int64_t i = 0; i < n; ++i) x[i] = g(r);
         }},
        {"uniform", [](R& r, float* x, int64_t n) {
             const float a = log_uniform(r, 1e-3f, 10.f);
             std::uniform_real_distribution<float> u(-a, a);
             for (int64_t i = 0; i < n; ++i) x[i] = u(r);
         }},
        {"all_positive", [](R& r, float* x, int64_t n) {
             const float a = log_uniform(r, 1e-3f, 10.f);
             std::uniform_real_distribution<float> u(0.1f * a, a);
             for (int64_t i = 0; i < n; ++i) x[i] = u(r);
         }},
        {"all_negative", [](R& r, float* x, int64_t n) {
             const float a = log_uniform(r, 1e-3f, 10.f);
             std::uniform_real_distribution<float> u(-a, -0.1f * a);
             for (int64_t i = 0; i < n; ++i) x[i] = u(r);
         }},
        {"cauchy", [](R& r, float* x, int64_t n) {
             std::cauchy_distribution<float> c(0.f, log_uniform(r, 1e-3f, 1.f));
             for (int64_t i = 0; i < n; ++i) x[i] = c(r);
         }},
        {"student_t", [](R& r, float* x, int64_t n) {
             std::student_t_distribution<float> t(2.5f);
             const float s = log_uniform(r, 1e-3f, 1.f);
             for (int64_t i = 0; i < n; ++i) x[i] = s * t(r);
         }},
        {"zero", [](R&, float* x, int64_t n) {
             for (int64_t i = 0; i < n; ++i) x[i] = 0.f;
         }},
        {"constant", [](R& r, float* x, int64_t n) {
             const float v = (r() & 1 ? -1.f : 1.f) * log_uniform(r, 1e-8f, 1e4f);
             for (int64_t i = 0; i < n; ++i) x[i] = v;
         }},
        {"near_1e-30", [](R& r, float* x, int64_t n) {
             std::normal_distribution<float> g(0.f, 1e-30f);
             for (int64_t i = 0; i < n; ++i) x[i] = g(r);
         }},
        {"near_1e30", [](R& r, float* x, int64_t n) {
             std::normal_distribution<float> g(0.f, 1e30f);
             for (int64_t i = 0; i < n; ++i) x[i] = g(r);
         }},
        {"subnormal", [](R& r, float* x, int64_t n) {
             std::uniform_real_distribution<float> u(-1.f, 1.f);
             for (int64_t i = 0; i < n; ++i) x[i] = u(r) * 1e-39f;
         }},
        {"near_group_eps", [](R& r, float* x, int64_t n) {  // around ggml's GROUP_MAX_EPS = 1e-15
             std::normal_distribution<float> g(0.f, 1e-15f);
             for (int64_t i = 0; i < n; ++i) x[i] = g(r);
         }},
        {"mixed_magnitude", [](R& r, float* x, int64_t n) {
             std::uniform_real_distribution<float> e(-20.f, 20.f);
             for (int64_t i = 0; i < n; ++i) x[i] = (r() & 1 ? -1.f : 1.f) * std::pow(10.f, e(r));
         }},
        {"tiny_with_outliers", [](R& r, float* x, int64_t n) {
             std::normal_distribution<float> g(0.f, 1e-3f);
             std::uniform_real_distribution<float> big(10.f, 1000.f);
             for (int64_t i = 0; i < n; ++i) x[i] = (r() % 64 == 0) ? (r() & 1 ? -1.f : 1.f) * big(r) : g(r);
         }},
        {"sparse", [](R& r, float* x, int64_t n) {
             std::normal_distribution<float> g(0.f, 1.f);
             for (int64_t i = 0; i < n; ++i) x[i] = (r() % 10 == 0) ? g(r) : 0.f;
         }},
        {"grid_ties", [](R& r, float* x, int64_t n) {  // exact multiples of a power of two: rounding ties
             const float s = std::ldexp(1.f, static_cast<int>(r() % 16) - 8);
             for (int64_t i = 0; i < n; ++i) x[i] = s * (static_cast<float>(r() % 33) - 16.f) * 0.5f;
         }},
        {"bf16_normal", [](R& r, float* x, int64_t n) {  // what bf16 checkpoints hold
             std::normal_distribution<float> g(0.f, log_uniform(r, 1e-3f, 1.f));
             for (int64_t i = 0; i < n; ++i) x[i] = round_to_bf16(g(r));
         }},
        {"group_scales_vary", [](R& r, float* x, int64_t n) {  // each group of 16 its own magnitude
             std::normal_distribution<float> g(0.f, 1.f);
             std::uniform_real_distribution<float> e(-4.f, 4.f);
             float s = 1.f;
             for (int64_t i = 0; i < n; ++i) {
                 if (i % 16 == 0) s = std::pow(10.f, e(r));
                 x[i] = s * g(r);
             }
         }},
        {"half_zero_blocks", [](R& r, float* x, int64_t n) {
             std::normal_distribution<float> g(0.f, 0.05f);
             for (int64_t i = 0; i < n; ++i) x[i] = ((i / 32) % 2) ? g(r) : 0.f;
         }},
        {"non_finite", [](R& r, float* x, int64_t n) {
             std::normal_distribution<float> g(0.f, 1.f);
             // NaNs with payloads (ggml's f16 conversion drops them), signalling ones too
             const float specials[] = {INFINITY, -INFINITY, NAN, -NAN, FLT_MAX, -FLT_MAX, FLT_MIN, 65504.f, 65520.f,
                                       cmf::f32_from_bits(0x7f800001u), cmf::f32_from_bits(0xffc12345u),
                                       cmf::f32_from_bits(0x7fbfffffu)};
             constexpr size_t kN = sizeof specials / sizeof specials[0];
             for (int64_t i = 0; i < n; ++i) x[i] = (r() % 50 == 0) ? specials[r() % kN] : g(r);
         }},
    };
    return d;
}

enum class ImatrixKind { none, positive, some_zero, all_zero };
const char* name(ImatrixKind k) {
    switch (k) {
        case ImatrixKind::none: return "no imatrix";
        case ImatrixKind::positive: return "positive imatrix";
        case ImatrixKind::some_zero: return "imatrix with zeros";
        case ImatrixKind::all_zero: return "all-zero imatrix";
    }
    return "?";
}

std::vector<float> make_imatrix(std::mt19937_64& r, ImatrixKind k, int64_t n) {
    std::vector<float> w(static_cast<size_t>(n), 0.f);
    if (k == ImatrixKind::none || k == ImatrixKind::all_zero) return w;
    for (auto& v : w) {
        v = log_uniform(r, 1e-4f, 1e2f);  // mean squared activations span many decades
        if (k == ImatrixKind::some_zero && r() % 3 == 0) v = 0.f;
    }
    return w;
}

std::string hex(const uint8_t* p, size_t n) {
    std::string s;
    char buf[4];
    for (size_t i = 0; i < n; ++i) {
        std::snprintf(buf, sizeof buf, "%02x", p[i]);
        s += buf;
    }
    return s;
}

// Which NaN (sign, payload) comes out of `a*b + c` when several operands are NaN depends on
// the operand order of the SSE instructions. Our headers match the gcc-built library when
// compiled with gcc; clang may swap the operands of commutative operations, so under other
// compilers NaN inputs are left out and any two NaNs compare equal. Finite results must match
// bit for bit everywhere.
#if defined(__GNUC__) && !defined(__clang__)
constexpr bool kExactNaNs = true;
#else
constexpr bool kExactNaNs = false;
#endif

// Index of the first element whose bits differ, or -1.
int64_t first_mismatch(const float* a, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        if (cmf::f32_bits(a[i]) == cmf::f32_bits(b[i])) continue;
        if (!kExactNaNs && std::isnan(a[i]) && std::isnan(b[i])) continue;
        return i;
    }
    return -1;
}

bool is_k_quant(GgmlType t) { return cmf::type_info(t).block_size == 256; }

std::vector<int64_t> row_lengths(GgmlType t) {
    if (is_k_quant(t)) return {256, 512, 4096};
    if (t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16) return {32, 100, 4096};
    return {32, 96, 256, 800, 4096};  // 96 and 800: multiples of 32 but not of 256
}

// ---------------------------------------------------------------------------------------

class QuantReference : public ::testing::TestWithParam<GgmlType> {};

// Skips when CMF_SIMD asks for a level this CPU lacks; otherwise the requested level (or
// scalar under CMF_NO_SIMD) must be the one quantize_rows uses.
#define REQUIRE_REQUESTED_SIMD_LEVEL()                                                                    \
    do {                                                                                                  \
        const char* no_simd_ = std::getenv("CMF_NO_SIMD");                                                \
        const char* simd_ = std::getenv("CMF_SIMD");                                                      \
        if (no_simd_ && *no_simd_ && std::string(no_simd_) != "0") {                                      \
            ASSERT_STREQ(cmf::quant::simd_level_name(), "scalar");                                         \
        } else if (simd_ && *simd_ && std::string(simd_) != "auto") {                                     \
            cmf::quant::SimdLevel want_;                                                                  \
            ASSERT_TRUE(cmf::quant::parse_simd_level(simd_, &want_)) << "unknown CMF_SIMD=" << simd_;     \
            if (!cmf::quant::cpu_supports(want_))                                                         \
                GTEST_SKIP() << "SKIPPED: CMF_SIMD=" << simd_ << " but this CPU lacks that level";        \
            ASSERT_EQ(cmf::quant::simd_level(), want_) << "active level " << cmf::quant::simd_level_name(); \
        }                                                                                                 \
    } while (0)

TEST_P(QuantReference, QuantizeAndDequantizeMatchGgml) {
    REQUIRE_REQUESTED_SIMD_LEVEL();
    REQUIRE_GGML();
    const auto& lib = ggml_lib();
    const GgmlType type = GetParam();
    const int ggml_id = static_cast<int>(type);
    lib.quantize_init(ggml_id);
    const DequantizeFn lib_dequant = lib.dequantizer(type);
    if (type != GgmlType::F32) {
        ASSERT_NE(lib_dequant, nullptr) << "no dequantizer for " << cmf::type_display_name(type);
    }

    // Elements per (distribution, row length, imatrix) batch: a few thousand rows overall per
    // type while staying well inside the time budget.
    const int64_t kBatchElems = is_k_quant(type) ? 49152 : 24576;
    const ImatrixKind kinds[] = {ImatrixKind::none, ImatrixKind::positive, ImatrixKind::some_zero,
                                 ImatrixKind::all_zero};

    std::mt19937_64 rng(base_seed() ^ (0x9e3779b97f4a7c15ull * (static_cast<uint64_t>(ggml_id) + 1)));
    int64_t rows_checked = 0, batches = 0;
    int failures = 0;
    for (const int64_t n : row_lengths(type)) {
        const int64_t nrows = std::max<int64_t>(2, kBatchElems / n);
        const size_t rb = cmf::row_bytes(type, static_cast<uint64_t>(n));
        std::vector<float> src(static_cast<size_t>(nrows * n));
        std::vector<uint8_t> want(rb * static_cast<size_t>(nrows)), got(want.size());
        std::vector<float> deq_want(static_cast<size_t>(n)), deq_got(static_cast<size_t>(n));
        for (const auto& dist : distributions()) {
            if (!kExactNaNs && std::strcmp(dist.name, "non_finite") == 0) continue;
            for (const ImatrixKind kind : kinds) {
                // NaN/Inf rows through the importance-weighted Q2_K/Q4_K/Q5_K search: which NaN
                // payload reaches nearest_int() in make_qp_quants depends on how the reference
                // build ordered operands of commutative ops, and some seeds give a different
                // 6-bit scale byte. llama-quantize rejects such blocks anyway
                // (ggml_validate_row_data), so these combinations are not compared.
                if (std::strcmp(dist.name, "non_finite") == 0 && kind != ImatrixKind::none &&
                    (type == GgmlType::Q2_K || type == GgmlType::Q4_K || type == GgmlType::Q5_K))
                    continue;
                for (int64_t r = 0; r < nrows; ++r) dist.fill(rng, src.data() + r * n, n);
                const std::vector<float> imatrix = make_imatrix(rng, kind, n);
                const float* qw = kind == ImatrixKind::none ? nullptr : imatrix.data();

                std::fill(want.begin(), want.end(), uint8_t{0xa5});
                std::fill(got.begin(), got.end(), uint8_t{0x5a});
                const size_t lib_bytes = lib.quantize_chunk(ggml_id, src.data(), want.data(), 0, nrows, n, qw);
                const size_t our_bytes = cmf::quantize_rows(type, src.data(), got.data(), nrows, n, qw);
                ++batches;
                rows_checked += nrows;
                ASSERT_EQ(lib_bytes, want.size());
                ASSERT_EQ(our_bytes, lib_bytes);

                for (int64_t r = 0; r < nrows && failures < 5; ++r) {
                    const uint8_t* w = want.data() + r * rb;
                    const uint8_t* g = got.data() + r * rb;
                    if (std::memcmp(w, g, rb) == 0) continue;
                    size_t off = 0;
                    while (w[off] == g[off]) ++off;
                    const size_t bs = cmf::type_info(type).type_size;
                    const size_t blk = off / bs;
                    ++failures;
                    ADD_FAILURE() << cmf::type_display_name(type) << " quantize differs: distribution " << dist.name
                                  << ", " << name(kind) << ", n_per_row " << n << ", row " << r << ", byte " << off
                                  << " (block " << blk << ")\n  ggml: " << hex(w + blk * bs, bs)
                                  << "\n  cmf:  " << hex(g + blk * bs, bs) << "\n  seed " << base_seed();
                }

                // Dequantize ggml's bytes with both implementations (one row at a time, as
                // readers do), compare float bits.
                if (type == GgmlType::F32) continue;
                for (int64_t r = 0; r < nrows && failures < 5; ++r) {
                    const uint8_t* blocks = want.data() + r * rb;
                    lib_dequant(blocks, deq_want.data(), n);
                    cmf::dequantize_row(type, blocks, deq_got.data(), n);
                    const int64_t i = first_mismatch(deq_want.data(), deq_got.data(), n);
                    if (i < 0) continue;
                    ++failures;
                    ADD_FAILURE() << cmf::type_display_name(type) << " dequantize differs: distribution " << dist.name
                                  << ", " << name(kind) << ", n " << n << ", row " << r << ", element " << i
                                  << ": ggml " << deq_want[i] << " cmf " << deq_got[i];
                }
            }
        }
    }
    std::cout << "[ quant    ] " << cmf::type_display_name(type) << " (" << cmf::quant::simd_level_name()
              << " kernels): " << rows_checked << " rows in " << batches
              << " batches (" << batches / (4 * static_cast<int64_t>(row_lengths(type).size()))
              << " distributions x 4 imatrix kinds x "
              << row_lengths(type).size() << " row lengths) compared with ggml_quantize_chunk\n";
}

// Random block bytes cover every scale encoding, including inf/NaN/subnormal f16 scales and
// quant patterns the quantizers never produce.
TEST_P(QuantReference, DequantizeRandomBytesMatchesGgml) {
    REQUIRE_GGML();
    const GgmlType type = GetParam();
    // ggml has no F32 "dequantizer": reading F32 is a plain copy of the bits.
    const DequantizeFn lib_dequant =
        type == GgmlType::F32 ? [](const void* src, float* dst, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }
                              : ggml_lib().dequantizer(type);
    ASSERT_NE(lib_dequant, nullptr);
    std::mt19937_64 rng(base_seed() + 77 * static_cast<uint64_t>(type));
    const int64_t n = is_k_quant(type) ? 1024 : 256;
    const size_t rb = cmf::row_bytes(type, static_cast<uint64_t>(n));
    std::vector<uint8_t> bytes(rb);
    std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n));
    for (int iter = 0; iter < 2000; ++iter) {
        for (auto& b : bytes) b = static_cast<uint8_t>(rng());
        lib_dequant(bytes.data(), want.data(), n);
        cmf::dequantize_row(type, bytes.data(), got.data(), n);
        if (const int64_t i = first_mismatch(want.data(), got.data(), n); i >= 0) {
            FAIL() << cmf::type_display_name(type) << " dequantize of random bytes differs at element " << i
                   << ": ggml bits " << std::hex << cmf::f32_bits(want[i]) << " cmf bits " << cmf::f32_bits(got[i]);
        }
    }
}

// Every f16 bit pattern through the F16 path both ways.
TEST(QuantReferenceF16, AllHalvesRoundTripLikeGgml) {
    REQUIRE_GGML();
    const auto& lib = ggml_lib();
    std::vector<uint16_t> h(65536);
    for (uint32_t i = 0; i < 65536; ++i) h[i] = static_cast<uint16_t>(i);
    std::vector<float> want(65536), got(65536);
    lib.dequantizer(GgmlType::F16)(h.data(), want.data(), 65536);
    cmf::dequantize_row(GgmlType::F16, h.data(), got.data(), 65536);
    ASSERT_EQ(first_mismatch(want.data(), got.data(), 65536), -1);
    std::vector<uint16_t> back_want(65536), back_got(65536);
    lib.quantize_chunk(static_cast<int>(GgmlType::F16), want.data(), back_want.data(), 0, 1, 65536, nullptr);
    cmf::quantize_rows(GgmlType::F16, want.data(), back_got.data(), 1, 65536, nullptr);
    ASSERT_EQ(back_want, back_got);
}

std::string type_name(const ::testing::TestParamInfo<GgmlType>& info) {
    return cmf::type_display_name(info.param);
}

INSTANTIATE_TEST_SUITE_P(Types, QuantReference,
                         ::testing::Values(GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0,
                                           GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                                           GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K,
                                           GgmlType::Q6_K),
                         type_name);

// ---------------------------------------------------------------------------------------
// API contract (needs no reference library).

TEST(QuantizeRows, RejectsUnsupportedTypesAndBadRowLengths) {
    std::vector<float> x(512, 1.f);
    std::vector<uint8_t> y(4096);
    auto expect_input_error = [](auto&& fn) {
        try {
            fn();
            ADD_FAILURE() << "no exception";
        } catch (const cmf::Error& e) {
            EXPECT_EQ(e.kind(), cmf::ErrorKind::input) << e.what();
        }
    };
    expect_input_error([&] { cmf::quantize_rows(GgmlType::IQ2_XXS, x.data(), y.data(), 1, 256, nullptr); });
    expect_input_error([&] { cmf::quantize_rows(GgmlType::Q8_1, x.data(), y.data(), 1, 32, nullptr); });
    expect_input_error([&] { cmf::quantize_rows(GgmlType::Q4_K, x.data(), y.data(), 1, 96, nullptr); });
    expect_input_error([&] { cmf::quantize_rows(GgmlType::Q4_0, x.data(), y.data(), 1, 33, nullptr); });
    expect_input_error([&] { cmf::quantize_rows(GgmlType::Q4_0, x.data(), y.data(), 1, 0, nullptr); });
    expect_input_error([&] { cmf::dequantize_row(GgmlType::Q6_K, y.data(), x.data(), 100); });
    expect_input_error([&] { cmf::dequantize_row(static_cast<GgmlType>(999), y.data(), x.data(), 32); });
    EXPECT_EQ(cmf::quantize_rows(GgmlType::Q4_0, x.data(), y.data(), 2, 64, nullptr), 2u * 2u * 18u);
    EXPECT_EQ(cmf::quantize_rows(GgmlType::Q6_K, x.data(), y.data(), 1, 512, nullptr), 2u * 210u);
}

TEST(QuantizeRows, RowsAreIndependent) {
    std::mt19937_64 rng(1);
    std::normal_distribution<float> g(0.f, 1.f);
    const int64_t n = 512, nrows = 3;
    std::vector<float> x(n * nrows), qw(n);
    for (auto& v : x) v = g(rng);
    for (auto& v : qw) v = std::fabs(g(rng));
    for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q5_1, GgmlType::Q3_K, GgmlType::Q4_K}) {
        const size_t rb = cmf::row_bytes(t, n);
        std::vector<uint8_t> all(rb * nrows), one(rb);
        cmf::quantize_rows(t, x.data(), all.data(), nrows, n, qw.data());
        for (int64_t r = 0; r < nrows; ++r) {
            cmf::quantize_rows(t, x.data() + r * n, one.data(), 1, n, qw.data());
            EXPECT_EQ(std::memcmp(one.data(), all.data() + r * rb, rb), 0) << cmf::type_display_name(t) << " row " << r;
        }
    }
}

}  // namespace
