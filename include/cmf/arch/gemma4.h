// Gemma 4 (Gemma4ForConditionalGeneration / Gemma4ForCausalLM, the dense E2B/E4B layout) as an
// ArchSpec: llama.cpp v0.5.0's `Gemma4Model(Gemma3Model)` (conversion/gemma.py:632-810) for the
// text GGUF and `Gemma4VisionAudioModel` (gemma.py:954-1030) for the vision mmproj (`gemma4v`).
// Not converted (refused with one line): the MoE blocks, attention_k_eq_v, per_layer_config
// checkpoints, and the audio tower (the mmproj holds the vision tower only; README).
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "cmf/arch/converter_base.h"
#include "cmf/arch/gemma3.h"
#include "cmf/arch/gemma4_vocab.h"
#include "cmf/arch/spec.h"

namespace cmf::arch::gemma4 {

// The head size of the full-attention layers (gemma.py:683-692).
inline int64_t global_head_dim(const HfConfig& c) {
    const json* g = py_find(c.text, {"global_head_dim"});
    if (!g) fail_input("config.json: global_head_dim is missing (per_layer_config checkpoints are not supported)");
    return json_int(*g, "global_head_dim");
}

// rope_freqs for the full-attention layers' "proportional" rope (generate_extra_tensors,
// gemma.py:735-762): 1.0 for the int(ghd * partial_rotary_factor / 2) rotated pairs, 1e30 for
// the rest of the ghd/2 (float32).
inline std::vector<float> rope_freqs(const HfConfig& c) {
    const json& rp = c.rope_parameters;
    if (!rp.contains("full_attention") || !rp["full_attention"].is_object())
        fail_input("config.json: rope_parameters.full_attention is missing");
    const json& full = rp["full_attention"];
    if (get_or(full, "rope_type", "") != "proportional")
        fail_input("config.json: rope_parameters.full_attention.rope_type must be \"proportional\" for Gemma 4");
    const int64_t ghd = global_head_dim(c);
    const double factor = json_number(require(full, "partial_rotary_factor", "config.json rope_parameters.full_attention"),
                                      "partial_rotary_factor");
    const int64_t n_rot = static_cast<int64_t>(static_cast<double>(ghd) * factor / 2.0);
    const int64_t half = static_cast<int64_t>(static_cast<double>(ghd) / 2.0);
    if (n_rot < 0 || n_rot > half || half <= 0) fail_input("config.json: partial_rotary_factor out of range");
    std::vector<float> v(static_cast<size_t>(half), 1e30f);
    std::fill(v.begin(), v.begin() + n_rot, 1.0f);
    return v;
}

// Gemma4Model.set_gguf_parameters after Gemma3Model's (gemma.py:671-733).
inline std::vector<KvEmit> kv_rows() {
    return {
        [](KvOut& o, const KvCtx& c) {
            const json& h = c.config.text;
            const int64_t n_shared = json_int(require(h, "num_kv_shared_layers"), "num_kv_shared_layers");
            o.set("attention.shared_kv_layers", GgufValue::u32(static_cast<uint32_t>(n_shared)));
            // per-layer embedding is optional: `hparams.get(...) or 0`
            const json pl = get_or(h, "hidden_size_per_layer_input", 0);
            o.set("embedding_length_per_layer_input", u32v(pl.is_number() ? pl : json(0), "hidden_size_per_layer_input"));
            const json& types = require(h, "layer_types");
            if (!types.is_array()) fail_input("config.json: layer_types must be a list");
            std::vector<uint8_t> swa;
            for (const auto& t : types) swa.push_back(t.is_string() && t.get<std::string>() == "sliding_attention" ? 1 : 0);
            o.set("attention.sliding_window_pattern", GgufValue::array(GgufType::BOOL, swa));
            const int64_t hd_full = global_head_dim(c.config);
            const json& hd_swa = require(h, "head_dim");
            o.set("attention.key_length", GgufValue::u32(static_cast<uint32_t>(hd_full)));
            o.set("attention.value_length", GgufValue::u32(static_cast<uint32_t>(hd_full)));
            o.set("attention.key_length_swa", u32v(hd_swa, "head_dim"));
            o.set("attention.value_length_swa", u32v(hd_swa, "head_dim"));
            // find_hparam without optional: one of the keys must exist, even if null
            if (!h.contains("expert_intermediate_size") && !h.contains("moe_intermediate_size"))
                fail_input("config.json: moe_intermediate_size is missing (llama.cpp's converter requires the key, even as null)");
            if (const json* e = py_find(h, {"expert_intermediate_size", "moe_intermediate_size"}))
                o.set("expert_feed_forward_length", u32v(*e, "moe_intermediate_size"));
            const int64_t n_layer = json_int(require(h, "num_hidden_layers"), "num_hidden_layers");
            if (get_or(h, "use_double_wide_mlp", false) == true) {
                const int64_t n_ff = json_int(require(h, "intermediate_size"), "intermediate_size");
                std::vector<int32_t> ff;
                for (int64_t il = 0; il < n_layer; ++il) ff.push_back(static_cast<int32_t>(il < n_layer - n_shared ? n_ff : 2 * n_ff));
                o.set("feed_forward_length", GgufValue::i32_array(ff));
            }
            const json* kv_full = py_find(h, {"num_global_key_value_heads"});
            const json* kv_swa = py_find(h, {"num_key_value_heads"});
            if (kv_full && kv_swa) {
                std::vector<int32_t> heads;
                for (uint8_t s : swa)
                    heads.push_back(static_cast<int32_t>(json_int(s ? *kv_swa : *kv_full, "num_key_value_heads")));
                o.set("attention.head_count_kv", GgufValue::i32_array(heads));
            }
            // n_rot: the whole global head ("proportional" rope is done by rope_freqs); the swa
            // factor is read from the top level of rope_parameters, so it is 1.0 for the nested form
            const double f_swa = json_number(get_or(c.config.rope_parameters, "partial_rotary_factor", 1.0), "partial_rotary_factor");
            o.set("rope.dimension_count", GgufValue::u32(static_cast<uint32_t>(hd_full)));
            o.set("rope.dimension_count_swa",
                  GgufValue::u32(static_cast<uint32_t>(static_cast<int64_t>(static_cast<double>(json_int(hd_swa, "head_dim")) * f_swa))));
        },
    };
}

inline ArchSpec spec() {
    ArchSpec s;
    s.hf_architectures = {"Gemma4ForConditionalGeneration", "Gemma4ForCausalLM"};
    s.family = "gemma4";
    s.display = "Gemma 4";

    s.text = gemma3::gemma_text_part("gemma4");
    // Gemma4Model.filter_tensors: bare parameters get ".weight" (gemma.py:789-797)
    s.text.renames.insert(s.text.renames.begin(), {{Rename::Op::append_if_suffix, "per_dim_scale", ".weight"},
                                                   {Rename::Op::append_if_suffix, "layer_scalar", ".weight"}});
    for (NameRow r : std::initializer_list<NameRow>{
             {"model.embed_tokens_per_layer.weight", "per_layer_token_embd.weight"},
             {"model.per_layer_model_projection.weight", "per_layer_model_proj.weight"},
             {"model.per_layer_projection_norm.weight", "per_layer_proj_norm.weight"}})
        s.text.globals.push_back(r);
    for (NameRow r : std::initializer_list<NameRow>{
             {"per_layer_input_gate.weight", "inp_gate.weight"},
             {"per_layer_projection.weight", "proj.weight"},
             {"post_per_layer_input_norm.weight", "post_norm.weight"},
             {"layer_scalar.weight", "layer_output_scale.weight"}})
        s.text.layer_rows.push_back(r);
    // Gemma3Model.modify_tensors: token rows cut to tokenizer.json's size (a no-op unless the
    // matrix is larger); the per-layer embedding is left alone
    s.text.rows = {{containing("embed_tokens.weight"), RowsRow::Rule::cut_to_tokenizer_json}};
    s.text.generated = {{"rope_freqs.weight", rope_freqs}};
    s.text.check = [](const HfConfig& c) {
        if (get_or(c.text, "enable_moe_block", false) == true)
            fail_input("config.json: enable_moe_block is set; cmf converts the dense Gemma 4 models (E2B, E4B, 31B) only");
        if (get_or(c.text, "attention_k_eq_v", false) == true)
            fail_input("config.json: attention_k_eq_v is set; cmf does not convert that Gemma 4 layout yet");
        rope_freqs(c);  // the rope checks, before any work
    };
    for (auto& r : kv_rows()) s.text.kv.push_back(std::move(r));

    PartSpec v = mmproj_part();
    // the vision tower and its projector; audio tensors are not converted (MmprojModel takes every
    // name without "language_model.")
    v.takes = [](std::string_view n) { return contains(n, "vision_tower.") || contains(n, "embed_vision."); };
    v.renames = {{Rename::Op::replace_all, ".linear.weight", ".weight"},
                 {Rename::Op::append_if_suffix, "position_embedding_table", ".weight"}};
    v.globals = {
        {"model.embed_vision.embedding_projection.weight", "mm.input_projection.weight"},
        {"model.vision_tower.patch_embedder.input_proj.weight", "v.patch_embd.weight"},
        {"model.vision_tower.patch_embedder.position_embedding_table.weight", "v.position_embd.weight"},
    };
    v.layer_prefix = "model.vision_tower.encoder.layers.";
    v.out_layer_prefix = "v.blk.";
    // tensor_mapping.py's gemma4 vision rows; stems carry .weight and the clipped-linear bounds
    // (.input_min/.input_max/.output_min/.output_max)
    v.layer_rows = {
        {"input_layernorm.", "ln1."},
        {"pre_feedforward_layernorm.", "ln2."},
        {"post_attention_layernorm.", "attn_post_norm."},
        {"post_feedforward_layernorm.", "ffn_post_norm."},
        {"self_attn.q_proj.", "attn_q."},
        {"self_attn.k_proj.", "attn_k."},
        {"self_attn.v_proj.", "attn_v."},
        {"self_attn.o_proj.", "attn_out."},
        {"self_attn.q_norm.", "attn_q_norm."},
        {"self_attn.k_norm.", "attn_k_norm."},
        {"mlp.gate_proj.", "ffn_gate."},
        {"mlp.up_proj.", "ffn_up."},
        {"mlp.down_proj.", "ffn_down."},
    };
    v.scalars_as_1d = true;  // the clipped-linear bounds are 0-dim (gemma.py:1002-1004)
    // input_proj [D, P*P*3] reshaped (D, P, P, 3) and permuted to (D, 3, P, P) (gemma.py:1023-1027)
    v.transforms = {{suffix("patch_embedder.input_proj.weight"), TensorTransform::patch_hwc_to_chw_rows()}};
    v.dtypes = {{containing("position_embedding_table"), false, DtypeRow::Force::f32},
                // MmprojModel.tensor_force_quant: F16 only for --outtype f16
                {containing(".patch_embd.weight"), true, DtypeRow::Force::f16_if_f16_else_f32}};
    v.kv = mmproj_vision_kv_rows(224);  // image_size is hard-coded (gemma.py:963)
    v.kv.push_back([](KvOut& o, const KvCtx& c) {
        o.set("clip.vision.projector_type", GgufValue::string("gemma4v"));
        o.set("clip.vision.attention.layer_norm_epsilon",
              f32v(json_number(get_or(*c.config.vision, "layer_norm_eps", 1e-6), "layer_norm_eps")));
    });
    s.mmproj = std::move(v);

    s.tokenizer.load = [](const fs::path& dir, const json&) { return tokenizer::load_gemma4_vocab(dir); };
    // Ollama renders Gemma 4 prompts itself (renderer/parser "gemma4", no Go template) and runs
    // llama.cpp's text GGUF + mmproj as a projector layer (docs/ollama-families.md 3.2-3.4)
    s.chat = {"<|turn>", "<turn|>\n", "model", false};  // its chat template's turns
    s.ollama.layout = OllamaSpec::Layout::model_and_projector;
    s.ollama.renderer = "gemma4";
    s.ollama.parser = "gemma4";
    s.ollama.params = {{"stop", {"<turn|>"}}, {"temperature", 1}, {"top_k", 64}, {"top_p", 0.95}};
    return s;
}

}  // namespace cmf::arch::gemma4
