// A strict `.env` reader: the old build scripts' configuration file.
//
// Accepted, one assignment per line (LF or CRLF):
//   1. blank lines and lines whose first non-blank character is `#`
//   2. optional `export ` prefix (the file can also be `source`d by a shell)
//   3. KEY = [A-Za-z_][A-Za-z0-9_]*, immediately followed by `=` (no blanks around it)
//   4. VALUE: empty; or unquoted (no blanks, quotes, `$`, backslash or backtick; a blank then `#`
//      starts a comment); or '...' (literal); or "..." (escapes \" \\ \n \t; no `$` or backtick)
//   5. after a closing quote only blanks and an optional `# comment`
// Everything else is an error naming FILE:LINE. `$` is refused, not expanded: a shell that
// sources the file would expand it and cmf would not, so the two would disagree silently.
// A key set twice is an error for the same reason (which one wins is easy to get wrong).
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "cmf/core/error.h"

namespace cmf::factory {

struct DotenvEntry {
    std::string key;
    std::string value;
    size_t line = 0;
};

inline constexpr size_t kDotenvMaxBytes = 1 << 20;  // a config file, not a data file

namespace detail {
inline bool dotenv_key_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
inline bool dotenv_key_char(char c) { return dotenv_key_start(c) || (c >= '0' && c <= '9'); }
inline bool dotenv_blank(char c) { return c == ' ' || c == '\t'; }
}  // namespace detail

// Parses the whole text; `origin` names the file in error messages ("FILE:LINE: ...").
inline std::vector<DotenvEntry> parse_dotenv(std::string_view text, const std::string& origin) {
    using namespace detail;
    std::vector<DotenvEntry> out;
    std::map<std::string, size_t> seen;
    if (text.size() > kDotenvMaxBytes) fail_input(origin + ": larger than 1 MiB; is this really a .env file?");
    size_t lineno = 0, pos = 0;
    while (pos < text.size()) {
        size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos) eol = text.size();
        std::string_view line = text.substr(pos, eol - pos);
        pos = eol + 1;
        ++lineno;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        auto bad = [&](const std::string& what) { fail_input(origin + ":" + std::to_string(lineno) + ": " + what); };
        for (char c : line)
            if (c == '\0' || c == '\r') bad("control character in line");
        size_t i = 0;
        while (i < line.size() && dotenv_blank(line[i])) ++i;
        if (i == line.size() || line[i] == '#') continue;
        if (line.substr(i, 7) == "export " || line.substr(i, 7) == "export\t") {
            i += 7;
            while (i < line.size() && dotenv_blank(line[i])) ++i;
        }
        const size_t k0 = i;
        if (i == line.size() || !dotenv_key_start(line[i])) bad("expected KEY=VALUE (a key starts with a letter or '_')");
        while (i < line.size() && dotenv_key_char(line[i])) ++i;
        std::string key(line.substr(k0, i - k0));
        if (i == line.size()) bad("'" + key + "' has no '=' (expected KEY=VALUE)");
        if (dotenv_blank(line[i])) bad("blank between '" + key + "' and '=' (write KEY=VALUE)");
        if (line[i] != '=') bad("invalid character '" + std::string(1, line[i]) + "' in key '" + key + "'");
        ++i;
        std::string value;
        auto rest_is_comment = [&](size_t j) {
            while (j < line.size() && dotenv_blank(line[j])) ++j;
            if (j < line.size() && line[j] != '#') bad("unexpected text after the closing quote of " + key);
        };
        if (i < line.size() && line[i] == '\'') {
            size_t close = line.find('\'', i + 1);
            if (close == std::string_view::npos) bad("unterminated ' quote in the value of " + key + " (values are one line)");
            value = std::string(line.substr(i + 1, close - i - 1));
            rest_is_comment(close + 1);
        } else if (i < line.size() && line[i] == '"') {
            size_t j = i + 1;
            bool closed = false;
            for (; j < line.size(); ++j) {
                char c = line[j];
                if (c == '"') {
                    closed = true;
                    break;
                }
                if (c == '$' || c == '`') bad("'" + std::string(1, c) + "' in the value of " + key + ": cmf does not expand variables; use single quotes for a literal value");
                if (c == '\\') {
                    if (++j == line.size()) break;
                    switch (line[j]) {
                        case '"': value += '"'; break;
                        case '\\': value += '\\'; break;
                        case 'n': value += '\n'; break;
                        case 't': value += '\t'; break;
                        default: bad("unknown escape '\\" + std::string(1, line[j]) + "' in the value of " + key);
                    }
                    continue;
                }
                value += c;
            }
            if (!closed) bad("unterminated \" quote in the value of " + key + " (values are one line)");
            rest_is_comment(j + 1);
        } else {
            size_t j = i;
            while (j < line.size() && !dotenv_blank(line[j])) {
                char c = line[j];
                if (c == '\'' || c == '"') bad("quote inside the unquoted value of " + key + "; quote the whole value");
                if (c == '$' || c == '`' || c == '\\')
                    bad("'" + std::string(1, c) + "' in the value of " + key + ": cmf does not expand variables; use single quotes for a literal value");
                ++j;
            }
            value = std::string(line.substr(i, j - i));
            size_t k = j;
            while (k < line.size() && dotenv_blank(line[k])) ++k;
            if (k < line.size()) {
                if (line[k] != '#' || k == j) bad("the value of " + key + " contains a blank; quote it");
            }
        }
        if (auto it = seen.find(key); it != seen.end())
            bad(key + " is set twice (first on line " + std::to_string(it->second) + ")");
        seen[key] = lineno;
        out.push_back({key, std::move(value), lineno});
    }
    return out;
}

}  // namespace cmf::factory
