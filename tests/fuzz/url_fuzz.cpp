// libFuzzer target for cmf::net::Url::parse and resolve_location: URLs come from HF redirects,
// GCS resumable-session Location headers and users. Any input must parse or raise cmf::Error;
// a parsed URL must keep its promises (scheme, non-empty host, numeric port, target starting
// with '/', no control bytes) and re-parse to itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

// Url/Headers are plain parsing in one light .cpp; the fuzz build links only cmf_core.
#include "../../orchestrate/net/url.cpp"
#include "cmf/net/http_parse.h"

namespace {
void check(const cmf::net::Url& u) {
    if (u.scheme != "http" && u.scheme != "https") std::abort();
    if (u.host.empty() || u.port.empty() || u.target.empty() || u.target[0] != '/') std::abort();
    for (char c : u.target)
        if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) std::abort();
    auto again = cmf::net::Url::parse(u.str());
    if (again.str() != u.str() || again.host != u.host || again.port != u.port || again.target != u.target) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string s(reinterpret_cast<const char*>(data), size);
    auto nl = s.find('\n');
    std::string first = s.substr(0, nl);
    try {
        check(cmf::net::Url::parse(first));
    } catch (const cmf::Error&) {
    }
    if (nl != std::string::npos) {  // second line: a Location relative to a fixed base
        try {
            check(cmf::net::resolve_location(cmf::net::Url::parse("https://hub.example/a/b?x=1"), s.substr(nl + 1)));
        } catch (const cmf::Error&) {
        }
    }
    return 0;
}
