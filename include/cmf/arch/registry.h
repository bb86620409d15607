// Every model family cmf converts, looked up by the checkpoint's `architectures[0]` (convert,
// synth) or by a GGUF's `general.architecture` (import, Ollama assembly). Adding a family is a
// new arch/<family>.h with its ArchSpec and one line in all_specs() (docs/ARCHITECTURE.md).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cmf/arch/gemma3.h"
#include "cmf/arch/gemma3n.h"
#include "cmf/arch/gemma4.h"
#include "cmf/arch/spec.h"

namespace cmf::arch {

inline const std::vector<ArchSpec>& all_specs() {
    static const std::vector<ArchSpec> specs = [] {
        std::vector<ArchSpec> v;
        v.push_back(gemma3::spec());
        v.push_back(gemma3n::spec());
        v.push_back(gemma4::spec());
        return v;
    }();
    return specs;
}

inline const ArchSpec* find_spec(std::string_view hf_architecture) {
    for (const auto& s : all_specs())
        for (auto a : s.hf_architectures)
            if (a == hf_architecture) return &s;
    return nullptr;
}

inline const ArchSpec* find_spec_by_gguf(std::string_view gguf_architecture) {
    for (const auto& s : all_specs())
        if (s.text.gguf_arch == gguf_architecture) return &s;
    return nullptr;
}

// "Gemma3ForCausalLM, Gemma3ForConditionalGeneration, ..." for messages and --help.
inline std::string registered_architectures() {
    std::string out;
    for (const auto& s : all_specs())
        for (auto a : s.hf_architectures) out += (out.empty() ? "" : ", ") + std::string(a);
    return out;
}

}  // namespace cmf::arch
