// cmf synth: writes a deterministic synthetic checkpoint (tests, benchmarks, demos). The presets
// and what they write come from include/cmf/arch/synth_presets.h.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "cmf/arch/lora_synth.h"
#include "cmf/arch/synth_checkpoint.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

static const char* kSynthUsage = R"(usage: cmf synth OUT_DIR [--preset NAME] [--layers N] [--seed N] [--shards N] [--v5]
                  [--dtype bf16|f16|f32] [--kv-shared N] [--ffn N]
       cmf synth OUT_DIR --adapter-for BASE_DIR [--r N] [--alpha X] [--rslora]
                  [--targets q_proj,v_proj,...] [--keys base|v5|old] [--vision] [--dtype f32|bf16|f16]

Writes a synthetic checkpoint in Hugging Face layout: safetensors (BF16 by default) with
deterministic pseudo-random weights, config.json, generation_config.json and a made-up tokenizer
in the family's file format, with the family's chat template. The same options always give
byte-identical files.

  OUT_DIR           directory to write (created if missing; earlier model*.safetensors
                    files in it are replaced)
  --preset NAME     one of the presets below (default: tiny)
)";

static const char* kSynthOptions = R"(  --layers N        number of text layers (default: the preset's). Where a preset shares KV
                    (kv-shared layers), their count scales with N (floor, at most N - 2), and so
                    does Gemma 3n's count of layers with activation sparsity; layer_types put one
                    full-attention layer after four sliding ones, counted back from the last layer
                    with its own K/V, and make the last layer full attention
  --kv-shared N     KV-shared layers, 0 to N_layers - 1 (presets with KV sharing only)
  --ffn N           FFN intermediate size (Gemma 3n: N for every layer; Gemma 4: 2N on the
                    kv-shared layers, use_double_wide_mlp)
  --seed N          weight seed (default 20250101)
  --shards N        number of safetensors files; N > 1 adds model.safetensors.index.json
  --dtype TYPE      safetensors dtype of the weights: bf16 (default), f16 or f32; the same
                    values rounded to that type (config.json's dtype says which)
  --v5              transformers-v5 layout for the tiny/tiny-mm/medgemma-text/recipes presets:
                    model.language_model.* / model.vision_tower.* names, rope_parameters and
                    layer_types in config.json; the other presets are always in that layout

Adapters (--adapter-for BASE_DIR): a PEFT LoRA adapter for that checkpoint, as PEFT's
save_pretrained writes it, with values on a grid that makes B @ A exact in float32:
  --r N             rank (default 8)        --alpha X    lora_alpha (default 8)
  --rslora          use_rslora: true        --dtype      adapter dtype (default f32)
  --targets LIST    module names (default: all seven attention and MLP projections)
  --keys LAYOUT     base (the checkpoint's names, default), v5 (model.language_model.*) or
                    old (language_model.model.*): Gemma 3 multimodal's two key layouts
  --vision          also target the vision tower's projections

Example:
  cmf synth ./tiny-mm --preset tiny-mm && cmf quantize ./tiny-mm --quant f16 --mmproj
)";

static void print_help() {
    std::fputs(kSynthUsage, stdout);
    size_t width = 0;
    for (const auto& r : arch::synth_presets()) width = std::max(width, r.name.size());
    for (const auto& r : arch::synth_presets())
        std::printf("      %-*.*s  %.*s\n", static_cast<int>(width), static_cast<int>(r.name.size()), r.name.data(),
                    static_cast<int>(r.help.size()), r.help.data());
    std::fputs(kSynthOptions, stdout);
}

static uint64_t parse_number(const std::string& opt, const std::string& s, uint64_t max) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 19)
        fail(ErrorKind::usage, "synth: --" + opt + " must be a non-negative integer, got '" + s + "'");
    const uint64_t v = std::stoull(s);
    if (v > max) fail(ErrorKind::usage, "synth: --" + opt + " must be at most " + std::to_string(max));
    return v;
}

int cmd_synth(const std::vector<std::string>& argv) {
    Args a = parse_args(argv, {"preset", "layers", "seed", "shards", "dtype", "kv-shared", "ffn", "adapter-for", "r", "alpha", "targets", "keys"},
                        {"v5", "help", "rslora", "vision"}, "synth");
    if (a.has("help")) {
        print_help();
        return 0;
    }
    if (a.positional.size() != 1) fail(ErrorKind::usage, "synth: expected one OUT_DIR (see cmf synth --help)");
    if (auto base = a.get("adapter-for")) {
        arch::LoraSynthSpec ls;
        ls.base = *base;
        if (auto v = a.get("r")) ls.r = static_cast<uint32_t>(parse_number("r", *v, 4096));
        if (auto v = a.get("alpha")) {
            char* end = nullptr;
            ls.alpha = std::strtod(v->c_str(), &end);
            if (v->empty() || *end || !(ls.alpha > 0)) fail(ErrorKind::usage, "synth: --alpha must be a positive number");
        }
        ls.rslora = a.has("rslora");
        if (auto v = a.get("targets")) ls.targets = split_list(*v);
        if (auto v = a.get("keys")) ls.keys = *v;
        ls.vision = a.has("vision");
        if (auto v = a.get("seed")) ls.seed = parse_number("seed", *v, UINT64_MAX);
        if (auto v = a.get("dtype")) {
            const auto d = synth::parse_synth_dtype(*v);
            if (!d) fail(ErrorKind::usage, "synth: --dtype must be bf16, f16 or f32, got '" + *v + "'");
            ls.dtype = *d;
        } 
        const size_t n = arch::write_synthetic_adapter(a.positional[0], ls);
        std::printf("%s: LoRA adapter for %s, r %u, alpha %g%s, %zu targets, %s\n", a.positional[0].c_str(), base->c_str(), ls.r, ls.alpha,
                    ls.rslora ? " (rsLoRA)" : "", n, st_dtype_info(ls.dtype).name);
        return 0;
    }
    synth::SynthSpec spec;
    spec.preset = a.get("preset").value_or("tiny");
    if (auto v = a.get("layers")) {
        spec.layers = static_cast<int>(parse_number("layers", *v, 1000));
        if (spec.layers == 0) fail(ErrorKind::usage, "synth: --layers must be at least 1");
    }
    if (auto v = a.get("shards")) {
        spec.shards = static_cast<int>(parse_number("shards", *v, 1000));
        if (spec.shards == 0) fail(ErrorKind::usage, "synth: --shards must be at least 1");
    }
    if (auto v = a.get("kv-shared")) spec.kv_shared = static_cast<int>(parse_number("kv-shared", *v, 999));
    if (auto v = a.get("ffn")) {
        spec.ffn = static_cast<int64_t>(parse_number("ffn", *v, synth::kSynthMaxFfn));
        if (spec.ffn == 0) fail(ErrorKind::usage, "synth: --ffn must be at least 1");
    }
    if (auto v = a.get("seed")) spec.seed = parse_number("seed", *v, UINT64_MAX);
    spec.v5 = a.has("v5");
    if (auto v = a.get("dtype")) {
        const auto d = synth::parse_synth_dtype(*v);
        if (!d) fail(ErrorKind::usage, "synth: --dtype must be bf16, f16 or f32, got '" + *v + "'");
        spec.dtype = *d;
    }

    const fs::path dir = a.positional[0];
    const synth::SynthModel m = synth::synth_model(spec);  // validates the options before writing
    const auto t0 = std::chrono::steady_clock::now();
    synth::write_synthetic_checkpoint(dir, spec);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    std::printf("%s: %s%s, %lld text layers, %llu parameters, %s, seed %llu\n", dir.string().c_str(), m.architecture.c_str(),
                m.v5 ? " (transformers-v5 layout)" : "", static_cast<long long>(m.text.layers),
                static_cast<unsigned long long>(m.n_params()), st_dtype_info(m.dtype).name, static_cast<unsigned long long>(m.seed));
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files)
        std::printf("  %-40s %14llu bytes\n", f.filename().string().c_str(), static_cast<unsigned long long>(fs::file_size(f)));
    std::printf("wrote %zu files in %.2f s\n", files.size(), secs);
    return 0;
}

}  // namespace cmf::cli
