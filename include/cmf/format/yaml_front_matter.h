// The YAML front matter of a Hugging Face model card (README.md), read as llama.cpp's gguf-py
// reads it (gguf/metadata.py Metadata.load_model_card, then PyYAML's yaml.safe_load), into JSON.
//
// Front matter (load_model_card):
//   1. the file is UTF-8 (open(encoding="utf-8"): invalid bytes anywhere fail the conversion);
//   2. it is split as str.splitlines() splits (\n, \r\n, \r, \v, \f, \x1c-\x1e, U+0085, U+2028,
//      U+2029); the first line must be exactly "---", else the card has no metadata;
//   3. the lines after it, up to one that is exactly "---" (or the end of the file), joined by
//      "\n" with a final "\n", are the YAML;
//   4. every "- no\n" becomes "- \"no\"\n" (the Norway problem), then every tab two spaces;
//   5. yaml.safe_load; a document that is not a mapping is no metadata.
// YAML (PyYAML, YAML 1.1): block mappings and sequences (a sequence may sit at its key's
// indentation), compact "- key: value" entries, flow [..] and {..} over several lines, plain,
// 'single' and "double" (all PyYAML escapes) scalars folded over lines, | and > block scalars
// with chomping/indentation indicators, comments, !!str. Plain scalars resolve as PyYAML's
// resolver does: null (~, null, empty), bool (yes/no/on/off/true/false in three casings), int
// (0b, 0x, leading-0 octal, '_' separators, base-60 "1:30"), float (a '.' required; exponents
// signed; .inf/.nan; base 60) and timestamps (validated as Python's datetime would).
// Not supported (cmf::Error, kind input, "unsupported"): anchors and aliases, tags other than
// !!str, "?" complex keys, "<<" merges, directives, a second document.
// Values JSON has no form for (timestamps, integers beyond 64 bits) become JSON binary values
// holding their text (opaque()): like the Python objects they stand for, they are neither text,
// nor lists, nor mappings, nor numbers.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "cmf/core/error.h"

namespace cmf::yaml {

using json = nlohmann::json;

// A value JSON cannot hold (a date, an integer past 64 bits), kept as its text in a binary value.
inline json opaque(std::string_view text) { return json::binary(std::vector<std::uint8_t>(text.begin(), text.end())); }
// Collections nested deeper than this are refused (PyYAML recurses until Python's stack ends).
inline constexpr size_t kMaxDepth = 64;

struct FrontMatter {
    bool present = false;                      // a front matter that is a YAML mapping
    json data = json::object();                // that mapping
    std::map<std::string, size_t> key_lines;   // README.md line of each top-level key
};

namespace detail {

constexpr uint32_t kBadUtf8 = 0xFFFFFFFFu;

// Decodes one UTF-8 sequence at s[i] strictly (no overlongs, surrogates or values past U+10FFFF),
// as Python's utf-8 codec does; returns kBadUtf8 and n = 1 on a bad sequence.
inline uint32_t decode_utf8(std::string_view s, size_t i, size_t& n) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    n = 1;
    if (c < 0x80) return c;
    size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (len == 0 || c > 0xF4 || i + len > s.size()) return kBadUtf8;
    uint32_t cp = c & (0x7F >> len);
    for (size_t k = 1; k < len; ++k) {
        if ((b(i + k) & 0xC0) != 0x80) return kBadUtf8;
        cp = cp << 6 | (b(i + k) & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return kBadUtf8;
    n = len;
    return cp;
}

// Appends a code point as UTF-8; lone surrogates (from "\ud800" escapes) are kept in the same
// 3-byte form, which strict validation (valid_utf8) then refuses, as Python's str.encode does.
inline void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | cp >> 6);
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | cp >> 12);
        out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | cp >> 18);
        out += static_cast<char>(0x80 | (cp >> 12 & 0x3F));
        out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// Strict UTF-8 (Python's codec): what a str must be to be encoded, and a README to be read.
inline bool valid_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        size_t n = 1;
        if (decode_utf8(s, i, n) == kBadUtf8) return false;
        i += n;
    }
    return true;
}

// The characters PyYAML's Reader accepts (yaml/reader.py NON_PRINTABLE, negated).
inline bool yaml_printable(uint32_t cp) {
    return cp == 0x09 || cp == 0x0A || cp == 0x0D || (cp >= 0x20 && cp <= 0x7E) || cp == 0x85 || (cp >= 0xA0 && cp <= 0xD7FF) ||
           (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

// Length of the str.splitlines() line break at s[i], or 0.
inline size_t line_break_at(std::string_view s, size_t i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\r') return i + 1 < s.size() && s[i + 1] == '\n' ? 2 : 1;
    if (c == '\n' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E) return 1;
    if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x85) return 2;
    if (c == 0xE2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
        (static_cast<unsigned char>(s[i + 2]) == 0xA8 || static_cast<unsigned char>(s[i + 2]) == 0xA9))
        return 3;
    return 0;
}

inline void replace_all(std::string& s, std::string_view from, std::string_view to) {
    std::string out;
    size_t i = 0;
    while (true) {
        const size_t j = s.find(from, i);
        if (j == std::string::npos) break;
        out.append(s, i, j - i);
        out += to;
        i = j + from.size();
    }
    out.append(s, i);
    s = std::move(out);
}

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }
inline bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// Matchers for PyYAML's implicit resolvers (yaml/resolver.py), written out by hand: the
// standard library's regex recurses per character and would overflow on a long scalar.
struct Scan {
    std::string_view s;
    size_t i = 0;
    bool eat(char c) { return i < s.size() && s[i] == c ? (++i, true) : false; }
    bool eat_any(std::string_view set) { return i < s.size() && set.find(s[i]) != std::string_view::npos ? (++i, true) : false; }
    size_t eat_while(bool (*f)(char)) {
        size_t n = 0;
        while (i < s.size() && f(s[i])) ++i, ++n;
        return n;
    }
    bool end() const { return i == s.size(); }
};
inline bool digit_or_us(char c) { return is_digit(c) || c == '_'; }
inline bool octal_or_us(char c) { return (c >= '0' && c <= '7') || c == '_'; }
inline bool bin_or_us(char c) { return c == '0' || c == '1' || c == '_'; }
inline bool hex_or_us(char c) { return is_hex(c) || c == '_'; }

// (":" [0-5]?[0-9])+
inline bool sexagesimal_tail(Scan& t) {
    size_t groups = 0;
    while (t.i < t.s.size() && t.s[t.i] == ':') {
        ++t.i;
        if (t.i + 1 < t.s.size() && t.s[t.i] >= '0' && t.s[t.i] <= '5' && is_digit(t.s[t.i + 1])) t.i += 2;
        else if (t.i < t.s.size() && is_digit(t.s[t.i])) t.i += 1;
        else return false;
        ++groups;
    }
    return groups > 0;
}

inline bool match_float(std::string_view v) {
    auto exponent = [](Scan& t) {  // ([eE][-+][0-9]+)?
        if (t.end()) return true;
        if (!t.eat_any("eE") || !t.eat_any("-+")) return false;
        return t.eat_while(is_digit) > 0;
    };
    {  // [-+]?[0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)?
        Scan t{v};
        t.eat_any("-+");
        if (t.i < v.size() && is_digit(v[t.i])) {
            t.eat_while(digit_or_us);
            if (t.eat('.')) {
                t.eat_while(digit_or_us);
                if (exponent(t) && t.end()) return true;
            }
        }
    }
    {  // \.[0-9][0-9_]*([eE][-+][0-9]+)?
        Scan t{v};
        if (t.eat('.') && t.i < v.size() && is_digit(v[t.i])) {
            t.eat_while(digit_or_us);
            if (exponent(t) && t.end()) return true;
        }
    }
    {  // [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*
        Scan t{v};
        t.eat_any("-+");
        if (t.i < v.size() && is_digit(v[t.i])) {
            t.eat_while(digit_or_us);
            if (sexagesimal_tail(t) && t.eat('.')) {
                t.eat_while(digit_or_us);
                if (t.end()) return true;
            }
        }
    }
    std::string_view u = v;
    if (!u.empty() && (u[0] == '-' || u[0] == '+')) u.remove_prefix(1);
    if (u == ".inf" || u == ".Inf" || u == ".INF") return true;
    return v == ".nan" || v == ".NaN" || v == ".NAN";
}

inline bool match_int(std::string_view v) {
    auto whole = [&](auto&& body) {
        Scan t{v};
        t.eat_any("-+");
        return body(t) && t.end();
    };
    if (whole([](Scan& t) { return t.eat('0') && t.eat('b') && t.eat_while(bin_or_us) > 0; })) return true;
    if (whole([](Scan& t) { return t.eat('0') && t.eat_while(octal_or_us) > 0; })) return true;
    if (whole([](Scan& t) {
            if (t.eat('0')) return true;
            if (t.i < t.s.size() && t.s[t.i] >= '1' && t.s[t.i] <= '9') return t.eat_while(digit_or_us) > 0;
            return false;
        }))
        return true;
    if (whole([](Scan& t) { return t.eat('0') && t.eat('x') && t.eat_while(hex_or_us) > 0; })) return true;
    return whole([](Scan& t) {
        if (!(t.i < t.s.size() && t.s[t.i] >= '1' && t.s[t.i] <= '9')) return false;
        t.eat_while(digit_or_us);
        return sexagesimal_tail(t);
    });
}

struct Timestamp {
    int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    bool has_time = false, has_tz = false;
    int tz_hour = 0, tz_minute = 0;
};

// PyYAML's timestamp resolver and constructor pattern:
//   YYYY-MM-DD | YYYY-M?M-D?D([Tt]|[ \t]+)H?H:MM:SS(.F*)?([ \t]*(Z|[-+]H?H(:MM)?))?
inline bool match_timestamp(std::string_view v, Timestamp& ts) {
    Scan t{v};
    auto digits = [&](size_t lo, size_t hi, int& out) {
        size_t n = 0;
        out = 0;
        while (n < hi && t.i < v.size() && is_digit(v[t.i])) out = out * 10 + (v[t.i++] - '0'), ++n;
        return n >= lo;
    };
    const size_t s0 = t.i;
    if (!digits(4, 4, ts.year) || !t.eat('-')) return false;
    const size_t m0 = t.i;
    if (!digits(1, 2, ts.month) || !t.eat('-')) return false;
    const bool two_digit_month = t.i - m0 == 3;
    const size_t d0 = t.i;
    if (!digits(1, 2, ts.day)) return false;
    if (t.end()) return two_digit_month && t.i - d0 == 2 && t.i - s0 == 10;
    if (!t.eat_any("Tt")) {
        if (!t.eat_any(" \t")) return false;
        t.eat_while([](char c) { return c == ' ' || c == '\t'; });
    }
    ts.has_time = true;
    if (!digits(1, 2, ts.hour) || !t.eat(':') || !digits(2, 2, ts.minute) || !t.eat(':') || !digits(2, 2, ts.second)) return false;
    if (t.eat('.')) t.eat_while(is_digit);
    t.eat_while([](char c) { return c == ' ' || c == '\t'; });
    if (t.end()) return true;
    if (t.eat('Z')) return t.end();
    if (!t.eat_any("-+")) return false;
    ts.has_tz = true;
    if (!digits(1, 2, ts.tz_hour)) return false;
    if (t.eat(':') && !digits(2, 2, ts.tz_minute)) return false;
    return t.end();
}

// Python's datetime / timezone limits, which PyYAML's constructor hits on impossible dates.
inline bool valid_timestamp(const Timestamp& ts) {
    static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (ts.year < 1 || ts.month < 1 || ts.month > 12) return false;
    const bool leap = (ts.year % 4 == 0 && ts.year % 100 != 0) || ts.year % 400 == 0;
    if (ts.day < 1 || ts.day > kDays[ts.month - 1] + (ts.month == 2 && leap ? 1 : 0)) return false;
    if (ts.hour > 23 || ts.minute > 59 || ts.second > 59) return false;
    return !ts.has_tz || ts.tz_hour * 60 + ts.tz_minute < 24 * 60;
}

}  // namespace detail

// A YAML subset parser over the text load_model_card hands to yaml.safe_load (line breaks are
// '\n' only, tabs are gone). Errors name `source` and the README.md line: YAML line k (from 0)
// is README line first_line + k.
class FrontMatterParser {
public:
    FrontMatterParser(std::string_view text, std::string source, size_t first_line)
        : s_(text), source_(std::move(source)), first_line_(first_line) {
        starts_.push_back(0);
        for (size_t i = 0; i < s_.size(); ++i)
            if (s_[i] == '\n') starts_.push_back(i + 1);
    }

    // The document's value (null for an empty one); top-level mapping keys' lines into key_lines.
    json parse_document(std::map<std::string, size_t>* key_lines) {
        check_characters();
        key_lines_ = key_lines;
        skip_to_content();
        bool started = false;  // PyYAML refuses a '...' that ends a document never begun
        if (p_ < s_.size() && is_marker(p_, "---")) {
            p_ += 3;
            skip_spaces();
            if (at(p_) != '#' && !is_end_or_break(p_)) unsupported(p_, "a value on the '---' line");
            finish_line("");
            skip_to_content();
            started = true;
        }
        json v;  // null
        if (p_ < s_.size() && !is_marker(p_, "...") && !is_marker(p_, "---")) {
            v = parse_node(-1, Context::top, 0);
            finish_line("");
            skip_to_content();
            started = true;
        }
        if (p_ < s_.size() && is_marker(p_, "...")) {
            if (!started) fail(p_, "'...' ends a document that has no content");
            p_ += 3;
            finish_line("content after '...'");
            skip_to_content();
        }
        if (p_ < s_.size()) {
            if (is_marker(p_, "---")) unsupported(p_, "a second YAML document ('---')");
            fail(p_, col(p_) == 0 ? "unexpected content at the top level" : "bad indentation");
        }
        return v;
    }

private:
    enum class Context { top, map_value, seq_entry };

    std::string_view s_;
    std::string source_;
    size_t first_line_;
    std::vector<size_t> starts_;
    size_t p_ = 0;
    std::map<std::string, size_t>* key_lines_ = nullptr;

    size_t line_of(size_t pos) const {
        return static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), pos) - starts_.begin()) - 1;
    }
    int col(size_t pos) const { return static_cast<int>(pos - starts_[line_of(pos)]); }
    char at(size_t i) const { return i < s_.size() ? s_[i] : '\0'; }
    bool is_end_or_break(size_t i) const { return i >= s_.size() || s_[i] == '\n'; }
    bool is_blank(size_t i) const { return i >= s_.size() || s_[i] == '\n' || s_[i] == ' '; }
    bool is_marker(size_t i, std::string_view m) const {
        return col(i) == 0 && s_.substr(i, 3) == m && is_blank(i + 3);
    }

    [[noreturn]] void fail(size_t pos, const std::string& what) const {
        throw Error(ErrorKind::input, source_ + ":" + std::to_string(first_line_ + line_of(std::min(pos, s_.size()))) +
                                          ": invalid YAML front matter (llama.cpp's converter fails on it too): " + what);
    }
    [[noreturn]] void unsupported(size_t pos, const std::string& what) const {
        throw Error(ErrorKind::input, source_ + ":" + std::to_string(first_line_ + line_of(std::min(pos, s_.size()))) +
                                          ": YAML front matter uses " + what + ", which cmf does not read; simplify the card");
    }

    void check_characters() const {
        for (size_t i = 0; i < s_.size();) {
            size_t n = 1;
            const uint32_t cp = detail::decode_utf8(s_, i, n);
            if (cp == detail::kBadUtf8 || !detail::yaml_printable(cp)) fail(i, "a character YAML does not allow");
            i += n;
        }
    }

    void skip_spaces() {
        while (at(p_) == ' ') ++p_;
    }
    // Skips blank and comment-only lines; p_ ends on the first content character (or the end).
    void skip_to_content() {
        while (p_ < s_.size()) {
            skip_spaces();
            if (at(p_) == '#')
                while (!is_end_or_break(p_)) ++p_;
            if (at(p_) == '\n') ++p_;
            else break;
        }
    }
    // The rest of the line must be spaces and a comment; consumes the line break.
    // (PyYAML takes '#' for a comment wherever a token could start, "'a'#c" included.)
    void finish_line(const std::string& what) {
        skip_spaces();
        if (at(p_) == '#')
            while (!is_end_or_break(p_)) ++p_;
        if (!is_end_or_break(p_)) fail(p_, what.empty() ? "unexpected text after a value" : what);
        if (p_ < s_.size()) ++p_;
    }
    void check_depth(size_t depth, size_t pos) const {
        if (depth > kMaxDepth) unsupported(pos, "collections nested deeper than " + std::to_string(kMaxDepth) + " levels");
    }

    // The value after "key:" or "- " (p_ just past the indicator), or the document's root.
    json parse_value(int parent_indent, Context ctx, size_t depth) {
        skip_spaces();
        if (at(p_) == '#' || is_end_or_break(p_)) {
            const size_t save = p_;
            while (!is_end_or_break(p_)) ++p_;
            if (p_ < s_.size()) ++p_;
            skip_to_content();
            if (p_ >= s_.size() || is_marker(p_, "---") || is_marker(p_, "...")) return back_to(save);
            const int c = col(p_);
            if (c > parent_indent) return parse_node(parent_indent, Context::top, depth);
            // "key:" followed by a sequence at the key's own indentation
            if (ctx == Context::map_value && c == parent_indent && at(p_) == '-' && is_blank(p_ + 1))
                return parse_block_sequence(c, depth + 1);
            // PyYAML also takes a block scalar there (its indicator opens no indentation level)
            if (c == parent_indent && (at(p_) == '|' || at(p_) == '>')) return parse_block_scalar(parent_indent);
            return back_to(save);
        }
        return parse_node(parent_indent, ctx, depth);
    }
    // An empty value: p_ goes back to just before the line break that ended it.
    json back_to(size_t save) {
        p_ = save;
        while (!is_end_or_break(p_)) ++p_;
        return nullptr;
    }

    // A node whose first character is at p_. ctx: top (a fresh line: any node), seq_entry (after
    // "- ": compact collections allowed), map_value (after "key: ": scalars and flow only).
    json parse_node(int parent_indent, Context ctx, size_t depth) {
        check_depth(depth, p_);
        const size_t start = p_;
        const int c = col(p_);
        const char ch = at(p_);
        const bool collections = ctx != Context::map_value;
        if (ch == '-' && is_blank(p_ + 1)) {
            if (!collections) fail(p_, "a sequence cannot start after 'key: ' on the same line");
            return parse_block_sequence(c, depth + 1);
        }
        if (ch == '?' && is_blank(p_ + 1)) unsupported(p_, "'?' complex keys");
        if (ch == '&' || ch == '*') unsupported(p_, "anchors and aliases");
        if (ch == '%' && c == 0) unsupported(p_, "a YAML directive");
        if (ch == '!') {
            size_t e = p_;
            while (!is_blank(e)) ++e;
            if (s_.substr(p_, e - p_) != "!!str") unsupported(p_, "the tag '" + std::string(s_.substr(p_, e - p_)) + "'");
            p_ = e;
            skip_spaces();
            if (is_end_or_break(p_) || at(p_) == '#') return "";
            if (at(p_) != '"' && at(p_) != '\'' && !plain_can_start(p_, false)) unsupported(p_, "!!str before a collection");
            json v = parse_scalar_or_key(parent_indent, ctx, depth, /*force_string=*/true);
            if (!v.is_string()) unsupported(start, "!!str on a mapping key");
            return v;
        }
        if (ch == '|' || ch == '>') return parse_block_scalar(parent_indent);
        if (ch == '[' || ch == '{') {
            json v = parse_flow(depth + 1);
            const size_t save = p_;
            skip_spaces();
            if (at(p_) == ':' && is_blank(p_ + 1)) fail(start, "a list or mapping as a mapping key");
            p_ = save;
            return v;
        }
        return parse_scalar_or_key(parent_indent, ctx, depth, false);
    }

    bool plain_can_start(size_t i, bool flow) const {
        const char ch = at(i);
        static constexpr std::string_view kIndicators = "-?:,[]{}#&*!|>'\"%@`";
        if (is_blank(i)) return false;
        if (kIndicators.find(ch) == std::string_view::npos) return true;
        return !is_blank(i + 1) && (ch == '-' || (!flow && (ch == '?' || ch == ':')));
    }

    // A quoted or plain scalar; when ':' follows it on its line, the first key of a block mapping.
    json parse_scalar_or_key(int parent_indent, Context ctx, size_t depth, bool force_string) {
        const size_t start = p_;
        const int c = col(p_);
        std::string text;
        bool quoted = at(p_) == '"' || at(p_) == '\'';
        if (quoted) {
            text = parse_quoted();
        } else {
            if (!plain_can_start(p_, false)) fail(p_, std::string("a value cannot start with '") + at(p_) + "'");
            bool colon = false;
            const size_t e = plain_line_end(p_, colon);
            if (colon) {  // a key
                text.assign(s_.substr(p_, e - p_));
                p_ = e;
            } else {
                text = parse_plain(parent_indent, false);
            }
        }
        const size_t save = p_;
        skip_spaces();
        if (at(p_) == ':' && is_blank(p_ + 1)) {
            if (force_string) unsupported(start, "a tag on a mapping key");
            if (ctx == Context::map_value) fail(p_, "mapping values are not allowed here (a ': ' inside a value: quote it)");
            if (line_of(start) != line_of(p_)) fail(p_, "a mapping key must fit on one line");
            p_ = start;
            return parse_block_mapping(c, depth + 1);
        }
        p_ = save;
        if (quoted || force_string) return text;
        return resolve_plain(text, start);
    }

    // End of the plain scalar's text on this line (trailing spaces excluded), which ends at ": "
    // (colon: the scalar is a mapping key), " #" or the line's end.
    size_t plain_line_end(size_t i, bool& colon) const {
        size_t last = i;
        colon = false;
        while (!is_end_or_break(i)) {
            if (s_[i] == ':' && is_blank(i + 1)) {
                colon = true;
                return last;
            }
            if (s_[i] == '#' && i > 0 && s_[i - 1] == ' ') return last;
            if (s_[i] == ' ') {
                ++i;
                continue;
            }
            last = ++i;
        }
        return last;
    }

    // A block-context plain scalar folded over the lines indented deeper than parent_indent
    // (PyYAML scan_plain / scan_plain_spaces); p_ ends after its last character.
    std::string parse_plain(int parent_indent, bool flow) {
        std::string out;
        while (true) {
            // one line's chunks
            while (true) {
                size_t e = p_;
                while (!is_blank(e)) {
                    const char ch = s_[e];
                    if (ch == ':' && (is_blank(e + 1) || (flow && std::string_view(",[]{}").find(at(e + 1)) != std::string_view::npos))) break;
                    if (flow && std::string_view(",?[]{}").find(ch) != std::string_view::npos) break;
                    ++e;
                }
                out.append(s_.substr(p_, e - p_));
                p_ = e;
                if (at(p_) != ' ') break;
                size_t q = p_;
                while (at(q) == ' ') ++q;
                if (is_end_or_break(q) || at(q) == '#' || !plain_continues(q, flow)) break;
                out.append(s_.substr(p_, q - p_));
                p_ = q;
            }
            if (at(p_) == ':' && !flow && is_blank(p_ + 1)) fail(p_, "mapping values are not allowed here (a ': ' inside a value: quote it)");
            // the next line(s)
            size_t q = p_;
            while (at(q) == ' ') ++q;
            if (!is_end_or_break(q) || q >= s_.size()) return out;
            size_t breaks = 0;
            ++q;
            while (true) {
                while (at(q) == ' ') ++q;
                if (q < s_.size() && s_[q] == '\n') {
                    ++breaks;
                    ++q;
                    continue;
                }
                break;
            }
            if (q >= s_.size() || at(q) == '#' || is_marker(q, "---") || is_marker(q, "...")) return out;
            if (!flow && col(q) <= parent_indent) return out;
            if (flow && !plain_continues(q, true)) return out;
            out += breaks == 0 ? std::string(" ") : std::string(breaks, '\n');
            p_ = q;
        }
    }
    // Whether a chunk may start at i inside a plain scalar.
    bool plain_continues(size_t i, bool flow) const {
        const char ch = at(i);
        if (ch == ':' && (is_blank(i + 1) || (flow && std::string_view(",[]{}").find(at(i + 1)) != std::string_view::npos))) return false;
        if (flow && std::string_view(",?[]{}").find(ch) != std::string_view::npos) return false;
        return true;
    }

    json parse_block_mapping(int indent, size_t depth) {
        check_depth(depth, p_);
        json obj = json::object();
        while (true) {
            const size_t key_pos = p_;
            std::string key;
            if (at(p_) == '"' || at(p_) == '\'') {
                key = parse_quoted();
                if (line_of(key_pos) != line_of(p_)) fail(p_, "a mapping key must fit on one line");
                skip_spaces();
            } else if (at(p_) == '-' && is_blank(p_ + 1)) {
                fail(p_, "a sequence entry where a mapping key was expected");
            } else if (at(p_) == '?' && is_blank(p_ + 1)) {
                unsupported(p_, "'?' complex keys");
            } else if (at(p_) == '&' || at(p_) == '*' || at(p_) == '!') {
                unsupported(p_, "anchors, aliases or tags on mapping keys");
            } else if (at(p_) == '[' || at(p_) == '{') {
                fail(p_, "a list or mapping as a mapping key");
            } else {
                if (!plain_can_start(p_, false)) fail(p_, std::string("a mapping key cannot start with '") + at(p_) + "'");
                bool colon = false;
                const size_t e = plain_line_end(p_, colon);
                key.assign(s_.substr(p_, e - p_));
                if (key == "<<") unsupported(p_, "'<<' merge keys");
                p_ = e;
                skip_spaces();
            }
            if (!(at(p_) == ':' && is_blank(p_ + 1))) fail(p_, "expected ':' after a mapping key");
            ++p_;
            if (depth == 1 && key_lines_) (*key_lines_)[key] = first_line_ + line_of(key_pos);
            obj[key] = parse_value(indent, Context::map_value, depth);
            finish_line("");
            skip_to_content();
            if (p_ >= s_.size() || is_marker(p_, "---") || is_marker(p_, "...")) break;
            const int c = col(p_);
            if (c < indent) break;
            if (c > indent) fail(p_, "bad indentation (deeper than the mapping's keys)");
            if (at(p_) == '-' && is_blank(p_ + 1)) fail(p_, "a sequence entry where a mapping key was expected");
        }
        back_to_line_end();
        return obj;
    }

    json parse_block_sequence(int indent, size_t depth) {
        check_depth(depth, p_);
        json arr = json::array();
        while (true) {
            ++p_;  // '-'
            arr.push_back(parse_value(indent, Context::seq_entry, depth));
            finish_line("");
            skip_to_content();
            if (p_ >= s_.size() || is_marker(p_, "---") || is_marker(p_, "...")) break;
            const int c = col(p_);
            if (c < indent) break;
            if (c > indent) fail(p_, "bad indentation (deeper than the sequence's entries)");
            if (!(at(p_) == '-' && is_blank(p_ + 1))) break;  // the next key of a mapping at this indentation
        }
        back_to_line_end();
        return arr;
    }

    // After a block collection, p_ sits on the first line after it; callers finish "the
    // current line", so step back to the line break before that line.
    void back_to_line_end() {
        if (p_ >= s_.size()) return;
        p_ = starts_[line_of(p_)];
        if (p_ > 0) --p_;
    }

    // PyYAML scan_block_scalar: | literal, > folded; [+-] chomping and [1-9] indentation.
    json parse_block_scalar(int parent_indent) {
        const bool folded = at(p_) == '>';
        ++p_;
        int chomp = 0, increment = 0;
        for (int k = 0; k < 2; ++k) {
            if ((at(p_) == '+' || at(p_) == '-') && chomp == 0) chomp = at(p_++) == '+' ? 1 : -1;
            else if (detail::is_digit(at(p_)) && increment == 0) {
                if (at(p_) == '0') fail(p_, "a block scalar indentation indicator of 0");
                increment = at(p_++) - '0';
            }
        }
        if (!is_blank(p_)) fail(p_, "expected chomping or indentation indicators after '|' or '>'");
        skip_spaces();
        if (at(p_) == '#')
            while (!is_end_or_break(p_)) ++p_;
        if (!is_end_or_break(p_)) fail(p_, "text after a block scalar header");
        if (p_ < s_.size()) ++p_;

        const int min_indent = std::max(parent_indent + 1, 1);
        int indent = 0;
        std::string breaks;
        if (increment == 0) {
            int max_indent = 0;
            while (at(p_) == ' ' || at(p_) == '\n') {
                if (at(p_) == '\n') breaks += '\n';
                ++p_;
                if (s_[p_ - 1] == ' ') max_indent = std::max(max_indent, col(p_));
            }
            indent = std::max(min_indent, max_indent);
        } else {
            indent = min_indent + increment - 1;
            breaks = block_breaks(indent);
        }
        std::string out, line_break;
        while (p_ < s_.size() && col(p_) == indent) {
            out += breaks;
            const bool leading_non_space = at(p_) != ' ';
            const size_t b = p_;
            while (!is_end_or_break(p_)) ++p_;
            out.append(s_.substr(b, p_ - b));
            line_break = p_ < s_.size() ? "\n" : "";
            if (p_ < s_.size()) ++p_;
            breaks = block_breaks(indent);
            if (p_ < s_.size() && col(p_) == indent) {
                if (folded && line_break == "\n" && leading_non_space && at(p_) != ' ') {
                    if (breaks.empty()) out += ' ';
                } else {
                    out += line_break;
                }
            } else {
                break;
            }
        }
        if (chomp != -1) out += line_break;
        if (chomp == 1) out += breaks;
        back_to_line_end();
        return out;
    }
    std::string block_breaks(int indent) {
        std::string breaks;
        while (col(p_) < indent && at(p_) == ' ') ++p_;
        while (at(p_) == '\n' && p_ < s_.size()) {
            breaks += '\n';
            ++p_;
            while (col(p_) < indent && at(p_) == ' ') ++p_;
        }
        return breaks;
    }

    // PyYAML scan_flow_scalar: 'single' ('' is a quote) or "double" (backslash escapes), folded
    // over lines. p_ ends after the closing quote.
    std::string parse_quoted() {
        const char quote = at(p_);
        const bool dbl = quote == '"';
        const size_t start = p_;
        ++p_;
        std::string out;
        while (true) {
            // non-spaces
            while (true) {
                const char ch = at(p_);
                if (p_ >= s_.size()) fail(start, "a quoted scalar without its closing quote");
                if (ch == ' ' || ch == '\n') break;
                if (!dbl && ch == '\'' && at(p_ + 1) == '\'') {
                    out += '\'';
                    p_ += 2;
                } else if (ch == quote) {
                    ++p_;
                    return out;
                } else if (dbl && ch == '\\') {
                    escape(out);
                } else {
                    out += ch;
                    ++p_;
                }
            }
            // spaces and line breaks
            const size_t ws = p_;
            while (at(p_) == ' ') ++p_;
            if (p_ >= s_.size()) fail(start, "a quoted scalar without its closing quote");
            if (at(p_) == '\n') {
                ++p_;
                const std::string breaks = quoted_breaks(start);
                out += breaks.empty() ? std::string(" ") : breaks;
            } else {
                out.append(s_.substr(ws, p_ - ws));
            }
        }
    }
    std::string quoted_breaks(size_t start) {
        std::string breaks;
        while (true) {
            if (is_marker(p_, "---") || is_marker(p_, "...")) fail(p_, "a document marker inside a quoted scalar");
            while (at(p_) == ' ') ++p_;
            if (at(p_) == '\n' && p_ < s_.size()) {
                breaks += '\n';
                ++p_;
            } else {
                if (p_ >= s_.size()) fail(start, "a quoted scalar without its closing quote");
                return breaks;
            }
        }
    }
    void escape(std::string& out) {
        const size_t at_backslash = p_;
        ++p_;
        const char e = at(p_);
        static constexpr std::string_view kFrom = "0abtnvfre \"\\/";
        static constexpr uint32_t kTo[] = {0x00, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B, 0x20, 0x22, 0x5C, 0x2F};
        if (p_ < s_.size()) {
            if (auto k = kFrom.find(e); k != std::string_view::npos) {
                out += static_cast<char>(kTo[k]);
                ++p_;
                return;
            }
            switch (e) {
                case 'N': detail::append_utf8(out, 0x85); ++p_; return;
                case '_': detail::append_utf8(out, 0xA0); ++p_; return;
                case 'L': detail::append_utf8(out, 0x2028); ++p_; return;
                case 'P': detail::append_utf8(out, 0x2029); ++p_; return;
                default: break;
            }
            if (e == 'x' || e == 'u' || e == 'U') {
                const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                uint32_t cp = 0;
                for (size_t k = 1; k <= n; ++k) {
                    const char h = at(p_ + k);
                    if (!detail::is_hex(h)) fail(p_, "expected " + std::to_string(n) + " hexadecimal digits after \\" + e);
                    cp = cp * 16 + static_cast<uint32_t>(detail::is_digit(h) ? h - '0' : (h | 0x20) - 'a' + 10);
                }
                if (cp > 0x10FFFF) fail(p_, "an escape past U+10FFFF");
                detail::append_utf8(out, cp);
                p_ += n + 1;
                return;
            }
            if (e == '\n') {  // an escaped line break joins the lines without a space
                ++p_;
                out += quoted_breaks(at_backslash);
                return;
            }
        }
        fail(at_backslash, std::string("an unknown escape '\\") + (p_ < s_.size() ? std::string(1, e) : std::string()) + "'");
    }

    // [a, b, {c: d}] and {a: b, c}; may span lines. p_ ends after the closing bracket.
    json parse_flow(size_t depth) {
        check_depth(depth, p_);
        const bool seq = at(p_) == '[';
        const char close = seq ? ']' : '}';
        const size_t start = p_;
        ++p_;
        json out = seq ? json::array() : json::object();
        while (true) {
            flow_space(start);
            if (at(p_) == close) {
                ++p_;
                return out;
            }
            if (at(p_) == ',') fail(p_, "an empty entry in a flow collection");
            const size_t key_pos = p_;
            json key = flow_node(depth);
            flow_space(start);
            json value;
            bool pair = false;
            if (at(p_) == ':') {
                // PyYAML forgets a simple key once a line break follows its start
                if (line_of(key_pos) != line_of(p_)) fail(p_, "a flow mapping key must fit on one line");
                pair = true;
                ++p_;
                flow_space(start);
                if (at(p_) != ',' && at(p_) != close) value = flow_node(depth);
            }
            if (seq && !pair) {
                out.push_back(std::move(key));
            } else {
                if (key.is_array() || key.is_object()) fail(key_pos, "a list or mapping as a mapping key");
                const std::string k = key.is_string()   ? key.get<std::string>()
                                      : key.is_binary() ? std::string(key.get_binary().begin(), key.get_binary().end())
                                                        : key.dump();
                if (seq) out.push_back(json{{k, std::move(value)}});
                else out[k] = std::move(value);
            }
            flow_space(start);
            if (at(p_) == ',') {
                ++p_;
            } else if (at(p_) != close) {
                fail(p_, std::string("expected ',' or '") + close + "' in a flow collection");
            }
        }
    }
    void flow_space(size_t start) {
        while (true) {
            while (at(p_) == ' ' || (at(p_) == '\n' && p_ < s_.size())) ++p_;
            if (p_ >= s_.size()) fail(start, "a flow collection without its closing bracket");
            if (is_marker(p_, "---") || is_marker(p_, "...")) fail(p_, "a document marker inside a flow collection");
            if (at(p_) != '#') return;
            while (!is_end_or_break(p_)) ++p_;
        }
    }
    json flow_node(size_t depth) {
        const char ch = at(p_);
        const size_t start = p_;
        if (ch == '[' || ch == '{') return parse_flow(depth + 1);
        if (ch == '"' || ch == '\'') return parse_quoted();
        if (ch == '?' ) unsupported(p_, "'?' complex keys");
        if (ch == '&' || ch == '*') unsupported(p_, "anchors and aliases");
        if (ch == '!') unsupported(p_, "tags inside flow collections");
        if (!plain_can_start(p_, true)) fail(p_, std::string("unexpected '") + ch + "' in a flow collection");
        std::string text = parse_plain(-1, true);
        return resolve_plain(text, start);
    }

    // PyYAML's implicit resolution and SafeConstructor of a plain scalar.
    json resolve_plain(const std::string& v, size_t pos) const {
        if (v.empty() || v == "~" || v == "null" || v == "Null" || v == "NULL") return nullptr;
        static const char* const kTrue[] = {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"};
        static const char* const kFalse[] = {"no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"};
        for (const char* t : kTrue)
            if (v == t) return true;
        for (const char* f : kFalse)
            if (v == f) return false;
        if (v == "<<") unsupported(pos, "'<<' merge keys");
        if (v == "=") fail(pos, "the plain scalar '=' (PyYAML has no constructor for its 'value' tag)");
        const char c0 = v[0];
        const bool numeric_start = detail::is_digit(c0) || c0 == '-' || c0 == '+' || c0 == '.';
        if (numeric_start && detail::match_float(v)) return construct_float(v);
        if ((detail::is_digit(c0) || c0 == '-' || c0 == '+') && detail::match_int(v)) return construct_int(v, pos);
        detail::Timestamp ts;
        if (detail::is_digit(c0) && detail::match_timestamp(v, ts)) {
            if (!detail::valid_timestamp(ts)) fail(pos, "the date '" + v + "' does not exist");
            return opaque(v);
        }
        return v;
    }
    static json construct_float(std::string v) {
        v.erase(std::remove(v.begin(), v.end(), '_'), v.end());
        for (auto& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        double sign = 1;
        if (v[0] == '-') sign = -1;
        if (v[0] == '-' || v[0] == '+') v.erase(0, 1);
        if (v == ".inf") return sign * std::numeric_limits<double>::infinity();
        if (v == ".nan") return std::numeric_limits<double>::quiet_NaN();
        auto number = [](const std::string& t) {
            double d = 0;
            std::from_chars(t.data(), t.data() + t.size(), d);  // ERANGE leaves inf / 0 as Python's float()
            return d;
        };
        if (v.find(':') != std::string::npos) {
            double value = 0;
            size_t b = 0;
            while (true) {
                const size_t e = v.find(':', b);
                value = value * 60 + number(v.substr(b, e == std::string::npos ? std::string::npos : e - b));
                if (e == std::string::npos) break;
                b = e + 1;
            }
            return sign * value;
        }
        // from_chars wants digits before '.', Python's float() does not
        return sign * number(v[0] == '.' ? "0" + v : v);
    }
    json construct_int(std::string v, size_t pos) const {
        const std::string shown = v;
        v.erase(std::remove(v.begin(), v.end(), '_'), v.end());
        const bool neg = v[0] == '-';
        if (v[0] == '-' || v[0] == '+') v.erase(0, 1);
        if (v == "0") return 0;
        unsigned base = 10;
        std::vector<std::string> groups;
        if (v.rfind("0b", 0) == 0) base = 2, v.erase(0, 2);
        else if (v.rfind("0x", 0) == 0) base = 16, v.erase(0, 2);
        else if (v[0] == '0') base = 8;
        if (v.empty()) fail(pos, "the integer '" + shown + "' has no digits");
        if (base == 10 && v.find(':') != std::string::npos) {
            size_t b = 0;
            while (true) {
                const size_t e = v.find(':', b);
                groups.push_back(v.substr(b, e == std::string::npos ? std::string::npos : e - b));
                if (e == std::string::npos) break;
                b = e + 1;
            }
        } else {
            groups.push_back(v);
        }
        // |value| in 128 bits; past int64 it is a Python int JSON cannot hold
        unsigned __int128 value = 0;
        constexpr unsigned __int128 kCap = static_cast<unsigned __int128>(1) << 64;
        for (const auto& g : groups) {
            unsigned __int128 part = 0;
            for (char ch : g) {
                const unsigned d = detail::is_digit(ch) ? static_cast<unsigned>(ch - '0') : static_cast<unsigned>((ch | 0x20) - 'a' + 10);
                part = part * base + d;
                if (part > kCap) return opaque(shown);
            }
            value = groups.size() > 1 ? value * 60 + part : part;
            if (value > kCap) return opaque(shown);
        }
        constexpr unsigned __int128 kMaxPos = static_cast<unsigned __int128>(std::numeric_limits<int64_t>::max());
        if (!neg && value <= kMaxPos) return static_cast<int64_t>(value);
        if (neg && value <= kMaxPos + 1) return value == kMaxPos + 1 ? std::numeric_limits<int64_t>::min() : -static_cast<int64_t>(value);
        return opaque(shown);
    }
};

// README.md bytes -> the card's metadata mapping. `source` names the file in messages.
inline FrontMatter parse_front_matter(std::string_view text, const std::string& source) {
    FrontMatter fm;
    for (size_t i = 0; i < text.size();) {
        size_t n = 1;
        if (detail::decode_utf8(text, i, n) == detail::kBadUtf8) {
            size_t line = 1;
            for (size_t k = 0; k < i; k += std::max<size_t>(1, detail::line_break_at(text, k)))
                if (detail::line_break_at(text, k)) ++line;
            throw Error(ErrorKind::input, source + ":" + std::to_string(line) +
                                              ": not valid UTF-8 (llama.cpp's converter reads the model card as UTF-8 and fails on it)");
        }
        i += n;
    }
    // str.splitlines()
    std::vector<std::string_view> lines;
    for (size_t b = 0, i = 0; i <= text.size();) {
        if (i == text.size()) {
            if (i > b) lines.push_back(text.substr(b, i - b));
            break;
        }
        if (const size_t n = detail::line_break_at(text, i)) {
            lines.push_back(text.substr(b, i - b));
            i += n;
            b = i;
        } else {
            ++i;
        }
    }
    if (lines.empty() || lines[0] != "---") return fm;
    std::string yaml;
    for (size_t k = 1; k < lines.size() && lines[k] != "---"; ++k) {
        if (k > 1) yaml += '\n';
        yaml += lines[k];
    }
    yaml += '\n';
    detail::replace_all(yaml, "- no\n", "- \"no\"\n");
    detail::replace_all(yaml, "\t", "  ");
    FrontMatterParser parser(yaml, source, 2);
    json doc = parser.parse_document(&fm.key_lines);
    if (!doc.is_object()) {
        fm.key_lines.clear();
        return fm;
    }
    fm.present = true;
    fm.data = std::move(doc);
    return fm;
}

}  // namespace cmf::yaml
