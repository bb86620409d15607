// cmf eval: each variant against the lossless reference, as llama-perplexity --kl-divergence
// measures it (orchestrate/engine/llama_eval.cpp), the reference logged once.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cmf/core/error.h"
#include "cmf/engine/engine.h"
#include "cmf/engine/eval_report.h"
#include "cmf/engine/gate.h"
#include "cmf/engine/smoke.h"
#include "cmf/factory/config.h"
#include "cmf/format/gguf.h"
#include "cmf/quant/recipe.h"
#include "orchestrate/args.h"
#include "orchestrate/engine_args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

static const char* kEvalHelp = R"(usage: cmf eval --ref REF.gguf VARIANT.gguf... [--text FILE] [--ctx N] [--chunks N] [--json]

Measures each quantized variant against the lossless reference (the F16/BF16 file of the same
model) with llama.cpp, the way `llama-perplexity --kl-divergence` does: the same chunking (the
second half of every --ctx tokens is scored, the first token of a chunk is BOS), the same
compression of the reference's log-probabilities and the same statistics. It prints
llama-perplexity's summary for every variant: PPL(Q)/PPL(base), mean/median/p99/max KL
divergence, RMS Δp and "same top p" (how often the variant's most likely token is the
reference's).

The text: without --text, cmf's built-in evaluation text (conversations mixing medical document
extraction with general instructions, rendered through the model's chat template, a few thousand
tokens). --text FILE is tokenized as llama-perplexity tokenizes -f FILE (BOS added, special tokens
as plain text unless --parse-special), so the figures equal llama-perplexity's on that file.

  --ref FILE         the lossless reference (required)
  --text FILE        evaluate on this text instead of the built-in one
  --parse-special    tokenize --text with its control tokens (<start_of_turn>, ...) parsed
  --ctx N            tokens per chunk (llama-perplexity's -c; default 512)
  --chunks N         at most N chunks (default: all the text gives)
  --batch N          llama-perplexity's -b (default 2048: batch/ctx chunks run side by side)
  --threads N        engine threads (default: physical cores, as llama.cpp)
  --print-text       print the built-in text as REF's chat template renders it, and stop
  --smoke            also run the degeneration smoke (greedy and seeded generations from built-in
                     prompts through the chat template) on REF and every variant; a variant is
                     flagged where it loops or runs on without an end of turn and REF does not
  --mmproj FILE      the lossless projector: the smoke includes the image, through llama.cpp's
                     multimodal path, for REF and every variant
  --mmproj-variant FILE  a quantized projector: its image-conditioned KLD against --mmproj (REF
                     as the text model), repeatable
  --image FILE       the image of the smoke and the image KLD (default: cmf's built-in test image)
  --gate             judge each variant as the factory does (limits per type of the file, or
                     --max-kld X, --min-top1 PERCENT; implies --smoke); exit 1 when one fails
  --json             one JSON document on stdout: per variant mean_kld, p99_kld, max_kld,
                     same_top_p (%), ppl_ratio, rms_dp (%), tokens, and the other figures

Example:
  cmf eval --ref gguf/medgemma-1.5-4b-it-F16.gguf gguf/medgemma-1.5-4b-it-Q8_0.gguf gguf/medgemma-1.5-4b-it-Q4_K_M.gguf
)";

// The type of a GGUF as the gate names it: llama-quantize's recipe, or F16/BF16/F32.
static std::string file_type_label(const std::string& path) {
    const GgufContents c = read_gguf(path);
    const GgufValue* ft = c.kv.get("general.file_type");
    const auto id = ft ? ft->as_int() : std::nullopt;
    if (id) {
        for (const auto& r : kQuantRecipes)
            if (static_cast<int64_t>(r.ftype) == *id) return r.name;
        if (*id == 0) return "F32";
        if (*id == 1) return "F16";
        if (*id == 32) return "BF16";
    }
    return "unknown";
}

int cmd_eval(const std::vector<std::string>& argv) {
    const Args a = parse_args(argv, {"ref", "text", "ctx", "chunks", "batch", "threads", "mmproj", "mmproj-variant", "image", "max-kld", "min-top1"},
                              {"json", "parse-special", "print-text", "smoke", "gate", "help"}, "eval");
    if (a.has("help")) {
        std::fputs(kEvalHelp, stdout);
        return 0;
    }
    const auto ref = a.get("ref");
    if (!ref) fail(ErrorKind::usage, "eval: --ref REF.gguf (the lossless reference) is required (see cmf eval --help)");
    if (a.positional.empty() && !a.has("print-text")) fail(ErrorKind::usage, "eval: name at least one VARIANT.gguf to evaluate against " + *ref);
    const engine::EvalSettings s = eval_settings(a, "eval");
    for (const auto& p : a.positional)
        if (!std::filesystem::exists(p)) fail(ErrorKind::input, "eval: " + p + ": no such file");
    if (!std::filesystem::exists(*ref)) fail(ErrorKind::input, "eval: " + *ref + ": no such file");

    const engine::EvalText text = eval_text(a, "eval", engine::texts::evaluation(), "built-in");
    engine::require();
    if (a.has("print-text")) {
        std::fputs(engine::render_text(*ref, text).c_str(), stdout);
        return 0;
    }
    const bool json_out = a.has("json");
    engine::Reference reference(*ref, text, s);
    std::fprintf(stderr, "cmf eval: reference %s: %zu tokens of the %s text, %d chunks of %d, PPL %.4f\n", ref->c_str(),
                 reference.text_tokens(), text.label.c_str(), reference.chunks(), s.ctx, reference.ppl());
    const bool gate = a.has("gate"), smoke = a.has("smoke") || gate;
    const fs::path mmproj = a.get("mmproj").value_or(""), image = a.get("image").value_or("");
    engine::GateSettings gs;
    if (auto v = a.get("max-kld")) gs.max_kld = factory::parse_gate_number("CMF_MAX_KLD", *v);
    if (auto v = a.get("min-top1")) gs.min_top1 = factory::parse_gate_number("CMF_MIN_TOP1", *v);
    std::vector<engine::SmokeCase> ref_smoke;
    if (smoke) {
        ref_smoke = engine::run_smoke(*ref, mmproj, image);
        size_t bad = 0;
        for (const auto& c : ref_smoke) bad += c.check.flagged();
        std::fprintf(stderr, "cmf eval: reference smoke: %zu generations, %zu degenerate (those cases are not held against the variants)\n",
                     ref_smoke.size(), bad);
    }
    bool all_pass = true;
    nlohmann::json variants = nlohmann::json::array();
    for (const auto& v : a.positional) {
        const engine::KldStats st = reference.compare(v);
        std::fprintf(stderr, "cmf eval: %s: mean KLD %.6f, same top p %.3f %%, PPL ratio %.6f\n", v.c_str(), st.mean_kld, st.same_top_p, st.ppl_ratio);
        nlohmann::json j = engine::stats_json(st);
        j["file"] = v;
        std::string extra;
        if (smoke) {
            const auto cases = engine::run_smoke(v, mmproj, image);
            const auto flags = engine::smoke_flags(ref_smoke, cases);
            j["smoke"] = {{"flags", flags}, {"cases", engine::smoke_json(cases)}};
            for (const auto& f : flags) extra += "degenerates: " + f + "\n";
            if (flags.empty()) extra += "degeneration smoke: " + std::to_string(cases.size()) + " generations, no new loops or run-ons\n";
            if (gate) {
                const std::string type = file_type_label(v);
                const engine::GateVerdict verdict = engine::judge(type, st, flags, gs);
                j["gate"] = {{"type", type}, {"pass", verdict.pass}, {"reasons", verdict.reasons},
                             {"limits", {{"max_kld", verdict.limits.max_kld}, {"min_top1", verdict.limits.min_top1}}}};
                all_pass = all_pass && verdict.pass;
                extra += std::string("gate (") + type + "): " + (verdict.pass ? "PASS" : "FAIL");
                for (const auto& r : verdict.reasons) extra += "\n  " + r;
                extra += "\n";
                std::fprintf(stderr, "cmf eval: %s: gate %s\n", v.c_str(), verdict.pass ? "PASS" : "FAIL");
            }
        }
        if (json_out) {
            variants.push_back(std::move(j));
        } else {
            std::printf("\n%s against %s\n%s%s", v.c_str(), ref->c_str(), engine::summary_text(st).c_str(), extra.c_str());
            std::fflush(stdout);
        }
    }
    nlohmann::json image_klds = nlohmann::json::array();
    for (const auto& mv : a.all("mmproj-variant")) {
        if (mmproj.empty()) fail(ErrorKind::usage, "eval: --mmproj-variant is measured against --mmproj (the lossless projector)");
        const engine::ImageKld k = engine::image_kld(*ref, mmproj, mv, image, std::string(engine::texts::kImagePrompt), 32, s.threads);
        image_klds.push_back({{"mmproj", mv}, {"reference_mmproj", mmproj.string()}, {"mean_kld", k.mean_kld}, {"max_kld", k.max_kld},
                              {"same_top_p", k.same_top_p}, {"tokens", k.tokens}});
        if (!json_out)
            std::printf("\n%s against %s, image-conditioned (%d answer tokens): mean KLD %.6f, max KLD %.6f, same top p %.3f %%\n", mv.c_str(),
                        mmproj.c_str(), k.tokens, k.mean_kld, k.max_kld, k.same_top_p);
    }
    if (json_out) {
        nlohmann::json out = {{"reference", *ref},
                                    {"text", text.label},
                                    {"ctx", s.ctx},
                                    {"chunks", reference.chunks()},
                                    {"text_tokens", reference.text_tokens()},
                                    {"reference_ppl", reference.ppl()},
                                    {"variants", variants}};
        if (!image_klds.empty()) out["image_kld"] = image_klds;
        std::cout << out.dump(2) << "\n";
    }
    return all_pass ? 0 : 1;
}

}  // namespace cmf::cli
