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
  --json             one JSON document on stdout: per variant mean_kld, p99_kld, max_kld,
                     same_top_p (%), ppl_ratio, rms_dp (%), tokens, and the other figures

Example:
  cmf eval --ref gguf/medgemma-1.5-4b-it-F16.gguf gguf/medgemma-1.5-4b-it-Q8_0.gguf gguf/medgemma-1.5-4b-it-Q4_K_M.gguf
)";

int cmd_eval(const std::vector<std::string>& argv) {
    const Args a = parse_args(argv, {"ref", "text", "ctx", "chunks", "batch", "threads"}, {"json", "parse-special", "print-text", "help"}, "eval");
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
    nlohmann::json variants = nlohmann::json::array();
    for (const auto& v : a.positional) {
        const engine::KldStats st = reference.compare(v);
        std::fprintf(stderr, "cmf eval: %s: mean KLD %.6f, same top p %.3f %%, PPL ratio %.6f\n", v.c_str(), st.mean_kld, st.same_top_p, st.ppl_ratio);
        if (json_out) {
            nlohmann::json j = engine::stats_json(st);
            j["file"] = v;
            variants.push_back(std::move(j));
        } else {
            std::printf("\n%s against %s\n%s", v.c_str(), ref->c_str(), engine::summary_text(st).c_str());
            std::fflush(stdout);
        }
    }
    if (json_out) {
        const nlohmann::json out = {{"reference", *ref},
                                    {"text", text.label},
                                    {"ctx", s.ctx},
                                    {"chunks", reference.chunks()},
                                    {"text_tokens", reference.text_tokens()},
                                    {"reference_ppl", reference.ppl()},
                                    {"variants", variants}};
        std::cout << out.dump(2) << "\n";
    }
    return 0;
}

}  // namespace cmf::cli
