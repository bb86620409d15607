// Url and Headers: plain parsing, no Beast (kept apart from the client TU so fuzz targets and
// protocol tests can link them cheaply).
#include "cmf/net/http.h"

#include <algorithm>
#include <cctype>

#include "cmf/core/error.h"

namespace cmf::net {
namespace {
bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}
std::string lower(std::string_view s) {
    std::string r(s);
    for (auto& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return r;
}
}  // namespace

Url Url::parse(std::string_view text) {
    auto bad = [&](const char* why) -> Url {
        fail(ErrorKind::usage, std::string("bad URL '") + std::string(text.substr(0, 200)) + "': " + why);
    };
    Url u;
    auto sep = text.find("://");
    if (sep == std::string_view::npos) return bad("missing scheme");
    u.scheme = lower(text.substr(0, sep));
    if (u.scheme != "http" && u.scheme != "https") return bad("scheme must be http or https");
    std::string_view rest = text.substr(sep + 3);
    auto slash = rest.find_first_of("/?#");
    std::string_view auth = rest.substr(0, slash);
    std::string_view tail = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
    if (auto h = tail.find('#'); h != std::string_view::npos) tail = tail.substr(0, h);
    if (auth.find('@') != std::string_view::npos) return bad("user info in URLs is not supported");
    if (auth.empty()) return bad("missing host");
    std::string_view host, port;
    if (auth.front() == '[') {
        auto close = auth.find(']');
        if (close == std::string_view::npos) return bad("unterminated IPv6 literal");
        host = auth.substr(1, close - 1);
        auto after = auth.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') return bad("junk after IPv6 literal");
            port = after.substr(1);
        }
    } else {
        auto colon = auth.rfind(':');
        host = auth.substr(0, colon);
        if (colon != std::string_view::npos) port = auth.substr(colon + 1);
    }
    if (host.empty()) return bad("missing host");
    for (char c : host)
        if (static_cast<unsigned char>(c) <= 0x20 || c == '/' || c == '\\' || c == '%' || static_cast<unsigned char>(c) >= 0x7f)
            return bad("invalid character in host");
    if (!port.empty()) {
        if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
            return bad("invalid port");
        if (std::stoul(std::string(port)) == 0 || std::stoul(std::string(port)) > 65535) return bad("port out of range");
    }
    u.host = lower(host);
    u.port = port.empty() ? (u.scheme == "https" ? "443" : "80") : std::string(port);
    if (tail.empty()) u.target = "/";
    else if (tail.front() == '?') u.target = "/" + std::string(tail);
    else u.target = std::string(tail);
    for (char c : u.target)
        if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) return bad("invalid character in path");
    return u;
}

std::string Url::authority() const {
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    bool dflt = (scheme == "https" && port == "443") || (scheme == "http" && port == "80");
    return dflt ? h : h + ":" + port;
}

std::string Url::str() const { return scheme + "://" + authority() + target; }

void Headers::set(std::string name, std::string value) {
    erase(name);
    items.emplace_back(std::move(name), std::move(value));
}
void Headers::add(std::string name, std::string value) { items.emplace_back(std::move(name), std::move(value)); }
void Headers::erase(std::string_view name) {
    items.erase(std::remove_if(items.begin(), items.end(), [&](auto& kv) { return iequals(kv.first, name); }), items.end());
}
std::optional<std::string> Headers::get(std::string_view name) const {
    for (auto& kv : items)
        if (iequals(kv.first, name)) return kv.second;
    return std::nullopt;
}

}  // namespace cmf::net
