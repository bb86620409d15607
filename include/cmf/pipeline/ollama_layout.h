// Ollama's own single-file layout (`cmf quantize --layout ollama`), for the families whose
// OllamaSpec says single_file: one GGUF holding the text model, the vision tower (`v.*`) and the
// projector (`mm.*`), with the vision hyperparameters as `<arch>.vision.*` / `<arch>.mm.*` keys -
// what Ollama's converter writes (for Gemma 3: its convert/ Go converter, research/ollama.md
// 6.1-6.3, run with vision by every Ollama version from 0.6). Names, keys and the turn template
// come from the family's spec (arch/).
//
// Built as an addition to the llama.cpp plan (pipeline/convert.h): each text file of the plan
// keeps its KVs, tensors, types and data exactly, gains the vision keys after the last
// `<arch>.*` key, and gains the vision tensors after its text tensors, under Ollama's names and
// left unquantized as Ollama leaves them (>= 2-D: F16; 1-D and biases: F32; the projector's
// input matrix untransposed, ne = [text hidden, vision hidden]; soft_emb_norm stored as 1 + w).
// The llama.cpp text KVs Ollama's converter omits (rope bases, rms epsilon) stay: Ollama's
// loader reads them or supplies the same defaults, and its llama.cpp shim only adds missing keys.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>

#include "cmf/pipeline/convert.h"

namespace cmf {

// The Ollama name of a llama.cpp mmproj tensor, through the family's OllamaSpec rows.
inline std::string ollama_vision_name(const arch::OllamaSpec& o, const std::string& mmproj_name) {
    for (const auto& r : o.vision_globals)
        if (arch::starts_with(mmproj_name, r.hf)) return std::string(r.gguf) + mmproj_name.substr(r.hf.size());
    const std::string_view blk = "v.blk.";
    if (arch::starts_with(mmproj_name, blk)) {
        const size_t dot = mmproj_name.find('.', blk.size());
        if (dot != std::string::npos)
            if (auto g = arch::map_row(std::string_view(mmproj_name).substr(dot + 1), o.vision_layer_rows))
                return mmproj_name.substr(0, dot + 1) + *g;
    }
    fail(ErrorKind::internal, "no Ollama name for vision tensor '" + mmproj_name + "'");
}

// Ollama's converter type for a vision/projector tensor (convert/reader.go): 1-D and biases
// F32, everything else F16 (vision and projector matrices are never BF16 or quantized).
inline GgmlType ollama_vision_type(const std::string& name, size_t n_dims) {
    if (n_dims <= 1 || arch::ends_with(name, ".bias")) return GgmlType::F32;
    return GgmlType::F16;
}

// Turns every text file of a llama.cpp plan into Ollama's single file. `plan` must come from a
// multimodal checkpoint of a family whose Ollama layout is single_file, planned without --mmproj.
inline void apply_ollama_layout(ConversionPlan& plan) {
    const arch::OllamaSpec& o = plan.spec->ollama;
    if (o.layout != arch::OllamaSpec::Layout::single_file)
        fail(ErrorKind::usage, "--layout ollama: Ollama runs " + std::string(plan.spec->display) +
                                   " from llama.cpp's files (text GGUF + mmproj); use the default layout");
    if (!plan.config.has_vision())
        fail_input(plan.config.dir.string() + ": --layout ollama needs a multimodal checkpoint (config.json has no vision_config)");
    std::vector<size_t> vision;
    for (size_t i = 0; i < plan.tensors.size(); ++i)
        if (plan.tensors[i].part == PartKind::mmproj) vision.push_back(i);
    if (vision.empty()) fail_input(plan.config.dir.string() + ": --layout ollama: the checkpoint has no vision tower tensors");
    std::sort(vision.begin(), vision.end(), [&](size_t a, size_t b) {
        return ollama_vision_name(o, plan.tensors[a].gguf_name) < ollama_vision_name(o, plan.tensors[b].gguf_name);
    });
    const auto vkv = o.vision_kvs(plan.config);
    const std::string arch_prefix = std::string(plan.spec->text.gguf_arch) + ".";
    for (auto& f : plan.files) {
        const GgufValue* arch = f.layout.kv.get("general.architecture");
        if (!arch || arch->str != plan.spec->text.gguf_arch) fail(ErrorKind::usage, "--layout ollama cannot be combined with --mmproj");
        // the vision keys go after the last <arch>.* key
        GgufKvList kv;
        size_t last_arch = 0, i = 0;
        for (const auto& [k, v] : f.layout.kv.items()) {
            ++i;
            if (k.rfind(arch_prefix, 0) == 0) last_arch = i;
        }
        i = 0;
        for (const auto& [k, v] : f.layout.kv.items()) {
            kv.set(k, v);
            if (++i == last_arch)
                for (const auto& [vk, vv] : vkv) kv.set(vk, vv);
        }
        f.layout.kv = kv;
        for (size_t idx : vision) {
            const auto& t = plan.tensors[idx];
            const std::string name = ollama_vision_name(o, t.gguf_name);
            f.layout.add_tensor(name, t.ne, ollama_vision_type(name, t.ne.size()));
            f.tensor_of.push_back(idx);
            if (!f.imatrix_of.empty()) f.imatrix_of.push_back(nullptr);
        }
        f.layout.finalize();
        f.path = f.path.parent_path() / ("ollama-" + f.path.filename().string());
        f.label = "ollama " + f.label;
    }
}

}  // namespace cmf
