// The cloud emulator's application interface: every emulated service (Hugging Face, GCS JSON
// API, metadata server, OAuth token endpoint, Compute API) is a Handler over in-memory state.
// The transport (tests/emulator/server.cpp, Boost.Beast, TLS with a test CA + a plain-HTTP
// port) parses requests, asks the handlers in order, and applies transport faults (connection
// reset mid-body, bandwidth caps, stalls, truncated bodies) on the way out.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "cmf/net/http.h"

namespace cmf::emu {

struct Request {
    std::string method;
    std::string target;    // path + query as received
    std::string host;      // Host header without port, lower case (routes CDN-style redirects)
    bool tls = false;      // arrived on the TLS port
    net::Headers headers;
    std::string body;
};

struct Response {
    int status = 200;
    net::Headers headers;
    std::string body;
};

// Returns nullopt when the request is not for this service; the next handler is asked.
using Handler = std::function<std::optional<Response>(const Request&)>;

}  // namespace cmf::emu
