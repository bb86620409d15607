// Secrets never leave the process in text: one redactor for every client and every line the
// factory writes (logs, markers, status, errors, model cards). It replaces each registered
// secret, as sent and as a server may echo it (percent-encoded), by "<redacted>".
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cmf/core/encoding.h"

namespace cmf {

inline constexpr std::string_view kRedacted = "<redacted>";

class Redactor {
public:
    // Secrets shorter than this are not registered: replacing "a" everywhere would garble text,
    // and no real token or key is that short.
    static constexpr std::size_t kMinSecretLength = 6;

    Redactor() = default;
    Redactor(std::initializer_list<std::string> secrets) {
        for (const auto& s : secrets) add(s);
    }

    void add(const std::string& secret) {
        if (secret.size() < kMinSecretLength) return;
        for (const std::string& form : {secret, percent_encode(secret)}) {
            bool known = false;
            for (const auto& s : secrets_) known = known || s == form;
            if (!known) secrets_.push_back(form);
        }
    }

    std::string operator()(std::string text) const {
        for (const auto& s : secrets_)
            for (std::size_t p = 0; (p = text.find(s, p)) != std::string::npos; p += kRedacted.size())
                text.replace(p, s.size(), kRedacted);
        return text;
    }

    bool empty() const { return secrets_.empty(); }

private:
    std::vector<std::string> secrets_;
};

inline std::string redact(std::string text, std::initializer_list<std::string> secrets) {
    return Redactor(secrets)(std::move(text));
}
inline std::string redact(std::string text, const std::vector<std::string>& secrets) {
    Redactor r;
    for (const auto& s : secrets) r.add(s);
    return r(std::move(text));
}

// Server text inside a one-line message: line breaks and tabs become spaces, at most `max`
// characters.
inline std::string one_line(std::string text, std::size_t max = 300) {
    for (char& c : text)
        if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    if (text.size() > max) text = text.substr(0, max - 3) + "...";
    return text;
}

}  // namespace cmf
