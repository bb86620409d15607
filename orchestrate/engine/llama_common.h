// What the engine's translation units share (orchestrate/engine/ only: the one place llama.h is
// included): llama.cpp's log kept in a buffer so a refusal says llama.cpp's own reason, a loaded
// model that frees itself, token pieces, and llama.cpp's default thread count.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/engine/engine.h"
#include "ggml-cpu.h"
#include "llama.h"

namespace cmf::engine::detail {


inline std::mutex g_log_mu;
inline std::string g_last_error;

inline void log_to_buffer(ggml_log_level level, const char* text, void*) {
    if (level != GGML_LOG_LEVEL_ERROR || !text) return;
    std::string s = text;
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    if (s.empty()) return;
    std::lock_guard<std::mutex> g(g_log_mu);
    g_last_error = s;
}

inline void init_once() {
    static std::once_flag once;
    std::call_once(once, [] {
        llama_log_set(log_to_buffer, nullptr);
        llama_backend_init();
    });
}

inline std::string last_error() {
    std::lock_guard<std::mutex> g(g_log_mu);
    return g_last_error.empty() ? "no reason given" : g_last_error;
}

struct Model {
    llama_model* m = nullptr;
    explicit Model(const std::filesystem::path& p) {
        require();
        init_once();
        {
            std::lock_guard<std::mutex> g(g_log_mu);
            g_last_error.clear();
        }
        auto mp = llama_model_default_params();
        mp.n_gpu_layers = 0;
        m = llama_model_load_from_file(p.c_str(), mp);
        if (!m) fail_input(p.string() + ": llama.cpp cannot load it: " + last_error());
    }
    ~Model() {
        if (m) llama_model_free(m);
    }
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;
};

inline std::string piece(const llama_vocab* v, llama_token t) {
    char buf[256];
    const int n = llama_token_to_piece(v, t, buf, sizeof buf, 0, true);
    if (n < 0) {
        std::string big(static_cast<size_t>(-n), '\0');
        const int k = llama_token_to_piece(v, t, big.data(), static_cast<int32_t>(big.size()), 0, true);
        return big.substr(0, k < 0 ? 0 : static_cast<size_t>(k));
    }
    return std::string(buf, static_cast<size_t>(n));
}

// llama.cpp's default thread count (common_cpu_get_num_math on x86-64 Linux without hybrid
// cores): physical cores, counted as distinct thread-sibling sets; the online CPUs otherwise.
// $CMF_ENGINE_THREADS overrides it: ggml's threads spin on barriers between a graph's nodes, so
// two engine processes on cores they share (tests run two at a time on two cores) crawl unless
// each takes fewer threads.
inline int default_threads() {
    if (const char* e = std::getenv("CMF_ENGINE_THREADS"); e && *e) {
        const int n = std::atoi(e);
        if (n >= 1 && n <= 512) return n;
        fail(ErrorKind::usage, "CMF_ENGINE_THREADS must be a number from 1 to 512, not '" + std::string(e) + "'");
    }
    std::set<std::string> siblings;
    for (int cpu = 0;; ++cpu) {
        std::ifstream f("/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/thread_siblings");
        if (!f) break;
        std::string line;
        if (std::getline(f, line)) siblings.insert(line);
    }
    if (!siblings.empty()) return static_cast<int>(siblings.size());
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// The engine's worker threads for one context, sleeping between graphs instead of spinning
// (ggml's default polls): on a machine shared with other work (two tests at once on two cores,
// the quantizer's threads) spinning threads starve each other, 60x slower in the smoke here.
// Declare it before the context it is attached to, so it outlives it.
struct ThreadPool {
    ggml_threadpool* tp = nullptr;
    explicit ThreadPool(int n) {
        auto p = ggml_threadpool_params_default(n);
        p.poll = 0;
        tp = ggml_threadpool_new(&p);
        if (!tp) fail(ErrorKind::internal, "ggml cannot start " + std::to_string(n) + " engine threads");
    }
    ~ThreadPool() {
        if (tp) ggml_threadpool_free(tp);
    }
    void attach(llama_context* c) const { llama_attach_threadpool(c, tp, tp); }
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;
};

// A conversation through the model's chat template as llama.cpp applies it (it recognises
// Gemma's), else through the family's turn rows (arch ChatSpec); add_ass appends the generation
// prompt. llama_eval.cpp.
std::string render_conversation(const llama_model* model, const Conversation& conv, bool add_ass);

}  // namespace cmf::engine::detail
