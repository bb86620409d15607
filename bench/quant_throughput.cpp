// Single-thread throughput of cmf::quantize_rows against the reference ggml_quantize_chunk of
// llama.cpp v0.5.0 (libggml-base.so from node-llama-cpp, loaded with dlopen), without an
// importance matrix, on rows of 2560 normal random floats (MedGemma-4B hidden size).
//
//   build-bench/quant_throughput [--benchmark_filter=...] [google benchmark flags]
//
// The library is looked up at $CMF_GGML_LIB, else
// $CMF_NODE_DIR/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so with
// CMF_NODE_DIR defaulting to ~/.cache/cmf/node. Without it only the cmf benchmarks run.
// Throughput is input bytes (4 per float) per second; a table with the ratio cmf / ggml per
// type is printed after the run, and the outputs of both are compared once per type (a
// mismatch is reported, it does not stop the benchmark).
//
// cmf/<type> is quantize_rows as dispatched (the best SIMD level, or what CMF_SIMD /
// CMF_NO_SIMD select); cmf_<level>/<type> calls each level's kernels directly (scalar, and
// every one of sse42 / avx2 / avx512 the CPU has) for the types that have kernels, so one run
// compares every level with ggml. Their outputs are checked against ggml's too.
#include <benchmark/benchmark.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "cmf/quant/quantize.h"

namespace {

using QuantizeChunkFn = size_t (*)(int type, const float* src, void* dst, int64_t start, int64_t nrows,
                                   int64_t n_per_row, const float* imatrix);
using QuantizeInitFn = void (*)(int type);

constexpr int64_t kRowLen = 2560;
constexpr int64_t kRows = 256;

struct Ref {
    void* handle = nullptr;
    QuantizeChunkFn chunk = nullptr;
    QuantizeInitFn init = nullptr;
    std::string why;
};

const Ref& ref() {
    static const Ref r = [] {
        Ref x;
        std::string path;
        if (const char* p = std::getenv("CMF_GGML_LIB")) {
            path = p;
        } else {
            std::string node;
            if (const char* d = std::getenv("CMF_NODE_DIR")) node = d;
            else if (const char* h = std::getenv("HOME")) node = std::string(h) + "/.cache/cmf/node";
            path = node + "/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so";
        }
        x.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!x.handle) {
            x.why = "cannot load " + path + ": " + dlerror();
            return x;
        }
        x.chunk = reinterpret_cast<QuantizeChunkFn>(dlsym(x.handle, "ggml_quantize_chunk"));
        x.init = reinterpret_cast<QuantizeInitFn>(dlsym(x.handle, "ggml_quantize_init"));
        if (!x.chunk || !x.init) {
            x.why = path + " does not export ggml_quantize_chunk / ggml_quantize_init";
            x.handle = nullptr;
        }
        return x;
    }();
    return r;
}

const std::vector<float>& data() {
    static const std::vector<float> d = [] {
        std::vector<float> v(static_cast<size_t>(kRows * kRowLen));
        std::mt19937 rng(1234);
        std::normal_distribution<float> nd(0.0f, 0.02f);
        for (auto& f : v) f = nd(rng);
        return v;
    }();
    return d;
}

struct Case {
    const char* name;
    cmf::GgmlType type;
};
constexpr Case kCases[] = {
    {"Q4_0", cmf::GgmlType::Q4_0}, {"Q8_0", cmf::GgmlType::Q8_0}, {"Q4_K", cmf::GgmlType::Q4_K},
    {"Q5_K", cmf::GgmlType::Q5_K}, {"Q6_K", cmf::GgmlType::Q6_K},
};

std::vector<uint8_t> out_buf(cmf::GgmlType t) {
    return std::vector<uint8_t>(cmf::row_bytes(t, kRowLen) * kRows);
}

void bench_cmf(benchmark::State& st, cmf::GgmlType t) {
    const auto& x = data();
    auto out = out_buf(t);
    for (auto _ : st) {
        cmf::quantize_rows(t, x.data(), out.data(), kRows, kRowLen, nullptr);
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(st.iterations() * kRows * kRowLen * static_cast<int64_t>(sizeof(float)));
}

// One level's row kernel (scalar: the plain row quantizer), as quantize_rows would run it.
using LevelRowFn = std::function<void(const float*, uint8_t*, int64_t)>;

LevelRowFn level_fn(cmf::quant::SimdLevel l, cmf::GgmlType t) {
    if (l == cmf::quant::SimdLevel::scalar) {
        const auto fn = cmf::quant::detail::quantizer(t);
        return [fn](const float* x, uint8_t* y, int64_t n) { fn(x, y, n, nullptr); };
    }
    const auto& k = cmf::quant::simd_kernels(l);
    switch (t) {
        case cmf::GgmlType::Q4_K: return k.q4_K;
        case cmf::GgmlType::Q5_K: return k.q5_K;
        case cmf::GgmlType::Q6_K: return k.q6_K;
        case cmf::GgmlType::Q8_0: return k.q8_0;
        default: return nullptr;
    }
}

void bench_level(benchmark::State& st, cmf::quant::SimdLevel l, cmf::GgmlType t) {
    const auto& x = data();
    auto out = out_buf(t);
    const auto fn = level_fn(l, t);
    const size_t rb = cmf::row_bytes(t, kRowLen);
    for (auto _ : st) {
        for (int64_t r = 0; r < kRows; ++r) fn(x.data() + r * kRowLen, out.data() + r * rb, kRowLen);
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(st.iterations() * kRows * kRowLen * static_cast<int64_t>(sizeof(float)));
}

void bench_ggml(benchmark::State& st, cmf::GgmlType t) {
    const auto& r = ref();
    if (!r.handle) {
        st.SkipWithError(("reference skipped: " + r.why).c_str());
        return;
    }
    const auto& x = data();
    auto out = out_buf(t);
    r.init(static_cast<int>(t));
    for (auto _ : st) {
        r.chunk(static_cast<int>(t), x.data(), out.data(), 0, kRows, kRowLen, nullptr);
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(st.iterations() * kRows * kRowLen * static_cast<int64_t>(sizeof(float)));
}

// Collects bytes_per_second of every run to print the cmf/ggml table at the end.
class Collector : public benchmark::ConsoleReporter {
public:
    std::map<std::string, double> bps;  // "cmf/Q4_K" -> bytes per second
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const auto& r : runs) {
            if (r.error_occurred || r.run_type != Run::RT_Iteration) continue;
            auto it = r.counters.find("bytes_per_second");
            if (it != r.counters.end()) bps[r.benchmark_name()] = it->second;
        }
        ConsoleReporter::ReportRuns(runs);
    }
};

}  // namespace

int main(int argc, char** argv) {
    using cmf::quant::SimdLevel;
    std::vector<SimdLevel> levels;  // the levels this CPU runs
    for (SimdLevel l : cmf::quant::kSimdLevels)
        if (cmf::quant::cpu_supports(l)) levels.push_back(l);
    auto level_label = [](SimdLevel l, const char* type) {
        return std::string("cmf_") + cmf::quant::simd_level_name(l) + "/" + type;
    };
    for (const auto& c : kCases) {
        benchmark::RegisterBenchmark((std::string("cmf/") + c.name).c_str(), bench_cmf, c.type)->Unit(benchmark::kMillisecond);
        for (SimdLevel l : levels)
            if (level_fn(l, c.type))
                benchmark::RegisterBenchmark(level_label(l, c.name).c_str(), bench_level, l, c.type)
                    ->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark((std::string("ggml/") + c.name).c_str(), bench_ggml, c.type)->Unit(benchmark::kMillisecond);
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

    const auto& r = ref();
    if (!r.handle) std::fprintf(stderr, "quant_throughput: %s; reference benchmarks skipped\n", r.why.c_str());

    // identical bytes check, once per type
    std::map<std::string, std::string> same;
    if (r.handle) {
        const auto& x = data();
        for (const auto& c : kCases) {
            auto a = out_buf(c.type), b = out_buf(c.type);
            r.init(static_cast<int>(c.type));
            cmf::quantize_rows(c.type, x.data(), a.data(), kRows, kRowLen, nullptr);
            r.chunk(static_cast<int>(c.type), x.data(), b.data(), 0, kRows, kRowLen, nullptr);
            same[std::string("cmf/") + c.name] = a == b ? "yes" : "NO";
            for (SimdLevel l : levels) {
                const auto fn = level_fn(l, c.type);
                if (!fn) continue;
                auto o = out_buf(c.type);
                const size_t rb = cmf::row_bytes(c.type, kRowLen);
                for (int64_t k = 0; k < kRows; ++k) fn(x.data() + k * kRowLen, o.data() + k * rb, kRowLen);
                same[level_label(l, c.name)] = o == b ? "yes" : "NO";
            }
        }
    }

    Collector rep;
    benchmark::RunSpecifiedBenchmarks(&rep);
    benchmark::Shutdown();

    std::printf("\ncmf/<type> runs the dispatched level: %s\n", cmf::quant::simd_level_name());
    std::printf("\n| type | cmf MB/s | ggml MB/s | cmf/ggml | identical bytes |\n|---|---:|---:|---:|:-:|\n");
    auto row = [&](const std::string& label, const std::string& key, const char* type) {
        const auto a = rep.bps.find(key);
        const auto b = rep.bps.find(std::string("ggml/") + type);
        if (a == rep.bps.end()) return;
        if (b == rep.bps.end()) {
            std::printf("| %s | %.1f | - | - | - |\n", label.c_str(), a->second / 1e6);
        } else {
            std::printf("| %s | %.1f | %.1f | %.3f | %s |\n", label.c_str(), a->second / 1e6, b->second / 1e6,
                        a->second / b->second, same[key].c_str());
        }
    };
    for (const auto& c : kCases) {
        row(c.name, std::string("cmf/") + c.name, c.name);
        for (SimdLevel l : levels) row(std::string(c.name) + " " + cmf::quant::simd_level_name(l), level_label(l, c.name), c.name);
    }
    return 0;
}
