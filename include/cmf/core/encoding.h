// The encodings every client needs, in one place: base64 (GCS hashes, Ollama keys), base64url
// without padding (JWT, RFC 7515 section 2), percent-encoding (RFC 3986 unreserved set: GCS wants
// '/' in an object name as %2F in path positions; the Hub's quote(x, safe="/") keeps slashes in
// file paths), form bodies, and Go's url.QueryEscape (space as '+', the Ollama registry's token
// URL).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cmf {

namespace detail {
inline constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
inline constexpr char kB64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

inline std::string b64_encode(std::string_view in, const char* alphabet, bool pad) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    auto u = [&](std::size_t k) { return static_cast<std::uint32_t>(static_cast<unsigned char>(in[k])); };
    for (; i + 3 <= in.size(); i += 3) {
        std::uint32_t v = u(i) << 16 | u(i + 1) << 8 | u(i + 2);
        out += alphabet[v >> 18 & 63];
        out += alphabet[v >> 12 & 63];
        out += alphabet[v >> 6 & 63];
        out += alphabet[v & 63];
    }
    if (std::size_t rest = in.size() - i) {
        std::uint32_t v = u(i) << 16 | (rest == 2 ? u(i + 1) << 8 : 0);
        out += alphabet[v >> 18 & 63];
        out += alphabet[v >> 12 & 63];
        if (rest == 2) out += alphabet[v >> 6 & 63];
        if (pad) out.append(rest == 2 ? 1 : 2, '=');
    }
    return out;
}

// Accepts both alphabets and optional padding; nullopt on any other character or a bad length.
inline std::optional<std::string> b64_decode(std::string_view in) {
    while (!in.empty() && in.back() == '=') in.remove_suffix(1);
    if (in.size() % 4 == 1) return std::nullopt;
    std::string out;
    out.reserve(in.size() * 3 / 4);
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        int v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '+' || c == '-') v = 62;
        else if (c == '/' || c == '_') v = 63;
        else return std::nullopt;
        acc = acc << 6 | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>(acc >> bits & 0xff);
        }
    }
    return out;
}

inline bool unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}
}  // namespace detail

inline std::string base64_encode(std::string_view in) { return detail::b64_encode(in, detail::kB64, true); }
inline std::string base64url_encode(std::string_view in) { return detail::b64_encode(in, detail::kB64Url, false); }
inline std::optional<std::string> base64_decode(std::string_view in) { return detail::b64_decode(in); }

// Percent-encodes everything outside the RFC 3986 unreserved set and `safe` (so '/' -> %2F,
// ' ' -> %20 by default): python's urllib.parse.quote(in, safe). Right for object names in URL
// paths, query values and form values alike.
inline std::string percent_encode(std::string_view in, std::string_view safe = "") {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(in.size());
    for (unsigned char c : in) {
        if (detail::unreserved(c) || (!safe.empty() && safe.find(static_cast<char>(c)) != std::string_view::npos)) {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

// Decodes %XX; with `plus_is_space` ('+' -> ' ') for form/query values. nullopt on a bad escape.
inline std::optional<std::string> percent_decode(std::string_view in, bool plus_is_space = false) {
    std::string out;
    out.reserve(in.size());
    auto hexval = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '%') {
            if (i + 2 >= in.size()) return std::nullopt;
            int hi = hexval(in[i + 1]), lo = hexval(in[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            out += static_cast<char>(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out += ' ';
        } else {
            out += c;
        }
    }
    return out;
}

// Go's url.QueryEscape: unreserved bytes kept, space as '+', everything else %XX.
inline std::string query_escape(std::string_view in) {
    std::string out;
    for (char c : in) out += c == ' ' ? std::string("+") : percent_encode(std::string_view(&c, 1));
    return out;
}

// application/x-www-form-urlencoded body (also a URL query string without the '?').
inline std::string form_encode(const std::vector<std::pair<std::string, std::string>>& fields) {
    std::string out;
    for (const auto& [k, v] : fields) {
        if (!out.empty()) out += '&';
        out += percent_encode(k);
        out += '=';
        out += percent_encode(v);
    }
    return out;
}

// Parses "a=1&b=x%2Fy" into pairs; malformed escapes leave the raw text.
inline std::vector<std::pair<std::string, std::string>> form_decode(std::string_view in) {
    std::vector<std::pair<std::string, std::string>> out;
    while (!in.empty()) {
        std::size_t amp = in.find('&');
        std::string_view part = in.substr(0, amp);
        in = amp == std::string_view::npos ? std::string_view{} : in.substr(amp + 1);
        if (part.empty()) continue;
        std::size_t eq = part.find('=');
        std::string_view k = part.substr(0, eq);
        std::string_view v = eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1);
        auto dk = percent_decode(k, true), dv = percent_decode(v, true);
        out.emplace_back(dk ? *dk : std::string(k), dv ? *dv : std::string(v));
    }
    return out;
}

}  // namespace cmf
