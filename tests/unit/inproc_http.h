// An in-process net::HttpClient for protocol tests: each net::Request becomes an emu::Request
// handed straight to emulator handlers (no sockets, no Beast), the emu::Response comes back as
// a net::Response. Follows redirects (dropping Authorization when the host changes), streams
// 2xx bodies into the sink in chunks, and lets a test inject faults per request:
//   - `fail_before`: throw cmf::Error(network) without reaching the handler
//   - `fail_after`:  the handler runs (state changes), then the "connection drops"
//   - `status`:      answer this status without reaching the handler
//   - `corrupt_at`:  flip one byte of the body at this offset
//   - `truncate_at`: deliver this many body bytes to the sink, then the connection drops
// Like the real client's retry policy, it retries fail_before/status faults for idempotent
// requests when `retry` is on; off by default so tests see every fault.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/net/http.h"
#include "../emulator/handler.h"

namespace cmf::test {

struct InprocFault {
    bool fail_before = false;
    bool fail_after = false;
    std::optional<int> status;
    std::optional<std::size_t> corrupt_at;
    std::optional<std::size_t> truncate_at;
};

class InprocHttpClient : public net::HttpClient {
public:
    explicit InprocHttpClient(std::vector<emu::Handler> handlers) : handlers_(std::move(handlers)) {}

    // Called for every request (after redirects are resolved, i.e. per hop); returns the fault
    // to apply to it. Runs under no lock: make it thread-safe.
    std::function<InprocFault(const net::Request&)> fault;

    std::atomic<int> requests{0};
    std::atomic<int> faults_fired{0};

    // Every request seen (method + url + headers), for assertions.
    std::vector<net::Request> log() {
        std::lock_guard lock(mu_);
        return log_;
    }

    net::Response send(const net::Request& in, const net::BodySink& sink = {}) override {
        net::Request req = in;
        std::string body = req.body;
        if (req.source) {
            body.clear();
            if (req.source->rewind) req.source->rewind();
            char buf[65536];
            for (std::size_t n; (n = req.source->read(buf, sizeof buf)) > 0;) body.append(buf, n);
        }
        for (int hop = 0;; ++hop) {
            ++requests;
            {
                std::lock_guard lock(mu_);
                net::Request copy = req;
                copy.body.clear();
                copy.source.reset();
                log_.push_back(std::move(copy));
            }
            InprocFault f = fault ? fault(req) : InprocFault{};
            if (f.fail_before) {
                ++faults_fired;
                fail(ErrorKind::network, "inproc: connection refused (injected) for " + req.method + " " + req.url.host);
            }
            net::Response out;
            if (f.status) {
                ++faults_fired;
                out.status = *f.status;
                out.body = R"({"error":{"code":)" + std::to_string(*f.status) + R"(,"message":"injected"}})";
                out.final_url = req.url.str();
                return out;
            }
            emu::Request er;
            er.method = req.method;
            er.target = req.url.target;
            er.host = req.url.host;
            er.tls = req.url.scheme == "https";
            er.headers = req.headers;
            if (!er.headers.has("Host")) er.headers.set("Host", req.url.authority());
            er.body = body;
            std::optional<emu::Response> r;
            for (auto& h : handlers_) {
                r = h(er);
                if (r) break;
            }
            if (!r) {
                r = emu::Response{};
                r->status = 404;
                r->body = "no handler";
            }
            r->materialize();
            if (f.fail_after) {
                ++faults_fired;
                fail(ErrorKind::network, "inproc: connection reset (injected) after the server handled " + req.method);
            }
            out.status = r->status;
            out.headers = r->headers;
            out.final_url = req.url.str();
            if (f.corrupt_at && !r->body.empty()) {
                ++faults_fired;
                r->body[std::min(*f.corrupt_at, r->body.size() - 1)] ^= 0xff;
            }
            bool redirect = (out.status == 301 || out.status == 302 || out.status == 303 || out.status == 307 ||
                             out.status == 308) &&
                            out.headers.has("Location");
            if (redirect && req.follow_redirects && hop < 10) {
                net::Url next = net::Url::parse(*out.headers.get("Location"));
                if (next.host != req.url.host) req.headers.erase("Authorization");
                if (out.status == 303) {
                    req.method = "GET";
                    body.clear();
                }
                req.url = next;
                continue;
            }
            if (sink && out.status >= 200 && out.status < 300 && in.on_head && !in.on_head(out.status, out.headers)) {
                out.body_refused = true;
            } else if (sink && out.status >= 200 && out.status < 300) {
                std::size_t limit = f.truncate_at ? std::min(*f.truncate_at, r->body.size()) : r->body.size();
                constexpr std::size_t kChunk = 1 << 16;
                for (std::size_t p = 0; p < limit; p += kChunk) {
                    if (!sink(r->body.data() + p, std::min(kChunk, limit - p)))
                        fail(ErrorKind::network, "inproc: transfer aborted by the sink");
                }
                if (f.truncate_at && *f.truncate_at < r->body.size()) {
                    ++faults_fired;
                    fail(ErrorKind::network, "inproc: connection closed mid-body (injected)");
                }
            } else {
                out.body = std::move(r->body);
            }
            return out;
        }
    }

private:
    std::vector<emu::Handler> handlers_;
    std::mutex mu_;
    std::vector<net::Request> log_;
};

}  // namespace cmf::test
