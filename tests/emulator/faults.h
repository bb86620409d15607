// Fault injection for the emulator's transport: rules set at run time through
// POST /_emu/faults (see README.md), consumed per request, plus the counters behind
// GET /_emu/stats. Header-only and Beast-free so services can read it too.
//
// A fault counts only when it changes what goes on the wire. match() reserves one firing of each
// rule it picks; the transport then reports, once the request is over, which of them it really
// applied (settle()). A reserved firing that did not apply (a reset after 300000 bytes on a
// 60-byte reply, a corrupt rule on a reply the status rule answered) goes back to its rule, so
// `fired` and the rules' remaining counts say exactly what the client had to survive.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace cmf::emu {

// One rule of POST /_emu/faults (README.md).
struct FaultRule {
    std::string kind, method, path;
    std::regex re;
    long long count = 1;  // firings left; -1 = forever
    long long skip = 0;
    int status = 503;
    std::string retry_after;
    std::uint64_t after_bytes = 0;
    bool random = false;
    double seconds = 0;
    std::uint64_t bytes_per_sec = 0;
    std::uint64_t fired = 0;  // times it applied
};

// Where a cutting fault falls in a body: a fixed byte count, or a random offset strictly inside
// the body (1 .. size-1), drawn when the body's size is known.
struct CutPoint {
    std::uint64_t after_bytes = 0;
    bool random = false;
};

// What the transport does to one exchange. Empty = serve normally.
struct FaultPlan {
    std::optional<int> status;                 // answer this instead of asking the services
    std::string retry_after;                   // with `status`
    std::optional<CutPoint> reset;             // abort the connection (RST) inside the response body
    std::optional<CutPoint> truncate;          // close cleanly inside the response body
    std::optional<CutPoint> drop_request;      // abort while receiving the request body
    std::optional<CutPoint> corrupt;           // flip one byte of the response body
    std::optional<std::uint64_t> stall_after;  // pause after N body bytes ...
    double stall_seconds = 0;                  // ... for this long
    std::uint64_t bytes_per_sec = 0;           // 0 = no cap

    // One firing reserved per picked rule (the rule stays alive if the rules are cleared meanwhile).
    struct Reserved {
        std::shared_ptr<FaultRule> rule;
        bool counted = false;  // the rule's count was decremented (not a forever rule)
    };
    std::vector<Reserved> reserved;
};

class Faults {
public:
    // Adds the rules of a POST /_emu/faults body. Throws std::invalid_argument on a bad rule.
    void configure(const nlohmann::json& j) {
        std::vector<std::shared_ptr<FaultRule>> add;
        if (j.contains("rules")) {
            if (!j["rules"].is_array()) throw std::invalid_argument("'rules' must be an array");
            for (const auto& r : j["rules"]) add.push_back(std::make_shared<FaultRule>(parse(r)));
        }
        std::lock_guard lock(mu_);
        if (j.value("clear", false)) rules_.clear();
        if (j.contains("seed")) rng_.seed(j["seed"].get<std::uint64_t>());
        for (auto& r : add) rules_.push_back(std::move(r));
    }
    void clear() {
        std::lock_guard lock(mu_);
        rules_.clear();
    }
    std::size_t active() {
        std::lock_guard lock(mu_);
        std::size_t n = 0;
        for (auto& r : rules_) n += r->count != 0;
        return n;
    }

    // Picks the faults for one request (at most one rule per kind) and reserves one firing of
    // each. A status rule answers instead of the services, so nothing else can apply with it.
    FaultPlan match(const std::string& method, const std::string& target) {
        FaultPlan plan;
        std::lock_guard lock(mu_);
        std::set<std::string> taken;
        for (auto& r : rules_) {
            if (r->count == 0 || taken.count(r->kind)) continue;
            if (!r->method.empty() && r->method != method) continue;
            if (!std::regex_search(target, r->re)) continue;
            if (r->skip > 0) {  // let this many matching requests through first
                --r->skip;
                continue;
            }
            taken.insert(r->kind);
            const bool counted = r->count > 0;
            if (counted) --r->count;
            plan.reserved.push_back({r, counted});
            const CutPoint cut{r->after_bytes, r->random};
            if (r->kind == "status") {
                plan.status = r->status;
                plan.retry_after = r->retry_after;
            } else if (r->kind == "reset") plan.reset = cut;
            else if (r->kind == "truncate") plan.truncate = cut;
            else if (r->kind == "drop_request") plan.drop_request = cut;
            else if (r->kind == "corrupt") plan.corrupt = cut;
            else if (r->kind == "stall") plan.stall_after = r->after_bytes, plan.stall_seconds = r->seconds;
            else if (r->kind == "bandwidth") plan.bytes_per_sec = r->bytes_per_sec;
        }
        if (plan.status) {  // the other reservations cannot apply to an injected answer
            FaultPlan only;
            only.status = plan.status;
            only.retry_after = plan.retry_after;
            for (auto& res : plan.reserved) {
                if (res.rule->kind == "status") only.reserved.push_back(res);
                else give_back_locked(res);
            }
            return only;
        }
        return plan;
    }

    // The offset of a cut inside a body of `size` bytes; nullopt when the cut would not fall
    // inside it (then the fault does not apply).
    std::optional<std::uint64_t> cut_offset(const CutPoint& c, std::uint64_t size) {
        if (c.random) {
            if (size < 2) return std::nullopt;
            std::lock_guard lock(mu_);
            return std::uniform_int_distribution<std::uint64_t>(1, size - 1)(rng_);
        }
        if (c.after_bytes >= size) return std::nullopt;
        return c.after_bytes;
    }

    // Called once per exchange: the kinds in `applied` are counted as fired; every other
    // reservation returns to its rule.
    void settle(FaultPlan& plan, const std::set<std::string>& applied) {
        std::lock_guard lock(mu_);
        for (auto& res : plan.reserved) {
            if (applied.count(res.rule->kind)) {
                ++fired_[res.rule->kind];
                ++faults_fired_;
                ++res.rule->fired;
            } else {
                give_back_locked(res);
            }
        }
        plan.reserved.clear();
    }

    void count_request() { ++requests_; }
    void count_connection() { ++connections_; }
    void add_sent(std::uint64_t n) { bytes_sent_ += n; }
    void add_received(std::uint64_t n) { bytes_received_ += n; }

    // `faults_fired` and `fired` count applied faults only. `dropped` is the number of
    // connections a fault closed in the middle of a body (reset + truncate + drop_request).
    nlohmann::json stats() {
        nlohmann::json j = {{"requests", requests_.load()},
                            {"connections", connections_.load()},
                            {"bytes_sent", bytes_sent_.load()},
                            {"bytes_received", bytes_received_.load()}};
        std::lock_guard lock(mu_);
        j["faults_fired"] = faults_fired_;
        j["fired"] = nlohmann::json::object();
        for (auto& [k, v] : fired_) j["fired"][k] = v;
        j["dropped"] = value_or0("reset") + value_or0("truncate") + value_or0("drop_request");
        j["rules"] = nlohmann::json::array();  // each rule as given, with how often it applied
        for (const auto& r : rules_)
            j["rules"].push_back({{"kind", r->kind}, {"path", r->path}, {"method", r->method}, {"fired", r->fired}, {"left", r->count}});
        return j;
    }
    void reset_stats() {
        requests_ = connections_ = bytes_sent_ = bytes_received_ = 0;
        std::lock_guard lock(mu_);
        faults_fired_ = 0;
        fired_.clear();
    }

private:
    std::uint64_t value_or0(const std::string& k) const {
        auto it = fired_.find(k);
        return it == fired_.end() ? 0 : it->second;
    }

    static void give_back_locked(const FaultPlan::Reserved& res) {
        if (res.counted) ++res.rule->count;
    }

    static FaultRule parse(const nlohmann::json& j) {
        if (!j.is_object()) throw std::invalid_argument("a rule must be an object");
        FaultRule r;
        r.kind = j.value("kind", "");
        static const char* kinds[] = {"status", "reset", "truncate", "drop_request", "corrupt", "stall", "bandwidth"};
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
        r.random = j.value("random", false);
        r.seconds = j.value("seconds", 0.0);
        r.bytes_per_sec = j.value("bytes_per_sec", std::uint64_t{0});
        if (r.kind == "bandwidth" && r.bytes_per_sec == 0) throw std::invalid_argument("bandwidth needs bytes_per_sec > 0");
        if (r.random && r.kind != "reset" && r.kind != "truncate" && r.kind != "drop_request" && r.kind != "corrupt")
            throw std::invalid_argument("'random' applies to reset, truncate, drop_request and corrupt only");
        return r;
    }

    std::mutex mu_;
    std::vector<std::shared_ptr<FaultRule>> rules_;
    std::map<std::string, std::uint64_t> fired_;
    std::uint64_t faults_fired_ = 0;
    std::mt19937_64 rng_{20261202};
    std::atomic<std::uint64_t> requests_{0}, connections_{0}, bytes_sent_{0}, bytes_received_{0};

};

}  // namespace cmf::emu
