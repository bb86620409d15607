// An HttpClient that hands each request straight to emulator handlers in this process: the
// Hugging Face protocol code runs against the emulated Hub without sockets. It follows the
// HttpClient contract that matters here: redirects are followed only when asked, and
// Authorization is dropped when a redirect changes host; error bodies are buffered; 2xx bodies
// go to the sink.
#pragma once

#include <atomic>
#include <mutex>
#include <vector>

#include "../emulator/handler.h"
#include "cmf/core/error.h"
#include "cmf/net/http.h"

namespace cmf::test {

class InprocHfHttp : public net::HttpClient {
public:
    explicit InprocHfHttp(std::vector<emu::Handler> handlers) : handlers_(std::move(handlers)) {}

    std::atomic<bool> unreachable{false};  // every send throws Error(network), as with no route
    std::atomic<int> sends{0};

    net::Response send(const net::Request& req0, const net::BodySink& sink = {}) override {
        ++sends;
        if (unreachable) fail(ErrorKind::network, "cannot connect to " + req0.url.authority() + ": connection refused");
        net::Request req = req0;
        for (int hop = 0;; ++hop) {
            emu::Request e;
            e.method = req.method;
            e.target = req.url.target;
            e.host = req.url.host;
            e.tls = req.url.scheme == "https";
            e.headers = req.headers;
            e.headers.set("Host", req.url.authority());
            e.body = req.body;
            std::optional<emu::Response> r;
            for (const auto& h : handlers_)
                if ((r = h(e))) break;
            if (!r) r = emu::Response{404, {}, "no handler"};
            r->materialize();
            net::Response out;
            out.status = r->status;
            out.headers = r->headers;
            out.final_url = req.url.str();
            const auto loc = r->headers.get("Location");
            if (req.follow_redirects && r->status >= 300 && r->status < 400 && loc && hop < 10) {
                net::Url next = loc->front() == '/' ? net::Url::parse(req.url.scheme + "://" + req.url.authority() + *loc)
                                                    : net::Url::parse(*loc);
                if (next.host != req.url.host || next.port != req.url.port) req.headers.erase("Authorization");
                req.url = next;
                continue;
            }
            if (sink && out.status >= 200 && out.status < 300 && req0.on_head && !req0.on_head(out.status, out.headers)) {
                out.body_refused = true;
            } else if (sink && out.status >= 200 && out.status < 300) {
                const std::size_t chunk = 65536;
                for (std::size_t i = 0; i < r->body.size(); i += chunk)
                    if (!sink(r->body.data() + i, std::min(chunk, r->body.size() - i))) break;
            } else {
                out.body = std::move(r->body);
            }
            return out;
        }
    }

private:
    std::vector<emu::Handler> handlers_;
};

}  // namespace cmf::test
