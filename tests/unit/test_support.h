// Shared helpers for the gtest suites: where the reference data lives, temp dirs, running cmf.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>

namespace cmf::test {

namespace fs = std::filesystem;

// ../shared next to the project root (or $CMF_SHARED_DIR). Absent for users who cloned only the
// project; tests that need it call CMF_REQUIRE_SHARED() which skips with a visible message.
inline std::optional<fs::path> shared_dir() {
    if (const char* e = std::getenv("CMF_SHARED_DIR"); e && *e && fs::is_directory(e)) return fs::path(e);
    fs::path p = fs::path(CMF_SOURCE_DIR).parent_path() / "shared";
    if (fs::is_directory(p / "golden")) return p;
    return std::nullopt;
}

#define CMF_REQUIRE_SHARED()                                                                  \
    do {                                                                                      \
        if (!::cmf::test::shared_dir())                                                       \
            GTEST_SKIP() << "SKIPPED: ../shared (golden reference data) is not present; "     \
                            "set CMF_SHARED_DIR to run this test";                            \
    } while (0)

inline fs::path golden_dir() { return *shared_dir() / "golden"; }

// The node-llama-cpp install that tests/llama/setup.sh makes ($CMF_NODE_DIR, default
// ~/.cache/cmf/node): its prebuilt llama.cpp v0.5.0 libraries are our reference peer.
inline fs::path node_dir() {
    if (const char* e = std::getenv("CMF_NODE_DIR"); e && *e) return fs::path(e);
    const char* home = std::getenv("HOME");
    return fs::path(home ? home : "/tmp") / ".cache" / "cmf" / "node";
}

inline fs::path ggml_bin_dir() {
    return node_dir() / "node_modules" / "@node-llama-cpp" / "linux-x64" / "bins" / "linux-x64";
}

// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
public:
    TempDir() {
        std::random_device rd;
        for (int i = 0; i < 100; ++i) {
            path_ = fs::temp_directory_path() / ("cmf-test-" + std::to_string(rd()));
            if (fs::create_directory(path_)) return;
        }
        throw std::runtime_error("cannot create temp dir");
    }
    ~TempDir() { std::error_code ec; fs::remove_all(path_, ec); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const fs::path& path() const { return path_; }
    fs::path operator/(const std::string& s) const { return path_ / s; }

private:
    fs::path path_;
};

struct RunResult {
    int exit_code = -1;
    std::string output;  // stdout and stderr together
};

// Runs a shell command line, capturing stdout+stderr.
inline RunResult run(const std::string& cmdline) {
    RunResult r;
    std::string full = cmdline + " 2>&1";
    FILE* p = popen(full.c_str(), "r");
    if (!p) return r;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
    int st = pclose(p);
    r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}

inline std::string shell_quote(const std::string& s) {
    std::string o = "'";
    for (char c : s) {
        if (c == '\'') o += "'\\''";
        else o += c;
    }
    return o + "'";
}

// Runs the cmf binary built beside the tests.
inline RunResult run_cmf(const std::string& args) { return run(shell_quote(CMF_BINARY) + " " + args); }

inline std::string read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

inline void write_file(const fs::path& p, const std::string& data) {
    std::ofstream f(p, std::ios::binary);
    f << data;
}

// Whether the cmf under test links the engine (llama.cpp): `cmf --version` says so.
inline bool has_engine() { return run_cmf("--version").output.find("engine: llama.cpp") != std::string::npos; }

// The job's status JSON in a local factory bucket (status/<job>.json), or null.
inline nlohmann::json job_status(const fs::path& bucket) {
    for (const auto& e : fs::directory_iterator(bucket / "status"))
        if (e.path().extension() == ".json" && e.path().filename() != "heartbeat.json") return nlohmann::json::parse(read_file(e.path()));
    return nullptr;
}

}  // namespace cmf::test
