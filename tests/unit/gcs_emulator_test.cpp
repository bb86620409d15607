// GCS + Google auth over the real transport: the Beast client (TLS with the emulator's test CA)
// against a cmf_emulator process, with transport faults from /_emu/faults. A >= 64 MB object
// goes up through a resumable session and comes back through parallel ranged GETs, each
// surviving >= 20 injected faults; a corrupted body is caught by the CRC32C check and refetched.
#include <gtest/gtest.h>

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <map>
#include <random>

#include "cmf/cloud/auth.h"
#include "cmf/cloud/gcs.h"
#include "emulator_process.h"
#include "test_keys.h"
#include "test_support.h"

using namespace cmf;
using namespace cmf::cloud;
using cmf::test::TempDir;

namespace {

constexpr const char* kEmail = "uploader@emu-project.iam.gserviceaccount.com";

using Keys = cmf::test::RsaTestKey;
inline Keys make_keys() { return cmf::test::make_rsa_test_key(); }

Env env_of(std::map<std::string, std::string> m) {
    return [m](const std::string& k) -> std::optional<std::string> {
        auto it = m.find(k);
        return it == m.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
}

std::string random_bytes(std::size_t n, unsigned seed) {
    std::mt19937_64 rng(seed);
    std::string s(n, '\0');
    for (std::size_t i = 0; i + 8 <= n; i += 8) {
        std::uint64_t v = rng();
        std::memcpy(&s[i], &v, 8);
    }
    return s;
}

class GcsEmulator : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        keys_ = new Keys(make_keys());
        nlohmann::json cfg = {
            {"gcs", {{"buckets", {"bkt"}}, {"require_auth", true}}},
            {"google_auth",
             {{"service_accounts", {{{"client_email", kEmail}, {"public_key_pem", keys_->public_pem}}}},
              {"metadata", {{"project_id", "emu-proj"}, {"zone", "us-east1-c"}, {"attributes", {{"factory-config", "{}"}}}}}}}};
        emu_ = new cmf::test::EmulatorProcess(cfg.dump());
    }
    static void TearDownTestSuite() {
        delete emu_;
        delete keys_;
    }
    void SetUp() override {
        emu_->clear_faults();
        emu_->reset_stats();
        http_ = net::make_http_client(emu_->client_options());
        auto key_path = dir_ / "sa.json";
        cmf::test::write_file(key_path, nlohmann::json{{"type", "service_account"},
                                                       {"client_email", kEmail},
                                                       {"private_key", keys_->private_pem},
                                                       {"private_key_id", "k1"},
                                                       {"project_id", "emu-proj"},
                                                       {"token_uri", emu_->https_base() + "/token"}}
                                            .dump());
        creds_ = default_credentials(http_, {std::string(kCloudPlatformScope)},
                                     env_of({{"GOOGLE_APPLICATION_CREDENTIALS", key_path.string()}}));
        GcsOptions o;
        o.endpoint = emu_->https_base();
        o.initial_backoff = std::chrono::milliseconds(20);
        o.max_backoff = std::chrono::milliseconds(200);
        gcs_ = std::make_unique<GcsClient>(http_, creds_.tokens, o);
    }

    static cmf::test::EmulatorProcess* emu_;
    static Keys* keys_;
    TempDir dir_;
    std::shared_ptr<net::HttpClient> http_;
    Credentials creds_;
    std::unique_ptr<GcsClient> gcs_;
};
cmf::test::EmulatorProcess* GcsEmulator::emu_ = nullptr;
Keys* GcsEmulator::keys_ = nullptr;

}  // namespace

TEST_F(GcsEmulator, MarkersListAndDeleteOverTls) {
    EXPECT_TRUE(gcs_->upload("bkt", "status/a.built", "1", UploadOptions{.if_generation_match = 0}).created);
    EXPECT_FALSE(gcs_->upload("bkt", "status/a.built", "2", UploadOptions{.if_generation_match = 0}).created);
    EXPECT_TRUE(gcs_->upload("bkt", "status/b.fail", "x").created);
    auto l = gcs_->list("bkt", "status/", "/", 1);
    ASSERT_EQ(l.items.size(), 2u);
    EXPECT_EQ(l.items[0].name, "status/a.built");
    EXPECT_TRUE(gcs_->remove("bkt", "status/a.built"));
    EXPECT_EQ(gcs_->stat("bkt", "status/a.built"), std::nullopt);
    // Without credentials the emulator refuses, as GCS does.
    GcsClient anon(http_, nullptr, GcsOptions{.endpoint = emu_->https_base(), .anonymous = true});
    EXPECT_THROW(anon.stat("bkt", "status/b.fail"), Error);
}

TEST_F(GcsEmulator, MetadataServerOverPlainHttp) {
    auto env = env_of({{"GCE_METADATA_HOST", "127.0.0.1:" + std::to_string(emu_->http_port())}});
    MetadataServer mds(http_, env);
    EXPECT_EQ(mds.project_id(), "emu-proj");
    EXPECT_EQ(mds.zone(), "us-east1-c");
    EXPECT_EQ(mds.attribute("factory-config"), "{}");
    EXPECT_EQ(mds.attribute("nope"), std::nullopt);
    MetadataTokenSource ts(http_, env);
    EXPECT_EQ(ts.access_token().rfind("ya29.", 0), 0u);
    net::Request r;
    r.url = net::Url::parse(emu_->http_base() + "/computeMetadata/v1/project/project-id");
    EXPECT_EQ(http_->send(r).status, 403);
}

TEST_F(GcsEmulator, LargeResumableUploadAndParallelDownloadSurviveFaults) {
    const std::size_t size = (64u << 20) + 123457;
    std::string data = random_bytes(size, 11);
    cmf::test::write_file(dir_ / "big.bin", data);
    const std::string want_crc = crc32c_base64(crc32c(data));

    // Upload: 5xx on the initiating POST (retried by the client: initiation is idempotent), on
    // chunk PUTs and status queries, and chunks whose connection breaks at a random byte (the
    // session keeps whole 256 KiB units of what arrived; the client must ask and continue there).
    emu_->set_faults(R"({"clear":true,"seed":11,"rules":[
        {"kind":"status","path":"uploadType=resumable&name=","method":"POST","count":2,"status":503},
        {"kind":"drop_request","path":"upload_id=","method":"PUT","count":6,"random":true},
        {"kind":"status","path":"upload_id=","method":"PUT","count":10,"status":503},
        {"kind":"status","path":"upload_id=","method":"PUT","count":4,"status":429,"retry_after":"0"}]})");
    auto up = gcs_->upload_file("bkt", "models/big.gguf", dir_ / "big.bin",
                                UploadOptions{.if_generation_match = 0, .chunk_size = 4u << 20});
    ASSERT_TRUE(up.created);
    EXPECT_EQ(up.object->size, size);
    EXPECT_EQ(up.object->crc32c, want_crc);
    auto s = emu_->stats();
    EXPECT_EQ(s["fired"]["drop_request"], 6) << s.dump();
    EXPECT_EQ(s["fired"]["status"], 16) << s.dump();
    // the client's account: every broken or refused chunk was a failed attempt followed by a
    // status query, and the upload went on from the offset the session reported
    const auto& u = gcs_->last_upload();
    EXPECT_GE(u.failed_attempts, 6 + 1) << "(503s on status queries are retried inside the HTTP client)";
    EXPECT_GE(u.resumed, 6);
    EXPECT_EQ(u.restarts, 0);

    // Download: connections cut at random bytes, 503s, and one corrupted byte.
    emu_->reset_stats();
    emu_->set_faults(R"({"clear":true,"seed":12,"rules":[
        {"kind":"corrupt","path":"alt=media","method":"GET","count":1,"random":true},
        {"kind":"reset","path":"alt=media","method":"GET","count":8,"random":true},
        {"kind":"truncate","path":"alt=media","method":"GET","count":6,"random":true},
        {"kind":"status","path":"alt=media","method":"GET","count":8,"status":503}]})");
    auto info = gcs_->download_to_file("bkt", "models/big.gguf", dir_ / "out.bin",
                                       DownloadOptions{.threads = 4, .part_size = 4u << 20});
    EXPECT_EQ(info.size, size);
    s = emu_->stats();
    EXPECT_EQ(s["fired"]["status"], 8) << s.dump();
    EXPECT_EQ(s["dropped"], 14) << s.dump();
    EXPECT_EQ(s["fired"]["corrupt"].get<int>(), 1) << s.dump();
    const auto& d = gcs_->last_download();
    EXPECT_GE(d.failed_attempts, 14) << "statuses retried inside the HTTP client do not reach the engine";
    EXPECT_GE(d.resumed_streams, 10);
    EXPECT_EQ(d.refetches, 1) << "the corrupted byte must cost one whole refetch";
    EXPECT_GT(d.bytes_fetched, 2 * size - 1);
    std::string got = cmf::test::read_file(dir_ / "out.bin");
    ASSERT_EQ(got.size(), size);
    EXPECT_TRUE(got == data);
    EXPECT_FALSE(std::filesystem::exists(dir_ / "out.bin.cmf-partial"));
}
