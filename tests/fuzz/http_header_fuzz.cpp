// libFuzzer target for the header values the network layer parses from servers: Retry-After
// (seconds or HTTP-date), Content-Range (drives where ranged downloads write), NO_PROXY lists,
// and Headers get/set/erase. Nothing may crash; parsed results must be self-consistent.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "../../orchestrate/net/url.cpp"
#include "cmf/net/http_parse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string s(reinterpret_cast<const char*>(data), size);
    using namespace cmf::net;
    auto now = std::chrono::system_clock::from_time_t(1700000000);
    if (auto d = parse_retry_after(s, now))
        if (d->count() < 0 || *d > std::chrono::hours(24)) std::abort();
    if (auto cr = parse_content_range(s)) {
        if (cr->first > cr->last) std::abort();
        if (cr->total && cr->last >= *cr->total) std::abort();
    }
    auto bar = s.find('|');
    std::string list = s.substr(0, bar), host = bar == std::string::npos ? "h" : s.substr(bar + 1);
    (void)no_proxy_matches(list, host, "443");
    if (no_proxy_matches("*", host, "1") != true) std::abort();
    Headers h;
    h.add(s, "v");
    h.set(host, list);
    if (h.get(host) != list) std::abort();
    h.erase(s);
    h.erase(host);
    if (!h.items.empty()) std::abort();
    return 0;
}
