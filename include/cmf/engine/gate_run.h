// The gate on the engine: the lossless reference logged once on the built-in evaluation text
// (llama-perplexity's KL-divergence measurement, engine.h Reference) and its degeneration smoke
// run once; then each variant against both. Linked only where the engine is (cmf_engine).
#pragma once

#include "cmf/engine/eval_report.h"
#include "cmf/engine/gate.h"
#include "cmf/engine/smoke.h"

namespace cmf::engine {

class EngineGate : public GateSession {
public:
    // mmproj: the lossless projector of the same pass (empty: text only); the image smoke runs
    // every variant's text model with it on `image` (empty: cmf's built-in test image).
    EngineGate(const std::filesystem::path& reference, const std::filesystem::path& mmproj, const EvalSettings& eval = {},
               const SmokeSettings& smoke = {}, const std::filesystem::path& image = {})
        : ref_(reference, builtin_text(texts::evaluation(), "built-in"), eval), mmproj_(mmproj), image_(image), smoke_settings_(smoke) {
        ref_smoke_ = run_smoke(reference, mmproj_, image_, smoke_settings_);
    }
    // The variant's smoke runs only when the reference's smoke can judge it (smoke_judges):
    // against a reference that rambles by itself it would flag nothing and cost the most (every
    // answer runs to its limit).
    GateMeasure measure(const std::filesystem::path& variant) override {
        GateMeasure m;
        m.kld = ref_.compare(variant);
        m.smoke_judged = smoke_judges(ref_smoke_);
        if (!m.smoke_judged) {
            m.smoke = nlohmann::json::array();
            return m;
        }
        const auto cases = run_smoke(variant, mmproj_, image_, smoke_settings_);
        m.degeneration = smoke_flags(ref_smoke_, cases);
        m.smoke = smoke_json(cases);
        return m;
    }
    nlohmann::json reference_smoke() const override { return smoke_json(ref_smoke_); }
    const Reference& reference() const { return ref_; }

private:
    Reference ref_;
    std::filesystem::path mmproj_, image_;
    SmokeSettings smoke_settings_;
    std::vector<SmokeCase> ref_smoke_;
};

}  // namespace cmf::engine
