// Ollama's own single-file Gemma 3 layout (`cmf quantize --layout ollama`): one GGUF holding the
// text model, the SigLIP vision tower (`v.*`) and the projector (`mm.*`), with the vision
// hyperparameters as `gemma3.vision.*` / `gemma3.mm.*` keys - what Ollama's converter writes
// for Gemma3ForConditionalGeneration (convert/convert_gemma3.go; research/ollama.md 6.1-6.3),
// and what every Ollama version from 0.6 runs with vision.
//
// Built as an addition to the llama.cpp plan (pipeline/convert.h): each text file of the plan
// keeps its KVs, tensors, types and data exactly, gains the vision keys after the last
// `gemma3.*` key, and gains the vision tensors after its text tensors, under Ollama's names and
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

// llama.cpp mmproj tensor names -> Ollama names (research/ollama.md 6.3, read right to left).
inline constexpr std::pair<std::string_view, std::string_view> kOllamaVisionGlobal[] = {
    {"v.patch_embd.", "v.patch_embedding."},
    {"v.position_embd.", "v.position_embedding."},
    {"v.post_ln.", "v.post_layernorm."},
    {"mm.input_projection.", "mm.mm_input_projection."},
    {"mm.soft_emb_norm.", "mm.mm_soft_emb_norm."},
};
// per block, after "v.blk.N."; fc1 is llama.cpp's ffn_up and fc2 its ffn_down (tensor_mapping.py)
inline constexpr std::pair<std::string_view, std::string_view> kOllamaVisionLayer[] = {
    {"ln1.", "layer_norm1."}, {"ln2.", "layer_norm2."},  {"attn_out.", "attn_output."},
    {"ffn_up.", "mlp.fc1."},  {"ffn_down.", "mlp.fc2."}, {"attn_q.", "attn_q."},
    {"attn_k.", "attn_k."},   {"attn_v.", "attn_v."},
};

inline std::string ollama_vision_name(const std::string& mmproj_name) {
    for (const auto& [from, to] : kOllamaVisionGlobal)
        if (mmproj_name.rfind(from, 0) == 0) return std::string(to) + mmproj_name.substr(from.size());
    const std::string_view blk = "v.blk.";
    if (mmproj_name.rfind(blk, 0) == 0) {
        const size_t dot = mmproj_name.find('.', blk.size());
        if (dot != std::string::npos) {
            const std::string rest = mmproj_name.substr(dot + 1);
            for (const auto& [from, to] : kOllamaVisionLayer)
                if (rest.rfind(from, 0) == 0) return mmproj_name.substr(0, dot + 1) + std::string(to) + rest.substr(from.size());
        }
    }
    fail(ErrorKind::internal, "no Ollama name for vision tensor '" + mmproj_name + "'");
}

// Ollama's converter type for a vision/projector tensor (convert/reader.go): 1-D and biases
// F32, everything else F16 (vision and projector matrices are never BF16 or quantized).
inline GgmlType ollama_vision_type(const std::string& name, size_t n_dims) {
    if (n_dims <= 1 || name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) return GgmlType::F32;
    return GgmlType::F16;
}

// The gemma3.vision.* / gemma3.mm.* keys of Ollama's gemma3 converter, in its (sorted) order.
inline std::vector<std::pair<std::string, GgufValue>> ollama_vision_kvs(const HfConfig& c) {
    const json& v = *c.vision;
    auto u32 = [&](std::initializer_list<const char*> keys, const char* what, std::optional<int64_t> dflt = std::nullopt) {
        const json* x = find_key(v, keys);
        if (!x || x->is_null()) {
            if (!dflt) fail_input("config.json: vision_config has no " + std::string(what));
            return GgufValue::u32(static_cast<uint32_t>(*dflt));
        }
        return gemma3::u32v(*x, std::string("vision ") + what);
    };
    double eps = 1e-6;
    if (auto e = v.find("layer_norm_eps"); e != v.end() && !e->is_null()) eps = json_number(*e, "layer_norm_eps");
    int64_t tokens = 256;  // Gemma 3's mm_tokens_per_image
    if (auto t = c.raw.find("mm_tokens_per_image"); t != c.raw.end() && !t->is_null()) tokens = json_int(*t, "mm_tokens_per_image");
    std::vector<std::pair<std::string, GgufValue>> kv = {
        {"gemma3.mm.tokens_per_image", GgufValue::u32(static_cast<uint32_t>(tokens))},
        {"gemma3.vision.attention.head_count", u32({"num_attention_heads"}, "num_attention_heads")},
        {"gemma3.vision.attention.layer_norm_epsilon", GgufValue::f32(static_cast<float>(eps))},
        {"gemma3.vision.block_count", u32({"num_hidden_layers"}, "num_hidden_layers")},
        {"gemma3.vision.embedding_length", u32({"hidden_size"}, "hidden_size")},
        {"gemma3.vision.feed_forward_length", u32({"intermediate_size"}, "intermediate_size")},
        {"gemma3.vision.image_size", u32({"image_size"}, "image_size")},
        {"gemma3.vision.num_channels", u32({"num_channels"}, "num_channels", 3)},
        {"gemma3.vision.patch_size", u32({"patch_size"}, "patch_size")},
    };
    return kv;
}

// Turns every text file of a llama.cpp plan into Ollama's single file. `plan` must come from a
// Gemma3ForConditionalGeneration checkpoint planned without --mmproj.
inline void apply_ollama_layout(ConversionPlan& plan) {
    if (!plan.config.has_vision())
        fail_input(plan.config.dir.string() + ": --layout ollama needs a multimodal checkpoint (config.json has no vision_config)");
    std::vector<size_t> vision;
    for (size_t i = 0; i < plan.tensors.size(); ++i)
        if (plan.tensors[i].part == gemma3::Part::vision) vision.push_back(i);
    if (vision.empty()) fail_input(plan.config.dir.string() + ": --layout ollama: the checkpoint has no vision tower tensors");
    std::sort(vision.begin(), vision.end(), [&](size_t a, size_t b) {
        return ollama_vision_name(plan.tensors[a].gguf_name) < ollama_vision_name(plan.tensors[b].gguf_name);
    });
    const auto vkv = ollama_vision_kvs(plan.config);
    for (auto& f : plan.files) {
        const GgufValue* arch = f.layout.kv.get("general.architecture");
        if (!arch || arch->str != "gemma3") fail(ErrorKind::usage, "--layout ollama cannot be combined with --mmproj");
        // the vision keys go after the last gemma3.* key
        GgufKvList kv;
        size_t last_arch = 0, i = 0;
        for (const auto& [k, v] : f.layout.kv.items()) {
            ++i;
            if (k.rfind("gemma3.", 0) == 0) last_arch = i;
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
            const std::string name = ollama_vision_name(t.gguf_name);
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
