// The human-readable status of a bucket prefix: one row per variant (built / pushed / failed,
// size, when) and, for each failure, the error line and the last 30 lines of its build log
// (what the old tool printed).
#pragma once

#include <cstdio>
#include <map>
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
    // the quality gate's figures of the latest job that measured each variant
    std::map<std::string, std::pair<std::string, nlohmann::json>> gates;  // variant -> (type, gate record)
    for (const auto& j : s.jobs)
        if (j.contains("variants"))
            for (auto it = j["variants"].begin(); it != j["variants"].end(); ++it)
                if (it->contains("gate") && (*it)["gate"].is_object()) gates[it.key()] = {it->value("type", ""), (*it)["gate"]};
    if (!gates.empty()) {
        o += "quality gate (llama.cpp, against the lossless file of the same build):\n";
        std::snprintf(line, sizeof line, "  %-10s %-7s %10s %10s %10s %9s %10s  %s\n", "variant", "type", "mean KLD", "p99 KLD", "max KLD", "same top", "PPL ratio", "verdict");
        o += line;
        for (const auto& [name, tg] : gates) {
            const auto& g = tg.second;
            if (g.value("lossless_reference", false)) {
                std::snprintf(line, sizeof line, "  %-10s %-7s %10s %10s %10s %9s %10s  %s\n", name.c_str(), tg.first.c_str(), "-", "-", "-", "-", "-",
                              "the reference");
            } else {
                std::string verdict = g.value("pass", false) ? "pass" : "FAIL";
                if (g.contains("reasons") && !g["reasons"].empty()) verdict += ": " + g["reasons"][0].get<std::string>();
                char top[32];
                std::snprintf(top, sizeof top, "%.2f %%", g.value("same_top_p", 0.0));
                std::snprintf(line, sizeof line, "  %-10s %-7s %10.6f %10.6f %10.6f %9s %10.6f  %.200s\n", name.c_str(), tg.first.c_str(),
                              g.value("mean_kld", 0.0), g.value("p99_kld", 0.0), g.value("max_kld", 0.0), top, g.value("ppl_ratio", 0.0), verdict.c_str());
            }
            o += line;
        }
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
