// The human-readable status of a bucket prefix: one row per variant (built / pushed / failed,
// size, when) and, for each failure, the error line and the last 30 lines of its build log
// (what the old tool printed).
#pragma once

#include <cstdio>
#include <string>

#include "cmf/factory/status.h"

namespace cmf::factory {

inline constexpr size_t kFailureLogLines = 30;

inline std::string human_size(uint64_t b) {
    const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double x = static_cast<double>(b);
    int i = 0;
    while (x >= 1024 && i < 4) {
        x /= 1024;
        ++i;
    }
    char s[32];
    std::snprintf(s, sizeof s, i ? "%.1f %s" : "%.0f %s", x, u[i]);
    return s;
}

inline std::string render_status(Bucket& b, const std::string& prefix, const BucketStatus& s) {
    std::string o;
    char line[512];
    if (s.variants.empty()) return "no variants in " + b.uri() + "/" + prefix + "status/\n";
    std::snprintf(line, sizeof line, "%-10s %-6s %-6s %-6s %-12s %-21s %s\n", "variant", "built", "pushed", "failed", "size", "when", "model");
    o += line;
    for (const auto& [name, v] : s.variants) {
        uint64_t size = 0;
        std::string model;
        if (v.built_info && v.built_info->contains("files"))
            for (const auto& f : (*v.built_info)["files"]) size += f.value("size", uint64_t{0});
        if (v.built_info) model = v.built_info->value("model_name", "");
        std::snprintf(line, sizeof line, "%-10s %-6s %-6s %-6s %-12s %-21s %s\n", name.c_str(), v.built ? "yes" : "-", v.pushed ? "yes" : "-",
                      v.failed ? "yes" : "-", v.built ? human_size(size).c_str() : "-",
                      v.when.time_since_epoch().count() ? utc_timestamp(v.when).c_str() : "-", model.c_str());
        o += line;
    }
    for (const auto& j : s.jobs) {
        o += "job " + j.value("job_id", "?") + ": " + j.value("state", "?") + " (started " + j.value("started", "?");
        if (j.contains("finished")) o += ", finished " + j.value("finished", "?");
        o += ")\n";
        if (j.contains("variants"))
            for (auto it = j["variants"].begin(); it != j["variants"].end(); ++it)
                if (it->contains("push") && (*it)["push"].value("state", "") == "skipped")
                    o += "  " + it.key() + ": push skipped: " + (*it)["push"].value("reason", "") + "\n";
    }
    if (s.heartbeat) o += "heartbeat: " + s.heartbeat->value("phase", "?") + " at " + s.heartbeat->value("ts", "?") + "\n";
    for (const auto& [name, v] : s.variants) {
        if (!v.failed) continue;
        o += "\n" + name + " failed: " + v.fail_line + "\n";
        if (auto log = b.get(build_log_object(prefix, name))) {
            o += "last " + std::to_string(kFailureLogLines) + " lines of " + build_log_object(prefix, name) + ":\n";
            o += last_lines(*log, kFailureLogLines);
        }
    }
    return o;
}

}  // namespace cmf::factory
