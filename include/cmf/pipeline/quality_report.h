// The per-variant quality report: for every tensor the relative RMS error and the largest
// absolute error of the values as written, against the F32 source (after the norm +1 transform).
// Written as JSON next to the GGUF (<file>.quality.json) and summarized on the console.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/core/temp_file.h"
#include "cmf/pipeline/convert.h"

namespace cmf {

struct QualitySummary {
    double overall_relative_rms = 0;  // over all elements of the checkpoint's tensors
    double max_abs = 0;
    std::vector<std::pair<std::string, double>> worst;  // up to five, by relative RMS
};

// Tensors generated from the config (Gemma 4's rope_freqs, with its 1e30 entries) are written
// exactly and would swamp the overall figure's denominator: they count only in their own row.
inline QualitySummary summarize_quality(const ConversionPlan& plan, const PlannedFile& f, const std::vector<ErrorStat>& errs) {
    QualitySummary q;
    ErrorStat all;
    std::vector<std::pair<std::string, double>> rel;
    for (size_t k = 0; k < errs.size(); ++k) {
        if (!plan.tensors[f.tensor_of[k]].generated) all.merge(errs[k]);
        rel.emplace_back(f.layout.tensors[k].name, errs[k].relative_rms());
    }
    q.overall_relative_rms = all.relative_rms();
    q.max_abs = all.max_abs;
    std::stable_sort(rel.begin(), rel.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    for (size_t i = 0; i < rel.size() && i < 5; ++i) q.worst.push_back(rel[i]);
    return q;
}

inline nlohmann::json quality_report_json(const ConversionPlan& plan, const PlannedFile& f, const std::vector<ErrorStat>& errs) {
    nlohmann::json j;
    j["file"] = f.path.filename().string();
    j["variant"] = f.label;
    const QualitySummary q = summarize_quality(plan, f, errs);
    j["overall"] = {{"relative_rms", q.overall_relative_rms}, {"max_abs_error", q.max_abs}};
    j["tensors"] = nlohmann::json::array();
    for (size_t k = 0; k < errs.size(); ++k) {
        const auto& t = f.layout.tensors[k];
        j["tensors"].push_back({{"name", t.name},
                                {"type", type_display_name(t.type)},
                                {"elements", errs[k].n},
                                {"relative_rms", errs[k].relative_rms()},
                                {"max_abs_error", errs[k].max_abs}});
    }
    return j;
}

// Writes a small text file atomically (TempFile: temp name, fsync, rename).
inline void write_file_atomic(const fs::path& path, const std::string& text) {
    TempFile out(path);
    out.write(text);
    out.commit();
}

}  // namespace cmf
