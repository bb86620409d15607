// The presets of `cmf synth`, in --help order: each family's rows from its
// arch/<family>_synth.h. Adding a family's synthetic checkpoints = one line here.
#pragma once

#include <vector>

#include "cmf/arch/gemma3_synth.h"
#include "cmf/arch/gemma3n_synth.h"
#include "cmf/arch/gemma4_synth.h"
#include "cmf/synth/preset.h"

namespace cmf::arch {

inline const std::vector<synth::SynthPresetRow>& synth_presets() {
    static const std::vector<synth::SynthPresetRow> rows = [] {
        std::vector<synth::SynthPresetRow> v;
        for (auto& r : gemma3::synth_presets()) v.push_back(std::move(r));
        for (auto& r : gemma3n::synth_presets()) v.push_back(std::move(r));
        for (auto& r : gemma4::synth_presets()) v.push_back(std::move(r));
        return v;
    }();
    return rows;
}

}  // namespace cmf::arch
