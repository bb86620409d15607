// push -> pull round trip through a real OCI registry: Debian's docker-registry (distribution
// 2.8) on loopback with a temporary config, driven by the cmf binary (real HTTP client). Every
// blob must come back byte-identical, the manifest digest must be stable, and a second push
// must upload no blob. Skips with a visible message when docker-registry is not installed
// (`make deps` installs it).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "cmf/registry/ollama_model.h"
#include "test_support.h"

namespace {

using namespace cmf;
using cmf::test::read_file;
using cmf::test::run_cmf;
using cmf::test::shell_quote;

std::string registry_binary() {
    if (const char* e = std::getenv("CMF_DOCKER_REGISTRY"); e && *e) return e;
    for (const char* p : {"/usr/bin/docker-registry", "/usr/sbin/docker-registry"})
        if (access(p, X_OK) == 0) return p;
    return "";
}

int free_port() {
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

bool port_open(int port) {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(s);
    return ok;
}

// docker-registry serve CONFIG, on 127.0.0.1:port, stopped (by its pid) when this dies.
class RegistryProcess {
public:
    RegistryProcess(const std::string& bin, const fs::path& dir) {
        port_ = free_port();
        const fs::path cfg = dir / "config.yml";
        cmf::test::write_file(cfg, "version: 0.1\n"
                                   "log:\n  level: warn\n"
                                   "storage:\n  filesystem:\n    rootdirectory: " + (dir / "data").string() + "\n"
                                   "  delete:\n    enabled: true\n"
                                   "http:\n  addr: 127.0.0.1:" + std::to_string(port_) + "\n");
        log_ = dir / "registry.log";
        pid_ = ::fork();
        if (pid_ == 0) {
            int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            ::execl(bin.c_str(), bin.c_str(), "serve", cfg.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        for (int i = 0; i < 200 && !port_open(port_); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ~RegistryProcess() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int st;
            ::waitpid(pid_, &st, 0);
        }
    }
    int port() const { return port_; }
    bool ready() const { return port_open(port_); }
    std::string log() const { return read_file(log_); }

private:
    int port_ = 0;
    pid_t pid_ = -1;
    fs::path log_;
};

std::string field(const std::string& out, const std::string& re) {
    std::smatch m;
    return std::regex_search(out, m, std::regex(re)) ? m[1].str() : "";
}

TEST(OllamaDockerRegistry, PushPullRoundTrip) {
    const std::string bin = registry_binary();
    if (bin.empty())
        GTEST_SKIP() << "SKIPPED: docker-registry is not installed (apt-get install docker-registry, or `make deps`)";
    cmf::test::TempDir d;
    RegistryProcess reg(bin, d.path());
    ASSERT_TRUE(reg.ready()) << "docker-registry did not start:\n" << reg.log();

    // a build: tiny-mm in Ollama's single-file layout, imported into store A
    const fs::path ck = d / "tiny-mm", build = d / "build", a = d / "storeA", b = d / "storeB";
    auto r = run_cmf("synth " + shell_quote(ck.string()) + " --preset tiny-mm");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cmf("quantize " + shell_quote(ck.string()) + " --quant q8_0 --layout ollama --quiet --out " + shell_quote(build.string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    cmf::test::write_file(build / "LICENSE", "base model terms\n");
    const std::string host = "127.0.0.1:" + std::to_string(reg.port());
    const std::string name = host + "/alice/tiny-medgemma:q8";
    r = run_cmf("import --quiet --store " + shell_quote(a.string()) + " " + shell_quote(build.string()) + " " + name);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string manifest_a = read_file(a / "manifests" / host / "alice/tiny-medgemma/q8");
    const auto ma = nlohmann::json::parse(manifest_a);
    const size_t n_blobs = ma["layers"].size() + 1;
    ASSERT_EQ(n_blobs, 6u);

    // push from the store: 1 MiB parts, so the 4 MB model goes as several chunked PATCHes
    const std::string url = "http://" + name;
    r = run_cmf("push --insecure --quiet --part-size 1048576 --store " + shell_quote(a.string()) + " " + url);
    ASSERT_EQ(r.exit_code, 0) << r.output << "\nregistry log:\n" << reg.log();
    EXPECT_EQ(field(r.output, "(\\d+) blob\\(s\\) uploaded"), std::to_string(n_blobs)) << r.output;
    const std::string digest1 = field(r.output, "manifest (sha256:[0-9a-f]{64})");
    // what was pushed is the store's manifest without json.Encoder's newline
    EXPECT_EQ(digest1, ollama::sha256_digest(manifest_a.substr(0, manifest_a.size() - 1)));

    // a second push uploads nothing, and the manifest digest is the same
    r = run_cmf("push --insecure --quiet --store " + shell_quote(a.string()) + " " + url);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(field(r.output, "(\\d+) blob\\(s\\) uploaded"), "0") << r.output;
    EXPECT_EQ(field(r.output, "(\\d+) already present"), std::to_string(n_blobs)) << r.output;
    EXPECT_EQ(field(r.output, "manifest (sha256:[0-9a-f]{64})"), digest1);
    // so does pushing the build directory itself (same input, same digests)
    r = run_cmf("push --insecure --quiet " + shell_quote(build.string()) + " " + url);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(field(r.output, "(\\d+) blob\\(s\\) uploaded"), "0") << r.output;
    EXPECT_EQ(field(r.output, "manifest (sha256:[0-9a-f]{64})"), digest1);

    // pull into an empty store B, in parallel ranged parts
    r = run_cmf("pull --insecure --quiet --part-size 1048576 --store " + shell_quote(b.string()) + " " + url);
    ASSERT_EQ(r.exit_code, 0) << r.output << "\nregistry log:\n" << reg.log();
    EXPECT_EQ(field(r.output, "(\\d+) blob\\(s\\) downloaded"), std::to_string(n_blobs)) << r.output;
    EXPECT_EQ(field(r.output, "manifest (sha256:[0-9a-f]{64})"), digest1);
    const std::string manifest_b = read_file(b / "manifests" / host / "alice/tiny-medgemma/q8");
    EXPECT_EQ(ollama::sha256_digest(manifest_b), digest1);
    EXPECT_EQ(nlohmann::json::parse(manifest_b), ma);
    std::vector<nlohmann::json> descs(ma["layers"].begin(), ma["layers"].end());
    descs.push_back(ma["config"]);
    for (const auto& desc : descs) {
        const std::string f = "sha256-" + desc["digest"].get<std::string>().substr(7);
        const std::string x = read_file(a / "blobs" / f), y = read_file(b / "blobs" / f);
        EXPECT_EQ(x.size(), desc["size"].get<uint64_t>());
        EXPECT_TRUE(x == y) << f << " differs after the round trip";
    }
}

}  // namespace
