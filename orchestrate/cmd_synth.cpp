// cmf synth: writes a deterministic synthetic Gemma 3 checkpoint (tests, benchmarks, demos).
#include <chrono>
#include <cstdio>
#include <string>

#include "cmf/synth/checkpoint.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

static const char* kSynthHelp = R"(usage: cmf synth OUT_DIR [--preset NAME] [--layers N] [--seed N] [--shards N] [--v5]
                  [--dtype bf16|f16|f32]

Writes a synthetic Gemma 3 checkpoint in Hugging Face layout: safetensors (BF16 by default) with
deterministic pseudo-random weights, config.json, generation_config.json and a Gemma-like
SentencePiece tokenizer (tokenizer.model, tokenizer.json, tokenizer_config.json with the
Gemma 3 chat template). The same options always give byte-identical files.

  OUT_DIR           directory to write (created if missing; earlier model*.safetensors
                    files in it are replaced)
  --preset NAME     tiny          Gemma3ForCausalLM, hidden 512, 2 layers, ~5M params (default)
                    tiny-mm       Gemma3ForConditionalGeneration with a small SigLIP tower
                                  (image 896, patch 14, vision hidden 128, 2 layers)
                    medgemma-text Gemma3ForCausalLM with the 4B text shapes (hidden 2560,
                                  FFN 10240, vocab 262208), 3 layers, 2 shards, ~1.9 GB
                    recipes       Gemma3ForCausalLM for comparing quantization recipes: 12 layers,
                                  hidden 320 (not a multiple of 256), FFN 3328 (tensors over
                                  1 Mi elements), vocab 4096, ~50M params
  --layers N        number of text layers (default: the preset's)
  --seed N          weight seed (default 20250101)
  --shards N        number of safetensors files; N > 1 adds model.safetensors.index.json
  --dtype TYPE      safetensors dtype of the weights: bf16 (default), f16 or f32; the same
                    values rounded to that type (config.json's torch_dtype says which)
  --v5              transformers-v5 layout: model.language_model.* / model.vision_tower.*
                    names, rope_parameters and layer_types in config.json

Example:
  cmf synth ./tiny-mm --preset tiny-mm && cmf quantize ./tiny-mm --quant f16 --mmproj
)";

static uint64_t parse_number(const std::string& opt, const std::string& s, uint64_t max) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 19)
        fail(ErrorKind::usage, "synth: --" + opt + " must be a non-negative integer, got '" + s + "'");
    const uint64_t v = std::stoull(s);
    if (v > max) fail(ErrorKind::usage, "synth: --" + opt + " must be at most " + std::to_string(max));
    return v;
}

int cmd_synth(const std::vector<std::string>& argv) {
    Args a = parse_args(argv, {"preset", "layers", "seed", "shards", "dtype"}, {"v5", "help"}, "synth");
    if (a.has("help")) {
        std::fputs(kSynthHelp, stdout);
        return 0;
    }
    if (a.positional.size() != 1) fail(ErrorKind::usage, "synth: expected one OUT_DIR (see cmf synth --help)");
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
