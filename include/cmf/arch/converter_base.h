// The family-independent parts of llama.cpp's converter (conversion/base.py, v0.5.0) that every
// spec builds on: TextModel's and MmprojModel's KV rows, TextModel's multimodal filter, the
// preprocessor config, and the per-tensor output type rule of ModelBase.prepare_tensors.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "cmf/arch/spec.h"

namespace cmf::arch {

// find_hparam(keys, optional=True): the value of the FIRST key present, null included (a
// present null stops the search, as in Python); nullptr when none is present or it is null.
inline const json* py_find(const json& h, std::initializer_list<const char*> keys) {
    for (const char* k : keys) {
        auto it = h.find(k);
        if (it != h.end()) return it->is_null() ? nullptr : &*it;
    }
    return nullptr;
}

// TextModel.filter_tensors: names of multimodal towers, dropped from the text model
// (base.py:1344-1357).
inline bool is_multimodal_name(std::string_view n) {
    for (std::string_view p : {"mlp", "vit.", "vpm.", "siglip2.", "conformer.", "merger.", "resampler.", "sound_encoder.",
                               "sound_projection.", "speech_embeddings."})
        if (starts_with(n, p)) return true;
    for (std::string_view m : {"visual.", "vision.", "audio.", "talker.", "vision_", "audio_", "token2wav.", "code2wav.",
                               "projector.", "pre_mm_projector_norm", "image_newline", "view_seperator", "patch_embed",
                               "patch_embedding", "patch_merger.", "patch_merge_mlp.", "model.connector."})
        if (contains(n, m)) return true;
    return false;
}

// TextModel.set_gguf_parameters (base.py:1392-1500), as rows.
inline std::vector<KvEmit> text_model_kv_rows() {
    return {
        [](KvOut& o, const KvCtx& c) {
            const json* v = py_find(c.config.text, {"n_layers", "num_hidden_layers", "n_layer", "num_layers"});
            if (!v) fail_input("config.json: missing num_hidden_layers");
            o.set("block_count", u32v(*v, "num_hidden_layers"));
        },
        [](KvOut& o, const KvCtx& c) {
            if (const json* v = py_find(c.config.text, {"max_position_embeddings", "n_ctx", "n_positions", "max_length",
                                                        "max_sequence_length", "model_max_length"}))
                o.set("context_length", u32v(*v, "max_position_embeddings"));
        },
        [](KvOut& o, const KvCtx& c) {
            if (const json* v = py_find(c.config.text, {"hidden_size", "n_embd", "dim"})) o.set("embedding_length", u32v(*v, "hidden_size"));
        },
        [](KvOut& o, const KvCtx& c) {
            if (const json* v = py_find(c.config.text, {"prefix_dense_intermediate_size", "dense_intermediate_size",
                                                        "intermediate_size", "n_inner", "hidden_dim"}))
                o.set("feed_forward_length", u32_or_i32_array(*v, "intermediate_size"));
        },
        [](KvOut& o, const KvCtx& c) {
            if (const json* v = py_find(c.config.text, {"num_attention_heads", "n_head", "n_heads"}))
                o.set("attention.head_count", u32v(*v, "num_attention_heads"));
        },
        [](KvOut& o, const KvCtx& c) {
            if (const json* v = py_find(c.config.text, {"num_key_value_heads", "n_kv_heads"}))
                o.set("attention.head_count_kv", u32_or_i32_array(*v, "num_key_value_heads"));
        },
        [](KvOut& o, const KvCtx& c) {
            if (auto ic = c.config.text.find("is_causal"); ic != c.config.text.end() && ic->is_boolean() && !ic->get<bool>())
                o.set("attention.causal", GgufValue::boolean(false));
        },
        [](KvOut& o, const KvCtx& c) {  // rope scaling of the full-attention layers
            const json& rp = c.config.rope_parameters;
            const json& full = rp.contains("full_attention") && rp["full_attention"].is_object() ? rp["full_attention"] : rp;
            auto rt = full.find("rope_type");
            if (rt == full.end() || !rt->is_string()) return;
            auto f = full.find("factor");
            const std::string type = rt->get<std::string>();
            if (type == "linear" && f != full.end() && !f->is_null()) {
                o.set("rope.scaling.type", GgufValue::string("linear"));
                o.set("rope.scaling.factor", f32v(json_number(*f, "rope factor")));
            } else if (type == "yarn" && f != full.end() && !f->is_null()) {
                fail_input("config.json: yarn rope scaling is not supported");
            }
            // "default", "proportional", ...: the converter logs "Unknown RoPE type" and writes nothing
        },
        [](KvOut& o, const KvCtx& c) {
            const json& rp = c.config.rope_parameters;
            const json& full = rp.contains("full_attention") && rp["full_attention"].is_object() ? rp["full_attention"] : rp;
            if (auto t = full.find("rope_theta"); t != full.end() && !t->is_null())
                o.set("rope.freq_base", f32v(json_number(*t, "rope_theta")));
            if (rp.contains("sliding_attention") && rp["sliding_attention"].is_object())
                if (auto t = rp["sliding_attention"].find("rope_theta"); t != rp["sliding_attention"].end() && !t->is_null())
                    o.set("rope.freq_base_swa", f32v(json_number(*t, "local rope theta")));
        },
        [](KvOut& o, const KvCtx& c) {
            if (const json* v = py_find(c.config.text, {"rms_norm_eps", "norm_eps"}))
                o.set("attention.layer_norm_rms_epsilon", f32v(json_number(*v, "rms_norm_eps")));
            if (const json* v = py_find(c.config.text, {"layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"}))
                o.set("attention.layer_norm_epsilon", f32v(json_number(*v, "layer_norm_eps")));
        },
        [](KvOut& o, const KvCtx& c) {
            if (const json* v = py_find(c.config.text, {"num_local_experts", "num_experts", "n_routed_experts"}))
                o.set("expert_count", u32v(*v, "num_experts"));
            if (const json* v = py_find(c.config.text, {"num_experts_per_tok", "num_experts_per_token", "top_k_experts"}))
                o.set("expert_used_count", u32v(*v, "num_experts_per_tok"));
        },
        [](KvOut& o, const KvCtx& c) {
            if (auto it = c.config.text.find("head_dim"); it != c.config.text.end() && !it->is_null()) {
                o.set("attention.key_length", u32v(*it, "head_dim"));
                o.set("attention.value_length", u32v(*it, "head_dim"));
            }
        },
        [](KvOut& o, const KvCtx& c) { o.set("general.file_type", GgufValue::u32(c.file_type)); },
    };
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

// An MmprojModel output: general.architecture "clip", general.type "mmproj".
inline PartSpec mmproj_part() {
    PartSpec p;
    p.kind = PartKind::mmproj;
    p.gguf_arch = "clip";
    p.gguf_type = "mmproj";
    return p;
}

// MmprojModel.set_gguf_parameters for a vision encoder (base.py:2640-2664). `image_size`
// replaces vision_config's when the family's converter hard-codes it (Gemma 4: 224).
inline std::vector<KvEmit> mmproj_vision_kv_rows(std::optional<uint32_t> image_size = std::nullopt) {
    return {
        [](KvOut& o, const KvCtx& c) { o.set("general.file_type", GgufValue::u32(c.file_type)); },
        [image_size](KvOut& o, const KvCtx& c) {
            const json& v = *c.config.vision;
            auto req = [&](std::initializer_list<const char*> keys, const char* what) -> const json& {
                const json* x = py_find(v, keys);
                if (!x) fail_input("config.json: vision_config has no " + std::string(what));
                return *x;
            };
            o.set("clip.has_vision_encoder", GgufValue::boolean(true));
            const json* n_embd_text = py_find(c.config.text, {"hidden_size", "n_embd"});
            if (!n_embd_text) fail_input("config.json: text hidden_size is missing");
            o.set("clip.vision.projection_dim", u32v(*n_embd_text, "hidden_size"));
            o.set("clip.vision.image_size", image_size ? GgufValue::u32(*image_size) : u32v(req({"image_size"}, "image_size"), "vision image_size"));
            o.set("clip.vision.patch_size", u32v(req({"patch_size"}, "patch_size"), "vision patch_size"));
            o.set("clip.vision.embedding_length", u32v(req({"hidden_size", "width", "vt_hidden_size"}, "hidden_size"), "vision hidden_size"));
            o.set("clip.vision.feed_forward_length",
                  u32v(req({"intermediate_size", "vt_intermediate_size"}, "intermediate_size"), "vision intermediate_size"));
            o.set("clip.vision.block_count", u32v(req({"n_layers", "num_hidden_layers", "n_layer", "num_layers", "depth", "layers",
                                                       "encoder_layers", "vt_num_hidden_layers"},
                                                      "num_hidden_layers"),
                                                  "vision layers"));
            o.set("clip.vision.attention.head_count",
                  u32v(req({"num_attention_heads", "num_heads", "heads", "vt_num_attention_heads"}, "num_attention_heads"), "vision heads"));
            auto float_list = [&](const char* key) {
                auto it = c.preprocessor.find(key);
                if (it == c.preprocessor.end() || !it->is_array())
                    fail_input(c.config.dir.string() + ": preprocessor_config.json has no " + key + " list (needed for the mmproj)");
                std::vector<float> out;
                for (const auto& x : *it) out.push_back(static_cast<float>(json_number(x, key)));
                return out;
            };
            o.set("clip.vision.image_mean", GgufValue::f32_array(float_list("image_mean")));
            o.set("clip.vision.image_std", GgufValue::f32_array(float_list("image_std")));
        },
    };
}

// The converter's per-tensor output type (ModelBase.prepare_tensors, base.py:1043-1131): the
// family's tensor_force_quant rows, the 1-D/norm rule, the always-F32 tensors, then --outtype
// (Q8_0 falls back to F16 when a row is not whole Q8_0 blocks).
inline GgmlType converter_tensor_type(const PartSpec& part, const std::string& hf_name, const std::string& gguf_name,
                                      size_t n_dims, uint64_t row_len, ConvertType out) {
    std::optional<GgmlType> forced;
    for (const auto& r : part.dtypes)
        if (r.on(r.on_gguf_name ? gguf_name : hf_name)) {
            forced = r.to == DtypeRow::Force::f32   ? GgmlType::F32
                     : r.to == DtypeRow::Force::f16 ? GgmlType::F16
                     : out == ConvertType::F16      ? GgmlType::F16
                                                    : GgmlType::F32;
            break;
        }
    if (n_dims <= 1 || ends_with(gguf_name, "_norm.weight")) return GgmlType::F32;
    if (forced) return *forced;
    // MODEL_TENSOR kinds the converter always keeps in F32 (those a Gemma file can hold)
    const bool always_f32 = gguf_name == "position_embd.weight" || gguf_name == "v.position_embd.weight" ||
                            gguf_name == "a.position_embd.weight" || ends_with(gguf_name, ".ffn_gate_inp.weight") ||
                            ends_with(gguf_name, ".altup_correct_coef.weight") || ends_with(gguf_name, ".altup_predict_coef.weight");
    // a LoRA adapter's ".lora_a" / ".lora_b" take --outtype like weights
    const bool weight_like = ends_with(gguf_name, ".weight") || ends_with(gguf_name, ".lora_a") || ends_with(gguf_name, ".lora_b");
    if (always_f32 || !weight_like) return GgmlType::F32;
    GgmlType t = ggml_of(out);
    if (t == GgmlType::Q8_0 && row_len % 32 != 0) t = GgmlType::F16;
    return t;
}

}  // namespace cmf::arch
