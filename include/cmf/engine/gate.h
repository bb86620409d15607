// The quality gate's policy: per-type limits and the verdict on one variant's figures. Pure (no
// engine): the factory, `cmf eval --gate` and the README's table use the same rows.
//
// Defaults come from llama.cpp's published KL-divergence figures (tools/perplexity/README.md of
// the pinned source: LLaMA 3 8B against its BF16/F16 logits, no imatrix, wikitext), the model
// family that quantizes worst in that table:
//   max mean KLD  = 4 x the published mean KLD of the type
//   min top-1     = 100 - 3 x the published "not same top p" (%); for types published without
//                   it, the miss rate is taken as 45 x sqrt(mean KLD), the fit of the four
//                   published pairs (q2_K, q4_K_M, q6_K, q8_0: within 25 %)
// so a sound variant of a model of that class passes with room, while a broken one (a damaged
// tensor, a wrong transform, a kernel bug) lands far outside: those move KLD by orders of
// magnitude, not by a factor of 4.
// Top-1 agreement is judged only when the lossless model predicts: PPL(base) below 100 on the
// evaluation text (a trained chat model scores 2-20 on chat-formatted text; one with random
// weights scores near its vocabulary size, where the top token is a toss-up between near-equal
// ones and "same top p" measures nothing). KLD is judged always.
#pragma once

#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cmf/engine/engine.h"

namespace cmf::engine {

struct GateRow {
    const char* type;
    double published_kld;    // llama.cpp's mean KLD for the type (LLaMA 3 8B)
    double published_top1;   // its "same top p" in %, or 0 when not published
};

inline const std::vector<GateRow>& gate_rows() {
    static const std::vector<GateRow> rows = {
        {"F32", 0.000551, 0},      {"F16", 0.000551, 0},      {"BF16", 0.000551, 0},     {"Q8_0", 0.001355, 97.674},
        {"Q6_K", 0.005452, 96.031}, {"Q5_K_M", 0.010762, 0},  {"Q5_K_S", 0.016595, 0},   {"Q5_1", 0.018045, 0},
        {"Q5_0", 0.022239, 0},     {"Q4_K_M", 0.031273, 91.901}, {"Q4_K_S", 0.043136, 0}, {"Q4_1", 0.071683, 0},
        {"Q4_0", 0.071940, 0},     {"Q3_K_L", 0.087176, 0},   {"Q3_K_M", 0.101913, 0},   {"Q3_K_S", 0.228217, 0},
        {"Q2_K", 0.445132, 71.138},
    };
    return rows;
}

struct GateLimits {
    double max_kld = 0;   // mean KLD above this fails
    double min_top1 = 0;  // same top p (%) below this fails
};

// The default limits of a type label ("Q4_K_M", "F16", "Q8_0-convert"); an unknown label gets
// the loosest row (Q2_K).
inline GateLimits default_gate_limits(std::string type) {
    for (auto& c : type) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (type.rfind("Q8_0", 0) == 0) type = "Q8_0";
    const GateRow* row = &gate_rows().back();
    for (const auto& r : gate_rows())
        if (type == r.type) row = &r;
    GateLimits l;
    l.max_kld = 4.0 * row->published_kld;
    const double miss = row->published_top1 > 0 ? 100.0 - row->published_top1 : 45.0 * std::sqrt(row->published_kld);
    l.min_top1 = std::max(0.0, 100.0 - 3.0 * miss);
    return l;
}

struct GateSettings {
    bool enabled = true;
    std::optional<double> max_kld, min_top1;  // overrides of the per-type defaults
};

inline GateLimits gate_limits(const std::string& type, const GateSettings& s) {
    GateLimits l = default_gate_limits(type);
    if (s.max_kld) l.max_kld = *s.max_kld;
    if (s.min_top1) l.min_top1 = *s.min_top1;
    return l;
}

inline constexpr double kTop1MaxReferencePpl = 100.0;

struct GateVerdict {
    bool pass = true;
    std::vector<std::string> reasons;  // why not
    std::vector<std::string> notes;    // what was not judged, and why
    GateLimits limits;
};

inline std::string fmt_g(double v, const char* f = "%.6f") {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

// `degeneration`: the smoke's flags against the lossless model (smoke.h smoke_flags).
inline GateVerdict judge(const std::string& type, const KldStats& k, const std::vector<std::string>& degeneration, const GateSettings& s) {
    GateVerdict v;
    v.limits = gate_limits(type, s);
    if (!(k.mean_kld <= v.limits.max_kld))  // NaN fails too
        v.reasons.push_back("mean KLD " + fmt_g(k.mean_kld) + " > " + fmt_g(v.limits.max_kld) + " (" + type + " limit)");
    if (!(k.ppl_base < kTop1MaxReferencePpl))
        v.notes.push_back("top-1 not judged: the lossless model's PPL " + fmt_g(k.ppl_base, "%.1f") + " is not below " +
                          fmt_g(kTop1MaxReferencePpl, "%.0f") + " (it predicts nothing; random or untrained weights)");
    else if (!(k.same_top_p >= v.limits.min_top1))
        v.reasons.push_back("same top p " + fmt_g(k.same_top_p, "%.2f") + " % < " + fmt_g(v.limits.min_top1, "%.2f") + " % (" + type + " limit)");
    for (const auto& d : degeneration) v.reasons.push_back("degenerates: " + d);
    v.pass = v.reasons.empty();
    return v;
}

// What the engine measures of one variant (gate_run.h): the figures against the lossless file and
// the degeneration flags of the smoke (with its cases, for the quality JSON).
struct GateMeasure {
    KldStats kld;
    std::vector<std::string> degeneration;
    nlohmann::json smoke;        // the variant's smoke cases
    bool smoke_judged = true;    // false: the lossless model itself degenerates too often to judge
};

// One lossless reference, measured once, against which variants are measured: the factory's seam
// (WorkerHooks::gate), implemented on the engine by gate_run.h.
class GateSession {
public:
    virtual ~GateSession() = default;
    virtual GateMeasure measure(const std::filesystem::path& variant) = 0;
    virtual nlohmann::json reference_smoke() const { return nlohmann::json::array(); }  // the lossless model's cases
};

// The gate's record of one variant: figures, limits, verdict (quality JSON, status, card).
inline nlohmann::json gate_json(const KldStats& k, const GateVerdict& v, const nlohmann::json& smoke, const std::string& reference,
                                bool smoke_judged = true) {
    nlohmann::json j = {{"reference", reference},
                        {"mean_kld", k.mean_kld},
                        {"p99_kld", k.p99_kld},
                        {"max_kld", k.max_kld},
                        {"median_kld", k.median_kld},
                        {"same_top_p", k.same_top_p},
                        {"ppl_ratio", k.ppl_ratio},
                        {"rms_dp", k.rms_dp},
                        {"tokens", k.tokens},
                        {"limits", {{"max_kld", v.limits.max_kld}, {"min_top1", v.limits.min_top1}}},
                        {"ppl_base", k.ppl_base},
                        {"pass", v.pass},
                        {"reasons", v.reasons},
                        {"notes", v.notes}};
    if (!smoke.is_null()) {
        j["smoke"] = smoke;
        j["smoke_judged"] = smoke_judged;
    }
    return j;
}

}  // namespace cmf::engine
