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
// (tests search their outputs for them), the public keys that signed, and the verified /
// rejected counts.
// Accounts: POST /_emu/registry/keys {"namespace": NS, "key": "ssh-ed25519 AAAA..."} adds a key
// to the account owning NS, as "Add Ollama key" on ollama.com does. Once a namespace has keys,
// a token whose scope pushes to it is refused (401 UNAUTHORIZED) to any other key; a namespace
// with no keys added takes any valid signature.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <openssl/rand.h>

#include <map>
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
    std::map<std::string, std::set<std::string>> account_keys;  // namespace -> public key blobs (base64)
    std::vector<std::string> signers;                            // public key (base64) of every verified request
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
                                   {"challenges", st.challenges}, {"signers", st.signers}});
    }
    if (path == "/_emu/registry/keys" && req.method == "POST") {
        auto j = nlohmann::json::parse(req.body, nullptr, false);
        if (!j.is_object() || !j.contains("namespace") || !j.contains("key") || !j["namespace"].is_string() || !j["key"].is_string())
            return json_response(400, {{"error", "{\"namespace\": NS, \"key\": \"ssh-ed25519 AAAA...\"}"}});
        std::string key = j["key"].get<std::string>();
        if (!key.starts_with("ssh-ed25519 ")) return json_response(400, {{"error", "not an ssh-ed25519 public key line"}});
        key = key.substr(12);
        key = key.substr(0, key.find_first_of(" \r\n"));
        std::lock_guard lock(st.mu);
        st.account_keys[j["namespace"].get<std::string>()].insert(key);
        return json_response(200, {{"keys", st.account_keys[j["namespace"].get<std::string>()].size()}});
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
        const std::string signer = auth.substr(0, colon);
        // scope=repository:NS/MODEL:push,pull: a push to a namespace whose account has keys
        // needs one of them
        const std::string scope = query_param(req.target, "scope").value_or("");
        if (scope.starts_with("repository:") && scope.find(":push") != std::string::npos) {
            const std::string ns = scope.substr(11, scope.find('/') == std::string::npos ? 0 : scope.find('/') - 11);
            auto acct = st.account_keys.find(ns);
            if (acct != st.account_keys.end() && !acct->second.count(signer)) {
                ++st.rejected;
                return json_response(401, {{"errors", {{{"code", "UNAUTHORIZED"}, {"message", "unauthorized: this key is not on the account of " + ns}}}}});
            }
        }
        ++st.verified;
        st.signers.push_back(signer);
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
