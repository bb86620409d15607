// Fault injection for the emulator's transport: rules set at run time through
// POST /_emu/faults (see README.md), consumed per request, plus the counters behind
// GET /_emu/stats. Header-only and Beast-free so services can read it too.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

namespace cmf::emu {

// What the transport does to one response. Empty = serve normally.
struct FaultPlan {
    std::optional<int> status;             // answer this instead of asking the services
    std::string retry_after;               // with `status`
    std::optional<std::uint64_t> reset_after;     // abort the connection after N body bytes
    std::optional<std::uint64_t> truncate_after;  // close cleanly after N body bytes
    std::optional<std::uint64_t> corrupt_at;      // flip the byte at this body offset
    std::optional<std::uint64_t> stall_after;     // pause after N body bytes ...
    double stall_seconds = 0;                     // ... for this long
    std::uint64_t bytes_per_sec = 0;              // 0 = no cap
};

class Faults {
public:
    // Adds the rules of a POST /_emu/faults body. Throws std::invalid_argument on a bad rule.
    void configure(const nlohmann::json& j) {
        std::vector<Rule> add;
        if (j.contains("rules")) {
            if (!j["rules"].is_array()) throw std::invalid_argument("'rules' must be an array");
            for (const auto& r : j["rules"]) add.push_back(parse(r));
        }
        std::lock_guard lock(mu_);
        if (j.value("clear", false)) rules_.clear();
        for (auto& r : add) rules_.push_back(std::move(r));
    }
    void clear() {
        std::lock_guard lock(mu_);
        rules_.clear();
    }
    std::size_t active() {
        std::lock_guard lock(mu_);
        std::size_t n = 0;
        for (auto& r : rules_) n += r.count != 0;
        return n;
    }

    // Picks the faults for one request and consumes their counts.
    FaultPlan match(const std::string& method, const std::string& target) {
        FaultPlan plan;
        std::lock_guard lock(mu_);
        std::map<std::string, bool> taken;
        for (auto& r : rules_) {
            if (r.count == 0 || taken[r.kind]) continue;
            if (!r.method.empty() && r.method != method) continue;
            if (!std::regex_search(target, r.re)) continue;
            if (r.kind == "status" && plan.status) continue;
            if (r.skip > 0) {  // let this many matching requests through first
                --r.skip;
                continue;
            }
            taken[r.kind] = true;
            if (r.count > 0) --r.count;
            ++fired_[r.kind];
            ++faults_fired_;
            if (r.kind == "status") {
                plan.status = r.status;
                plan.retry_after = r.retry_after;
                return plan;  // the services are not asked: no transport fault applies either
            }
            if (r.kind == "reset") plan.reset_after = r.after_bytes;
            else if (r.kind == "truncate") plan.truncate_after = r.after_bytes;
            else if (r.kind == "corrupt") plan.corrupt_at = r.after_bytes;
            else if (r.kind == "stall") plan.stall_after = r.after_bytes, plan.stall_seconds = r.seconds;
            else if (r.kind == "bandwidth") plan.bytes_per_sec = r.bytes_per_sec;
        }
        return plan;
    }

    void count_request() { ++requests_; }
    void count_connection() { ++connections_; }
    void add_sent(std::uint64_t n) { bytes_sent_ += n; }
    void add_received(std::uint64_t n) { bytes_received_ += n; }

    nlohmann::json stats() {
        nlohmann::json j = {{"requests", requests_.load()},
                            {"connections", connections_.load()},
                            {"bytes_sent", bytes_sent_.load()},
                            {"bytes_received", bytes_received_.load()}};
        std::lock_guard lock(mu_);
        j["faults_fired"] = faults_fired_;
        j["fired"] = nlohmann::json::object();
        for (auto& [k, v] : fired_) j["fired"][k] = v;
        return j;
    }
    void reset_stats() {
        requests_ = connections_ = bytes_sent_ = bytes_received_ = 0;
        std::lock_guard lock(mu_);
        faults_fired_ = 0;
        fired_.clear();
    }

private:
    struct Rule {
        std::string kind, method, path;
        std::regex re;
        long long count = 1;
        long long skip = 0;
        int status = 503;
        std::string retry_after;
        std::uint64_t after_bytes = 0;
        double seconds = 0;
        std::uint64_t bytes_per_sec = 0;
    };

    static Rule parse(const nlohmann::json& j) {
        if (!j.is_object()) throw std::invalid_argument("a rule must be an object");
        Rule r;
        r.kind = j.value("kind", "");
        static const char* kinds[] = {"status", "reset", "truncate", "corrupt", "stall", "bandwidth"};
        if (std::find(std::begin(kinds), std::end(kinds), r.kind) == std::end(kinds))
            throw std::invalid_argument("unknown fault kind '" + r.kind + "'");
        r.path = j.value("path", ".");
        r.re = std::regex(r.path, std::regex::ECMAScript);
        r.method = j.value("method", "");
        r.count = j.value("count", 1LL);
        r.skip = j.value("skip", 0LL);
        r.status = j.value("status", 503);
        if (j.contains("retry_after"))
            r.retry_after = j["retry_after"].is_string() ? j["retry_after"].get<std::string>() : j["retry_after"].dump();
        r.after_bytes = j.value("after_bytes", std::uint64_t{0});
        r.seconds = j.value("seconds", 0.0);
        r.bytes_per_sec = j.value("bytes_per_sec", std::uint64_t{0});
        if (r.kind == "bandwidth" && r.bytes_per_sec == 0) throw std::invalid_argument("bandwidth needs bytes_per_sec > 0");
        return r;
    }

    std::mutex mu_;
    std::vector<Rule> rules_;
    std::map<std::string, std::uint64_t> fired_;
    std::uint64_t faults_fired_ = 0;
    std::atomic<std::uint64_t> requests_{0}, connections_{0}, bytes_sent_{0}, bytes_received_{0};
};

}  // namespace cmf::emu
