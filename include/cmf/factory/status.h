// Markers and status objects in the bucket, under the job's prefix (the old scripts' layout):
//   status/<variant>.built        create-only; JSON: type, model name, objects, sizes, sha256, time
//   status/<variant>.pushed       create-only; JSON: registry reference, manifest digest (the
//                                 registry's and the export's), blob counts, time
//   status/<variant>-error.fail   create-only; the error line (text; "push: ..." when the build
//                                 worked and the push failed: the next run retries the push)
//   status/<variant>-build.log    the variant's build log (overwritten as it grows)
//   status/<job>.json             machine-readable job status (overwritten at each step)
//   status/heartbeat.json         {job, phase, detail, pct, ts, pid, host}; at most every 10 s
//                                 while a phase runs (GCS allows one write/s per object)
//   models/<model_name>/...       the GGUF(s), quality report and README.md model card
#pragma once

#include "cmf/core/rfc3339.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmf/factory/bucket.h"

namespace cmf::factory {

inline std::string marker_built(const std::string& prefix, const std::string& v) { return prefix + "status/" + v + ".built"; }
inline std::string marker_pushed(const std::string& prefix, const std::string& v) { return prefix + "status/" + v + ".pushed"; }
inline std::string marker_failed(const std::string& prefix, const std::string& v) { return prefix + "status/" + v + "-error.fail"; }
inline std::string build_log_object(const std::string& prefix, const std::string& v) { return prefix + "status/" + v + "-build.log"; }
inline std::string job_status_object(const std::string& prefix, const std::string& job) { return prefix + "status/" + job + ".json"; }
inline std::string heartbeat_object(const std::string& prefix) { return prefix + "status/heartbeat.json"; }
inline std::string model_object(const std::string& prefix, const std::string& model_name, const std::string& file) {
    return prefix + "models/" + model_name + "/" + file;
}

// The heartbeat interval: GCS allows about one write per second to one object name; a
// heartbeat every 10 s is far below that and fine-grained enough to judge a stalled worker.
inline constexpr std::chrono::seconds kHeartbeatInterval{10};

inline std::string utc_timestamp(std::chrono::system_clock::time_point t = std::chrono::system_clock::now()) { return format_rfc3339(t); }

// What the bucket says about one variant, from one listing of status/ plus the small markers.
struct VariantView {
    std::string variant;
    bool built = false, pushed = false, failed = false;
    std::optional<nlohmann::json> built_info;   // the .built marker's JSON
    std::optional<nlohmann::json> pushed_info;
    std::string fail_line;                       // the .fail marker's text
    std::chrono::system_clock::time_point when;  // newest marker's time
    bool has_log = false;
};

struct BucketStatus {
    std::map<std::string, VariantView> variants;
    std::vector<nlohmann::json> jobs;      // status/<job>.json documents
    std::optional<nlohmann::json> heartbeat;
};

inline BucketStatus read_bucket_status(Bucket& b, const std::string& prefix) {
    BucketStatus s;
    const std::string dir = prefix + "status/";
    auto ends = [](const std::string& n, const std::string& suf) { return n.size() > suf.size() && n.compare(n.size() - suf.size(), suf.size(), suf) == 0; };
    auto parse = [](const std::optional<std::string>& t) -> std::optional<nlohmann::json> {
        if (!t) return std::nullopt;
        auto j = nlohmann::json::parse(*t, nullptr, false);
        if (j.is_discarded()) return std::nullopt;
        return j;
    };
    for (const auto& o : b.list(dir)) {
        std::string n = o.name.substr(dir.size());
        if (n.find('/') != std::string::npos) continue;
        auto view = [&](const std::string& v) -> VariantView& {
            auto& x = s.variants[v];
            x.variant = v;
            return x;
        };
        if (ends(n, "-error.fail")) {
            auto& v = view(n.substr(0, n.size() - 11));
            v.failed = true;
            v.fail_line = b.get(o.name).value_or("");
            while (!v.fail_line.empty() && v.fail_line.back() == '\n') v.fail_line.pop_back();
            v.when = std::max(v.when, o.updated);
        } else if (ends(n, "-build.log")) {
            view(n.substr(0, n.size() - 10)).has_log = true;
        } else if (ends(n, ".built")) {
            auto& v = view(n.substr(0, n.size() - 6));
            v.built = true;
            v.built_info = parse(b.get(o.name));
            v.when = std::max(v.when, o.updated);
        } else if (ends(n, ".pushed")) {
            auto& v = view(n.substr(0, n.size() - 7));
            v.pushed = true;
            v.pushed_info = parse(b.get(o.name));
            v.when = std::max(v.when, o.updated);
        } else if (n == "heartbeat.json") {
            s.heartbeat = parse(b.get(o.name));
        } else if (ends(n, ".json")) {
            if (auto j = parse(b.get(o.name)); j && j->is_object() && j->value("schema", "") == "cmf.status/1") s.jobs.push_back(*j);
        }
    }
    return s;
}

// The last `n` lines of a text (for failure reports: the old tool printed the last 30).
inline std::string last_lines(const std::string& text, size_t n) {
    size_t end = text.size();
    if (end && text[end - 1] == '\n') --end;
    size_t pos = end, count = 0;
    while (pos > 0) {
        if (text[pos - 1] == '\n' && ++count == n) break;
        --pos;
    }
    return text.substr(pos, end - pos) + "\n";
}

}  // namespace cmf::factory
