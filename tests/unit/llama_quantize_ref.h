// llama.cpp v0.5.0's llama_model_quantize, in-process: the reference for every test that
// compares `cmf quantize` recipes with llama-quantize.
//
// The library is the prebuilt libllama.v0.5.0.so that tests/llama/setup.sh installs (npm
// node-llama-cpp); it is dlopen()ed once. Without it, REQUIRE_LLAMA() fails the test pointing at
// setup.sh, or skips it visibly when CMF_ALLOW_MISSING_GGML=1.
#pragma once

#include <dlfcn.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cmf/format/gguf.h"
#include "cmf/format/safetensors.h"
#include "cmf/quant/imatrix.h"
#include "test_support.h"

namespace cmf::test::llama_ref {

// ABI of llama.h (v0.5.0) for the parts the tests touch; enums are int-sized.
struct LlamaImatrixEntry {
    const char* name;
    const float* data;
    size_t size;
};
struct LlamaKvOverride {
    int tag;  // 0 INT, 1 FLOAT, 2 BOOL, 3 STR
    char key[128];
    union {
        int64_t val_i64;
        double val_f64;
        bool val_bool;
        char val_str[128];
    };
};
struct LlamaTensorOverride {  // llama_model_tensor_override: {pattern, ggml_type}, null pattern ends
    const char* pattern;
    int32_t type;
};
struct LlamaQuantizeParams {
    int32_t nthread;
    int32_t ftype;
    int32_t output_tensor_type;
    int32_t token_embedding_type;
    bool allow_requantize, quantize_output_tensor, only_copy, pure, keep_split, dry_run;
    const LlamaImatrixEntry* imatrix;
    const LlamaKvOverride* kv_overrides;
    const LlamaTensorOverride* tt_overrides;
    const int32_t* prune_layers;
    size_t max_buf_size;
};
using DefaultParamsFn = LlamaQuantizeParams (*)();
using QuantizeFn = uint32_t (*)(const char*, const char*, const LlamaQuantizeParams*);
using BackendInitFn = void (*)();
using LogSetFn = void (*)(void (*)(int, const char*, void*), void*);

struct Llama {
    void* handle = nullptr;
    DefaultParamsFn defaults = nullptr;
    QuantizeFn quantize = nullptr;
    std::string error;
};

inline const Llama& llama_lib() {
    static const Llama lib = [] {
        Llama l;
        const std::string path = (ggml_bin_dir() / "libllama.v0.5.0.so").string();
        if (!std::filesystem::exists(path)) {
            l.error = "reference library " + path + " not found";
            return l;
        }
        l.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!l.handle) {
            l.error = std::string("dlopen failed: ") + dlerror();
            return l;
        }
        l.defaults = reinterpret_cast<DefaultParamsFn>(dlsym(l.handle, "llama_model_quantize_default_params"));
        l.quantize = reinterpret_cast<QuantizeFn>(dlsym(l.handle, "llama_model_quantize"));
        if (!l.defaults || !l.quantize) {
            l.error = path + " does not export llama_model_quantize";
            l.handle = nullptr;
            return l;
        }
        if (auto log_set = reinterpret_cast<LogSetFn>(dlsym(l.handle, "llama_log_set")))
            log_set([](int, const char*, void*) {}, nullptr);  // its progress log would drown the test output
        if (auto init = reinterpret_cast<BackendInitFn>(dlsym(l.handle, "llama_backend_init"))) init();
        return l;
    }();
    return lib;
}

inline bool allow_missing_ggml() {
    const char* e = std::getenv("CMF_ALLOW_MISSING_GGML");
    return e && std::string(e) == "1";
}

// llama_model_quantize(in -> out) with default params but `ftype` and `nthread`; 0 on success.
inline uint32_t llama_quantize_plain(const std::filesystem::path& in, const std::filesystem::path& out, int32_t ftype,
                                     int32_t nthread = 2) {
    LlamaQuantizeParams p = llama_lib().defaults();
    p.ftype = ftype;
    p.nthread = nthread;
    return llama_lib().quantize(in.c_str(), out.c_str(), &p);
}

// One llama-quantize run as tools/quantize/quantize.cpp sets it up: --token-embedding-type,
// --output-tensor-type, --tensor-type patterns (lowercased by the CLI; pass them lowercased) and
// an imatrix with the four quantize.imatrix.* kv overrides.
struct QuantizeCall {
    int32_t ftype = 15;  // LLAMA_FTYPE_MOSTLY_Q4_K_M
    std::optional<cmf::GgmlType> token_embedding_type, output_tensor_type;
    std::vector<std::pair<std::string, cmf::GgmlType>> tensor_types;
    const cmf::ImatrixData* imatrix = nullptr;
    int32_t nthread = 2;
};

inline uint32_t llama_quantize(const std::filesystem::path& in, const std::filesystem::path& out, const QuantizeCall& c) {
    LlamaQuantizeParams p = llama_lib().defaults();
    p.ftype = c.ftype;
    p.nthread = c.nthread;
    if (c.token_embedding_type) p.token_embedding_type = static_cast<int32_t>(*c.token_embedding_type);
    if (c.output_tensor_type) p.output_tensor_type = static_cast<int32_t>(*c.output_tensor_type);
    std::vector<LlamaTensorOverride> tt;
    for (const auto& [re, t] : c.tensor_types) tt.push_back({re.c_str(), static_cast<int32_t>(t)});
    tt.push_back({nullptr, 0});
    if (!c.tensor_types.empty()) p.tt_overrides = tt.data();
    std::vector<LlamaImatrixEntry> entries;
    std::vector<LlamaKvOverride> kvo;
    if (const cmf::ImatrixData* m = c.imatrix) {
        for (const auto& [name, v] : m->values) entries.push_back({name.c_str(), v.data(), v.size()});
        entries.push_back({nullptr, nullptr, 0});
        p.imatrix = entries.data();
        kvo.reserve(5);
        auto add = [&](const char* key, int tag) -> LlamaKvOverride& {
            LlamaKvOverride o{};
            o.tag = tag;
            std::strncpy(o.key, key, 127);
            kvo.push_back(o);
            return kvo.back();
        };
        std::strncpy(add("quantize.imatrix.file", 3).val_str, m->file.c_str(), 127);
        if (!m->datasets.empty()) std::strncpy(add("quantize.imatrix.dataset", 3).val_str, m->datasets[0].c_str(), 127);
        add("quantize.imatrix.entries_count", 0).val_i64 = static_cast<int64_t>(m->values.size());
        if (m->chunks > 0) add("quantize.imatrix.chunks_count", 0).val_i64 = m->chunks;
        kvo.push_back(LlamaKvOverride{});  // key[0] == 0 ends the list
        p.kv_overrides = kvo.data();
    }
    return llama_lib().quantize(in.c_str(), out.c_str(), &p);
}

inline std::string tensor_bytes(const std::filesystem::path& f, const cmf::GgufContents& g, const cmf::GgufTensorInfo& t) {
    std::string data(t.nbytes, '\0');
    cmf::FileHandle h(f);
    h.read_at(data.data(), t.nbytes, g.data_start + t.offset);
    return data;
}

inline std::string describe(const cmf::GgufValue& v) {
    if (v.type == cmf::GgufType::STRING) return "\"" + v.str.substr(0, 60) + "\"";
    if (v.type == cmf::GgufType::ARRAY) return std::string("array of ") + std::to_string(v.count) + " " + cmf::gguf_type_name(v.elem);
    if (auto i = v.as_int()) return std::string(cmf::gguf_type_name(v.type)) + " " + std::to_string(*i);
    return cmf::gguf_type_name(v.type);
}

// cmf's file against llama.cpp's: KVs (order, types, values; `ignore`: keys only cmf writes),
// then every tensor (name, order, shape, type, data); byte-identical when nothing is ignored.
inline void expect_same_as_llama(const std::filesystem::path& ours, const std::filesystem::path& ref,
                                 const std::vector<std::string>& ignore = {}) {
    const cmf::GgufContents a = cmf::read_gguf(ours), b = cmf::read_gguf(ref);
    auto keys = [&](const cmf::GgufContents& g) {
        std::vector<size_t> k;
        for (size_t i = 0; i < g.kv.size(); ++i)
            if (std::find(ignore.begin(), ignore.end(), g.kv.items()[i].first) == ignore.end()) k.push_back(i);
        return k;
    };
    const std::vector<size_t> ka = keys(a), kb = keys(b);
    for (size_t i = 0; i < std::max(ka.size(), kb.size()); ++i) {
        const std::string na = i < ka.size() ? a.kv.items()[ka[i]].first : "(none)";
        const std::string nb = i < kb.size() ? b.kv.items()[kb[i]].first : "(none)";
        EXPECT_EQ(na, nb) << "KV #" << i;
        if (na == nb && na != "(none)")
            EXPECT_TRUE(a.kv.items()[ka[i]].second == b.kv.items()[kb[i]].second)
                << "KV " << na << ": cmf " << describe(a.kv.items()[ka[i]].second) << ", llama.cpp " << describe(b.kv.items()[kb[i]].second);
    }
    ASSERT_EQ(a.tensors.size(), b.tensors.size()) << "tensor count";
    int differ = 0;
    for (size_t i = 0; i < a.tensors.size(); ++i) {
        const auto &x = a.tensors[i], &y = b.tensors[i];
        ASSERT_EQ(x.name, y.name) << "tensor #" << i << " (order)";
        EXPECT_EQ(x.ne, y.ne) << x.name << ": shape";
        if (x.type != y.type) {
            ADD_FAILURE() << x.name << ": cmf chose " << cmf::type_display_name(x.type) << ", llama.cpp " << cmf::type_display_name(y.type);
            ++differ;
            continue;
        }
        const std::string da = tensor_bytes(ours, a, x), db = tensor_bytes(ref, b, y);
        if (da != db) {
            size_t k = 0;
            while (k < da.size() && k < db.size() && da[k] == db[k]) ++k;
            ADD_FAILURE() << x.name << " (" << cmf::type_display_name(x.type) << ", " << x.n_elements()
                          << " elements): data differs from llama.cpp from byte " << k << " of " << da.size();
            ++differ;
        }
    }
    EXPECT_EQ(differ, 0) << "tensors that differ";
    if (ignore.empty() && !::testing::Test::HasFailure())
        EXPECT_TRUE(cmf::test::read_file(ours) == cmf::test::read_file(ref)) << ours.filename() << " is not byte-identical";
}

}  // namespace cmf::test::llama_ref

// In a test body (or SetUp): fail, or skip with CMF_ALLOW_MISSING_GGML=1, when libllama is absent.
#define REQUIRE_LLAMA()                                                                                 \
    do {                                                                                                \
        const auto& lib_ = ::cmf::test::llama_ref::llama_lib();                                         \
        if (!lib_.handle) {                                                                             \
            const std::string msg_ = lib_.error +                                                       \
                                     ". Run tests/llama/setup.sh to install the llama.cpp v0.5.0 "      \
                                     "reference (or set CMF_NODE_DIR to an existing install).";         \
            if (::cmf::test::llama_ref::allow_missing_ggml())                                           \
                GTEST_SKIP() << "SKIPPED (CMF_ALLOW_MISSING_GGML=1): " << msg_;                         \
            FAIL() << msg_ << " Set CMF_ALLOW_MISSING_GGML=1 to skip instead.";                         \
        }                                                                                               \
    } while (0)
