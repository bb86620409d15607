// Debian's docker-registry (the OCI distribution registry 2.8) as a test peer: started on a
// free loopback port with a filesystem store in a test directory, its log (which includes the
// access log) kept in DIR/registry.log, stopped by pid.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iterator>
#include <regex>
#include <string>
#include <thread>

#include "test_support.h"

namespace cmf::test {

// $CMF_DOCKER_REGISTRY, else Debian's install path; "" when absent (callers skip visibly).
inline std::string docker_registry_binary() {
    if (const char* e = std::getenv("CMF_DOCKER_REGISTRY"); e && *e) return e;
    for (const char* p : {"/usr/bin/docker-registry", "/usr/sbin/docker-registry"})
        if (::access(p, X_OK) == 0) return p;
    return "";
}

inline int free_loopback_port() {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t n = sizeof a;
    ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &n);
    ::close(s);
    return ntohs(a.sin_port);
}

inline bool loopback_port_open(int port) {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(s);
    return ok;
}

class DockerRegistry {
public:
    // Does not start it; port 0 picks a free one (kept across stop()/start()).
    DockerRegistry(std::string bin, fs::path dir, int port = 0)
        : bin_(std::move(bin)), dir_(std::move(dir)), port_(port ? port : free_loopback_port()) {}
    ~DockerRegistry() { stop(); }
    DockerRegistry(const DockerRegistry&) = delete;
    DockerRegistry& operator=(const DockerRegistry&) = delete;

    void start() {
        fs::create_directories(dir_);
        const fs::path cfg = dir_ / "config.yml";
        write_file(cfg, "version: 0.1\n"
                        "log:\n  level: warn\n"
                        "storage:\n  filesystem:\n    rootdirectory: " + (dir_ / "data").string() + "\n"
                        "  delete:\n    enabled: true\n"
                        "http:\n  addr: 127.0.0.1:" + std::to_string(port_) + "\n");
        log_ = dir_ / "registry.log";
        pid_ = ::fork();
        if (pid_ == 0) {
            int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            ::execl(bin_.c_str(), bin_.c_str(), "serve", cfg.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        for (int i = 0; i < 200 && !ready(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    void stop() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int st;
            ::waitpid(pid_, &st, 0);
            pid_ = -1;
        }
    }
    int port() const { return port_; }
    bool ready() const { return loopback_port_open(port_); }
    std::string log() const { return fs::exists(log_) ? read_file(log_) : std::string(); }
    // requests that upload something: blob upload sessions and their parts, manifest PUTs
    int upload_requests() const {
        const std::string l = log();
        const std::regex re("\"(POST|PATCH|PUT) /v2/");
        return static_cast<int>(std::distance(std::sregex_iterator(l.begin(), l.end(), re), std::sregex_iterator()));
    }

private:
    std::string bin_;
    fs::path dir_;
    int port_;
    pid_t pid_ = -1;
    fs::path log_;
};

}  // namespace cmf::test
