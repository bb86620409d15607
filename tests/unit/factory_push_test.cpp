// The worker's push step against a real OCI registry: Debian's docker-registry (distribution
// 2.8) on loopback, driven by `cmf build --backend local` with the registry in
// $CMF_OLLAMA_REGISTRY (plain http, loopback only). Checks: both variants pushed with their
// `.pushed` markers; the registry's manifest is the Ollama export's manifest (same bytes but
// the store's trailing newline, so digest == sha256(export manifest minus "\n")); a rerun
// pushes nothing (no upload request reaches the registry); a variant whose push failed (the
// key file is not there yet) is marked `-error.fail` with exit 1 and pushed by the next run
// from the bucket's export; the key never shows in any bucket object or output.
// Skips with a visible message when docker-registry is not installed (`make deps`).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "cmf/factory/job.h"
#include "cmf/net/http.h"
#include "cmf/registry/ed25519_key.h"
#include "cmf/registry/ollama_model.h"
#include "docker_registry.h"
#include "test_support.h"

namespace {

using namespace cmf;
using cmf::test::read_file;
using cmf::test::run;
using cmf::test::shell_quote;

std::string all_bucket_text(const fs::path& root) {
    std::string all;
    for (const auto& e : fs::recursive_directory_iterator(root))
        if (e.is_regular_file()) all += read_file(e.path());
    return all;
}

// The manifest the registry serves for NS/NAME:latest.
std::string registry_manifest(int port, const std::string& repo) {
    auto http = net::make_http_client();
    net::Request q;
    q.url = net::Url::parse("http://127.0.0.1:" + std::to_string(port) + "/v2/" + repo + "/manifests/latest");
    q.headers.set("Accept", ollama::kMediaManifest);
    net::Response r = http->send(q);
    EXPECT_EQ(r.status, 200) << repo;
    return r.body;
}

// The manifest inside models/<name>/<name>.ollama.tar.zst, unpacked with the zstd and tar tools
// (independent of cmf's reader).
std::string export_manifest(const fs::path& bucket, const std::string& name, const fs::path& scratch) {
    fs::create_directories(scratch);
    const auto r = run("zstd -dc " + shell_quote((bucket / "models" / name / (name + ".ollama.tar.zst")).string()) + " | tar -x -C " +
                       shell_quote(scratch.string()));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::vector<fs::path> found;
    for (const auto& e : fs::recursive_directory_iterator(scratch / "manifests"))
        if (e.is_regular_file()) found.push_back(e.path());
    EXPECT_EQ(found.size(), 1u);
    return found.empty() ? "" : read_file(found[0]);
}

TEST(FactoryPush, BuildPushesEachVariantOnceFromItsExport) {
    const std::string bin = cmf::test::docker_registry_binary();
    if (bin.empty())
        GTEST_SKIP() << "SKIPPED: docker-registry is not installed (apt-get install docker-registry, or `make deps`)";
    cmf::test::TempDir d;
    const int port = cmf::test::free_loopback_port();
    cmf::test::DockerRegistry reg(bin, d.path(), port);

    const fs::path ck = d / "tiny-mm", bucket = d / "bucket", key = d / "id_ed25519";
    auto r = cmf::test::run_cmf("synth " + shell_quote(ck.string()) + " --preset tiny-mm");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string pem = ollama::Ed25519Key::generate().to_openssh();
    reg.start();
    ASSERT_TRUE(reg.ready()) << "docker-registry did not start:\n" << reg.log();

    const std::string env = "CMF_OLLAMA_REGISTRY=http://127.0.0.1:" + std::to_string(port) + " ";
    const std::string build = env + shell_quote(CMF_BINARY) + " build q4,q8 --backend local --threads 2 --source " + shell_quote(ck.string()) +
                              " --bucket " + shell_quote(bucket.string()) + " --work " + shell_quote((d / "work").string()) +
                              " --registry-ns alice --ollama-key-file " + shell_quote(key.string());
    std::string outputs;

    // 1. the key file is missing: both variants build, both pushes fail -> -error.fail, exit 1,
    //    and nothing reached the registry
    r = run(build);
    outputs += r.output;
    EXPECT_EQ(r.exit_code, 1) << r.output;
    for (const char* v : {"q4", "q8"}) {
        EXPECT_TRUE(fs::exists(bucket / "status" / (std::string(v) + ".built"))) << v << "\n" << r.output;
        EXPECT_FALSE(fs::exists(bucket / "status" / (std::string(v) + ".pushed"))) << v;
        const std::string fail = read_file(bucket / "status" / (std::string(v) + "-error.fail"));
        EXPECT_EQ(fail.rfind("push: ", 0), 0u) << fail;
    }
    r = cmf::test::run_cmf("status --backend local --bucket " + shell_quote(bucket.string()));
    outputs += r.output;
    EXPECT_NE(r.output.find("q8 failed: push: "), std::string::npos) << r.output;
    EXPECT_EQ(reg.upload_requests(), 0) << reg.log();

    // 2. the key is there: the next run rebuilds nothing and pushes both from the bucket
    cmf::test::write_file(key, pem);
    ::chmod(key.c_str(), 0600);
    r = run(build);
    outputs += r.output;
    ASSERT_EQ(r.exit_code, 0) << r.output << "\nregistry log:\n" << reg.log();
    EXPECT_NE(r.output.find("q4: already built"), std::string::npos) << r.output;
    std::map<std::string, std::string> digests;
    for (const char* v : {"q4", "q8"}) {
        const std::string name = std::string("coheara-medgemma-4b-") + v;
        EXPECT_FALSE(fs::exists(bucket / "status" / (std::string(v) + "-error.fail"))) << v;
        const auto pushed = nlohmann::json::parse(read_file(bucket / "status" / (std::string(v) + ".pushed")));
        EXPECT_EQ(pushed.value("reference", ""), "127.0.0.1:" + std::to_string(port) + "/alice/" + name + ":latest");
        EXPECT_FALSE(pushed.value("pushed_at", "").empty());
        EXPECT_GT(pushed.value("uploaded", 0), 0);
        const auto built = nlohmann::json::parse(read_file(bucket / "status" / (std::string(v) + ".built")));
        // the registry serves the export's manifest: the same JSON, without the store's newline
        const std::string stored = export_manifest(bucket, name, d / ("x-" + std::string(v)));
        ASSERT_FALSE(stored.empty());
        ASSERT_EQ(stored.back(), '\n');
        EXPECT_EQ(ollama::sha256_digest(stored), built["ollama_export"].value("manifest_digest", ""));
        EXPECT_EQ(pushed.value("export_manifest_digest", ""), built["ollama_export"].value("manifest_digest", ""));
        const std::string served = registry_manifest(port, "alice/" + name);
        EXPECT_EQ(served, stored.substr(0, stored.size() - 1)) << v;
        EXPECT_EQ(pushed.value("manifest_digest", ""), ollama::sha256_digest(served)) << v;
        digests[v] = ollama::sha256_digest(served);
    }
    EXPECT_NE(digests["q4"], digests["q8"]);
    // the job status records the push
    bool status_seen = false;
    for (const auto& e : fs::directory_iterator(bucket / "status")) {
        if (e.path().extension() != ".json" || e.path().filename() == "heartbeat.json") continue;
        const auto j = nlohmann::json::parse(read_file(e.path()));
        if (j.value("state", "") != "succeeded") continue;
        status_seen = true;
        EXPECT_EQ(j["variants"]["q8"]["push"].value("state", ""), "pushed") << j.dump(1);
        EXPECT_EQ(j["variants"]["q8"]["push"].value("manifest_digest", ""), digests["q8"]) << j.dump(1);
    }
    EXPECT_TRUE(status_seen);

    // 3. a rerun pushes nothing: no upload request reaches the registry, markers unchanged
    const int uploads = reg.upload_requests();
    EXPECT_GT(uploads, 0) << reg.log();
    const std::string marker_q8 = read_file(bucket / "status" / "q8.pushed");
    r = run(build);
    outputs += r.output;
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("q8: already pushed"), std::string::npos) << r.output;
    EXPECT_EQ(reg.upload_requests(), uploads) << reg.log();
    EXPECT_EQ(read_file(bucket / "status" / "q8.pushed"), marker_q8);

    // without its marker q8 is pushed again: every blob is already there, so the only upload
    // request is the manifest PUT, and the manifest digest is the same
    fs::remove(bucket / "status" / "q8.pushed");
    r = run(build);
    outputs += r.output;
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(reg.upload_requests(), uploads + 1) << reg.log();
    const auto again = nlohmann::json::parse(read_file(bucket / "status" / "q8.pushed"));
    EXPECT_EQ(again.value("uploaded", -1), 0);
    EXPECT_GT(again.value("already_present", 0), 0);
    EXPECT_EQ(again.value("manifest_digest", ""), digests["q8"]);

    // 4. the key never shows: not its PEM text nor any of its base64 lines
    std::string everything = all_bucket_text(bucket) + outputs + reg.log();
    EXPECT_EQ(everything.find(pem), std::string::npos);
    size_t lines = 0;
    for (size_t i = 0; i < pem.size();) {
        size_t j = pem.find('\n', i);
        if (j == std::string::npos) j = pem.size();
        const std::string line = pem.substr(i, j - i);
        if (line.size() >= 16 && line.find("-----") == std::string::npos) {
            ++lines;
            EXPECT_EQ(everything.find(line), std::string::npos) << "a line of the key shows up";
        }
        i = j + 1;
    }
    EXPECT_GT(lines, 0u);
}

TEST(FactoryPush, PlainHttpRegistryOnlyOnLoopback) {
    EXPECT_EQ(factory::parse_registry_host("").base_url(), "https://registry.ollama.ai");
    EXPECT_EQ(factory::parse_registry_host("http://127.0.0.1:5000").base_url(), "http://127.0.0.1:5000");
    EXPECT_EQ(factory::parse_registry_host("http://localhost:5000/").base_url(), "http://localhost:5000");
    EXPECT_EQ(factory::parse_registry_host("reg.example.com:443").base_url(), "https://reg.example.com:443");
    EXPECT_THROW(factory::parse_registry_host("http://reg.example.com"), Error);
    EXPECT_THROW(factory::parse_registry_host("http://127.0.0.1.example.com"), Error);
    EXPECT_THROW(factory::parse_registry_host("https://reg.example.com/path"), Error);
    EXPECT_THROW(factory::parse_registry_host("ftp://reg.example.com"), Error);
    EXPECT_THROW(factory::parse_registry_host("https://user@reg.example.com"), Error);
}

}  // namespace
