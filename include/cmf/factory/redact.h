// Secret redaction: every line the factory writes (logs, markers, status, errors) passes through
// a Redactor that knows the secret values of the run and replaces them with "***".
#pragma once

#include <string>
#include <vector>

namespace cmf::factory {

class Redactor {
public:
    // Secrets shorter than this are not registered: replacing "a" everywhere would garble text,
    // and no real token is that short.
    static constexpr size_t kMinSecretLength = 6;

    void add(const std::string& secret) {
        if (secret.size() < kMinSecretLength) return;
        for (const auto& s : secrets_)
            if (s == secret) return;
        secrets_.push_back(secret);
    }
    std::string operator()(std::string text) const {
        for (const auto& s : secrets_) {
            size_t p = 0;
            while ((p = text.find(s, p)) != std::string::npos) {
                text.replace(p, s.size(), "***");
                p += 3;
            }
        }
        return text;
    }
    bool empty() const { return secrets_.empty(); }

private:
    std::vector<std::string> secrets_;
};

}  // namespace cmf::factory
