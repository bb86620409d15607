// RAII handle on a cmf_emulator child process for gtest suites (tests/emulator/README.md).
//
//   cmf::test::EmulatorProcess emu;                 // or emu(R"({"hf": {...}})") for --config
//   auto client = cmf::net::make_http_client(emu.client_options());
//   emu.set_faults(R"({"rules":[{"kind":"status","path":"x","status":503,"count":2}]})");
//
// The constructor waits for the ready file (the emulator writes it only once both ports
// listen), so no test sleeps to synchronize. The destructor sends SIGTERM and reaps the child.
// CMF_EMULATOR (the executable's path) is defined by CMakeLists.txt for every test.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>

#include "cmf/net/http.h"

namespace cmf::test {

class EmulatorProcess {
public:
    // How long the emulator may take to generate its keys and listen.
    static constexpr std::chrono::seconds kStartTimeout{30};

    explicit EmulatorProcess(const std::string& config_json = "") {
#ifndef CMF_EMULATOR
        throw std::runtime_error("CMF_EMULATOR is not defined: tests/emulator is not built");
#else
        std::random_device rd;
        dir_ = std::filesystem::temp_directory_path() /
               ("cmf-emu-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
        std::filesystem::create_directories(dir_);
        std::string ready = (dir_ / "ready.json").string();
        std::string state = (dir_ / "state").string();
        std::string config;
        if (!config_json.empty()) {
            config = (dir_ / "config.json").string();
            std::ofstream(config) << config_json;
        }
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            // a test that crashes must not leave the emulator behind holding ctest's output pipe
            // (ctest would wait for it forever)
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);
            std::string bin = CMF_EMULATOR;
            if (config.empty())
                ::execl(bin.c_str(), bin.c_str(), "--state-dir", state.c_str(), "--ready-file", ready.c_str(), (char*)nullptr);
            else
                ::execl(bin.c_str(), bin.c_str(), "--state-dir", state.c_str(), "--ready-file", ready.c_str(), "--config",
                        config.c_str(), (char*)nullptr);
            ::_exit(127);
        }
        auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
        for (;;) {
            if (std::filesystem::exists(ready)) break;  // written by rename: complete when visible
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("cmf_emulator exited during start-up (status " + std::to_string(status) + ")");
            }
            if (std::chrono::steady_clock::now() > deadline) {
                stop();
                throw std::runtime_error("cmf_emulator did not become ready within 30 s");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling a file, not synchronizing
        }
        std::ifstream in(ready);
        info_ = nlohmann::json::parse(in);
#endif
    }

    ~EmulatorProcess() {
        stop();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    EmulatorProcess(const EmulatorProcess&) = delete;
    EmulatorProcess& operator=(const EmulatorProcess&) = delete;

    int https_port() const { return info_.at("https_port").get<int>(); }
    int http_port() const { return info_.at("http_port").get<int>(); }
    std::string ca_file() const { return info_.at("ca_file").get<std::string>(); }
    std::string https_base() const { return info_.at("https_base").get<std::string>(); }
    std::string http_base() const { return info_.at("http_base").get<std::string>(); }
    // https://localhost:PORT — same server, different host (cross-host redirect tests).
    std::string https_base_localhost() const { return "https://localhost:" + std::to_string(https_port()); }
    const std::filesystem::path& dir() const { return dir_; }
    int pid() const { return pid_; }

    // Options that trust the emulator's CA and retry fast (tests, not production backoff).
    net::ClientOptions client_options() const {
        net::ClientOptions o;
        o.ca_file = ca_file();
        o.retry.initial_backoff = std::chrono::milliseconds(20);
        o.retry.max_backoff = std::chrono::milliseconds(500);
        o.connect_timeout = std::chrono::milliseconds(5000);
        o.io_timeout = std::chrono::milliseconds(10000);
        o.no_proxy = "*";  // an HTTPS_PROXY in the developer's shell must not capture loopback tests
        return o;
    }

    // Control-plane client: plain http, no retries, so faults never hit it.
    net::Response control(const std::string& method, const std::string& path, const std::string& body = "") const {
        net::ClientOptions o;
        o.retry.max_attempts = 1;
        o.io_timeout = std::chrono::milliseconds(10000);
        static auto client = net::make_http_client(o);
        net::Request r;
        r.method = method;
        r.url = net::Url::parse(http_base() + path);
        r.body = body;
        r.idempotent = true;
        if (!body.empty()) r.headers.set("Content-Type", "application/json");
        return client->send(r);
    }
    void set_faults(const std::string& json) const {
        auto r = control("POST", "/_emu/faults", json);
        if (r.status != 200) throw std::runtime_error("POST /_emu/faults: " + std::to_string(r.status) + " " + r.body);
    }
    void clear_faults() const { control("DELETE", "/_emu/faults"); }
    nlohmann::json stats() const { return nlohmann::json::parse(control("GET", "/_emu/stats").body); }
    void reset_stats() const { control("DELETE", "/_emu/stats"); }
    // Stores `bytes` as blob NAME (served at /_emu/blob/NAME on both ports).
    void put_blob(const std::string& name, const std::string& bytes, bool ignore_range = false) const {
        auto r = control("PUT", "/_emu/blob/" + name + (ignore_range ? "?ignore_range=1" : ""), bytes);
        if (r.status != 200) throw std::runtime_error("PUT blob: " + std::to_string(r.status));
    }

    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        int status = 0;
        while (::waitpid(pid_, &status, WNOHANG) == 0) {
            if (std::chrono::steady_clock::now() > deadline) {
                ::kill(pid_, SIGKILL);
                ::waitpid(pid_, &status, 0);
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        pid_ = -1;
    }

private:
    std::filesystem::path dir_;
    int pid_ = -1;
    nlohmann::json info_;
};

}  // namespace cmf::test
