// The degeneration smoke: generations from the built-in prompts (engine/texts.h) through the
// model's chat template, greedy and seeded, and a detector for what a broken variant does:
//   looping  a run of the same 1..32-token unit repeated back to back: at least 4 times and
//            at least 16 tokens in all (a healthy list or JSON object changes its items);
//   no_end   no end-of-turn within the prompt's token limit.
// A variant is flagged only in cases the lossless model of the same build answers cleanly: a case
// where the lossless model itself rambles (a synthetic model with random weights, a base model)
// says nothing about quantization.
#pragma once

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cmf/engine/engine.h"
#include "cmf/engine/texts.h"

namespace cmf::engine {

struct DegenerationCheck {
    bool looping = false;
    bool no_end = false;
    std::string detail;  // what was seen: the repeated unit and how often, or the limit
    bool flagged() const { return looping || no_end; }
};

// The text with every byte that is not part of well-formed UTF-8 replaced by U+FFFD: a token
// piece can be half a character (byte-fallback tokens), and JSON must stay valid.
inline std::string utf8_clean(const std::string& s) {
    std::string o;
    const auto* b = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    for (size_t i = 0; i < n;) {
        const unsigned char c = b[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; ++k) ok = (b[i + k] & 0xC0) == 0x80;
        if (ok && len == 2) ok = c >= 0xC2;
        if (ok && len == 3) ok = !(c == 0xE0 && b[i + 1] < 0xA0) && !(c == 0xED && b[i + 1] >= 0xA0);
        if (ok && len == 4) ok = c <= 0xF4 && !(c == 0xF0 && b[i + 1] < 0x90) && !(c == 0xF4 && b[i + 1] >= 0x90);
        if (ok) {
            o.append(s, i, len);
            i += len;
        } else {
            o += "\xEF\xBF\xBD";
            ++i;
        }
    }
    return o;
}

inline std::string visible(const std::string& s_in, size_t max = 60) {
    const std::string s = utf8_clean(s_in);
    std::string o;
    for (char c : s) {
        if (c == '\n') o += "\\n";
        else if (c == '\t') o += "\\t";
        else o += c;
        if (o.size() >= max) {
            o += "...";
            break;
        }
    }
    return o;
}

inline DegenerationCheck check_generation(const std::vector<std::string>& pieces, bool ended, int max_tokens) {
    DegenerationCheck c;
    const size_t n = pieces.size();
    size_t best_len = 0, best_p = 0, best_at = 0;
    for (size_t p = 1; p <= 32 && p < n; ++p) {
        size_t run = 0;  // consecutive i with pieces[i] == pieces[i - p]
        for (size_t i = p; i < n; ++i) {
            run = pieces[i] == pieces[i - p] ? run + 1 : 0;
            const size_t span = run + p;  // tokens covered by the repetition
            if (run >= 3 * p && span >= 16 && span > best_len) {
                best_len = span;
                best_p = p;
                best_at = i + 1 - span;
            }
        }
    }
    if (best_len > 0) {
        c.looping = true;
        std::string unit;
        for (size_t i = best_at; i < best_at + best_p; ++i) unit += pieces[i];
        c.detail = "repeats \"" + visible(unit) + "\" " + std::to_string(best_len / best_p) + " times from token " + std::to_string(best_at);
    }
    if (!ended && static_cast<int>(n) >= max_tokens) {
        c.no_end = true;
        if (!c.detail.empty()) c.detail += "; ";
        c.detail += "no end of turn within " + std::to_string(max_tokens) + " tokens";
    }
    return c;
}

// One generation of the smoke: which prompt, how sampled, what came out, what the detector saw.
struct SmokeCase {
    std::string prompt;  // texts::smoke() name, or "image"
    std::string mode;    // "greedy" or "seed 42"
    Generation gen;
    DegenerationCheck check;
};

struct SmokeSettings {
    std::vector<uint32_t> seeds{42};  // seeded runs of the seeded prompts, besides every greedy one
    // the prompts also sampled with the seeds (where sampling loops show: a long structured answer
    // and a list that must stop), and the image question
    std::vector<std::string> seeded_prompts{"json_extraction", "list_then_stop"};
    int max_tokens_cap = 0;           // > 0: at most this many tokens per prompt (faster smoke)
    int threads = 0;
};

inline std::vector<SmokeCase> run_smoke(const std::filesystem::path& model, const std::filesystem::path& mmproj, const std::filesystem::path& image,
                                        const SmokeSettings& s = {}) {
    std::vector<SmokeCase> out;
    auto one = [&](const std::string& name, const std::string& prompt, int max_tokens, bool greedy, uint32_t seed, bool with_image) {
        GenRequest r;
        r.model = model;
        if (with_image) {
            r.mmproj = mmproj;
            r.image = image;
        }
        r.prompt = prompt;
        r.max_tokens = s.max_tokens_cap > 0 ? std::min(max_tokens, s.max_tokens_cap) : max_tokens;
        r.greedy = greedy;
        r.seed = seed;
        r.threads = s.threads;
        r.stop_on_loop = true;
        SmokeCase c;
        c.prompt = name;
        c.mode = greedy ? "greedy" : "seed " + std::to_string(seed);
        c.gen = generate(r);
        c.check = check_generation(c.gen.pieces, c.gen.ended, r.max_tokens);
        out.push_back(std::move(c));
    };
    for (const auto& p : texts::smoke()) {
        one(std::string(p.name), std::string(p.prompt), p.max_tokens, true, 0, false);
        if (std::find(s.seeded_prompts.begin(), s.seeded_prompts.end(), p.name) == s.seeded_prompts.end()) continue;
        for (uint32_t seed : s.seeds) one(std::string(p.name), std::string(p.prompt), p.max_tokens, false, seed, false);
    }
    if (!mmproj.empty()) {
        one("image", std::string(texts::kImagePrompt), 64, true, 0, true);
        for (uint32_t seed : s.seeds) one("image", std::string(texts::kImagePrompt), 64, false, seed, true);
    }
    return out;
}

// Whether the lossless model answers the smoke soundly enough for it to judge a variant: clean in
// at least 3 of every 4 cases. A model that rambles in most (random weights, a base model) leaves
// the smoke without a yardstick: its variants are not flagged, and the record says so.
inline bool smoke_judges(const std::vector<SmokeCase>& reference) {
    size_t clean = 0;
    for (const auto& c : reference) clean += !c.check.flagged();
    return !reference.empty() && 4 * clean >= 3 * reference.size();
}

// The variant's degeneration flags: cases it degenerates in where the lossless model, in the
// same case, answered cleanly (when the lossless model is sound: smoke_judges). Each flag names
// the case and shows the output.
inline std::vector<std::string> smoke_flags(const std::vector<SmokeCase>& reference, const std::vector<SmokeCase>& variant) {
    std::vector<std::string> flags;
    if (!smoke_judges(reference)) return flags;
    for (size_t i = 0; i < variant.size(); ++i) {
        const auto& v = variant[i];
        if (!v.check.flagged()) continue;
        const bool same_case = i < reference.size() && reference[i].prompt == v.prompt && reference[i].mode == v.mode;
        if (!same_case || reference[i].check.flagged()) continue;
        flags.push_back(v.prompt + " (" + v.mode + "): " + v.check.detail + ": \"" + visible(v.gen.text(), 240) + "\"");
    }
    return flags;
}

inline nlohmann::json smoke_json(const std::vector<SmokeCase>& cases) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& c : cases)
        a.push_back({{"prompt", c.prompt},
                     {"mode", c.mode},
                     {"tokens", c.gen.pieces.size()},
                     {"ended", c.gen.ended},
                     {"looping", c.check.looping},
                     {"no_end", c.check.no_end},
                     {"detail", utf8_clean(c.check.detail)},
                     {"output", utf8_clean(c.gen.text())}});
    return a;
}

}  // namespace cmf::engine
