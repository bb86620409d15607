// What the engine's translation units share (orchestrate/engine/ only: the one place llama.h is
// included): llama.cpp's log kept in a buffer so a refusal says llama.cpp's own reason, a loaded
// model that frees itself, token pieces, and llama.cpp's default thread count.
#pragma once

#include <algorithm>
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
inline int default_threads() {
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

}  // namespace cmf::engine::detail
