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
#include <memory>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "cmf/registry/ollama_model.h"
#include "docker_registry.h"
#include "test_support.h"

namespace {

using namespace cmf;
using cmf::test::read_file;
using cmf::test::run_cmf;
using cmf::test::shell_quote;

std::string field(const std::string& out, const std::string& re) {
    std::smatch m;
    return std::regex_search(out, m, std::regex(re)) ? m[1].str() : "";
}

// docker-registry on loopback with its storage in `dir`; null when it is not installed.
std::unique_ptr<cmf::test::DockerRegistry> start_registry(const fs::path& dir) {
    const std::string bin = cmf::test::docker_registry_binary();
    if (bin.empty()) return nullptr;
    auto reg = std::make_unique<cmf::test::DockerRegistry>(bin, dir);
    reg->start();
    return reg;
}
#define START_REGISTRY(reg, dir)                                                                                   \
    auto reg = start_registry(dir);                                                                                \
    if (!reg) GTEST_SKIP() << "SKIPPED: docker-registry is not installed (apt-get install docker-registry, or `make deps`)"; \
    ASSERT_TRUE(reg->ready()) << "docker-registry did not start:\n" << reg->log()

TEST(OllamaDockerRegistry, PushPullRoundTrip) {
    cmf::test::TempDir d;
    START_REGISTRY(reg_, d.path());
    auto& reg = *reg_;

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

// A model with an ADAPTER layer (cmf push BUILD --adapter FILE) pushed to the registry and
// pulled back: the manifest lists the adapter after the base's layers, every blob returns intact.
TEST(OllamaDockerRegistry, AdapterModelRoundTrip) {
    cmf::test::TempDir d;
    START_REGISTRY(reg_, d.path());
    auto& reg = *reg_;
    const fs::path ck = d / "tiny", build = d / "build", ad = d / "ad", b = d / "storeB";
    auto r = run_cmf("synth " + shell_quote(ck.string()) + " --preset tiny");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cmf("synth " + shell_quote(ad.string()) + " --adapter-for " + shell_quote(ck.string()) + " --r 16 --alpha 16");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cmf("quantize " + shell_quote(ck.string()) + " --quant q8_0 --quiet --out " + shell_quote(build.string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cmf("quantize " + shell_quote(ad.string()) + " --base " + shell_quote(ck.string()) + " --quant f16 --name tuned --quiet --out " +
                shell_quote((d / "adapter").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    cmf::test::write_file(build / "LICENSE", "base model terms\n");
    const std::string host = "127.0.0.1:" + std::to_string(reg.port());
    const std::string url = "http://" + host + "/alice/tiny-tuned:q8";
    const fs::path adapter = d / "adapter" / "tuned-F16-LoRA.gguf";
    r = run_cmf("push --insecure --quiet " + shell_quote(build.string()) + " --adapter " + shell_quote(adapter.string()) + " " + url);
    ASSERT_EQ(r.exit_code, 0) << r.output << "\nregistry log:\n" << reg.log();
    r = run_cmf("pull --insecure --quiet --store " + shell_quote(b.string()) + " " + url);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto m = nlohmann::json::parse(read_file(b / "manifests" / host / "alice/tiny-tuned/q8"));
    std::vector<std::string> types;
    for (const auto& l : m["layers"]) types.push_back(l["mediaType"]);
    EXPECT_EQ(types, (std::vector<std::string>{ollama::kMediaModel, ollama::kMediaTemplate, ollama::kMediaLicense, ollama::kMediaLicense,
                                               ollama::kMediaAdapter, ollama::kMediaParams}));
    const auto& al = m["layers"][4];
    EXPECT_TRUE(read_file(b / "blobs" / ("sha256-" + al["digest"].get<std::string>().substr(7))) == read_file(adapter));
    EXPECT_TRUE(read_file(b / "blobs" / ("sha256-" + m["layers"][0]["digest"].get<std::string>().substr(7))) ==
                read_file(build / "tiny-Q8_0.gguf"));
}

}  // namespace
