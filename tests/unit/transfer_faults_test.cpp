// Every client's transfers through connections that break mid-body at random offsets, over plain
// http and over https: a small Hub file in one stream, a large Hub file in parallel ranges, a GCS
// download and a GCS resumable upload, a registry pull and a registry push. The registry is the
// real peer, Debian's docker-registry, behind the emulator's reverse proxy so that the same
// transport faults apply to it.
//
// Each case asserts (1) the bytes at the end are identical, (2) the emulator APPLIED drops (its
// counters count a fault only when it changed the wire), and (3) the client's own evidence: failed
// attempts, streams continued mid-body, uploads resumed from the offset the server reported.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <random>
#include <sstream>

#include "cmf/cloud/gcs.h"
#include "cmf/core/digest.h"
#include "cmf/hub/hf.h"
#include "cmf/net/transfer.h"
#include "cmf/registry/registry_client.h"
#include "docker_registry.h"
#include "emulator_process.h"
#include "test_bytes.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace cmf;
using namespace std::chrono_literals;

namespace {

net::RetryPolicy quick_retry() {
    net::RetryPolicy p;
    p.max_attempts = 8;
    p.initial_backoff = 5ms;
    p.max_backoff = 100ms;
    return p;
}

struct Peers {
    std::unique_ptr<test::TempDir> dir;
    std::unique_ptr<test::DockerRegistry> registry;
    std::unique_ptr<test::EmulatorProcess> emu;
    std::string skip;
};

Peers& peers() {
    static Peers p = [] {
        Peers x;
        x.dir = std::make_unique<test::TempDir>();
        const std::string bin = test::docker_registry_binary();
        nlohmann::json proxy = nlohmann::json::array();
        if (bin.empty()) {
            x.skip = "SKIPPED: docker-registry is not installed (apt-get install docker-registry, or `make deps`)";
        } else {
            x.registry = std::make_unique<test::DockerRegistry>(bin, x.dir->path() / "registry");
            x.registry->start();
            if (!x.registry->ready()) x.skip = "docker-registry did not start:\n" + x.registry->log();
            proxy.push_back({{"prefix", "/v2/"}, {"upstream", "http://127.0.0.1:" + std::to_string(x.registry->port())}});
        }
        nlohmann::json cfg = {
            {"proxy", proxy},
            {"gcs", {{"buckets", {"bkt"}}}},
            {"hf",
             {{"repos",
               {{{"id", "acme/model"},
                 {"files",
                  {{"config.json", {{"text", "{\"architectures\":[\"Gemma3ForCausalLM\"]}"}}},
                   {"small.safetensors", {{"size", 3'000'000}, {"seed", 21}}},
                   {"large.safetensors", {{"size", 24'000'000}, {"seed", 22}}}}}}}}}}};
        x.emu = std::make_unique<test::EmulatorProcess>(cfg.dump());
        return x;
    }();
    return p;
}

class TransferFaults : public ::testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        emu().clear_faults();
        emu().reset_stats();
    }
    void TearDown() override { emu().clear_faults(); }
    static test::EmulatorProcess& emu() { return *peers().emu; }
    std::string base() const { return GetParam() == "https" ? emu().https_base() : emu().http_base(); }
    std::shared_ptr<net::HttpClient> client() const {
        auto o = emu().client_options();
        o.retry = quick_retry();
        return net::make_http_client(o);
    }
    // Random cuts on `count` matching requests; `seed` keeps the offsets repeatable.
    void cut(const std::string& kind, const std::string& path, const std::string& method, int count, int seed) {
        emu().set_faults(nlohmann::json{{"seed", seed},
                                        {"rules", {{{"kind", kind}, {"path", path}, {"method", method}, {"count", count}, {"random", true}}}}}
                             .dump());
    }
    int dropped() const { return emu().stats()["dropped"].get<int>(); }

    hub::HfClient hf() const {
        hub::HfEnv e;
        e.endpoint = base();
        e.hf_home = tmp.path() / "hf";
        e.hub_cache = tmp.path() / "hf" / "hub";
        hub::HfClient c(client(), e);
        c.retry = quick_retry();
        return c;
    }
    hub::RepoFile hub_file(hub::HfClient& c, const std::string& path) const {
        for (const auto& f : c.list_files("acme/model", c.resolve_commit(hub::HfSource{"acme", "model", "main"})))
            if (f.path == path) return f;
        ADD_FAILURE() << path << " not listed";
        return {};
    }

    cloud::GcsClient gcs() const {
        cloud::GcsOptions o;
        o.endpoint = base();
        o.anonymous = true;
        o.initial_backoff = 5ms;
        o.max_backoff = 100ms;
        return cloud::GcsClient(client(), nullptr, o);
    }

    ollama::RegistryClient registry(const std::string& model) const {
        ollama::RegistryOptions o;
        o.min_part = o.max_part = 1u << 20;  // 1 MiB parts: several PATCHes and ranged GETs per blob
        o.parts_in_flight = 4;
        o.backoff_unit = 5ms;
        o.part_attempts = 8;
        const std::string authority = base().substr(base().find("://") + 3);
        return ollama::RegistryClient(client(), ollama::parse_model_name(GetParam() + "://" + authority + "/alice/" + model + ":v1"), o);
    }
    static ollama::OllamaModel model_of(const std::string& bytes) {
        ollama::OllamaModel m;
        m.layers.push_back(ollama::OllamaBlob::from_bytes("application/vnd.ollama.image.model", bytes));
        m.config = ollama::OllamaBlob::from_bytes("application/vnd.docker.container.image.v1+json", R"({"model_format":"gguf"})");
        return m;
    }

    test::TempDir tmp;
};

TEST_P(TransferFaults, SmallHubFileInOneStream) {
    auto c = hf();
    const auto f = hub_file(c, "small.safetensors");
    ASSERT_LT(f.size, c.ranged_threshold);
    cut("reset", "/cdn/", "GET", 3, 1);
    const fs::path out = tmp / "small.bin";
    auto r = c.download_to("acme/model", c.resolve_commit(hub::HfSource{"acme", "model", "main"}), f, out);
    EXPECT_GE(dropped(), 1);
    EXPECT_FALSE(r.ranged);
    EXPECT_GE(r.failed_attempts, dropped());
    EXPECT_GE(r.resumed_streams, 1) << "a broken stream must continue where it stopped";
    EXPECT_EQ(r.restarts, 0);
    EXPECT_EQ(sha256_file(out), f.etag());
    EXPECT_EQ(fs::file_size(out), f.size);
}

TEST_P(TransferFaults, LargeHubFileInParallelRanges) {
    auto c = hf();
    c.ranged_threshold = 1u << 20;
    c.chunk_size = 4u << 20;
    c.connections = 4;
    const auto f = hub_file(c, "large.safetensors");
    cut("truncate", "/cdn/", "GET", 6, 2);
    const fs::path out = tmp / "large.bin";
    auto r = c.download_to("acme/model", c.resolve_commit(hub::HfSource{"acme", "model", "main"}), f, out);
    EXPECT_GE(dropped(), 1);
    EXPECT_TRUE(r.ranged);
    EXPECT_GE(r.failed_attempts, dropped());
    EXPECT_GE(r.resumed_streams, 1);
    EXPECT_EQ(r.bytes_fetched, f.size) << "every cut stream continued where it broke: no byte was fetched twice";
    EXPECT_EQ(sha256_file(out), f.etag());
}

TEST_P(TransferFaults, GcsResumableUploadAndRangedDownload) {
    auto g = gcs();
    const std::string data = test::random_bytes(12u << 20, 3);
    test::write_file(tmp / "up.bin", data);
    cloud::UploadOptions uo;
    uo.chunk_size = 2u << 20;
    cut("drop_request", "upload_id=", "PUT", 3, 3);
    auto up = g.upload_file("bkt", "objects/up.bin", tmp / "up.bin", uo);
    ASSERT_TRUE(up.created);
    const int up_drops = dropped();
    EXPECT_GE(up_drops, 1);
    EXPECT_GE(g.last_upload().failed_attempts, up_drops);
    EXPECT_GE(g.last_upload().resumed, 1) << "the upload must continue from the offset the session reports";
    EXPECT_EQ(up.object->size, data.size());
    EXPECT_EQ(up.object->crc32c, crc32c_base64(crc32c(data)));

    emu().reset_stats();
    cut("reset", "alt=media", "GET", 4, 4);
    const fs::path out = tmp / "down.bin";
    g.download_to_file("bkt", "objects/up.bin", out, cloud::DownloadOptions{.threads = 3, .part_size = 2u << 20});
    EXPECT_GE(dropped(), 1);
    EXPECT_TRUE(test::read_file(out) == data);
}

TEST_P(TransferFaults, RegistryPushAndPull) {
    if (!peers().skip.empty()) GTEST_SKIP() << peers().skip;
    const std::string bytes = test::random_bytes(6u << 20, 5);
    const auto m = model_of(bytes);
    const std::string name = "fault-" + GetParam();

    auto pusher = registry(name);
    cut("drop_request", "/blobs/uploads/", "PATCH", 3, 5);
    const auto pushed = pusher.push(m);
    EXPECT_EQ(pushed.uploaded, 2);
    EXPECT_GE(dropped(), 1);
    const auto& ps = pusher.transfer_stats();
    EXPECT_GE(ps.failed_attempts, 1);
    EXPECT_GE(ps.resumed + ps.restarts, 1) << "a broken PATCH must be resumed or its session restarted";

    emu().reset_stats();
    cut("reset", "/blobs/sha256:", "GET", 4, 6);
    ollama::OllamaStore store(tmp / "store");
    auto puller = registry(name);
    const auto pulled = puller.pull(store);
    EXPECT_EQ(pulled.manifest_digest, pushed.manifest_digest);
    EXPECT_GE(dropped(), 1);
    EXPECT_GE(puller.transfer_stats().failed_attempts, 1);
    EXPECT_GE(puller.transfer_stats().resumed, 1);
    EXPECT_TRUE(test::read_file(store.blob_path(m.layers[0].digest)) == bytes);
}

INSTANTIATE_TEST_SUITE_P(BothSchemes, TransferFaults, ::testing::Values("http", "https"),
                         [](const auto& info) { return info.param; });

}  // namespace
