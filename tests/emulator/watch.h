// Needles the emulator looks for in every request it receives (issue 16: "a planted key's bytes
// in no request body the emulator or the registry receives"; the registry's traffic passes
// through the emulator's proxy).
//   POST /_emu/watch {"needles_b64": [base64, ...]}   replaces the needles (bytes, base64 in
//                                                      the JSON; give every form a secret may take)
//   GET  /_emu/watch   {"needles": N, "requests": scanned, "bytes": scanned,
//                       "hits": [{"needle": index, "method", "path", "where": "body|target|header"}]}
// Control requests (/_emu/...) are not scanned: they carry the needles themselves.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace cmf::emu {

class Watch {
public:
    void set(std::vector<std::string> needles) {
        std::lock_guard lock(mu_);
        needles_ = std::move(needles);
        hits_ = nlohmann::json::array();
        requests_ = bytes_ = 0;
    }
    // `headers`: every header line joined; `body`: what arrived (a cut body too).
    void scan(const std::string& method, const std::string& target, const std::string& headers, const std::string& body) {
        if (target.starts_with("/_emu/")) return;
        std::lock_guard lock(mu_);
        if (needles_.empty()) return;
        ++requests_;
        bytes_ += body.size();
        for (std::size_t i = 0; i < needles_.size(); ++i) {
            const std::string& n = needles_[i];
            if (n.empty()) continue;
            const char* where = body.find(n) != std::string::npos      ? "body"
                                : target.find(n) != std::string::npos  ? "target"
                                : headers.find(n) != std::string::npos ? "header"
                                                                       : nullptr;
            if (where) hits_.push_back({{"needle", i}, {"method", method}, {"path", target.substr(0, target.find('?'))}, {"where", where}});
        }
    }
    nlohmann::json report() {
        std::lock_guard lock(mu_);
        return {{"needles", needles_.size()}, {"requests", requests_}, {"bytes", bytes_}, {"hits", hits_}};
    }

private:
    std::mutex mu_;
    std::vector<std::string> needles_;
    nlohmann::json hits_ = nlohmann::json::array();
    std::uint64_t requests_ = 0, bytes_ = 0;
};

}  // namespace cmf::emu
