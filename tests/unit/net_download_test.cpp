// cmf::net::download_file against the emulator's blob service: parallel ranges under injected
// faults, resume from a partial download, fallback when Range is ignored, sha256 refetch.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "cmf/core/error.h"
#include "cmf/net/download.h"
#include "emulator_process.h"

namespace {

using namespace cmf;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

test::EmulatorProcess& emu() {
    static test::EmulatorProcess e;
    return e;
}

std::string random_bytes(std::size_t n, unsigned seed) {
    std::string s(n, '\0');
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i + 8 <= n; i += 8) {
        auto v = rng();
        std::memcpy(&s[i], &v, 8);
    }
    return s;
}

std::string sha256(const std::string& d) {
    unsigned char md[32];
    unsigned len = 0;
    EVP_Digest(d.data(), d.size(), md, &len, EVP_sha256(), nullptr);
    static const char* x = "0123456789abcdef";
    std::string s;
    for (unsigned i = 0; i < len; ++i) s += {x[md[i] >> 4], x[md[i] & 15]};
    return s;
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

class NetDownload : public ::testing::Test {
protected:
    void SetUp() override {
        emu().clear_faults();
        emu().reset_stats();
        dir_ = emu().dir() / ::testing::UnitTest::GetInstance()->current_test_info()->name();
        fs::create_directories(dir_);
    }
    void TearDown() override { emu().clear_faults(); }
    fs::path dir_;
};

TEST_F(NetDownload, SixtyFourMiBWithEightConnectionsSurvivesInjectedFaults) {
    const std::string blob = random_bytes(64u << 20, 1);
    emu().put_blob("big", blob);
    // >= 20 faults of every transport kind, spread over the first requests of the download
    emu().set_faults(R"({"rules":[
        {"kind":"reset",    "path":"blob/big", "method":"GET", "count":6, "after_bytes":300000},
        {"kind":"status",   "path":"blob/big", "method":"GET", "count":5, "status":503, "retry_after":"0"},
        {"kind":"status",   "path":"blob/big", "method":"GET", "count":2, "status":429},
        {"kind":"truncate", "path":"blob/big", "method":"GET", "count":5, "after_bytes":1000000},
        {"kind":"corrupt",  "path":"blob/big", "method":"GET", "count":4, "after_bytes":4096}
    ]})");
    auto client = net::make_http_client(emu().client_options());
    net::DownloadOptions o;
    o.connections = 8;
    o.chunk_size = 4u << 20;
    o.expected_size = blob.size();
    o.expected_sha256 = sha256(blob);
    int progress_calls = 0;
    bool finished = false;
    o.progress = [&](const net::DownloadProgress& p) {
        ++progress_calls;
        finished = finished || p.finished;
    };
    o.progress_interval = 50ms;
    fs::path out = dir_ / "big.bin";
    auto r = net::download_file(*client, net::Url::parse(emu().https_base() + "/_emu/blob/big"), out, o);
    auto s = emu().stats();
    EXPECT_GE(s["faults_fired"].get<int>(), 20) << s.dump();
    EXPECT_EQ(s["fired"]["corrupt"], 4) << s.dump();
    EXPECT_TRUE(r.ranged);
    EXPECT_EQ(r.size, blob.size());
    EXPECT_EQ(r.sha256, sha256(blob));
    EXPECT_GE(r.refetches, 1) << "corrupted chunks must force a refetch";
    EXPECT_GT(r.chunk_retries, 0);
    EXPECT_TRUE(finished);
    EXPECT_GT(progress_calls, 1);
    EXPECT_TRUE(slurp(out) == blob);
    EXPECT_FALSE(fs::exists(out.string() + ".cmfpart"));
    EXPECT_FALSE(fs::exists(out.string() + ".cmftmp"));
}

TEST_F(NetDownload, CorruptionIsNeverAccepted) {
    const std::string blob = random_bytes(3u << 20, 2);
    emu().put_blob("bad", blob);
    emu().set_faults(R"({"rules":[{"kind":"corrupt","path":"blob/bad","count":-1,"after_bytes":10}]})");
    auto client = net::make_http_client(emu().client_options());
    net::DownloadOptions o;
    o.connections = 2;
    o.chunk_size = 1u << 20;
    o.expected_sha256 = sha256(blob);
    fs::path out = dir_ / "bad.bin";
    try {
        net::download_file(*client, net::Url::parse(emu().https_base() + "/_emu/blob/bad"), out, o);
        FAIL() << "a corrupt download was accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::input);
        EXPECT_NE(std::string(e.what()).find("sha256 mismatch"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(out));
}

TEST_F(NetDownload, ResumesFromAPartialFile) {
    const std::string blob = random_bytes(24u << 20, 3);
    emu().put_blob("resume", blob);
    auto o_client = emu().client_options();
    o_client.retry.max_attempts = 2;
    auto client = net::make_http_client(o_client);
    net::DownloadOptions o;
    o.connections = 2;
    o.chunk_size = 1u << 20;
    o.chunk_attempts = 2;
    o.expected_sha256 = sha256(blob);
    fs::path out = dir_ / "resume.bin";
    auto url = net::Url::parse(emu().https_base() + "/_emu/blob/resume");
    // the probe and 8 chunk GETs succeed, every later GET fails for good: the first run stops
    // with some chunks done
    emu().set_faults(R"({"rules":[{"kind":"status","path":"blob/resume","method":"GET","count":-1,"skip":9,"status":500}]})");
    EXPECT_THROW(net::download_file(*client, url, out, o), Error);
    ASSERT_TRUE(fs::exists(out.string() + ".cmfpart"));
    auto state = nlohmann::json::parse(slurp(out.string() + ".cmfpart"));
    std::size_t done_before = state["done"].size();
    ASSERT_GT(done_before, 0u);
    ASSERT_LT(done_before, 24u);

    emu().clear_faults();
    auto r = net::download_file(*client, url, out, o);
    EXPECT_TRUE(r.resumed);
    EXPECT_EQ(r.sha256, sha256(blob));
    EXPECT_LE(r.bytes_fetched, blob.size() - done_before * (1u << 20) + 1);
    EXPECT_TRUE(slurp(out) == blob);
}

TEST_F(NetDownload, FallsBackToOneStreamWhenRangeIsIgnored) {
    const std::string blob = random_bytes(5u << 20, 4);
    emu().put_blob("norange", blob, /*ignore_range=*/true);
    emu().set_faults(R"({"rules":[{"kind":"reset","path":"blob/norange","count":1,"after_bytes":2000000}]})");
    auto client = net::make_http_client(emu().client_options());
    net::DownloadOptions o;
    o.connections = 8;
    o.chunk_size = 1u << 20;
    o.expected_size = blob.size();
    o.expected_sha256 = sha256(blob);
    fs::path out = dir_ / "norange.bin";
    auto r = net::download_file(*client, net::Url::parse(emu().https_base() + "/_emu/blob/norange"), out, o);
    EXPECT_FALSE(r.ranged);
    EXPECT_EQ(r.sha256, sha256(blob));
    EXPECT_TRUE(slurp(out) == blob);
}

TEST_F(NetDownload, EmptyObjectAndWrongExpectedSize) {
    emu().put_blob("empty", "");
    auto client = net::make_http_client(emu().client_options());
    fs::path out = dir_ / "empty.bin";
    auto r = net::download_file(*client, net::Url::parse(emu().https_base() + "/_emu/blob/empty"), out);
    EXPECT_EQ(r.size, 0u);
    EXPECT_TRUE(fs::exists(out));
    emu().put_blob("sized", random_bytes(1000, 5));
    net::DownloadOptions o;
    o.expected_size = 999;
    EXPECT_THROW(net::download_file(*client, net::Url::parse(emu().https_base() + "/_emu/blob/sized"), dir_ / "s", o),
                 Error);
}

}  // namespace
