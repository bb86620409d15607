// llama.cpp v0.5.0's llama_model_quantize, in-process: the reference for every test that
// compares `cmf quantize` recipes with llama-quantize.
//
// The library is the prebuilt libllama.v0.5.0.so that tests/llama/setup.sh installs (npm
// node-llama-cpp); it is dlopen()ed once. Without it, REQUIRE_LLAMA() fails the test pointing at
// setup.sh, or skips it visibly when CMF_ALLOW_MISSING_GGML=1.
#pragma once

#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

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
struct LlamaQuantizeParams {
    int32_t nthread;
    int32_t ftype;
    int32_t output_tensor_type;
    int32_t token_embedding_type;
    bool allow_requantize, quantize_output_tensor, only_copy, pure, keep_split, dry_run;
    const LlamaImatrixEntry* imatrix;
    const LlamaKvOverride* kv_overrides;
    const void* tt_overrides;
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
