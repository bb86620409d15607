// The gate's policy without the engine: the degeneration detector on planted outputs, which
// flags count against a variant, the per-type limits derived from llama.cpp's published figures,
// and the verdict.
#include <gtest/gtest.h>

#include "cmf/engine/gate.h"
#include "cmf/engine/smoke.h"

namespace cmf::engine {
namespace {

// Words and the spaces/newlines after them, as a tokenizer would roughly cut them.
std::vector<std::string> pieces(const std::string& s) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : s) {
        cur += c;
        if (c == ' ' || c == '\n') {
            out.push_back(cur);
            cur.clear();
        }
    }
    if (!cur.empty()) out.push_back(cur);
    return out;
}

std::string repeat(const std::string& s, int n) {
    std::string o;
    for (int i = 0; i < n; ++i) o += s;
    return o;
}

TEST(Degeneration, CleanAnswersPass) {
    const char* clean[] = {
        "Monday\nTuesday\nWednesday\nThursday\nFriday\nSaturday\nSunday\n",
        "{\n  \"patient_name\": \"Amina Diallo\",\n  \"age\": 34,\n  \"allergies\": null,\n  \"medications\": [\"amoxicillin 500 mg\", \"paracetamol 1 g\"],\n  \"follow_up\": null\n}",
        "1. Cool the burn under running water for 20 minutes.\n2. Remove rings and tight items.\n3. Cover it loosely with cling film.\n4. Do not burst blisters.\n5. Seek care if it is larger than the palm.",
    };
    for (const char* t : clean) {
        const auto c = check_generation(pieces(t), true, 200);
        EXPECT_FALSE(c.flagged()) << t << "\n" << c.detail;
    }
}

TEST(Degeneration, PlantedLoopsAreFlaggedAndShown) {
    // a sentence over and over (the loop the MedGemma team saw on GPU Q8_0)
    auto c = check_generation(pieces("The main finding is a fracture. " + repeat("Please consult your doctor. ", 6)), false, 200);
    EXPECT_TRUE(c.looping);
    EXPECT_NE(c.detail.find("repeats \"Please consult your doctor. \""), std::string::npos) << c.detail;
    // one token again and again
    c = check_generation(std::vector<std::string>(20, "\n"), true, 200);
    EXPECT_TRUE(c.looping);
    EXPECT_NE(c.detail.find("\\n"), std::string::npos) << c.detail;
    // a JSON value repeated
    c = check_generation(pieces("{\"medications\": [" + repeat("\"aspirin\", ", 20)), false, 200);
    EXPECT_TRUE(c.looping) << c.detail;
    // three repetitions of a short phrase are not yet a loop (a list may repeat a word)
    c = check_generation(pieces(repeat("very ", 3) + "good."), true, 200);
    EXPECT_FALSE(c.looping) << c.detail;
}

TEST(Degeneration, NoEndOfTurnWithinTheLimit) {
    std::vector<std::string> p;
    for (int i = 0; i < 50; ++i) p.push_back("w" + std::to_string(i) + " ");
    auto c = check_generation(p, false, 50);
    EXPECT_TRUE(c.no_end);
    EXPECT_FALSE(c.looping);
    EXPECT_NE(c.detail.find("no end of turn within 50 tokens"), std::string::npos);
    EXPECT_FALSE(check_generation(p, true, 50).flagged());
}

SmokeCase make_case(const std::string& prompt, const std::string& mode, const std::string& text, bool ended) {
    SmokeCase c;
    c.prompt = prompt;
    c.mode = mode;
    c.gen.pieces = pieces(text);
    c.gen.ended = ended;
    c.check = check_generation(c.gen.pieces, ended, 128);
    return c;
}

TEST(Degeneration, FlagsCountOnlyWhereTheReferenceAnswersCleanly) {
    const std::string loop = repeat("again and ", 10);
    std::vector<SmokeCase> ref = {make_case("summary", "greedy", "A short clean summary.", true),
                                  make_case("list_then_stop", "greedy", loop, false),
                                  make_case("plain_rewrite", "greedy", "Plainly put.", true),
                                  make_case("patient_question", "greedy", "See a nurse today.", true)};
    std::vector<SmokeCase> var = {make_case("summary", "greedy", loop, false), make_case("list_then_stop", "greedy", loop, false),
                                  ref[2], ref[3]};
    const auto flags = smoke_flags(ref, var);
    ASSERT_EQ(flags.size(), 1u);  // the reference loops on list_then_stop too: not the variant's fault
    EXPECT_EQ(flags[0].rfind("summary (greedy): repeats \"again and \"", 0), 0u) << flags[0];
    EXPECT_NE(flags[0].find(": \"again and again and"), std::string::npos) << flags[0];  // the offending output
    var[0] = make_case("summary", "greedy", "Another clean summary.", true);
    EXPECT_TRUE(smoke_flags(ref, var).empty());
    // a lossless model that degenerates in more than 1 of 4 cases judges nothing
    var[0] = make_case("summary", "greedy", loop, false);
    ref[2] = make_case("plain_rewrite", "greedy", loop, false);
    EXPECT_FALSE(smoke_judges(ref));
    EXPECT_TRUE(smoke_flags(ref, var).empty());
}

TEST(Degeneration, OutputsWithBrokenUtf8StayValidJson) {
    SmokeCase c = make_case("summary", "greedy", "ok", true);
    c.gen.pieces = {"caf", "\xC3", " \xE2\x82", "\xAC", "\xFF"};  // a character split over pieces, then garbage
    const auto j = smoke_json({c});
    EXPECT_NO_THROW((void)j.dump());
    EXPECT_EQ(j[0]["output"].get<std::string>(), "caf\xEF\xBF\xBD \xE2\x82\xAC\xEF\xBF\xBD");
}

TEST(GateLimits, DerivedFromLlamaCppsPublishedFigures) {
    // tools/perplexity/README.md: LLaMA 3 8B q8_0 KLD 0.001355, same top p 97.674 %
    auto l = default_gate_limits("Q8_0");
    EXPECT_DOUBLE_EQ(l.max_kld, 4 * 0.001355);
    EXPECT_NEAR(l.min_top1, 100 - 3 * (100 - 97.674), 1e-9);
    l = default_gate_limits("Q4_K_M");  // 0.031273, 91.901 %
    EXPECT_DOUBLE_EQ(l.max_kld, 4 * 0.031273);
    EXPECT_NEAR(l.min_top1, 75.703, 1e-3);
    l = default_gate_limits("Q4_K_S");  // no published top-1: 45 sqrt(KLD) misses
    EXPECT_DOUBLE_EQ(l.max_kld, 4 * 0.043136);
    EXPECT_NEAR(l.min_top1, 100 - 3 * 45 * std::sqrt(0.043136), 1e-9);
    EXPECT_DOUBLE_EQ(default_gate_limits("q8_0-convert").max_kld, default_gate_limits("Q8_0").max_kld);
    EXPECT_DOUBLE_EQ(default_gate_limits("IQ1_S").max_kld, default_gate_limits("Q2_K").max_kld);  // unknown: the loosest row
    // the fitted miss rate is within 25 % of the published ones
    for (const auto& r : gate_rows()) {
        if (r.published_top1 > 0) {
            EXPECT_NEAR(45 * std::sqrt(r.published_kld) / (100 - r.published_top1), 1.0, 0.3) << r.type;
        }
    }
    // looser types have looser limits
    double prev_kld = 0, prev_top = 101;
    for (const char* t : {"F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_K_S", "Q3_K_M", "Q2_K"}) {
        const auto x = default_gate_limits(t);
        EXPECT_GT(x.max_kld, prev_kld) << t;
        EXPECT_LT(x.min_top1, prev_top) << t;
        prev_kld = x.max_kld;
        prev_top = x.min_top1;
    }
}

TEST(GateVerdict, ReasonsNameTheFigureAndTheLimit) {
    KldStats k;
    k.mean_kld = 0.0031;
    k.same_top_p = 97.5;
    k.ppl_base = 8.2;
    GateSettings s;
    auto v = judge("Q4_K_M", k, {}, s);
    EXPECT_TRUE(v.pass);
    k.mean_kld = 55.9;
    k.same_top_p = 12.0;
    v = judge("Q4_K_M", k, {"summary (greedy): repeats \"x\" 20 times"}, s);
    EXPECT_FALSE(v.pass);
    ASSERT_EQ(v.reasons.size(), 3u);
    EXPECT_EQ(v.reasons[0], "mean KLD 55.900000 > 0.125092 (Q4_K_M limit)");
    EXPECT_EQ(v.reasons[1], "same top p 12.00 % < 75.70 % (Q4_K_M limit)");
    EXPECT_EQ(v.reasons[2].rfind("degenerates: summary (greedy)", 0), 0u);
    // a lossless model that predicts nothing (random weights): top-1 is not judged, KLD is
    k.ppl_base = 1174.9;
    v = judge("Q4_K_M", k, {}, s);
    ASSERT_EQ(v.reasons.size(), 1u);
    EXPECT_EQ(v.reasons[0].rfind("mean KLD", 0), 0u);
    ASSERT_EQ(v.notes.size(), 1u);
    EXPECT_NE(v.notes[0].find("top-1 not judged: the lossless model's PPL 1174.9"), std::string::npos) << v.notes[0];
    k.mean_kld = 0.002;
    EXPECT_TRUE(judge("Q4_K_M", k, {}, s).pass);
    k.ppl_base = 8.2;
    k.mean_kld = std::nan("");
    EXPECT_FALSE(judge("Q8_0", k, {}, s).pass);  // NaN never passes
    s.max_kld = 100;
    s.min_top1 = 0;
    k.mean_kld = 55.9;
    EXPECT_TRUE(judge("Q4_K_M", k, {}, s).pass);  // --max-kld / --min-top1 override the row
}

}  // namespace
}  // namespace cmf::engine
