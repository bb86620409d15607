// cmf selftest dns [HOST]: checks name resolution from inside this binary (getaddrinfo).
// A fully static glibc binary resolves through the NSS modules built into libc (files, dns);
// this is the probe the static-build test runs in an empty chroot. Not listed in --help.
#include <netdb.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstring>

#include "orchestrate/args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

int cmd_selftest(const std::vector<std::string>& argv) {
    Args a = parse_args(argv, {}, {"help"}, "selftest");
    if (a.has("help") || a.positional.empty() || a.positional[0] != "dns" || a.positional.size() > 2) {
        std::fputs("usage: cmf selftest dns [HOST]   resolve HOST (default localhost) with getaddrinfo\n", a.has("help") ? stdout : stderr);
        return a.has("help") ? 0 : 2;
    }
    const std::string host = a.positional.size() == 2 ? a.positional[1] : "localhost";
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(host.c_str(), "443", &hints, &res);
    if (rc != 0) fail(ErrorKind::network, "cannot resolve " + host + ": " + ::gai_strerror(rc));
    for (addrinfo* p = res; p; p = p->ai_next) {
        char buf[INET6_ADDRSTRLEN] = {};
        const void* addr = p->ai_family == AF_INET ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(p->ai_addr)->sin_addr)
                                                   : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(p->ai_addr)->sin6_addr);
        ::inet_ntop(p->ai_family, addr, buf, sizeof buf);
        std::printf("%s %s\n", host.c_str(), buf);
    }
    ::freeaddrinfo(res);
    return 0;
}

}  // namespace cmf::cli
