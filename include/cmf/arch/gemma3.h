// Gemma 3 (text: Gemma3ForCausalLM / Gemma3ForConditionalGeneration; vision: SigLIP + the Gemma 3
// projector) as data: name tables, per-tensor rules and the KV recipe of llama.cpp's converter
// (convert_hf_to_gguf.py `Gemma3Model`, `Gemma3VisionModel`, v0.5.0).
#pragma once

#include <array>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cmf/arch/hf_config.h"
#include "cmf/arch/transform.h"
#include "cmf/format/gguf.h"

namespace cmf::gemma3 {

// ---------------------------------------------------------------------------------------------
// Tensor names

struct NameRow {
    std::string_view hf;    // suffix after "model.layers.N." (or the whole name for globals)
    std::string_view gguf;  // GGUF name, "blk.N." prepended for per-layer rows
};

// Text model, after "language_model." is removed (the converter does that for both layouts:
// legacy `language_model.model.*` and v5 `model.language_model.*` both become `model.*`).
inline constexpr NameRow kTextGlobal[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};
inline constexpr NameRow kTextLayer[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"post_attention_layernorm.weight", "post_attention_norm.weight"},
    {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};
inline constexpr std::string_view kTextLayerPrefix = "model.layers.";

// Vision tower + projector, after the v5 "model." prefix is removed and "_weight" -> ".weight"
// (the projector's input matrix is a bare parameter `mm_input_projection_weight`).
inline constexpr NameRow kVisionGlobal[] = {
    {"multi_modal_projector.mm_input_projection.weight", "mm.input_projection.weight"},
    {"multi_modal_projector.mm_soft_emb_norm.weight", "mm.soft_emb_norm.weight"},
    {"vision_tower.vision_model.embeddings.patch_embedding.weight", "v.patch_embd.weight"},
    {"vision_tower.vision_model.embeddings.patch_embedding.bias", "v.patch_embd.bias"},
    {"vision_tower.vision_model.embeddings.position_embedding.weight", "v.position_embd.weight"},
    {"vision_tower.vision_model.post_layernorm.weight", "v.post_ln.weight"},
    {"vision_tower.vision_model.post_layernorm.bias", "v.post_ln.bias"},
};
inline constexpr NameRow kVisionLayer[] = {
    {"layer_norm1.weight", "ln1.weight"},         {"layer_norm1.bias", "ln1.bias"},
    {"layer_norm2.weight", "ln2.weight"},         {"layer_norm2.bias", "ln2.bias"},
    {"mlp.fc1.weight", "ffn_up.weight"},          {"mlp.fc1.bias", "ffn_up.bias"},
    {"mlp.fc2.weight", "ffn_down.weight"},        {"mlp.fc2.bias", "ffn_down.bias"},
    {"self_attn.q_proj.weight", "attn_q.weight"}, {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.weight", "attn_k.weight"}, {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.weight", "attn_v.weight"}, {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.out_proj.weight", "attn_out.weight"}, {"self_attn.out_proj.bias", "attn_out.bias"},
};
inline constexpr std::string_view kVisionLayerPrefix = "vision_tower.vision_model.encoder.layers.";

inline bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
inline bool ends_with(std::string_view s, std::string_view p) {
    return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// Which model a checkpoint tensor belongs to.
enum class Part { text, vision, skip };

// llama.cpp's TextModel.filter_tensors drops multimodal names by these markers.
inline bool is_multimodal_name(std::string_view n) {
    for (std::string_view p : {"mlp", "vit.", "vpm.", "siglip2.", "conformer.", "merger.", "resampler."})
        if (starts_with(n, p)) return true;
    for (std::string_view m : {"visual.", "vision.", "audio.", "vision_", "audio_", "projector.", "pre_mm_projector_norm",
                               "image_newline", "patch_embed", "patch_merger.", "model.connector."})
        if (n.find(m) != std::string_view::npos) return true;
    return false;
}

inline std::string strip_all(std::string s, std::string_view what) {
    for (size_t p; (p = s.find(what)) != std::string::npos;) s.erase(p, what.size());
    return s;
}

// Maps a per-layer name "<prefix>N.<suffix>" through a table; returns "blk.N.<gguf>" / "v.blk.N.<gguf>".
inline std::optional<std::string> map_layer(const std::string& n, std::string_view prefix, const NameRow* rows, size_t nrows,
                                            std::string_view out_prefix, int* layer) {
    if (!starts_with(n, prefix)) return std::nullopt;
    size_t i = prefix.size(), j = i;
    while (j < n.size() && n[j] >= '0' && n[j] <= '9') ++j;
    if (j == i || j >= n.size() || n[j] != '.' || j - i > 6) return std::nullopt;
    const std::string suffix = n.substr(j + 1);
    for (size_t k = 0; k < nrows; ++k)
        if (rows[k].hf == suffix) {
            *layer = std::stoi(n.substr(i, j - i));
            return std::string(out_prefix) + n.substr(i, j - i) + "." + std::string(rows[k].gguf);
        }
    return std::nullopt;
}

struct MappedName {
    Part part = Part::skip;
    std::string gguf;
    int layer = -1;
};

// The GGUF name of a checkpoint tensor, or why it cannot be converted.
inline MappedName map_tensor(const std::string& hf_name) {
    MappedName m;
    if (!is_multimodal_name(hf_name)) {
        const std::string n = strip_all(hf_name, "language_model.");
        for (const auto& r : kTextGlobal)
            if (r.hf == n) return {Part::text, std::string(r.gguf), -1};
        if (auto g = map_layer(n, kTextLayerPrefix, kTextLayer, std::size(kTextLayer), "blk.", &m.layer)) {
            m.part = Part::text;
            m.gguf = *g;
            return m;
        }
        fail_input("cannot map checkpoint tensor '" + hf_name + "' to a Gemma 3 GGUF tensor");
    }
    std::string n = hf_name;
    // transformers v5 nests the towers under "model." (llama.cpp's converter does not accept that
    // layout and writes an empty mmproj; we do)
    if (starts_with(n, "model.vision_tower.") || starts_with(n, "model.multi_modal_projector.")) n = n.substr(6);
    if (n.find("vision_model.head.") != std::string::npos) return m;  // SigLIP pooling head: unused
    if (!starts_with(n, "multi_modal_projector.") && !starts_with(n, "vision_tower."))
        fail_input("cannot map checkpoint tensor '" + hf_name + "' to a Gemma 3 GGUF tensor");
    for (size_t p; (p = n.find("_weight")) != std::string::npos;) n.replace(p, 7, ".weight");
    for (const auto& r : kVisionGlobal)
        if (r.hf == n) return {Part::vision, std::string(r.gguf), -1};
    if (auto g = map_layer(n, kVisionLayerPrefix, kVisionLayer, std::size(kVisionLayer), "v.blk.", &m.layer)) {
        m.part = Part::vision;
        m.gguf = *g;
        return m;
    }
    fail_input("cannot map checkpoint tensor '" + hf_name + "' to a Gemma 3 vision tensor");
}

// Gemma3RMSNorm computes x * (1 + w): llama.cpp stores 1 + w (Gemma3Model.modify_tensors:
// `if name.endswith("norm.weight"): data_torch = data_torch + 1`, in the tensor's dtype; see
// arch/transform.h for what that means per source dtype). Every text tensor whose HF name ends in
// "norm.weight"; in the vision file only the projector's soft_emb_norm (SigLIP LayerNorms are
// ordinary LayerNorms).
inline TensorTransform tensor_transform(Part part, const std::string& hf_name) {
    const bool shifted = part == Part::text     ? ends_with(hf_name, "norm.weight")
                         : part == Part::vision ? hf_name.find("soft_emb_norm.weight") != std::string::npos
                                                : false;
    return shifted ? TensorTransform::norm_shift_by(1.0f) : TensorTransform{};
}

// ---------------------------------------------------------------------------------------------
// Output types of the converter (convert_hf_to_gguf.py --outtype f32|f16|bf16|q8_0)

enum class OutType { F32, F16, BF16, Q8_0 };

inline GgmlType ggml_of(OutType t) {
    switch (t) {
        case OutType::F32: return GgmlType::F32;
        case OutType::F16: return GgmlType::F16;
        case OutType::BF16: return GgmlType::BF16;
        case OutType::Q8_0: return GgmlType::Q8_0;
    }
    return GgmlType::F32;
}

// llama_ftype ids stored in general.file_type (llama.h `enum llama_ftype`).
inline uint32_t file_type_id(OutType t) {
    switch (t) {
        case OutType::F32: return 0;
        case OutType::F16: return 1;
        case OutType::Q8_0: return 7;
        case OutType::BF16: return 32;
    }
    return 0;
}

// The converter's per-tensor choice (ModelBase.prepare_tensors + tensor_force_quant).
inline GgmlType converter_tensor_type(Part part, const std::string& hf_name, const std::string& gguf_name, size_t n_dims,
                                      uint64_t row_len, OutType out) {
    std::optional<GgmlType> forced;
    if (part == Part::vision) {
        // llama.cpp issue 13025: the projector input matrix stays F16; embeddings stay F32
        if (hf_name.find("input_projection") != std::string::npos) forced = GgmlType::F16;
        else if (hf_name.find(".embeddings.") != std::string::npos) forced = GgmlType::F32;
    }
    // 1-D tensors and norms are F32 whatever was asked (most ggml ops only take F32 there)
    if (n_dims <= 1 || ends_with(gguf_name, "_norm.weight")) return GgmlType::F32;
    if (forced) return *forced;
    if (gguf_name == "v.position_embd.weight" || !ends_with(gguf_name, ".weight")) return GgmlType::F32;
    GgmlType t = ggml_of(out);
    // gguf-py cannot quantize a row that is not whole Q8_0 blocks and falls back to F16
    if (t == GgmlType::Q8_0 && row_len % 32 != 0) t = GgmlType::F16;
    return t;
}

// ---------------------------------------------------------------------------------------------
// Hyperparameters

// transformers' Gemma3TextConfig defaults: what AutoConfig fills in for keys config.json leaves
// out (the released gemma-3-4b-it text_config omits vocab_size, heads, head_dim, rope_theta).
inline const json& text_defaults() {
    static const json d = {
        {"vocab_size", 262208},          {"hidden_size", 2304},         {"intermediate_size", 9216},
        {"num_hidden_layers", 26},       {"num_attention_heads", 8},    {"num_key_value_heads", 4},
        {"head_dim", 256},               {"max_position_embeddings", 131072}, {"rms_norm_eps", 1e-6},
        {"rope_theta", 1000000.0},       {"rope_local_base_freq", 10000.0},   {"sliding_window", 4096},
    };
    return d;
}

inline void apply_text_defaults(HfConfig& c) {
    for (auto it = text_defaults().begin(); it != text_defaults().end(); ++it)
        if (!c.text.contains(it.key()) || c.text[it.key()].is_null()) c.text[it.key()] = it.value();
    // re-derive rope parameters with the defaults in place
    if (!c.rope_parameters.contains("full_attention") && !c.rope_parameters.contains("sliding_attention")) {
        if (!c.rope_parameters.contains("rope_theta")) c.rope_parameters["rope_theta"] = c.text["rope_theta"];
        c.rope_parameters["sliding_attention"] = json{{"rope_theta", c.text["rope_local_base_freq"]}};
    }
}

inline GgufValue f32v(double v) { return GgufValue::f32(static_cast<float>(v)); }
inline GgufValue u32v(const json& v, const std::string& what) {
    int64_t i = json_int(v, what);
    if (i < 0 || i > 0xffffffffll) fail_input("config.json: " + what + " out of range");
    return GgufValue::u32(static_cast<uint32_t>(i));
}

// The architecture KVs, in the order (and with the overwrites) of TextModel.set_gguf_parameters
// followed by Gemma3Model.set_gguf_parameters.
inline void add_text_hparams(GgufKvList& kv, const HfConfig& c, uint32_t file_type) {
    const json& h = c.text;
    const std::string a = "gemma3.";
    auto req = [&](std::initializer_list<const char*> keys, const char* what) -> const json& {
        const json* v = find_key(h, keys);
        if (!v) fail_input("config.json: missing " + std::string(what));
        return *v;
    };
    kv.set(a + "block_count", u32v(req({"n_layers", "num_hidden_layers", "n_layer", "num_layers"}, "num_hidden_layers"), "num_hidden_layers"));
    if (const json* v = find_key(h, {"max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length", "model_max_length"}))
        kv.set(a + "context_length", u32v(*v, "max_position_embeddings"));
    if (const json* v = find_key(h, {"hidden_size", "n_embd", "dim"})) kv.set(a + "embedding_length", u32v(*v, "hidden_size"));
    if (const json* v = find_key(h, {"prefix_dense_intermediate_size", "dense_intermediate_size", "intermediate_size", "n_inner", "hidden_dim"}))
        kv.set(a + "feed_forward_length", u32v(*v, "intermediate_size"));
    if (const json* v = find_key(h, {"num_attention_heads", "n_head", "n_heads"})) kv.set(a + "attention.head_count", u32v(*v, "num_attention_heads"));
    if (const json* v = find_key(h, {"num_key_value_heads", "n_kv_heads"})) kv.set(a + "attention.head_count_kv", u32v(*v, "num_key_value_heads"));
    if (auto ic = h.find("is_causal"); ic != h.end() && ic->is_boolean() && !ic->get<bool>())
        kv.set(a + "attention.causal", GgufValue::boolean(false));

    const json& rp = c.rope_parameters;
    const json& full = rp.contains("full_attention") && rp["full_attention"].is_object() ? rp["full_attention"] : rp;
    if (auto rt = full.find("rope_type"); rt != full.end() && rt->is_string()) {
        auto f = full.find("factor");
        const std::string type = rt->get<std::string>();
        if (type == "linear" && f != full.end() && !f->is_null()) {
            kv.set(a + "rope.scaling.type", GgufValue::string("linear"));
            kv.set(a + "rope.scaling.factor", f32v(json_number(*f, "rope factor")));
        } else if (type == "yarn" && f != full.end() && !f->is_null()) {
            fail_input("config.json: yarn rope scaling is not supported for Gemma 3");
        }
    }
    if (auto t = full.find("rope_theta"); t != full.end() && !t->is_null()) kv.set(a + "rope.freq_base", f32v(json_number(*t, "rope_theta")));
    if (rp.contains("sliding_attention") && rp["sliding_attention"].is_object())
        if (auto t = rp["sliding_attention"].find("rope_theta"); t != rp["sliding_attention"].end() && !t->is_null())
            kv.set(a + "rope.freq_base_swa", f32v(json_number(*t, "local rope theta")));
    if (const json* v = find_key(h, {"rms_norm_eps", "norm_eps"})) kv.set(a + "attention.layer_norm_rms_epsilon", f32v(json_number(*v, "rms_norm_eps")));
    if (const json* v = find_key(h, {"layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"}))
        kv.set(a + "attention.layer_norm_epsilon", f32v(json_number(*v, "layer_norm_eps")));
    if (const json* v = find_key(h, {"head_dim"})) {
        kv.set(a + "attention.key_length", u32v(*v, "head_dim"));
        kv.set(a + "attention.value_length", u32v(*v, "head_dim"));
    }
    kv.set("general.file_type", GgufValue::u32(file_type));

    // Gemma3Model.set_gguf_parameters: defaults for keys older configs leave out
    auto get = [&](const char* k, const json& dflt) -> json {
        auto it = h.find(k);
        return it == h.end() || it->is_null() ? dflt : *it;
    };
    kv.set(a + "context_length", u32v(get("max_position_embeddings", 131072), "max_position_embeddings"));
    kv.set(a + "attention.head_count", u32v(get("num_attention_heads", 8), "num_attention_heads"));
    kv.set(a + "attention.layer_norm_rms_epsilon", f32v(json_number(get("rms_norm_eps", 1e-6), "rms_norm_eps")));
    kv.set(a + "attention.key_length", u32v(get("head_dim", 256), "head_dim"));
    kv.set(a + "attention.value_length", u32v(get("head_dim", 256), "head_dim"));
    {
        json theta = full.contains("rope_theta") && !full["rope_theta"].is_null() ? full["rope_theta"] : json(1000000.0);
        kv.set(a + "rope.freq_base", f32v(json_number(theta, "rope_theta")));
    }
    if (auto sc = h.find("attn_logit_softcapping"); sc != h.end() && !sc->is_null())
        fail_input("config.json: attn_logit_softcapping is set, but Gemma 3 has none (is this a Gemma 2 checkpoint?)");
    if (auto fc = h.find("final_logit_softcapping"); fc != h.end() && fc->is_number() && fc->get<double>() != 0.0)
        kv.set(a + "final_logit_softcapping", f32v(fc->get<double>()));
    {
        auto swp = h.find("sliding_window_pattern");
        bool pattern_one = swp != h.end() && swp->is_number() && swp->get<double>() == 1.0;
        if (!pattern_one) {
            auto sw = h.find("sliding_window");
            if (sw == h.end() || sw->is_null()) fail_input("config.json: missing sliding_window");
            kv.set(a + "attention.sliding_window", u32v(*sw, "sliding_window"));
        }
    }
    kv.set(a + "attention.head_count_kv", u32v(get("num_key_value_heads", 4), "num_key_value_heads"));
}

// Preprocessor settings the mmproj needs: preprocessor_config.json, then processor_config.json
// (its "image_processor" object lifted to the top), later files winning.
inline json load_preprocessor_config(const fs::path& dir) {
    json pc = json::object();
    for (const char* f : {"preprocessor_config.json", "processor_config.json"}) {
        if (auto j = read_json_if_exists(dir / f); j && j->is_object()) {
            json cfg = *j;
            for (const char* sub : {"media_proc_cfg", "image_processor"})
                if (cfg.contains(sub) && cfg[sub].is_object())
                    for (auto it = cfg[sub].begin(); it != cfg[sub].end(); ++it) cfg[it.key()] = it.value();
            for (auto it = cfg.begin(); it != cfg.end(); ++it) pc[it.key()] = it.value();
        }
    }
    return pc;
}

// The clip.* KVs of the mmproj, in MmprojModel + Gemma3VisionModel order.
inline void add_vision_hparams(GgufKvList& kv, const HfConfig& c, uint32_t file_type) {
    const json& v = *c.vision;
    const json pre = load_preprocessor_config(c.dir);
    auto req = [&](std::initializer_list<const char*> keys, const char* what) -> const json& {
        const json* x = find_key(v, keys);
        if (!x) fail_input("config.json: vision_config has no " + std::string(what));
        return *x;
    };
    kv.set("general.file_type", GgufValue::u32(file_type));
    kv.set("clip.has_vision_encoder", GgufValue::boolean(true));
    const json* n_embd_text = find_key(c.text, {"hidden_size", "n_embd"});
    if (!n_embd_text) fail_input("config.json: text hidden_size is missing");
    kv.set("clip.vision.projection_dim", u32v(*n_embd_text, "hidden_size"));
    const json& image_size = req({"image_size"}, "image_size");
    const json& patch_size = req({"patch_size"}, "patch_size");
    kv.set("clip.vision.image_size", u32v(image_size, "vision image_size"));
    kv.set("clip.vision.patch_size", u32v(patch_size, "vision patch_size"));
    kv.set("clip.vision.embedding_length", u32v(req({"hidden_size", "width", "vt_hidden_size"}, "hidden_size"), "vision hidden_size"));
    kv.set("clip.vision.feed_forward_length", u32v(req({"intermediate_size", "vt_intermediate_size"}, "intermediate_size"), "vision intermediate_size"));
    kv.set("clip.vision.block_count", u32v(req({"n_layers", "num_hidden_layers", "n_layer", "num_layers", "depth", "layers", "encoder_layers", "vt_num_hidden_layers"}, "num_hidden_layers"), "vision layers"));
    kv.set("clip.vision.attention.head_count", u32v(req({"num_attention_heads", "num_heads", "heads", "vt_num_attention_heads"}, "num_attention_heads"), "vision heads"));
    auto float_list = [&](const char* key) {
        auto it = pre.find(key);
        if (it == pre.end() || !it->is_array())
            fail_input(c.dir.string() + ": preprocessor_config.json has no " + key + " list (needed for the mmproj)");
        std::vector<float> out;
        for (const auto& x : *it) out.push_back(static_cast<float>(json_number(x, key)));
        return out;
    };
    kv.set("clip.vision.image_mean", GgufValue::f32_array(float_list("image_mean")));
    kv.set("clip.vision.image_std", GgufValue::f32_array(float_list("image_std")));
    kv.set("clip.projector_type", GgufValue::string("gemma3"));
    double eps = 1e-6;
    if (auto e = v.find("layer_norm_eps"); e != v.end() && !e->is_null()) eps = json_number(*e, "layer_norm_eps");
    kv.set("clip.vision.attention.layer_norm_epsilon", f32v(eps));
    kv.set("clip.use_gelu", GgufValue::boolean(true));
    // tokens per image side: sqrt(image_seq_length); the projector pools by (patches per side / that)
    int64_t seq = 256;
    if (auto s = pre.find("image_seq_length"); s != pre.end() && !s->is_null()) seq = json_int(*s, "image_seq_length");
    const int64_t per_side = static_cast<int64_t>(std::sqrt(static_cast<double>(seq)));
    const int64_t ps = json_int(patch_size, "patch_size");
    if (per_side > 0 && ps > 0) {
        const int64_t scale = (json_int(image_size, "image_size") / ps) / per_side;
        if (scale > 0 && scale != 4) kv.set("clip.vision.projector.scale_factor", GgufValue::u32(static_cast<uint32_t>(scale)));
    }
}

}  // namespace cmf::gemma3
