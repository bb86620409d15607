// How an evaluation is written: llama-perplexity's own summary lines (the same labels and
// printf formats, so the two can be read side by side or diffed), and the JSON `cmf eval --json`,
// the factory's quality JSON and status carry. Pure formatting: no engine needed.
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "cmf/engine/engine.h"
#include "cmf/engine/texts.h"

namespace cmf::engine {

// What an importance matrix made on the built-in calibration text records as its dataset.
inline constexpr const char* kBuiltinCalibrationDataset = "cmf built-in calibration text";

// The built-in evaluation (or calibration) text as conversations.
inline EvalText builtin_text(const std::vector<texts::Conversation>& convs, const char* label) {
    EvalText t;
    t.label = label;
    for (const auto& c : convs) {
        Conversation out;
        for (const auto& turn : c) out.push_back({std::string(turn.role), std::string(turn.content)});
        t.chat.push_back(std::move(out));
    }
    return t;
}

namespace report_detail {
inline std::string fmt(const char* f, double a) {
    char b[128];
    std::snprintf(b, sizeof b, f, a);
    return b;
}
inline std::string fmt(const char* f, double a, double c) {
    char b[128];
    std::snprintf(b, sizeof b, f, a, c);
    return b;
}
}  // namespace report_detail

// llama-perplexity --kl-divergence's summary, line for line (perplexity.cpp, the end of
// kl_divergence()).
inline std::string summary_text(const KldStats& s) {
    using report_detail::fmt;
    std::string o;
    o += "====== Perplexity statistics ======\n";
    o += fmt("Mean PPL(Q)                   : %10.6lf ± %10.6lf\n", s.ppl, s.ppl_unc);
    o += fmt("Mean PPL(base)                : %10.6lf ± %10.6lf\n", s.ppl_base, s.ppl_base_unc);
    o += fmt("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2lf%%\n", s.cor);
    o += fmt("Mean ln(PPL(Q)/PPL(base))     : %10.6lf ± %10.6lf\n", s.ln_ratio, s.ln_ratio_unc);
    o += fmt("Mean PPL(Q)/PPL(base)         : %10.6lf ± %10.6lf\n", s.ppl_ratio, s.ppl_ratio_unc);
    o += fmt("Mean PPL(Q)-PPL(base)         : %10.6lf ± %10.6lf\n", s.ppl_diff, s.ppl_diff_unc);
    o += "\n====== KL divergence statistics ======\n";
    o += fmt("Mean    KLD: %10.6lf ± %10.6lf\n", s.mean_kld, s.mean_kld_unc);
    o += fmt("Maximum KLD: %10.6f\n", s.max_kld);
    o += fmt("99.9%%   KLD: %10.6f\n", s.p999_kld);
    o += fmt("99.0%%   KLD: %10.6f\n", s.p99_kld);
    o += fmt("95.0%%   KLD: %10.6f\n", s.p95_kld);
    o += fmt("90.0%%   KLD: %10.6f\n", s.p90_kld);
    o += fmt("Median  KLD: %10.6f\n", s.median_kld);
    o += fmt("10.0%%   KLD: %10.6f\n", s.p10_kld);
    o += fmt(" 5.0%%   KLD: %10.6f\n", s.p5_kld);
    o += fmt(" 1.0%%   KLD: %10.6f\n", s.p1_kld);
    o += fmt(" 0.1%%   KLD: %10.6f\n", s.p01_kld);
    o += fmt("Minimum KLD: %10.6f\n", s.min_kld);
    o += "\n====== Token probability statistics ======\n";
    o += fmt("Mean    Δp: %6.3lf ± %5.3lf %%\n", s.mean_dp, s.mean_dp_unc);
    o += fmt("Maximum Δp: %6.3lf%%\n", s.max_dp);
    o += fmt("99.9%%   Δp: %6.3lf%%\n", s.p999_dp);
    o += fmt("99.0%%   Δp: %6.3lf%%\n", s.p99_dp);
    o += fmt("95.0%%   Δp: %6.3lf%%\n", s.p95_dp);
    o += fmt("90.0%%   Δp: %6.3lf%%\n", s.p90_dp);
    o += fmt("75.0%%   Δp: %6.3lf%%\n", s.p75_dp);
    o += fmt("Median  Δp: %6.3lf%%\n", s.median_dp);
    o += fmt("25.0%%   Δp: %6.3lf%%\n", s.p25_dp);
    o += fmt("10.0%%   Δp: %6.3lf%%\n", s.p10_dp);
    o += fmt(" 5.0%%   Δp: %6.3lf%%\n", s.p5_dp);
    o += fmt(" 1.0%%   Δp: %6.3lf%%\n", s.p1_dp);
    o += fmt(" 0.1%%   Δp: %6.3lf%%\n", s.p01_dp);
    o += fmt("Minimum Δp: %6.3lf%%\n", s.min_dp);
    o += fmt("RMS Δp    : %6.3lf ± %5.3lf %%\n", s.rms_dp, s.rms_dp_unc);
    o += fmt("Same top p: %6.3lf ± %5.3lf %%\n", s.same_top_p, s.same_top_p_unc);
    return o;
}

// The JSON of one variant: the fields first (same_top_p and rms_dp in percent, as
// llama-perplexity prints them), then the rest of the summary.
inline nlohmann::json stats_json(const KldStats& s) {
    return nlohmann::json{
        {"mean_kld", s.mean_kld},         {"p99_kld", s.p99_kld},           {"max_kld", s.max_kld},
        {"same_top_p", s.same_top_p},     {"ppl_ratio", s.ppl_ratio},       {"rms_dp", s.rms_dp},
        {"tokens", s.tokens},             {"chunks", s.chunks},             {"mean_kld_unc", s.mean_kld_unc},
        {"median_kld", s.median_kld},     {"p999_kld", s.p999_kld},         {"p95_kld", s.p95_kld},
        {"p90_kld", s.p90_kld},           {"min_kld", s.min_kld},           {"ppl", s.ppl},
        {"ppl_base", s.ppl_base},         {"ln_ppl_ratio", s.ln_ratio},     {"ppl_ratio_unc", s.ppl_ratio_unc},
        {"same_top_p_unc", s.same_top_p_unc}, {"rms_dp_unc", s.rms_dp_unc}, {"mean_dp", s.mean_dp},
        {"max_dp", s.max_dp},             {"min_dp", s.min_dp}};
}

}  // namespace cmf::engine
