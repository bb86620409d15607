// The cloud emulator's application interface: every emulated service (Hugging Face, GCS JSON
// API, metadata server, OAuth token endpoint, Compute API) is a Handler over in-memory state.
// The transport (tests/emulator/server.cpp, Boost.Beast, TLS with a test CA + a plain-HTTP
// port) parses requests, asks the handlers in order, and applies transport faults (connection
// reset mid-body, bandwidth caps, stalls, truncated bodies) on the way out.
#pragma once

#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <string_view>

#include "cmf/net/http.h"

namespace cmf::emu {

struct Request {
    std::string method;
    std::string target;    // path + query as received
    std::string host;      // Host header without port, lower case (routes CDN-style redirects)
    bool tls = false;      // arrived on the TLS port
    net::Headers headers;
    std::string body;
    // A drop_request fault cut the connection while the body arrived: `body` holds only what
    // came before the cut, and no answer will be sent. Only handlers that say they take such
    // requests see them (a real server persists some of an interrupted upload, and acts on
    // nothing else).
    bool body_incomplete = false;
};

struct Response {
    int status = 200;
    net::Headers headers;
    std::string body;
    // Large bodies may instead be a slice of stored bytes, sent without a copy (like a real
    // server's sendfile): `shared` is then set and `body` stays empty.
    std::shared_ptr<const std::string> shared;
    std::uint64_t shared_off = 0, shared_len = 0;

    void set_slice(std::shared_ptr<const std::string> data, std::uint64_t off, std::uint64_t len) {
        shared = std::move(data);
        shared_off = off;
        shared_len = len;
        body.clear();
    }
    // Turns a slice into an owned body (for callers that edit or move `body`).
    void materialize() {
        if (!shared) return;
        body = std::string(bytes());
        shared.reset();
    }
    std::string_view bytes() const {
        return shared ? std::string_view(*shared).substr(shared_off, shared_len) : std::string_view(body);
    }
};

// Returns nullopt when the request is not for this service; the next handler is asked.
using Handler = std::function<std::optional<Response>(const Request&)>;

}  // namespace cmf::emu
