// The emulator's transport (server.cpp): a TLS port and a plain-HTTP port on 127.0.0.1, one
// thread per connection, HTTP/1.1 keep-alive, faults from Context::faults() applied to every
// response on the way out. Kept apart from the services so they compile without Beast.
#pragma once

#include <memory>
#include <vector>

#include "context.h"
#include "handler.h"

namespace cmf::emu {

class Server {
public:
    // Generates the test CA (written to ctx.state_dir/ca.pem) and the server certificate, binds
    // both ports on 127.0.0.1 and fills ctx.https_base/http_base. Throws on failure.
    explicit Server(Context& ctx);
    ~Server();
    int https_port() const;
    int http_port() const;
    std::string ca_file() const;
    // Starts accepting; `handlers` are asked in order for each request. `partial_handlers` see
    // requests a drop_request fault interrupted (Request::body_incomplete); their answer is
    // never sent, the first that returns one ends the search.
    void start(std::vector<Handler> handlers, std::vector<Handler> partial_handlers = {});

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace cmf::emu
