// A reverse proxy in front of a real peer (Debian's docker-registry), so the emulator's
// transport faults apply to a real server's traffic: the peer's answers are cut, stalled or
// corrupted on the way to the client, and a drop_request fault forwards the part of an upload
// body that arrived, then breaks the upstream connection too, as a dropped client would.
//
// Config ("proxy" key of --config): [{"prefix": "/v2/", "upstream": "http://127.0.0.1:5000",
// "ollama_auth": false}, ...]
// Requests whose path starts with a prefix go to that upstream, unchanged but for
// X-Forwarded-Proto / X-Forwarded-Host, which make the peer build its absolute URLs (upload
// Locations) on the emulator's address. No retries, no redirects followed: the client sees
// exactly what the peer said. An unreachable upstream answers 502.
//
// "ollama_auth": true puts ollama.com's token flow in front (research/ollama.md section 1): a
// request without a token this emulator issued gets 401 + `WWW-Authenticate: Bearer
// realm="<base>/_emu/registry/token",service="ollama.emu",scope="repository:<ns>/<model>:push,pull"`;
// GET on the realm with `Authorization: <ssh public key b64>:<Ed25519 signature b64>` over
// "GET,<token url>,<base64 of sha256 hex of ''>" answers {"token": "FAKE-emu-registry-..."}.
// The Authorization header is not forwarded. GET /_emu/registry/stats lists the tokens issued
// (tests search their outputs for them) and the verified / rejected counts.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <openssl/rand.h>

#include <mutex>
#include <set>

#include "cmf/core/encoding.h"
#include "cmf/core/error.h"
#include "cmf/net/http.h"
#include "cmf/registry/ed25519_key.h"
#include "cmf/registry/registry_client.h"
#include "context.h"
#include "control_service.h"
#include "handler.h"

namespace cmf::emu {

struct ProxyRoute {
    std::string prefix;
    net::Url upstream;
    bool ollama_auth = false;
};

struct RegistryAuthState {
    std::mutex mu;
    std::set<std::string> issued;
    std::vector<std::string> issued_list;
    std::uint64_t verified = 0, rejected = 0, challenges = 0;
};

inline std::vector<ProxyRoute> proxy_routes(const Context& ctx) {
    std::vector<ProxyRoute> v;
    if (!ctx.config.is_object() || !ctx.config.contains("proxy") || !ctx.config["proxy"].is_array()) return v;
    for (const auto& r : ctx.config["proxy"])
        v.push_back({r.at("prefix").get<std::string>(), net::Url::parse(r.at("upstream").get<std::string>()),
                     r.value("ollama_auth", false)});
    return v;
}

// Forwards `req` to its upstream; with `partial`, sends the body that arrived under the original
// Content-Length and lets the connection break. nullopt when no route matches.
inline std::optional<Response> proxy_forward(net::HttpClient& http, const std::vector<ProxyRoute>& routes, const Request& req,
                                             bool partial) {
    const std::string path = path_of(req.target);
    const ProxyRoute* route = nullptr;
    for (const auto& r : routes)
        if (path.rfind(r.prefix, 0) == 0) route = &r;
    if (!route) return std::nullopt;
    net::Request up;
    up.method = req.method;
    up.url = net::Url::parse(route->upstream.scheme + "://" + route->upstream.authority() + req.target);
    up.follow_redirects = false;
    up.idempotent = false;
    for (const auto& [k, v] : req.headers.items) {
        if (net::detail::iequal(k, "host") || net::detail::iequal(k, "connection") || net::detail::iequal(k, "content-length") ||
            net::detail::iequal(k, "transfer-encoding") || (route->ollama_auth && net::detail::iequal(k, "authorization")))
            continue;
        up.headers.add(k, v);
    }
    up.headers.set("X-Forwarded-Proto", req.tls ? "https" : "http");
    up.headers.set("X-Forwarded-Host", req.headers.get("host").value_or(""));
    if (partial) {
        const std::uint64_t declared = std::stoull(req.headers.get("content-length").value_or("0"));
        auto sent = std::make_shared<std::uint64_t>(0);
        const std::string* body = &req.body;
        up.source = net::BodySource{declared,
                                    [sent, body](char* buf, std::size_t cap) -> std::size_t {
                                        const std::size_t n = std::min<std::size_t>(cap, body->size() - *sent);
                                        std::memcpy(buf, body->data() + *sent, n);
                                        *sent += n;
                                        return n;
                                    },
                                    {}};
        try {
            http.send(up);
        } catch (const std::exception&) {
            // expected: the body ended early and the upstream connection was dropped
        }
        return Response{};
    }
    up.body = req.body;
    Response out;
    try {
        net::Response r = http.send(up);
        out.status = r.status;
        for (const auto& [k, v] : r.headers.items)
            if (!net::detail::iequal(k, "connection") && !net::detail::iequal(k, "transfer-encoding") &&
                (req.method == "HEAD" || !net::detail::iequal(k, "content-length")))
                out.headers.add(k, v);
        out.body = std::move(r.body);
    } catch (const std::exception& e) {
        out = json_response(502, {{"error", std::string("emulator proxy: upstream unreachable: ") + e.what()}});
    }
    return out;
}

// The token realm and the check in front of an "ollama_auth" route; nullopt when the request
// may pass to the upstream.
inline std::optional<Response> registry_auth(Context& ctx, RegistryAuthState& st, const std::vector<ProxyRoute>& routes,
                                             const Request& req) {
    const std::string path = path_of(req.target);
    const std::string base = req.tls ? ctx.https_base : ctx.http_base;
    if (path == "/_emu/registry/stats") {
        std::lock_guard lock(st.mu);
        return json_response(200, {{"issued", st.issued_list}, {"verified", st.verified}, {"rejected", st.rejected},
                                   {"challenges", st.challenges}});
    }
    if (path == "/_emu/registry/token") {
        const std::string auth = req.headers.get("authorization").value_or("");
        const auto colon = auth.find(':');
        std::string blob, sig;
        if (colon != std::string::npos) {
            blob = base64_decode(auth.substr(0, colon)).value_or("");
            sig = base64_decode(auth.substr(colon + 1)).value_or("");
        }
        bool ok = blob.size() == 51 && blob.substr(4, 11) == "ssh-ed25519" && sig.size() == 64;
        ok = ok && ollama::ed25519_verify(blob.substr(19, 32), ollama::token_signing_string(base + req.target), sig);
        std::lock_guard lock(st.mu);
        if (!ok) {
            ++st.rejected;
            return json_response(401, {{"errors", {{{"code", "UNAUTHORIZED"}, {"message", "bad signature"}}}}});
        }
        ++st.verified;
        unsigned char rnd[8];
        RAND_bytes(rnd, sizeof rnd);
        std::string hex;
        for (unsigned char c : rnd) hex += "0123456789abcdef"[c >> 4], hex += "0123456789abcdef"[c & 15];
        const std::string token = "FAKE-emu-registry-" + std::to_string(st.issued_list.size() + 1) + "-" + hex;
        st.issued.insert(token);
        st.issued_list.push_back(token);
        return json_response(200, {{"token", token}});
    }
    const ProxyRoute* route = nullptr;
    for (const auto& r : routes)
        if (path.rfind(r.prefix, 0) == 0) route = &r;
    if (!route || !route->ollama_auth || path == route->prefix) return std::nullopt;
    const std::string a = req.headers.get("authorization").value_or("");
    {
        std::lock_guard lock(st.mu);
        if (a.rfind("Bearer ", 0) == 0 && st.issued.count(a.substr(7))) return std::nullopt;
        ++st.challenges;
    }
    // /v2/<ns>/<model>/...
    const std::string rest = path.substr(route->prefix.size());
    const auto s1 = rest.find('/'), s2 = s1 == std::string::npos ? s1 : rest.find('/', s1 + 1);
    const std::string repo = rest.substr(0, s2);
    Response r = json_response(401, {{"errors", {{{"code", "UNAUTHORIZED"}, {"message", "authentication required"}}}}});
    r.headers.set("WWW-Authenticate", "Bearer realm=\"" + base + "/_emu/registry/token\",service=\"ollama.emu\",scope=\"repository:" +
                                          repo + ":push,pull\"");
    return r;
}

inline std::shared_ptr<net::HttpClient> proxy_client() {
    net::ClientOptions o;
    o.retry.max_attempts = 1;  // the client under test must see every failure
    o.max_idle_per_host = 64;
    return net::make_http_client(o);
}

inline Handler make_proxy_service(Context& ctx) {
    auto routes = std::make_shared<std::vector<ProxyRoute>>(proxy_routes(ctx));
    auto http = proxy_client();
    auto auth = std::make_shared<RegistryAuthState>();
    Context* cp = &ctx;
    return [routes, http, auth, cp](const Request& req) -> std::optional<Response> {
        if (auto denied = registry_auth(*cp, *auth, *routes, req)) return denied;
        return proxy_forward(*http, *routes, req, false);
    };
}

inline Handler make_proxy_partial_service(Context& ctx) {
    auto routes = std::make_shared<std::vector<ProxyRoute>>(proxy_routes(ctx));
    auto http = proxy_client();
    return [routes, http](const Request& req) { return proxy_forward(*http, *routes, req, true); };
}

}  // namespace cmf::emu
