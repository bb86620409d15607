// Emulator transport: test PKI, two listeners, one thread per connection, faults on the way out.
//
// Blocking I/O on purpose: a fault such as "stall for 5 s" or "10 MB/s per connection" is then
// a sleep in that connection's thread and cannot disturb other connections. Responses are
// serialized by hand (status line + headers + body slices) so the body can be cut, paced,
// corrupted or reset at an exact byte.
#include "server.h"

#include "cmf/net/http_parse.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <set>
#include <stdexcept>
#include <thread>

namespace cmf::emu {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

// Largest request body accepted (PUT of a big blob or a GCS upload chunk).
constexpr std::uint64_t kMaxRequestBody = 4ull << 30;
// Body bytes per write when no bandwidth cap applies.
constexpr std::size_t kSlice = 256 * 1024;
// Pacing granularity of the bandwidth cap.
constexpr double kPaceSeconds = 0.02;

[[noreturn]] void ossl_fail(const char* what) {
    throw std::runtime_error(std::string("test PKI: ") + what);
}

struct Pki {
    EVP_PKEY* key = nullptr;
    X509* cert = nullptr;
    ~Pki() {
        EVP_PKEY_free(key);
        X509_free(cert);
    }
};

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
    if (!ext || !X509_add_ext(cert, ext, -1)) ossl_fail("extension");
    X509_EXTENSION_free(ext);
}

// EC P-256 key + certificate valid from an hour ago for 30 days; self-signed when issuer is null.
void make_cert(Pki& out, const char* cn, const Pki* issuer, long serial) {
    out.key = EVP_EC_gen("P-256");
    if (!out.key) ossl_fail("key generation");
    out.cert = X509_new();
    X509_set_version(out.cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(out.cert), serial);
    X509_gmtime_adj(X509_getm_notBefore(out.cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(out.cert), 30L * 24 * 3600);
    X509_set_pubkey(out.cert, out.key);
    X509_NAME* name = X509_get_subject_name(out.cert);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("cmf emulator"), -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
    X509* iss = issuer ? issuer->cert : out.cert;
    X509_set_issuer_name(out.cert, X509_get_subject_name(iss));
    if (!issuer) {
        add_ext(out.cert, iss, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(out.cert, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
        add_ext(out.cert, iss, NID_subject_key_identifier, "hash");
    } else {
        add_ext(out.cert, iss, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(out.cert, iss, NID_key_usage, "critical,digitalSignature");
        add_ext(out.cert, iss, NID_ext_key_usage, "serverAuth");
        add_ext(out.cert, iss, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
        add_ext(out.cert, iss, NID_authority_key_identifier, "keyid");
    }
    if (!X509_sign(out.cert, issuer ? issuer->key : out.key, EVP_sha256())) ossl_fail("signing");
}

std::string reason(int status) {
    auto r = http::obsolete_reason(static_cast<http::status>(status));
    return r.empty() ? "Status" : std::string(r);
}

bool iequal(std::string_view a, std::string_view b) { return net::detail::iequal(a, b); }

}  // namespace

struct Server::Impl {
    Context& ctx;
    asio::io_context ioc;
    ssl::context tls{ssl::context::tls_server};
    tcp::acceptor tls_acceptor{ioc};
    tcp::acceptor http_acceptor{ioc};
    std::vector<Handler> handlers;
    std::vector<Handler> partial_handlers;  // see Request::body_incomplete
    std::string ca_path;

    explicit Impl(Context& c) : ctx(c) {}

    void listen(tcp::acceptor& a) {
        tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
        a.open(ep.protocol());
        a.set_option(tcp::acceptor::reuse_address(true));
        a.bind(ep);
        a.listen(asio::socket_base::max_listen_connections);
    }

    void accept_loop(tcp::acceptor& a, bool use_tls) {
        for (;;) {
            boost::system::error_code ec;
            tcp::socket sock(ioc);
            a.accept(sock, ec);
            if (ec) {
                if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) return;
                std::this_thread::sleep_for(std::chrono::milliseconds(10));  // EMFILE etc.: back off
                continue;
            }
            ctx.faults().count_connection();
            std::thread([this, s = std::move(sock), use_tls]() mutable { connection(std::move(s), use_tls); }).detach();
        }
    }

    void connection(tcp::socket sock, bool use_tls) {
        boost::system::error_code ec;
        sock.set_option(tcp::no_delay(true), ec);
        try {
            if (use_tls) {
                ssl::stream<tcp::socket> s(std::move(sock), tls);
                s.handshake(ssl::stream_base::server, ec);
                if (ec) return;
                serve(s, s.next_layer(), true);
            } else {
                serve(sock, sock, false);
            }
        } catch (const std::exception&) {
            // peer went away mid-write: nothing to do, the thread ends
        }
    }

    void scan(const Request& r) {
        std::string headers;
        for (const auto& [k, v] : r.headers.items) headers += k + ": " + v + "\n";
        ctx.watch.scan(r.method, r.target, headers, r.body);
    }

    Response dispatch(const Request& r) {
        try {
            for (auto& h : handlers)
                if (auto resp = h(r)) return std::move(*resp);
            Response nf;
            nf.status = 404;
            nf.headers.set("Content-Type", "application/json");
            nf.body = R"({"error":"no emulated service answers this path"})";
            return nf;
        } catch (const std::exception& e) {
            Response err;
            err.status = 500;
            err.headers.set("Content-Type", "text/plain");
            err.body = std::string("emulator handler threw: ") + e.what();
            return err;
        }
    }

    template <class Stream>
    void serve(Stream& s, tcp::socket& raw, bool is_tls) {
        beast::flat_buffer buf;
        for (;;) {
            http::request_parser<http::string_body> p;
            p.body_limit(kMaxRequestBody);
            p.header_limit(1 << 20);
            boost::system::error_code ec;
            http::read_header(s, buf, p, ec);
            if (ec) return;
            auto& m = p.get();
            Request req;
            req.method = std::string(m.method_string());
            req.target = std::string(m.target());
            req.tls = is_tls;
            for (auto& f : m) req.headers.add(std::string(f.name_string()), std::string(f.value()));
            std::string host = req.headers.get("host").value_or("");
            if (!host.empty() && host.front() == '[') host = host.substr(1, host.find(']') - 1);
            else host = host.substr(0, host.rfind(':'));
            for (auto& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            req.host = host;
            auto& faults = ctx.faults();
            faults.count_request();

            FaultPlan plan;
            if (req.target.rfind("/_emu/faults", 0) != 0 && req.target.rfind("/_emu/stats", 0) != 0)
                plan = faults.match(req.method, req.target);
            std::set<std::string> applied;

            // drop_request: take the body up to the cut, let the handlers that persist interrupted
            // uploads see that much, then abort the connection without an answer.
            if (plan.drop_request) {
                std::optional<std::uint64_t> at;
                if (auto len = p.content_length(); len && *len > 0) at = faults.cut_offset(*plan.drop_request, *len);
                if (at) {
                    while (m.body().size() < *at && !p.is_done()) {
                        http::read_some(s, buf, p, ec);
                        if (ec) break;
                    }
                    req.body = std::move(m.body());
                    if (req.body.size() > *at) req.body.resize(*at);  // what a read past the cut brought is lost too
                    req.body_incomplete = true;
                    faults.add_received(req.body.size());
                    scan(req);
                    applied.insert("drop_request");
                    faults.settle(plan, applied);
                    dispatch_partial(req);
                    raw.set_option(asio::socket_base::linger(true, 0), ec);  // close with RST
                    raw.close(ec);
                    return;
                }
            }
            http::read(s, buf, p, ec);
            if (ec) {
                faults.settle(plan, applied);
                return;
            }
            req.body = std::move(m.body());
            bool keep = m.keep_alive();
            faults.add_received(req.body.size());
            scan(req);

            Response resp;
            if (plan.status) {
                resp.status = *plan.status;
                resp.headers.set("Content-Type", "application/json");
                if (!plan.retry_after.empty()) resp.headers.set("Retry-After", plan.retry_after);
                resp.body = R"({"error":{"code":)" + std::to_string(*plan.status) + R"(,"message":"injected fault"}})";
                // The injected answer is the whole fault: no cut or flipped byte on top of it, and
                // it is counted before it goes on the wire (a client that reads it and then asks
                // /_emu/faults/stats must already see it).
                plan.reset.reset();
                plan.truncate.reset();
                plan.corrupt.reset();
                applied.insert("status");
                faults.settle(plan, applied);
                applied.clear();
            } else {
                resp = dispatch(req);
            }
            bool open = false;
            try {
                open = write_response(s, raw, req, resp, plan, keep, applied);
            } catch (...) {
                faults.settle(plan, applied);
                throw;
            }
            faults.settle(plan, applied);
            if (!open) return;
            if (!keep) {
                raw.shutdown(tcp::socket::shutdown_send, ec);
                return;
            }
        }
    }

    // Hands an interrupted request to the handlers that accept one; their answer is never sent.
    void dispatch_partial(const Request& r) {
        try {
            for (auto& h : partial_handlers)
                if (h(r)) return;
        } catch (const std::exception&) {
        }
    }

    // Returns false when the connection was closed by a fault. `applied` gets the kinds of the
    // faults that changed the bytes on the wire.
    template <class Stream>
    bool write_response(Stream& s, tcp::socket& raw, const Request& req, Response& resp, const FaultPlan& plan, bool keep,
                        std::set<std::string>& applied) {
        bool head = req.method == "HEAD";
        bool no_body = head || resp.status == 204 || resp.status == 304 || resp.status < 200;
        std::string h = "HTTP/1.1 " + std::to_string(resp.status) + " " + reason(resp.status) + "\r\n";
        std::optional<std::string> declared;
        for (auto& [k, v] : resp.headers.items) {
            if (iequal(k, "content-length")) {
                declared = v;
                continue;
            }
            if (iequal(k, "connection") || iequal(k, "transfer-encoding")) continue;
            h += k + ": " + v + "\r\n";
        }
        if (head) {
            if (declared) h += "Content-Length: " + *declared + "\r\n";
        } else if (resp.status != 204 && resp.status != 304 && resp.status >= 200) {
            h += "Content-Length: " + std::to_string(resp.bytes().size()) + "\r\n";
        }
        h += keep ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
        asio::write(s, asio::buffer(h));
        if (no_body) return true;
        auto& faults = ctx.faults();

        const std::uint64_t size = resp.bytes().size();
        std::uint64_t limit = size;
        const char* cut_kind = nullptr;
        if (plan.reset)
            if (auto at = faults.cut_offset(*plan.reset, size); at && *at < limit) limit = *at, cut_kind = "reset";
        if (plan.truncate)
            if (auto at = faults.cut_offset(*plan.truncate, size); at && *at < limit) limit = *at, cut_kind = "truncate";
        if (cut_kind) applied.insert(cut_kind);
        // A flipped byte counts only on an answer that arrives whole: before a cut, and a reset's
        // RST may throw away what the client had not read yet, it would prove nothing.
        if (plan.corrupt && size > 0 && !cut_kind) {
            std::uint64_t at = std::min<std::uint64_t>(plan.corrupt->after_bytes, size - 1);
            if (plan.corrupt->random) at = faults.cut_offset(*plan.corrupt, size).value_or(0);
            {
                resp.materialize();  // the stored bytes stay intact: corrupt a copy
                resp.body[at] ^= '\xff';
                applied.insert("corrupt");
            }
        }
        const std::string_view body = resp.bytes();
        if (plan.bytes_per_sec && limit > 0) applied.insert("bandwidth");

        std::size_t slice = kSlice;
        if (plan.bytes_per_sec) slice = std::max<std::size_t>(1024, static_cast<std::size_t>(plan.bytes_per_sec * kPaceSeconds));
        auto t0 = std::chrono::steady_clock::now();
        bool stalled = false;
        std::uint64_t sent = 0;
        while (sent < limit) {
            std::uint64_t end = std::min<std::uint64_t>(limit, sent + slice);
            if (plan.stall_after && !stalled && *plan.stall_after >= sent && *plan.stall_after < end) end = *plan.stall_after;
            if (plan.stall_after && !stalled && sent == *plan.stall_after) {
                stalled = true;
                std::this_thread::sleep_for(std::chrono::duration<double>(plan.stall_seconds));
                t0 = std::chrono::steady_clock::now() - std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                            std::chrono::duration<double>(plan.bytes_per_sec ? double(sent) / plan.bytes_per_sec : 0));
                continue;
            }
            if (plan.bytes_per_sec) {
                // token bucket: byte `sent` may leave at t0 + sent/rate
                auto due = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(double(sent) / plan.bytes_per_sec));
                std::this_thread::sleep_until(due);
            }
            asio::write(s, asio::buffer(body.data() + sent, end - sent));
            faults.add_sent(end - sent);
            sent = end;
        }
        if (plan.stall_after && !stalled && *plan.stall_after >= limit && !cut_kind) {
            stalled = true;
            std::this_thread::sleep_for(std::chrono::duration<double>(plan.stall_seconds));
        }
        if (stalled) applied.insert("stall");
        if (cut_kind) {
            boost::system::error_code ec;
            if (plan.reset && std::string_view(cut_kind) == "reset") {
                raw.set_option(asio::socket_base::linger(true, 0), ec);  // close with RST
                raw.close(ec);
            } else {
                raw.shutdown(tcp::socket::shutdown_both, ec);
                raw.close(ec);
            }
            return false;
        }
        return true;
    }
};

Server::Server(Context& ctx) : impl_(std::make_unique<Impl>(ctx)) {
    Pki ca, leaf;
    make_cert(ca, "cmf emulator test CA", nullptr, 1);
    make_cert(leaf, "localhost", &ca, 2);
    impl_->ca_path = (ctx.state_dir / "ca.pem").string();
    {
        FILE* f = std::fopen(impl_->ca_path.c_str(), "w");
        if (!f) throw std::runtime_error("cannot write " + impl_->ca_path);
        bool ok = PEM_write_X509(f, ca.cert) == 1;
        ok = std::fclose(f) == 0 && ok;
        if (!ok) throw std::runtime_error("cannot write " + impl_->ca_path);
    }
    SSL_CTX* sc = impl_->tls.native_handle();
    SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate(sc, leaf.cert) != 1 || SSL_CTX_use_PrivateKey(sc, leaf.key) != 1 ||
        SSL_CTX_add1_chain_cert(sc, ca.cert) != 1)
        ossl_fail("installing the server certificate");
    impl_->listen(impl_->tls_acceptor);
    impl_->listen(impl_->http_acceptor);
    ctx.https_base = "https://127.0.0.1:" + std::to_string(https_port());
    ctx.http_base = "http://127.0.0.1:" + std::to_string(http_port());
}

Server::~Server() = default;
int Server::https_port() const { return impl_->tls_acceptor.local_endpoint().port(); }
int Server::http_port() const { return impl_->http_acceptor.local_endpoint().port(); }
std::string Server::ca_file() const { return impl_->ca_path; }

void Server::start(std::vector<Handler> handlers, std::vector<Handler> partial_handlers) {
    impl_->handlers = std::move(handlers);
    impl_->partial_handlers = std::move(partial_handlers);
    std::thread([this] { impl_->accept_loop(impl_->tls_acceptor, true); }).detach();
    std::thread([this] { impl_->accept_loop(impl_->http_acceptor, false); }).detach();
}

}  // namespace cmf::emu
