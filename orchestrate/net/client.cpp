// The one HttpClient implementation: Boost.Beast over Asio, OpenSSL for TLS.
//
// Sync facade: every connection owns a small io_context; send() runs it on the calling thread,
// one composed operation at a time, each with a deadline on the tcp_stream (Beast's
// http_client_async_ssl pattern). So many threads can send() at once without sharing an
// event loop, and a stalled peer costs one thread one io_timeout, never forever.
//
//   send(req) -> redirect loop -> retry loop -> exchange on a pooled connection
//                                                (resolve, connect, [CONNECT via proxy], TLS)
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "cmf/core/error.h"
#include "cmf/net/http.h"
#include "cmf/net/http_parse.h"

namespace cmf::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// Body bytes move through one buffer of this size per connection, in both directions.
constexpr std::size_t kBodyBuffer = 256 * 1024;
// Error bodies are read for reporting even when the caller streams; more is not useful.
constexpr std::size_t kErrorBodyCap = 1 << 20;
// Response headers larger than this are an attack or a bug (Beast's default is 8 KiB; GCS and
// HF send a few KiB, presigned redirects carry long Location values).
constexpr std::uint32_t kHeaderLimit = 256 * 1024;

// An exchange failure. `permanent` = retrying cannot help (TLS verification, bad proxy);
// `body_started` = bytes already went to the caller's sink, so a retry would duplicate them.
struct Failure : std::runtime_error {
    bool permanent = false;
    bool body_started = false;
    bool reused_connection = false;
    Failure(const std::string& what, bool perm = false) : std::runtime_error(what), permanent(perm) {}
};

bool is_ip_literal(const std::string& host) {
    boost::system::error_code ec;
    asio::ip::make_address(host, ec);
    return !ec;
}

std::string env(const char* a, const char* b = nullptr) {
    if (const char* v = std::getenv(a); v && *v) return v;
    if (b)
        if (const char* v = std::getenv(b); v && *v) return v;
    return {};
}

// Runs the io_context until the one outstanding operation completes.
void run(asio::io_context& ioc) {
    ioc.restart();
    ioc.run();
}

class Connection {
public:
    explicit Connection(std::string key) : key_(std::move(key)) {}

    const std::string& key() const { return key_; }
    bool reused = false;

    // Resolve + connect (+ CONNECT through `proxy`) (+ TLS handshake), under one deadline.
    void open(const Url& url, const Url* proxy, ssl::context* tls_ctx, std::chrono::milliseconds timeout) {
        const Url& hop = proxy ? *proxy : url;
        auto deadline = Clock::now() + timeout;
        tcp::resolver resolver(ioc_);
        asio::steady_timer timer(ioc_);
        boost::system::error_code ec;
        tcp::resolver::results_type results;
        timer.expires_at(deadline);
        timer.async_wait([&](boost::system::error_code e) {
            if (!e) resolver.cancel();
        });
        resolver.async_resolve(hop.host, hop.port, [&](boost::system::error_code e, tcp::resolver::results_type r) {
            ec = e;
            results = std::move(r);
            timer.cancel();
        });
        run(ioc_);
        if (ec == asio::error::operation_aborted) throw Failure("resolving " + hop.host + " timed out");
        if (ec) throw Failure("cannot resolve " + hop.host + ": " + ec.message());

        tcp_.emplace(ioc_);
        tcp_->expires_at(deadline);
        tcp_->async_connect(results, [&](boost::system::error_code e, const tcp::endpoint&) { ec = e; });
        run(ioc_);
        if (ec) throw Failure(std::string(proxy ? "proxy " : "") + "connect to " + hop.authority() + ": " + why(ec));
        tcp_->socket().set_option(tcp::no_delay(true), ec);

        if (proxy) tunnel(url, deadline);
        if (url.scheme != "https") return;

        tls_.emplace(std::move(*tcp_), *tls_ctx);
        tcp_.reset();
        SSL* s = tls_->native_handle();
        if (!is_ip_literal(url.host)) {
            // SNI carries names only (RFC 6066 3: literal IP addresses are not permitted)
            if (!SSL_set_tlsext_host_name(s, url.host.c_str())) throw Failure("TLS: cannot set SNI", true);
            if (!SSL_set1_host(s, url.host.c_str())) throw Failure("TLS: cannot set host check", true);
        } else {
            X509_VERIFY_PARAM* param = SSL_get0_param(s);
            if (!X509_VERIFY_PARAM_set1_ip_asc(param, url.host.c_str())) throw Failure("TLS: bad IP literal", true);
        }
        tls_->set_verify_mode(ssl::verify_peer);
        beast::get_lowest_layer(*tls_).expires_at(deadline);
        tls_->async_handshake(ssl::stream_base::client, [&](boost::system::error_code e) { ec = e; });
        run(ioc_);
        if (ec) {
            long vr = SSL_get_verify_result(s);
            if (vr != X509_V_OK)
                throw Failure(std::string("TLS certificate verification failed (") + X509_verify_cert_error_string(vr) +
                                  "); if this server uses a private CA, point SSL_CERT_FILE at a bundle that has it",
                              true);
            throw Failure("TLS handshake: " + why(ec));
        }
    }

    // The peer closed or sent unsolicited bytes while idle: not reusable.
    bool alive() {
        auto& sock = tls_ ? beast::get_lowest_layer(*tls_).socket() : tcp_->socket();
        pollfd p{sock.native_handle(), POLLIN, 0};
        return ::poll(&p, 1, 0) == 0;
    }

    template <class F>
    void with_stream(F&& f) {
        if (tls_) f(*tls_);
        else f(*tcp_);
    }

    void set_deadline(std::chrono::milliseconds d) {
        if (tls_) beast::get_lowest_layer(*tls_).expires_after(d);
        else tcp_->expires_after(d);
    }

    asio::io_context& ioc() { return ioc_; }
    beast::flat_buffer& buffer() { return buffer_; }

    static std::string why(const boost::system::error_code& ec) {
        if (ec == beast::error::timeout) return "timed out";
        if (ec == http::error::partial_message || ec == http::error::end_of_stream || ec == asio::error::eof ||
            ec == ssl::error::stream_truncated)
            return "connection closed before the response was complete";
        return ec.message();
    }

private:
    void tunnel(const Url& url, Clock::time_point deadline) {
        http::request<http::empty_body> req{http::verb::connect, url.host + ":" + url.port, 11};
        req.set(http::field::host, url.host + ":" + url.port);
        boost::system::error_code ec;
        tcp_->expires_at(deadline);
        http::async_write(*tcp_, req, [&](boost::system::error_code e, std::size_t) { ec = e; });
        run(ioc_);
        if (ec) throw Failure("proxy CONNECT: " + why(ec));
        http::response_parser<http::empty_body> p;
        p.skip(true);  // a 2xx answer to CONNECT has no body: the tunnel starts right after
        tcp_->expires_at(deadline);
        http::async_read(*tcp_, buffer_, p, [&](boost::system::error_code e, std::size_t) { ec = e; });
        run(ioc_);
        if (ec) throw Failure("proxy CONNECT: " + why(ec));
        if (p.get().result_int() != 200)
            throw Failure("proxy refused CONNECT with HTTP " + std::to_string(p.get().result_int()), true);
        if (buffer_.size() != 0) throw Failure("proxy sent bytes before the tunnel opened", true);
    }

    std::string key_;
    asio::io_context ioc_{1};
    std::optional<beast::tcp_stream> tcp_;
    std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
    beast::flat_buffer buffer_;
};

bool default_idempotent(const std::string& m) { return m != "POST" && m != "PATCH"; }

// Fixed per-send() state while redirects rewrite method, URL and headers.
struct Hop {
    std::string method;
    Url url;
    Headers headers;
    bool has_body = true;
};

struct Outcome {
    Response resp;
    bool reusable = false;
};

class BeastClient final : public HttpClient {
public:
    explicit BeastClient(const ClientOptions& o) : opt_(o), tls_(ssl::context::tls_client) {
        SSL_CTX_set_min_proto_version(tls_.native_handle(), TLS1_2_VERSION);
        tls_.set_verify_mode(ssl::verify_peer);
        std::string ca = !opt_.ca_file.empty() ? opt_.ca_file : env("SSL_CERT_FILE");
        boost::system::error_code ec;
        if (!ca.empty()) {
            tls_.load_verify_file(ca, ec);
            if (ec) fail(ErrorKind::usage, "cannot load CA bundle '" + ca + "': " + ec.message());
        } else {
            tls_.set_default_verify_paths(ec);
            if (ec) fail(ErrorKind::network, "cannot load the system CA bundle: " + ec.message());
        }
        std::string proxy = !opt_.https_proxy.empty() ? opt_.https_proxy : env("HTTPS_PROXY", "https_proxy");
        if (!proxy.empty()) {
            if (proxy.find("://") == std::string::npos) proxy = "http://" + proxy;
            proxy_ = Url::parse(proxy);
            if (proxy_->scheme != "http") fail(ErrorKind::usage, "HTTPS_PROXY must be an http:// proxy (CONNECT)");
        }
        no_proxy_ = !opt_.no_proxy.empty() ? opt_.no_proxy : env("NO_PROXY", "no_proxy");
    }

    Response send(const Request& req, const BodySink& sink) override {
        Hop hop{req.method, req.url, req.headers, true};
        for (auto& [name, value] : hop.headers.items)
            if (value.find_first_of("\r\n") != std::string::npos || name.find_first_of("\r\n:") != std::string::npos)
                fail(ErrorKind::usage, "header '" + name.substr(0, 64) + "' contains a line break");
        for (int redirects = 0;; ++redirects) {
            Response r = send_with_retries(req, hop, sink);
            r.final_url = hop.url.str();
            bool redirect = r.status == 301 || r.status == 302 || r.status == 303 || r.status == 307 || r.status == 308;
            auto loc = r.headers.get("location");
            if (!redirect || !req.follow_redirects || !loc) return r;
            if (redirects >= opt_.max_redirects)
                fail(ErrorKind::network, prefix(hop) + ": more than " + std::to_string(opt_.max_redirects) + " redirects");
            Url next;
            try {
                next = resolve_location(hop.url, *loc);
            } catch (const Error&) {
                fail(ErrorKind::network, prefix(hop) + ": unusable redirect Location");
            }
            if (next.scheme != hop.url.scheme && next.scheme == "http" )
                fail(ErrorKind::network, prefix(hop) + ": refusing a redirect from https to http");
            // credentials are for the host they were given to (huggingface_hub and curl do the same)
            if (next.host != hop.url.host || next.port != hop.url.port || next.scheme != hop.url.scheme) {
                hop.headers.erase("authorization");
                hop.headers.erase("cookie");
                hop.headers.erase("proxy-authorization");
            }
            bool to_get = (r.status == 303 && hop.method != "HEAD") ||
                          ((r.status == 301 || r.status == 302) && hop.method == "POST");
            if (to_get) {
                hop.method = "GET";
                hop.has_body = false;
                hop.headers.erase("content-type");
                hop.headers.erase("content-length");
            } else if (hop.has_body && req.source) {
                // 307/308 resend the body: only possible when the source can start over
                if (!req.source->rewind || !req.source->rewind()) return r;
            }
            hop.url = std::move(next);
        }
    }

private:
    std::string prefix(const Hop& h) const { return h.method + " " + redacted(h.url); }

    std::chrono::milliseconds backoff(int attempt) const { return opt_.retry.delay(attempt); }

    Response send_with_retries(const Request& req, const Hop& hop, const BodySink& sink) {
        bool may_retry = req.idempotent.value_or(default_idempotent(hop.method));
        auto start = Clock::now();
        int max_attempts = std::max(1, opt_.retry.max_attempts);
        bool body_sent = false;
        for (int attempt = 1;; ++attempt) {
            if (attempt > 1 && req.source && hop.has_body && body_sent) {
                if (!req.source->rewind || !req.source->rewind()) may_retry = false;
            }
            auto spent = Clock::now() - start;
            auto budget_left = opt_.retry.total_budget - std::chrono::duration_cast<std::chrono::milliseconds>(spent);
            try {
                Outcome o = exchange(req, hop, sink, body_sent);
                if (!RetryPolicy::retryable_status(o.resp.status) || !may_retry || attempt >= max_attempts) return o.resp;
                std::chrono::milliseconds delay = backoff(attempt);
                if (auto ra = o.resp.headers.get("retry-after"))
                    if (auto d = parse_retry_after(*ra)) delay = *d;
                if (delay >= budget_left) return o.resp;
                std::this_thread::sleep_for(delay);
            } catch (const Failure& f) {
                std::string what = prefix(hop) + ": " + f.what();
                if (attempt > 1) what += " (after " + std::to_string(attempt) + " attempts)";
                if (f.permanent || !may_retry || f.body_started || attempt >= max_attempts) fail(ErrorKind::network, what);
                // a pooled connection the server closed while idle: retry at once on a new one
                std::chrono::milliseconds delay = f.reused_connection ? std::chrono::milliseconds(0) : backoff(attempt);
                if (delay >= budget_left) fail(ErrorKind::network, what);
                std::this_thread::sleep_for(delay);
            }
        }
    }

    std::unique_ptr<Connection> acquire(const std::string& key) {
        std::lock_guard lock(mu_);
        auto it = idle_.find(key);
        while (it != idle_.end() && !it->second.empty()) {
            auto c = std::move(it->second.back());
            it->second.pop_back();
            if (c->alive()) {
                c->reused = true;
                return c;
            }
        }
        return nullptr;
    }

    void release(std::unique_ptr<Connection> c) {
        std::lock_guard lock(mu_);
        auto& v = idle_[c->key()];
        if (v.size() < opt_.max_idle_per_host) v.push_back(std::move(c));
    }

    Outcome exchange(const Request& req, const Hop& hop, const BodySink& sink, bool& body_sent) {
        const Url& url = hop.url;
        bool via_proxy = proxy_ && url.scheme == "https" && !no_proxy_matches(no_proxy_, url.host, url.port);
        std::string key = url.scheme + "://" + url.host + ":" + url.port + (via_proxy ? " via proxy" : "");
        auto conn = acquire(key);
        if (!conn) {
            conn = std::make_unique<Connection>(key);
            conn->open(url, via_proxy ? &*proxy_ : nullptr, &tls_, opt_.connect_timeout);
        }
        auto io_timeout = req.timeout.count() > 0 ? req.timeout : opt_.io_timeout;
        Outcome out;
        bool got_response_bytes = false;
        try {
            conn->with_stream([&](auto& stream) {
                write_request(*conn, stream, req, hop, io_timeout, body_sent);
                read_response(*conn, stream, hop, sink, req.on_head, io_timeout, out, got_response_bytes);
            });
        } catch (Failure& f) {
            f.reused_connection = conn->reused && !got_response_bytes && !f.body_started;
            throw;
        }
        if (out.reusable) release(std::move(conn));
        return out;
    }

    template <class Stream>
    void write_request(Connection& c, Stream& stream, const Request& req, const Hop& hop,
                       std::chrono::milliseconds io_timeout, bool& body_sent) {
        http::request<http::buffer_body> m;
        http::verb v = http::string_to_verb(hop.method);
        if (v == http::verb::unknown) m.method_string(hop.method);
        else m.method(v);
        m.target(hop.url.target);
        m.version(11);
        m.set(http::field::host, hop.url.authority());
        if (!hop.headers.has("user-agent")) m.set(http::field::user_agent, opt_.user_agent);
        for (auto& [name, value] : hop.headers.items)
            if (!detail::iequal(name, "host") && !detail::iequal(name, "content-length") &&
                !detail::iequal(name, "transfer-encoding") && !detail::iequal(name, "connection"))
                m.insert(name, value);
        m.keep_alive(true);

        const std::string* mem = nullptr;
        const BodySource* src = nullptr;
        if (hop.has_body) {
            if (req.source) src = &*req.source;
            else if (!req.body.empty() || hop.method == "POST" || hop.method == "PUT" || hop.method == "PATCH")
                mem = &req.body;
        }
        if (mem) m.content_length(mem->size());
        else if (src && src->size) m.content_length(*src->size);
        else if (src) m.chunked(true);

        http::request_serializer<http::buffer_body> sr{m};
        std::vector<char> chunk;
        std::size_t mem_off = 0;
        std::uint64_t src_sent = 0;
        boost::system::error_code ec;
        auto write_some = [&] {
            c.set_deadline(io_timeout);
            http::async_write(stream, sr, [&](boost::system::error_code e, std::size_t) { ec = e; });
            run(c.ioc());
            if (ec == http::error::need_buffer) ec = {};
            if (ec) throw Failure("sending request: " + Connection::why(ec));
        };
        if (!mem && !src) {
            m.body().data = nullptr;
            m.body().more = false;
            write_some();
            return;
        }
        if (src) chunk.resize(kBodyBuffer);
        do {
            std::size_t n = 0;
            if (mem) {
                n = std::min(kBodyBuffer, mem->size() - mem_off);
                m.body().data = n ? const_cast<char*>(mem->data() + mem_off) : nullptr;
                mem_off += n;
            } else {
                if (!src->read) throw Failure("request body source has no reader", true);
                if (!src->size || src_sent < *src->size) {
                    std::size_t cap = kBodyBuffer;
                    if (src->size) cap = static_cast<std::size_t>(std::min<std::uint64_t>(cap, *src->size - src_sent));
                    n = src->read(chunk.data(), cap);
                }
                src_sent += n;
                m.body().data = n ? chunk.data() : nullptr;
                if (n && src_sent) body_sent = true;
            }
            m.body().size = n;
            m.body().more = n != 0;
            if (!n && src && src->size && src_sent != *src->size)
                throw Failure("request body source ended after " + std::to_string(src_sent) + " of " +
                                  std::to_string(*src->size) + " bytes",
                              true);
            write_some();
        } while (!sr.is_done());
    }

    template <class Stream>
    void read_response(Connection& c, Stream& stream, const Hop& hop, const BodySink& sink, const HeadCheck& on_head,
                       std::chrono::milliseconds io_timeout, Outcome& out, bool& got_bytes) {
        http::response_parser<http::buffer_body> p;
        p.body_limit((std::numeric_limits<std::uint64_t>::max)());
        p.header_limit(kHeaderLimit);
        if (hop.method == "HEAD") p.skip(true);
        boost::system::error_code ec;
        std::size_t n_read = 0;
        c.set_deadline(io_timeout);
        http::async_read_header(stream, c.buffer(), p, [&](boost::system::error_code e, std::size_t n) {
            ec = e;
            n_read = n;
        });
        run(c.ioc());
        if (n_read || c.buffer().size()) got_bytes = true;
        if (ec) throw Failure("reading response: " + Connection::why(ec));
        auto& msg = p.get();
        out.resp.status = msg.result_int();
        for (auto& f : msg) out.resp.headers.add(std::string(f.name_string()), std::string(f.value()));

        bool stream_body = sink && out.resp.status >= 200 && out.resp.status < 300;
        // (redirects are 3xx: the head check only ever sees the final answer)
        if (stream_body && on_head && !on_head(out.resp.status, out.resp.headers)) {
            out.resp.body_refused = true;
            out.reusable = p.is_done() && msg.keep_alive();  // an unread body makes the connection useless
            return;
        }
        std::size_t cap = sink ? kErrorBodyCap : std::numeric_limits<std::size_t>::max();
        std::vector<char> buf(kBodyBuffer);
        bool aborted = false, overflow = false, started = false;
        while (!p.is_done()) {
            msg.body().data = buf.data();
            msg.body().size = buf.size();
            c.set_deadline(io_timeout);
            http::async_read(stream, c.buffer(), p, [&](boost::system::error_code e, std::size_t) { ec = e; });
            run(c.ioc());
            if (ec == http::error::need_buffer) ec = {};
            std::size_t n = buf.size() - msg.body().size;
            if (n) {
                if (stream_body) {
                    started = true;
                    if (!sink(buf.data(), n)) {
                        aborted = true;
                        break;
                    }
                } else if (out.resp.body.size() + n <= cap) {
                    out.resp.body.append(buf.data(), n);
                } else {
                    overflow = true;
                    break;
                }
            }
            if (ec) {
                Failure f("reading response body: " + Connection::why(ec));
                f.body_started = started;
                throw f;
            }
        }
        if (aborted) {
            Failure f("transfer aborted by the receiver", true);
            f.body_started = true;
            throw f;
        }
        out.reusable = !overflow && p.is_done() && msg.keep_alive();
    }

    ClientOptions opt_;
    ssl::context tls_;
    std::optional<Url> proxy_;
    std::string no_proxy_;
    std::mutex mu_;
    std::map<std::string, std::vector<std::unique_ptr<Connection>>> idle_;
};

}  // namespace

std::shared_ptr<HttpClient> make_http_client(const ClientOptions& options) {
    return std::make_shared<BeastClient>(options);
}

}  // namespace cmf::net
