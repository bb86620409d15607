// Synthetic checkpoints in Hugging Face layout, for tests, fuzz seeds and benchmarks: runs the
// preset rows of arch/synth_presets.h (here, beside the rows, so synth/ never reaches up into
// arch/).
//
// The machinery is family-independent and lives in include/cmf/synth/: deterministic values
// (values.h), the tensor list (model.h), safetensors writing and sharding (weights.h), the
// made-up SentencePiece/BPE tokenizer (tokenizer.h) and JSON writing (json_files.h). What a
// family's checkpoint holds - its tensors, config.json, generation_config.json, tokenizer files,
// chat template, processor configs - is its generator's, in include/cmf/arch/<family>_synth.h.
//
// Weights depend only on (seed, tensor value key) (values.h), so layouts and shard splits hold
// bit-identical data, and the same options always give byte-identical files.
#pragma once

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "cmf/arch/synth_presets.h"
#include "cmf/core/error.h"
#include "cmf/synth/json_files.h"
#include "cmf/synth/model.h"
#include "cmf/synth/preset.h"
#include "cmf/synth/tokenizer.h"
#include "cmf/synth/values.h"
#include "cmf/synth/weights.h"

namespace cmf::synth {

inline const SynthPresetRow* find_synth_preset(const std::string& name) {
    for (const auto& r : arch::synth_presets())
        if (r.name == name) return &r;
    return nullptr;
}

// The preset names, in --help order.
inline std::vector<std::string> synth_presets() {
    std::vector<std::string> v;
    for (const auto& r : arch::synth_presets()) v.emplace_back(r.name);
    return v;
}

// Largest --ffn: keeps a layer's FFN matrices far below any real model's and every size in int32.
inline constexpr int64_t kSynthMaxFfn = 1 << 20;

// The model the options describe (validated; nothing is written).
inline SynthModel synth_model(const SynthSpec& spec) {
    SynthModel m;
    m.preset = spec.preset;
    m.seed = spec.seed;
    m.v5 = spec.v5;
    if (spec.dtype != StDtype::BF16 && spec.dtype != StDtype::F16 && spec.dtype != StDtype::F32)
        fail(ErrorKind::usage, "synth: dtype must be bf16, f16 or f32");
    m.dtype = spec.dtype;
    const SynthPresetRow* row = find_synth_preset(spec.preset);
    if (!row) {
        std::string names;
        for (const auto& n : synth_presets()) names += (names.empty() ? "" : ", ") + n;
        fail(ErrorKind::usage, "synth: unknown preset '" + spec.preset + "' (" + names + ")");
    }
    if (spec.layers < 0 || spec.layers > 1000) fail(ErrorKind::usage, "synth: --layers must be from 1 to 1000");
    if (spec.shards < 0 || spec.shards > 1000) fail(ErrorKind::usage, "synth: --shards must be from 1 to 1000");
    if (spec.ffn < 0 || spec.ffn > kSynthMaxFfn) fail(ErrorKind::usage, "synth: --ffn must be from 1 to " + std::to_string(kSynthMaxFfn));
    if (spec.kv_shared < -1 || spec.kv_shared > 1000) fail(ErrorKind::usage, "synth: --kv-shared must be from 0 to 999");
    row->build(m, spec);
    if (spec.shards > 0) m.shards = spec.shards;
    std::sort(m.tensors.begin(), m.tensors.end(), [](const SynthTensor& a, const SynthTensor& b) { return a.name < b.name; });
    if (static_cast<size_t>(m.shards) > m.tensors.size())
        fail(ErrorKind::usage, "synth: --shards " + std::to_string(m.shards) + " is more than the " +
                                   std::to_string(m.tensors.size()) + " tensors of the checkpoint");
    return m;
}

// Writes the whole checkpoint into `dir` (created if missing). Stale model*.safetensors files
// and index from an earlier run are removed first: the converter would read them too.
inline void write_synthetic_checkpoint(const fs::path& dir, const SynthSpec& spec) {
    const SynthModel m = synth_model(spec);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (!fs::is_directory(dir)) fail_io("cannot create directory " + dir.string() + (ec ? ": " + ec.message() : ""));
    remove_stale_weights(dir);
    write_synth_weights(dir, m);
    detail::write_synth_license(dir);
    find_synth_preset(m.preset)->write_files(dir, m);
}

}  // namespace cmf::synth
