// One synthetic-checkpoint preset: a name, a line of help, and the family generator behind it.
// The rows live with their families (include/cmf/arch/<family>_synth.h) and are listed in
// include/cmf/arch/synth_presets.h; arch/synth_checkpoint.h and `cmf synth` only run them.
#pragma once

#include <filesystem>
#include <functional>
#include <string_view>

#include "cmf/synth/model.h"

namespace cmf::synth {

struct SynthPresetRow {
    std::string_view name;
    std::string_view help;  // one line for `cmf synth --help`
    // Fills the architecture, shapes, default shard count and tensor list of `m` from the
    // options (preset, seed, dtype and v5 are already set; layers, shards and ffn are in range).
    // Refuses options the family cannot take with a usage error.
    std::function<void(SynthModel& m, const SynthSpec& spec)> build;
    // Writes every file besides the weights and LICENSE: config.json, generation_config.json,
    // the tokenizer files, processor configs.
    std::function<void(const std::filesystem::path& dir, const SynthModel& m)> write_files;
};

}  // namespace cmf::synth
