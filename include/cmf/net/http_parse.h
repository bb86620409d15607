// cmf::net header-value parsers shared by the client and the ranged downloader. Light (no
// Boost, no OpenSSL) and header-only, so the fuzz target tests/fuzz/http_header_fuzz.cpp
// exercises exactly the code the client runs on bytes a server sent.
//
//   Retry-After    = delay-seconds / HTTP-date (RFC 9110 10.2.3; IMF-fixdate, RFC 850 and
//                    asctime forms are all valid HTTP-dates)
//   Content-Range  = "bytes" SP first "-" last "/" ( complete-length / "*" )  (RFC 9110 14.4)
//   Location       = URI-reference, resolved against the request URL (RFC 9110 10.2.2)
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

#include "cmf/net/http.h"

namespace cmf::net {

namespace detail {
inline std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}
// Decimal digits only, no sign, no overflow past 2^63.
inline std::optional<std::uint64_t> parse_u64(std::string_view s) {
    if (s.empty() || s.size() > 18) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return v;
}
inline bool iequal(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}
}  // namespace detail

// Delay asked for by a Retry-After value, relative to `now`. nullopt when unparsable; a date in
// the past gives 0.
inline std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) {
    value = detail::trim(value);
    if (auto secs = detail::parse_u64(value)) {
        // a day is more than any sane server asks; clamp so the arithmetic cannot overflow
        std::uint64_t s = *secs > 86400 ? 86400 : *secs;
        return std::chrono::milliseconds(s * 1000);
    }
    if (value.empty() || value.size() > 64) return std::nullopt;
    std::string text(value);
    std::tm tm{};
    const char* formats[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %d %H:%M:%S %Y"};
    for (const char* f : formats) {
        tm = std::tm{};
        const char* end = ::strptime(text.c_str(), f, &tm);
        if (!end || *end != '\0') continue;
        std::time_t t = ::timegm(&tm);
        if (t == static_cast<std::time_t>(-1)) return std::nullopt;
        auto when = std::chrono::system_clock::from_time_t(t);
        if (when <= now) return std::chrono::milliseconds(0);
        auto d = std::chrono::duration_cast<std::chrono::milliseconds>(when - now);
        return d > std::chrono::hours(24) ? std::chrono::milliseconds(std::chrono::hours(24)) : d;
    }
    return std::nullopt;
}

struct ContentRange {
    std::uint64_t first = 0;
    std::uint64_t last = 0;                // inclusive
    std::optional<std::uint64_t> total;    // nullopt for "*"
};

// "bytes a-b/N" or "bytes a-b/*". nullopt on anything else (including "bytes */N", which only
// a 416 carries) or when a > b or b >= N.
inline std::optional<ContentRange> parse_content_range(std::string_view v) {
    v = detail::trim(v);
    if (v.size() < 6 || !detail::iequal(v.substr(0, 5), "bytes") || v[5] != ' ') return std::nullopt;
    v = detail::trim(v.substr(6));
    auto dash = v.find('-'), slash = v.find('/');
    if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash) return std::nullopt;
    auto a = detail::parse_u64(v.substr(0, dash));
    auto b = detail::parse_u64(v.substr(dash + 1, slash - dash - 1));
    if (!a || !b || *a > *b) return std::nullopt;
    ContentRange r{*a, *b, std::nullopt};
    auto t = v.substr(slash + 1);
    if (t != "*") {
        auto n = detail::parse_u64(t);
        if (!n || *b >= *n) return std::nullopt;
        r.total = *n;
    }
    return r;
}

// Resolves a Location value against the URL of the request that got it. Supports absolute
// URLs, scheme-relative "//host/...", absolute paths and relative paths (dot segments are
// left for the server). Throws cmf::Error(usage) on an unusable value (Url::parse).
inline Url resolve_location(const Url& base, std::string_view loc) {
    loc = detail::trim(loc);
    if (auto p = loc.find("://"); p != std::string_view::npos && loc.find_first_of("/?#") > p)
        return Url::parse(loc);
    if (loc.substr(0, 2) == "//") return Url::parse(base.scheme + ":" + std::string(loc));
    Url u = base;
    if (auto h = loc.find('#'); h != std::string_view::npos) loc = loc.substr(0, h);
    if (loc.empty()) return u;
    if (loc.front() == '/') {
        u.target = std::string(loc);
    } else if (loc.front() == '?') {
        u.target = base.target.substr(0, base.target.find('?')) + std::string(loc);
    } else {
        std::string path = base.target.substr(0, base.target.find('?'));
        u.target = path.substr(0, path.rfind('/') + 1) + std::string(loc);
    }
    return Url::parse(u.scheme + "://" + u.authority() + u.target);  // validates characters
}

// NO_PROXY matching: comma/space separated entries; "*" matches all; an entry matches the host
// itself and its subdomains ("example.com" and ".example.com" both match "a.example.com");
// an entry may carry ":port", then the port must match too.
inline bool no_proxy_matches(std::string_view list, std::string_view host, std::string_view port) {
    std::size_t i = 0;
    while (i < list.size()) {
        std::size_t j = list.find_first_of(", ", i);
        if (j == std::string_view::npos) j = list.size();
        std::string_view e = detail::trim(list.substr(i, j - i));
        i = j + 1;
        if (e.empty()) continue;
        if (e == "*") return true;
        std::string_view eport;
        if (e.front() != '[' && e.find(':') == e.rfind(':')) {
            if (auto c = e.find(':'); c != std::string_view::npos) {
                eport = e.substr(c + 1);
                e = e.substr(0, c);
            }
        }
        if (!e.empty() && e.front() == '[' && e.back() == ']') e = e.substr(1, e.size() - 2);
        while (!e.empty() && e.front() == '.') e.remove_prefix(1);
        if (e.empty()) continue;
        if (!eport.empty() && eport != port) continue;
        if (detail::iequal(host, e)) return true;
        if (host.size() > e.size() && host[host.size() - e.size() - 1] == '.' &&
            detail::iequal(host.substr(host.size() - e.size()), e))
            return true;
    }
    return false;
}

// What the client may print about a URL: host[:port] + path, never the query (signatures,
// tokens) nor header values.
inline std::string redacted(const Url& u) {
    return u.authority() + u.target.substr(0, u.target.find('?'));
}

}  // namespace cmf::net
