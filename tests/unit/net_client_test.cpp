// cmf::net client against the emulator (tests/emulator): TLS verification, redirects, retry
// policy, deadlines, keep-alive, streaming both ways, HTTPS_PROXY via CONNECT.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <random>
#include <thread>

#include "cmf/core/error.h"
#include "cmf/net/http.h"
#include "cmf/net/http_parse.h"
#include "emulator_process.h"

namespace {

using namespace cmf;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

test::EmulatorProcess& emu() {
    static test::EmulatorProcess e;  // one emulator for the suite: start-up generates keys
    return e;
}

net::Request get(const std::string& url) {
    net::Request r;
    r.url = net::Url::parse(url);
    return r;
}

nlohmann::json echo(const net::Response& r) { return nlohmann::json::parse(r.body); }

class NetClient : public ::testing::Test {
protected:
    void SetUp() override {
        emu().clear_faults();
        emu().reset_stats();
    }
    void TearDown() override { emu().clear_faults(); }
};

TEST_F(NetClient, TlsVerifiesAgainstTheTestCa) {
    auto c = net::make_http_client(emu().client_options());
    auto r = c->send(get(emu().https_base() + "/_emu/echo"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(echo(r)["tls"], true);
    auto l = c->send(get(emu().https_base_localhost() + "/_emu/echo"));
    EXPECT_EQ(l.status, 200);
    EXPECT_EQ(echo(l)["host"], "localhost");
}

TEST_F(NetClient, TlsWithoutTheCaFailsClearlyAndFast) {
    auto o = emu().client_options();
    o.ca_file.clear();  // the system bundle: it does not hold the emulator's test CA
    ::unsetenv("SSL_CERT_FILE");
    auto c = net::make_http_client(o);
    auto start = Clock::now();
    try {
        c->send(get(emu().https_base() + "/_emu/echo?sig=SECRET-SIGNATURE"));
        FAIL() << "TLS succeeded without the CA";
    } catch (const Error& e) {
        std::string m = e.what();
        EXPECT_EQ(e.kind(), ErrorKind::network);
        EXPECT_NE(m.find("certificate verification failed"), std::string::npos) << m;
        EXPECT_NE(m.find("GET 127.0.0.1:"), std::string::npos) << m;
        EXPECT_EQ(m.find("SECRET"), std::string::npos) << "query string leaked: " << m;
    }
    EXPECT_LT(Clock::now() - start, 2s) << "a verification failure must not be retried";
}

TEST_F(NetClient, PlainHttpPort) {
    auto c = net::make_http_client(emu().client_options());
    auto r = c->send(get(emu().http_base() + "/_emu/echo"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(echo(r)["tls"], false);
}

TEST_F(NetClient, CrossHostRedirectDropsAuthorization) {
    auto c = net::make_http_client(emu().client_options());
    auto r = get(emu().https_base() + "/_emu/redirect?status=302&to=" + emu().https_base_localhost() + "/_emu/echo");
    r.headers.set("Authorization", "Bearer tok");
    r.headers.set("X-Keep", "1");
    auto resp = c->send(r);
    ASSERT_EQ(resp.status, 200);
    auto j = echo(resp);
    EXPECT_EQ(j["host"], "localhost");
    EXPECT_FALSE(j["headers"].contains("authorization"));
    EXPECT_EQ(j["headers"]["x-keep"], "1");
    EXPECT_EQ(resp.final_url, emu().https_base_localhost() + "/_emu/echo");

    // same host: the credential follows
    auto same = get(emu().https_base() + "/_emu/redirect?status=307&to=/_emu/echo");
    same.headers.set("Authorization", "Bearer tok");
    auto j2 = echo(c->send(same));
    EXPECT_EQ(j2["headers"]["authorization"], "Bearer tok");
}

TEST_F(NetClient, RedirectStatusesAndMethods) {
    auto c = net::make_http_client(emu().client_options());
    for (int status : {301, 302, 303, 307, 308}) {
        net::Request r = get(emu().https_base() + "/_emu/redirect?status=" + std::to_string(status) + "&to=/_emu/echo");
        r.method = "POST";
        r.body = "payload";
        r.idempotent = true;
        auto j = echo(c->send(r));
        bool keeps = status == 307 || status == 308;
        EXPECT_EQ(j["method"], keeps ? "POST" : "GET") << status;
        EXPECT_EQ(j["body_size"], keeps ? 7 : 0) << status;
    }
    net::Request nf = get(emu().https_base() + "/_emu/redirect?status=302&to=/_emu/echo");
    nf.follow_redirects = false;
    auto r = c->send(nf);
    EXPECT_EQ(r.status, 302);
    EXPECT_EQ(r.headers.get("location"), "/_emu/echo");
}

TEST_F(NetClient, RetriesServiceUnavailableHonoringRetryAfterSeconds) {
    auto c = net::make_http_client(emu().client_options());
    emu().set_faults(R"({"rules":[{"kind":"status","path":"^/_emu/echo","status":503,"count":2,"retry_after":"1"}]})");
    auto start = Clock::now();
    auto r = c->send(get(emu().https_base() + "/_emu/echo"));
    EXPECT_EQ(r.status, 200);
    EXPECT_GE(Clock::now() - start, 1900ms) << "Retry-After: 1 twice";
    EXPECT_EQ(emu().stats()["fired"]["status"], 2);
}

TEST_F(NetClient, RetriesTooManyRequestsHonoringRetryAfterDate) {
    auto c = net::make_http_client(emu().client_options());
    std::time_t t = std::time(nullptr) + 2;
    char date[64];
    std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", std::gmtime(&t));
    emu().set_faults(nlohmann::json{{"rules", {{{"kind", "status"}, {"path", "echo"}, {"status", 429}, {"retry_after", date}}}}}.dump());
    auto start = Clock::now();
    auto r = c->send(get(emu().https_base() + "/_emu/echo"));
    EXPECT_EQ(r.status, 200);
    EXPECT_GE(Clock::now() - start, 900ms);
}

TEST_F(NetClient, GivesUpAfterMaxAttemptsAndReturnsTheStatus) {
    auto o = emu().client_options();
    o.retry.max_attempts = 3;
    auto c = net::make_http_client(o);
    emu().set_faults(R"({"rules":[{"kind":"status","path":"echo","status":500,"count":-1}]})");
    auto before = emu().stats()["fired"].value("status", 0);
    auto r = c->send(get(emu().https_base() + "/_emu/echo"));
    EXPECT_EQ(r.status, 500);
    EXPECT_EQ(emu().stats()["fired"]["status"].get<int>() - before, 3);
}

TEST_F(NetClient, NeverRetriesPostUnlessIdempotent) {
    auto c = net::make_http_client(emu().client_options());
    emu().set_faults(R"({"rules":[{"kind":"status","path":"echo","status":503,"count":1}]})");
    net::Request p = get(emu().https_base() + "/_emu/echo");
    p.method = "POST";
    p.body = "{}";
    EXPECT_EQ(c->send(p).status, 503);
    emu().set_faults(R"({"rules":[{"kind":"status","path":"echo","status":503,"count":1}]})");
    p.idempotent = true;  // e.g. a GCS request carrying ifGenerationMatch
    EXPECT_EQ(c->send(p).status, 200);
    // a connection reset is not retried for POST either
    emu().set_faults(R"({"rules":[{"kind":"reset","path":"echo","count":1,"after_bytes":3}]})");
    p.idempotent.reset();
    EXPECT_THROW(c->send(p), Error);
}

TEST_F(NetClient, DeadlineOnAStalledServer) {
    auto o = emu().client_options();
    o.io_timeout = 500ms;
    o.retry.max_attempts = 2;
    auto c = net::make_http_client(o);
    emu().set_faults(R"({"rules":[{"kind":"stall","path":"echo","count":2,"after_bytes":5,"seconds":4}]})");
    auto start = Clock::now();
    try {
        c->send(get(emu().https_base() + "/_emu/echo?token=SECRET"));
        FAIL() << "a stalled body must hit the deadline";
    } catch (const Error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("timed out"), std::string::npos) << m;
        EXPECT_NE(m.find("after 2 attempts"), std::string::npos) << m;
        EXPECT_EQ(m.find("SECRET"), std::string::npos) << m;
    }
    EXPECT_LT(Clock::now() - start, 3s);
}

TEST_F(NetClient, ResetAndTruncatedBodiesAreRetriedWhenBuffered) {
    auto c = net::make_http_client(emu().client_options());
    std::string blob(3 << 20, '\0');
    std::mt19937 rng(7);
    for (auto& ch : blob) ch = static_cast<char>(rng());
    emu().put_blob("retry", blob);
    emu().set_faults(R"({"rules":[{"kind":"reset","path":"blob/retry","count":1,"after_bytes":100000},
                                  {"kind":"truncate","path":"blob/retry","count":1,"after_bytes":2000000}]})");
    // both rules match the first GET; the reset cuts first, so the truncate is not applied there
    // and goes back to its rule: the second GET is truncated, the third succeeds
    const int before = emu().stats()["requests"].get<int>();
    auto r = c->send(get(emu().https_base() + "/_emu/blob/retry"));
    ASSERT_EQ(r.status, 200);
    EXPECT_TRUE(r.body == blob);
    auto s = emu().stats();
    EXPECT_EQ(s["fired"]["reset"], 1);
    EXPECT_EQ(s["fired"]["truncate"], 1);
    EXPECT_EQ(s["dropped"], 2);
    EXPECT_EQ(s["requests"].get<int>() - before, 3 + 1) << "each cut must cost the client one more GET (+1: this stats call)";
}

TEST_F(NetClient, KeepAliveReusesOneConnection) {
    auto c = net::make_http_client(emu().client_options());
    c->send(get(emu().https_base() + "/_emu/echo"));
    auto before = emu().stats()["connections"].get<int>();
    for (int i = 0; i < 10; ++i) EXPECT_EQ(c->send(get(emu().https_base() + "/_emu/echo")).status, 200);
    EXPECT_EQ(emu().stats()["connections"].get<int>() - before, 0);
}

TEST_F(NetClient, ManyThreadsShareOneClient) {
    auto c = net::make_http_client(emu().client_options());
    std::atomic<int> ok{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; ++t)
        ts.emplace_back([&] {
            for (int i = 0; i < 25; ++i)
                if (c->send(get(emu().https_base() + "/_emu/echo")).status == 200) ++ok;
        });
    for (auto& t : ts) t.join();
    EXPECT_EQ(ok, 200);
}

TEST_F(NetClient, StreamsUploadAndDownload) {
    auto c = net::make_http_client(emu().client_options());
    const std::size_t n = 5'000'003;
    std::size_t pos = 0;
    auto byte_at = [](std::size_t i) { return static_cast<char>((i * 131 + 7) % 251); };
    net::Request put = get(emu().https_base() + "/_emu/blob/streamed");
    put.method = "PUT";
    put.source = net::BodySource{std::nullopt,  // unknown size: chunked transfer coding
                                 [&](char* buf, std::size_t cap) {
                                     std::size_t k = std::min(cap, n - pos);
                                     for (std::size_t i = 0; i < k; ++i) buf[i] = byte_at(pos + i);
                                     pos += k;
                                     return k;
                                 },
                                 [&] {
                                     pos = 0;
                                     return true;
                                 }};
    auto pr = c->send(put);
    ASSERT_EQ(pr.status, 200) << pr.body;
    std::size_t got = 0, bad = 0, calls = 0;
    auto r = c->send(get(emu().https_base() + "/_emu/blob/streamed"), [&](const char* d, std::size_t len) {
        for (std::size_t i = 0; i < len; ++i) bad += d[i] != byte_at(got + i);
        got += len;
        ++calls;
        return true;
    });
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(r.body.empty());
    EXPECT_EQ(got, n);
    EXPECT_EQ(bad, 0u);
    EXPECT_GT(calls, 1u);
    // error bodies are buffered even with a sink
    auto nf = c->send(get(emu().https_base() + "/_emu/blob/absent"), [](const char*, std::size_t) { return true; });
    EXPECT_EQ(nf.status, 404);
    EXPECT_FALSE(nf.body.empty());
}

// A minimal CONNECT proxy: one thread per tunnel, counts the tunnels it opened.
class TinyProxy {
public:
    TinyProxy() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
        ::listen(fd_, 16);
        socklen_t len = sizeof a;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { loop(); });
    }
    ~TinyProxy() {
        stop_ = true;
        ::shutdown(fd_, SHUT_RDWR);
        ::close(fd_);
        thread_.join();
        for (auto& t : tunnels_) t.join();
    }
    int port() const { return port_; }
    int tunnels() const { return tunnels_opened_; }
    std::string last_target() {
        std::lock_guard l(mu_);
        return last_;
    }

private:
    void loop() {
        while (!stop_) {
            int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) return;
            tunnels_.emplace_back([this, c] { tunnel(c); });
        }
    }
    void tunnel(int c) {
        std::string head;
        char ch;
        while (head.find("\r\n\r\n") == std::string::npos && ::read(c, &ch, 1) == 1) head.push_back(ch);
        auto sp = head.find(' '), sp2 = head.find(' ', sp + 1);
        std::string target = head.substr(sp + 1, sp2 - sp - 1);
        {
            std::lock_guard l(mu_);
            last_ = head.substr(0, sp) + " " + target;
        }
        int port = std::stoi(target.substr(target.rfind(':') + 1));
        int u = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<uint16_t>(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(u, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            ::close(c);
            return;
        }
        ++tunnels_opened_;
        std::string ok = "HTTP/1.1 200 Connection established\r\n\r\n";
        (void)!::write(c, ok.data(), ok.size());
        pollfd p[2] = {{c, POLLIN, 0}, {u, POLLIN, 0}};
        char buf[65536];
        while (!stop_ && ::poll(p, 2, 200) >= 0) {
            bool done = false;
            for (int i = 0; i < 2; ++i)
                if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                    ssize_t n = ::read(p[i].fd, buf, sizeof buf);
                    if (n <= 0 || ::write(p[1 - i].fd, buf, static_cast<size_t>(n)) != n) done = true;
                }
            if (done) break;
        }
        ::close(c);
        ::close(u);
    }
    int fd_ = -1, port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> tunnels_opened_{0};
    std::thread thread_;
    std::vector<std::thread> tunnels_;
    std::mutex mu_;
    std::string last_;
};

TEST_F(NetClient, HttpsProxyViaConnectAndNoProxy) {
    TinyProxy proxy;
    auto o = emu().client_options();
    o.https_proxy = "http://127.0.0.1:" + std::to_string(proxy.port());
    o.no_proxy = "example.invalid";
    auto c = net::make_http_client(o);
    auto r = c->send(get(emu().https_base_localhost() + "/_emu/echo"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(echo(r)["host"], "localhost");  // TLS to the origin through the tunnel, SNI + name check
    EXPECT_EQ(proxy.tunnels(), 1);
    EXPECT_EQ(proxy.last_target(), "CONNECT localhost:" + std::to_string(emu().https_port()));

    o.no_proxy = "localhost,127.0.0.1";
    auto direct = net::make_http_client(o);
    EXPECT_EQ(direct->send(get(emu().https_base_localhost() + "/_emu/echo")).status, 200);
    EXPECT_EQ(proxy.tunnels(), 1) << "NO_PROXY host went through the proxy";
}

TEST(NetParse, RetryAfterAndContentRange) {
    auto now = std::chrono::system_clock::from_time_t(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT
    EXPECT_EQ(net::parse_retry_after("7", now), 7000ms);
    EXPECT_EQ(net::parse_retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now), 3000ms);
    EXPECT_EQ(net::parse_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now), 10000ms);
    EXPECT_EQ(net::parse_retry_after("Sun Nov  6 08:49:37 1994", now), 0ms);
    EXPECT_FALSE(net::parse_retry_after("soon", now));
    EXPECT_FALSE(net::parse_retry_after("-1", now));
    auto cr = net::parse_content_range("bytes 10-19/100");
    ASSERT_TRUE(cr);
    EXPECT_EQ(cr->first, 10u);
    EXPECT_EQ(cr->last, 19u);
    EXPECT_EQ(cr->total, 100u);
    EXPECT_FALSE(net::parse_content_range("bytes 10-100/100"));
    EXPECT_FALSE(net::parse_content_range("bytes */100"));
    EXPECT_TRUE(net::no_proxy_matches("foo, .example.com", "a.example.com", "443"));
    EXPECT_TRUE(net::no_proxy_matches("example.com:443", "example.com", "443"));
    EXPECT_FALSE(net::no_proxy_matches("example.com:80", "example.com", "443"));
    EXPECT_FALSE(net::no_proxy_matches("ample.com", "example.com", "443"));
    auto base = net::Url::parse("https://h.example/a/b?x=1");
    EXPECT_EQ(net::resolve_location(base, "c").str(), "https://h.example/a/c");
    EXPECT_EQ(net::resolve_location(base, "//cdn.example/z").str(), "https://cdn.example/z");
    EXPECT_EQ(net::resolve_location(base, "/r?q").str(), "https://h.example/r?q");
}

}  // namespace
