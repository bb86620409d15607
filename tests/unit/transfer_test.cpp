// The transfer engine (cmf/net/transfer.h) against the emulator's blob service: parallel ranges
// under injected faults (connections cut at random offsets: every stream must continue where it
// broke), resume from an earlier run's partial file, fallback when Range is ignored, checksum
// refetch, short and oversized answers. Each fault test checks the emulator's count of faults
// it APPLIED and the client's own evidence (failed attempts, resumed streams, bytes fetched).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "cmf/core/error.h"
#include "cmf/net/transfer.h"
#include "emulator_process.h"
#include "test_bytes.h"
#include "test_support.h"

namespace {

using namespace cmf;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

test::EmulatorProcess& emu() {
    static test::EmulatorProcess e;
    return e;
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

net::TransferResult get(const std::string& name, const fs::path& out, const net::TransferOptions& o,
                        const net::ClientOptions& co = emu().client_options()) {
    auto client = net::make_http_client(co);
    return net::download(*client, net::url_source(net::Url::parse(emu().https_base() + "/_emu/blob/" + name)), out, o);
}

TEST_F(NetDownload, SixtyFourMiBWithEightConnectionsSurvivesInjectedFaults) {
    const std::string blob = test::random_bytes(64u << 20, 1);
    emu().put_blob("big", blob);
    // connections cut at random offsets inside the 4 MiB answers, plus transient statuses and
    // corrupted bytes (which only the final sha256 can catch)
    emu().set_faults(R"({"seed": 7, "rules":[
        {"kind":"reset",    "path":"blob/big", "method":"GET", "count":8, "random":true},
        {"kind":"status",   "path":"blob/big", "method":"GET", "count":5, "status":503, "retry_after":"0"},
        {"kind":"status",   "path":"blob/big", "method":"GET", "count":2, "status":429},
        {"kind":"truncate", "path":"blob/big", "method":"GET", "count":8, "random":true},
        {"kind":"corrupt",  "path":"blob/big", "method":"GET", "count":3, "random":true}
    ]})");
    net::TransferOptions o;
    o.connections = 8;
    o.chunk_size = 4u << 20;
    o.expected_size = blob.size();
    o.checksums = {net::Checksum::sha256(sha256_hex(blob))};
    o.verify_attempts = 3;
    o.retry.initial_backoff = 10ms;
    int progress_calls = 0;
    bool finished = false;
    o.progress = [&](const net::TransferProgress& p) {
        ++progress_calls;
        finished = finished || p.finished;
    };
    o.progress_interval = 50ms;
    fs::path out = dir_ / "big.bin";
    auto r = get("big", out, o);
    auto s = emu().stats();
    EXPECT_EQ(s["fired"]["reset"], 8) << s.dump();
    EXPECT_EQ(s["fired"]["truncate"], 8) << s.dump();
    EXPECT_EQ(s["fired"]["corrupt"], 3) << s.dump();
    EXPECT_EQ(s["dropped"], 16) << s.dump();
    EXPECT_TRUE(r.ranged);
    EXPECT_EQ(r.size, blob.size());
    EXPECT_EQ(r.sha256, sha256_hex(blob));
    EXPECT_GE(r.refetches, 1) << "corrupted chunks must force a refetch";
    // the client's own account: every cut was a failed attempt, and every stream cut after its
    // first byte continued from there instead of starting over
    EXPECT_GE(r.failed_attempts, 16);  // (the 503/429 answers are retried inside the HTTP client)
    EXPECT_GE(r.resumed_streams, 10);
    EXPECT_EQ(r.restarts, 0);
    EXPECT_GT(r.bytes_fetched, blob.size());
    EXPECT_TRUE(finished);
    EXPECT_GT(progress_calls, 1);
    EXPECT_TRUE(test::read_file(out) == blob);
    EXPECT_FALSE(fs::exists(net::partial_path(out)));
    EXPECT_FALSE(fs::exists(net::state_path(out)));
}

// One stream (a Hub file under the ranged threshold) cut again and again: it never starts over.
TEST_F(NetDownload, OneStreamCutManyTimesContinuesEachTime) {
    const std::string blob = test::random_bytes(10'000'000, 11);
    emu().put_blob("one", blob);
    emu().set_faults(R"({"seed": 3, "rules":[{"kind":"reset","path":"blob/one","method":"GET","count":5,"random":true}]})");
    net::TransferOptions o;
    o.connections = 1;
    o.expected_size = blob.size();
    o.checksums = {net::Checksum::sha256(sha256_hex(blob))};
    o.retry.initial_backoff = 10ms;
    fs::path out = dir_ / "one.bin";
    auto r = get("one", out, o);
    EXPECT_EQ(emu().stats()["fired"]["reset"], 5);
    EXPECT_FALSE(r.ranged);
    EXPECT_EQ(r.failed_attempts, 5);
    EXPECT_EQ(r.resumed_streams, 5);
    EXPECT_EQ(r.restarts, 0);
    EXPECT_LT(r.bytes_fetched, 2 * blob.size());
    EXPECT_TRUE(test::read_file(out) == blob);
}

TEST_F(NetDownload, CorruptionIsNeverAccepted) {
    const std::string blob = test::random_bytes(3u << 20, 2);
    emu().put_blob("bad", blob);
    emu().set_faults(R"({"rules":[{"kind":"corrupt","path":"blob/bad","count":-1,"after_bytes":10}]})");
    net::TransferOptions o;
    o.connections = 2;
    o.chunk_size = 1u << 20;
    o.checksums = {net::Checksum::sha256(sha256_hex(blob))};
    fs::path out = dir_ / "bad.bin";
    try {
        get("bad", out, o);
        FAIL() << "a corrupt download was accepted";
    } catch (const net::ChecksumMismatch& e) {
        EXPECT_NE(std::string(e.what()).find("sha256 mismatch"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(out));
    EXPECT_GE(emu().stats()["fired"]["corrupt"].get<int>(), 2);
}

TEST_F(NetDownload, ResumesFromAPartialFile) {
    const std::string blob = test::random_bytes(24u << 20, 3);
    emu().put_blob("resume", blob);
    auto co = emu().client_options();
    co.retry.max_attempts = 2;
    co.retry.initial_backoff = 5ms;
    net::TransferOptions o;
    o.connections = 2;
    o.chunk_size = 1u << 20;
    o.retry.max_attempts = 2;
    o.retry.initial_backoff = 5ms;
    o.checksums = {net::Checksum::sha256(sha256_hex(blob))};
    fs::path out = dir_ / "resume.bin";
    // the first 9 GETs succeed, every later one fails for good: the first run stops with some
    // chunks on disk and says so in its sidecar
    emu().set_faults(R"({"rules":[{"kind":"status","path":"blob/resume","method":"GET","count":-1,"skip":9,"status":500}]})");
    EXPECT_THROW(get("resume", out, o, co), Error);
    ASSERT_TRUE(fs::exists(net::partial_path(out)));
    ASSERT_TRUE(fs::exists(net::state_path(out)));
    auto state = nlohmann::json::parse(test::read_file(net::state_path(out)));
    std::uint64_t on_disk = 0;
    for (auto& [k, v] : state["got"].items()) on_disk += v.get<std::uint64_t>();
    ASSERT_GT(on_disk, 0u);
    ASSERT_LT(on_disk, blob.size());

    emu().clear_faults();
    auto r = get("resume", out, o, co);
    EXPECT_TRUE(r.resumed);
    EXPECT_EQ(r.sha256, sha256_hex(blob));
    EXPECT_EQ(r.bytes_fetched, blob.size() - on_disk);
    EXPECT_TRUE(test::read_file(out) == blob);
}

TEST_F(NetDownload, FallsBackToOneStreamWhenRangeIsIgnored) {
    const std::string blob = test::random_bytes(5u << 20, 4);
    emu().put_blob("norange", blob, /*ignore_range=*/true);
    emu().set_faults(R"({"rules":[{"kind":"reset","path":"blob/norange","count":1,"after_bytes":2000000}]})");
    net::TransferOptions o;
    o.connections = 8;
    o.chunk_size = 1u << 20;
    o.expected_size = blob.size();
    o.checksums = {net::Checksum::sha256(sha256_hex(blob))};
    fs::path out = dir_ / "norange.bin";
    auto r = get("norange", out, o);
    EXPECT_EQ(emu().stats()["fired"]["reset"], 1);
    EXPECT_FALSE(r.ranged);
    EXPECT_GE(r.restarts, 1) << "without Range a broken stream can only start over";
    EXPECT_EQ(r.sha256, sha256_hex(blob));
    EXPECT_TRUE(test::read_file(out) == blob);
}

TEST_F(NetDownload, EmptyObjectAndWrongExpectedSize) {
    emu().put_blob("empty", "");
    fs::path out = dir_ / "empty.bin";
    auto r = get("empty", out, {});
    EXPECT_EQ(r.size, 0u);
    EXPECT_TRUE(fs::exists(out));
    emu().put_blob("sized", test::random_bytes(1000, 5));
    net::TransferOptions o;
    o.expected_size = 999;
    EXPECT_THROW(get("sized", dir_ / "s", o), Error);
    EXPECT_FALSE(fs::exists(dir_ / "s"));
}

}  // namespace
