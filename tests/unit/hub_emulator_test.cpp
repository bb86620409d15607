// cmf::hub and `cmf fetch` over the real emulator process (TLS, Beast client, CDN redirect to
// another host name), including fault injection on the CDN transfer.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "cmf/cloud/gcs.h"
#include "cmf/hub/gcs_store.h"
#include "cmf/hub/hf.h"
#include "cmf/hub/source_cache.h"
#include "emulator_process.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace cmf;
using namespace cmf::hub;

namespace {

const char* kToken = "hf_FAKE-emu-alice-test-token";

const char* kConfig = R"({"gcs": {"buckets": ["cmf-cache"]}, "hf": {
  "tokens": {"hf_FAKE-emu-alice-test-token": "alice"},
  "tree_page_size": 2,
  "repos": [
    {"id": "google/tiny", "files": {
       "config.json": {"text": "{\"architectures\":[\"Gemma3ForCausalLM\"]}"},
       "tokenizer_config.json": {"text": "{}"},
       "model.safetensors": {"size": 3000000, "seed": 5}}},
    {"id": "google/gated", "gated": "manual", "granted": ["alice"], "files": {
       "config.json": {"text": "{}"}, "model.safetensors": {"size": 1000, "seed": 6}}}
  ]}})";

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

class HubEmulatorTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() { emu = new test::EmulatorProcess(kConfig); }
    static void TearDownTestSuite() {
        delete emu;
        emu = nullptr;
    }
    void SetUp() override { emu->clear_faults(); }

    HfEnv env(const std::string& token = "") {
        HfEnv e;
        e.endpoint = emu->https_base();
        e.token = token;
        e.token_origin = token.empty() ? "" : "HF_TOKEN";
        e.hf_home = tmp.path() / "hf";
        e.hub_cache = tmp.path() / "hf" / "hub";
        return e;
    }

    // cmf with the emulator as the Hub; HF_TOKEN only when given.
    test::RunResult cmf(const std::string& args, const std::string& token = "", const std::string& endpoint = "",
                        const std::string& extra_env = "") {
        std::string cmd = "env -u HF_TOKEN -u HF_HUB_CACHE " + extra_env + " HF_HOME=" + test::shell_quote((tmp.path() / "hf").string()) +
                          " SSL_CERT_FILE=" + test::shell_quote(emu->ca_file()) +
                          " HF_ENDPOINT=" + test::shell_quote(endpoint.empty() ? emu->https_base() : endpoint);
        if (!token.empty()) cmd += " HF_TOKEN=" + test::shell_quote(token);
        return test::run(cmd + " " + test::shell_quote(CMF_BINARY) + " fetch " + args);
    }

    static test::EmulatorProcess* emu;
    test::TempDir tmp;
};
test::EmulatorProcess* HubEmulatorTest::emu = nullptr;

}  // namespace

TEST_F(HubEmulatorTest, ClientDownloadsOverTlsWithParallelRanges) {
    HfClient c(net::make_http_client(emu->client_options()), env());
    c.connections = 4;
    c.ranged_threshold = 1 << 20;
    HfCache cache(env().hub_cache);
    auto r = fetch_snapshot(c, cache, HfSource::parse("hf://google/tiny"), {});
    EXPECT_EQ(r.files.size(), 3u);
    EXPECT_EQ(fs::file_size(r.snapshot / "model.safetensors"), 3000000u);
    EXPECT_EQ(slurp(r.snapshot / "config.json"), "{\"architectures\":[\"Gemma3ForCausalLM\"]}");
    const auto* lfs = &r.files[0];
    for (const auto& f : r.files)
        if (f.path == "model.safetensors") lfs = &f;
    ASSERT_TRUE(lfs->sha256);
    EXPECT_EQ(digest_file(r.snapshot / "model.safetensors").sha256, *lfs->sha256);
    EXPECT_EQ(fs::read_symlink(r.snapshot / "model.safetensors").string(), "../../blobs/" + *lfs->sha256);
}

TEST_F(HubEmulatorTest, CorruptedTransferIsRefetched) {
    emu->set_faults(R"({"rules":[{"kind":"corrupt","path":"^/cdn/","count":1,"after_bytes":1000}]})");
    HfClient c(net::make_http_client(emu->client_options()), env());
    c.connections = 1;  // one streamed GET: the corrupt body must be caught by our own sha256
    HfCache cache(env().hub_cache);
    std::vector<std::string> refetched;
    FetchOptions o;
    o.on_event = [&](const FetchEvent& e) {
        if (e.kind == FetchEvent::Kind::refetching) refetched.push_back(e.path);
    };
    auto r = fetch_snapshot(c, cache, HfSource::parse("hf://google/tiny"), o);
    EXPECT_EQ(refetched, std::vector<std::string>{"model.safetensors"});
    EXPECT_EQ(emu->stats()["fired"].value("corrupt", 0), 1);
}

TEST_F(HubEmulatorTest, CliFetchPrintsSnapshotAndReusesCache) {
    auto r = cmf("hf://google/tiny --quiet");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::string out = r.output;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    EXPECT_NE(out.find((tmp.path() / "hf/hub/models--google--tiny/snapshots/").string()), std::string::npos) << out;
    EXPECT_TRUE(fs::exists(fs::path(out) / "model.safetensors"));
    auto again = cmf("hf://google/tiny");
    ASSERT_EQ(again.exit_code, 0) << again.output;
    EXPECT_NE(again.output.find("3 already cached"), std::string::npos) << again.output;
    auto outdir = cmf("hf://google/tiny --quiet --include '*.json' --out " + test::shell_quote((tmp.path() / "out").string()));
    ASSERT_EQ(outdir.exit_code, 0) << outdir.output;
    EXPECT_TRUE(fs::is_regular_file(tmp.path() / "out/config.json"));
    EXPECT_FALSE(fs::exists(tmp.path() / "out/model.safetensors"));
}

TEST_F(HubEmulatorTest, CliGatedWithoutTokenFailsFastWithLicenseUrl) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = cmf("hf://google/gated");
    const auto dt = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(r.exit_code, 6) << r.output;
    EXPECT_LT(dt, std::chrono::seconds(2));
    EXPECT_NE(r.output.find(emu->https_base() + "/google/gated"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("accept the license"), std::string::npos) << r.output;
    auto chk = cmf("--auth-check hf://google/gated");
    EXPECT_EQ(chk.exit_code, 6) << chk.output;
    auto ok = cmf("--auth-check hf://google/gated", kToken);
    EXPECT_EQ(ok.exit_code, 0) << ok.output;
    EXPECT_EQ(ok.output.find(kToken), std::string::npos);
}

TEST_F(HubEmulatorTest, CliRejectedTokenAndNotFound) {
    const std::string bad = "hf_FAKE-unknown-test-token";
    auto r = cmf("hf://google/tiny", bad);
    EXPECT_EQ(r.exit_code, 6) << r.output;
    EXPECT_NE(r.output.find("the Hugging Face token was rejected"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find(bad), std::string::npos) << r.output;
    auto nf = cmf("hf://google/does-not-exist");
    EXPECT_EQ(nf.exit_code, 3) << nf.output;
    EXPECT_NE(nf.output.find("not found"), std::string::npos) << nf.output;
}

TEST_F(HubEmulatorTest, CliSourceCacheRoundTrip) {
    const std::string store = (tmp.path() / "bucket").string();
    auto first = cmf("hf://google/tiny --cache " + test::shell_quote(store));
    ASSERT_EQ(first.exit_code, 0) << first.output;
    EXPECT_NE(first.output.find("3 copied to it"), std::string::npos) << first.output;
    const std::string commit = slurp(tmp.path() / "hf/hub/models--google--tiny/refs/main");
    ASSERT_EQ(commit.size(), 40u);
    ASSERT_TRUE(fs::exists(fs::path(store) / "hf/google/tiny" / commit / "manifest.json"));
    fs::remove_all(tmp.path() / "hf/hub");
    // The Hub is unreachable (a closed port): the pinned commit comes entirely from the store.
    auto second = cmf("hf://google/tiny@" + commit + " --cache " + test::shell_quote(store), "", "https://127.0.0.1:9");
    ASSERT_EQ(second.exit_code, 0) << second.output;
    EXPECT_NE(second.output.find("3 from the source cache"), std::string::npos) << second.output;
    EXPECT_EQ(fs::file_size(tmp.path() / "hf/hub/models--google--tiny/snapshots" / commit / "model.safetensors"), 3000000u);
}

TEST_F(HubEmulatorTest, CliSourceCacheInGcsBucket) {
    const std::string gcs_env = "STORAGE_EMULATOR_HOST=" + test::shell_quote(emu->https_base());
    const std::string cache = "--cache gs://cmf-cache/factory";
    auto first = cmf("hf://google/tiny " + cache, "", "", gcs_env);
    ASSERT_EQ(first.exit_code, 0) << first.output;
    EXPECT_NE(first.output.find("3 copied to it"), std::string::npos) << first.output;
    const std::string commit = slurp(tmp.path() / "hf/hub/models--google--tiny/refs/main");
    ASSERT_EQ(commit.size(), 40u);

    cloud::GcsOptions go;
    go.endpoint = emu->https_base();
    go.anonymous = true;
    cloud::GcsClient gcs(net::make_http_client(emu->client_options()), nullptr, go);
    GcsObjectStore store(gcs, "cmf-cache");
    const std::string base = "factory/hf/google/tiny/" + commit + "/";
    auto manifest = gcs.read_all("cmf-cache", base + "manifest.json");
    ASSERT_TRUE(manifest);
    EXPECT_EQ(SourceManifest::parse(*manifest, "gcs").files.size(), 3u);
    EXPECT_EQ(store.stat(base + "model.safetensors")->size, 3000000u);
    EXPECT_FALSE(store.put_if_absent(base + "manifest.json", tmp.path() / "hf/hub/models--google--tiny/refs/main"));

    // Hub unreachable: everything from the bucket.
    fs::remove_all(tmp.path() / "hf/hub");
    auto second = cmf("hf://google/tiny@" + commit + " " + cache, "", "https://127.0.0.1:9", gcs_env);
    ASSERT_EQ(second.exit_code, 0) << second.output;
    EXPECT_NE(second.output.find("3 from the source cache"), std::string::npos) << second.output;

    // A replaced object (same name, other bytes) is detected and repaired from the Hub.
    fs::remove_all(tmp.path() / "hf/hub");
    gcs.upload("cmf-cache", base + "config.json", "{\"tampered\":true}");
    auto third = cmf("hf://google/tiny@" + commit + " " + cache, "", "", gcs_env);
    ASSERT_EQ(third.exit_code, 0) << third.output;
    EXPECT_NE(third.output.find("1 bad copies replaced"), std::string::npos) << third.output;
    EXPECT_EQ(*gcs.read_all("cmf-cache", base + "config.json"), "{\"architectures\":[\"Gemma3ForCausalLM\"]}");
}
