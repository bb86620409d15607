// Gemma 3 (text: Gemma3ForCausalLM / Gemma3ForConditionalGeneration; vision: SigLIP + the Gemma 3
// projector) as an ArchSpec: what llama.cpp v0.5.0's `Gemma3Model` and `Gemma3VisionModel`
// (conversion/gemma.py) and Ollama's gemma3 converter do with it.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "cmf/arch/converter_base.h"
#include "cmf/arch/spec.h"

namespace cmf::arch::gemma3 {

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

// Text names after "language_model." is removed (the converter does that for both layouts:
// legacy `language_model.model.*` and v5 `model.language_model.*` both become `model.*`).
inline std::vector<NameRow> text_globals() {
    return {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
    };
}
inline std::vector<NameRow> text_layer_rows() {
    return {
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
}

// Gemma3Model.set_gguf_parameters after TextModel's (gemma.py:141-158): defaults for keys older
// configs leave out, written over TextModel's values in place.
inline std::vector<KvEmit> gemma3_model_kv_rows() {
    return {
        [](KvOut& o, const KvCtx& c) {
            const json& h = c.config.text;
            o.set("context_length", u32v(get_or(h, "max_position_embeddings", 131072), "max_position_embeddings"));
            o.set("attention.head_count", u32v(get_or(h, "num_attention_heads", 8), "num_attention_heads"));
            o.set("attention.layer_norm_rms_epsilon", f32v(json_number(get_or(h, "rms_norm_eps", 1e-6), "rms_norm_eps")));
            o.set("attention.key_length", u32v(get_or(h, "head_dim", 256), "head_dim"));
            o.set("attention.value_length", u32v(get_or(h, "head_dim", 256), "head_dim"));
            const json& rp = c.config.rope_parameters;
            const json& full = rp.contains("full_attention") && rp["full_attention"].is_object() ? rp["full_attention"] : rp;
            o.set("rope.freq_base", f32v(json_number(get_or(full, "rope_theta", 1000000.0), "rope_theta")));
            if (auto sc = h.find("attn_logit_softcapping"); sc != h.end() && !sc->is_null())
                fail_input("config.json: attn_logit_softcapping is set, but Gemma 3 has none (is this a Gemma 2 checkpoint?)");
            if (auto fc = h.find("final_logit_softcapping"); fc != h.end() && fc->is_number() && fc->get<double>() != 0.0)
                o.set("final_logit_softcapping", f32v(fc->get<double>()));
            auto swp = h.find("sliding_window_pattern");
            const bool pattern_one = swp != h.end() && swp->is_number() && swp->get<double>() == 1.0;
            if (!pattern_one) o.set("attention.sliding_window", u32v(require(h, "sliding_window"), "sliding_window"));
            o.set("attention.head_count_kv", u32v(get_or(h, "num_key_value_heads", 4), "num_key_value_heads"));
        },
    };
}

// The text part every Gemma family shares: TextModel's filter and "language_model." removal,
// the Gemma 3 name rows, TextModel + Gemma3Model KV rows. Gemma 3n and Gemma 4 extend it.
inline PartSpec gemma_text_part(std::string_view gguf_arch) {
    PartSpec p;
    p.kind = PartKind::text;
    p.gguf_arch = gguf_arch;
    p.gguf_type = "model";
    p.takes = [](std::string_view n) { return !is_multimodal_name(n); };
    p.renames = {{Rename::Op::remove_all, "language_model.", ""}};
    p.globals = text_globals();
    p.layer_prefix = "model.layers.";
    p.out_layer_prefix = "blk.";
    p.layer_rows = text_layer_rows();
    p.kv = text_model_kv_rows();
    for (auto& r : gemma3_model_kv_rows()) p.kv.push_back(std::move(r));
    return p;
}

// Ollama's gemma3-instruct template (template/gemma3-instruct.gotmpl), byte for byte: the turn
// format <start_of_turn>user / <start_of_turn>model ... <end_of_turn>, the system prompt put
// in the second message's user turn, and an open model turn after the last message.
inline constexpr std::string_view kOllamaTemplate =
    "{{- $system := .System }}\n"
    "{{- range $i, $_ := .Messages }}\n"
    "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
    "{{- if eq .Role \"user\" }}<start_of_turn>user\n"
    "{{- if and (eq $i 1) $system }}\n"
    "{{ $system }}\n"
    "{{- end }}\n"
    "{{ .Content }}<end_of_turn>\n"
    "{{ else if eq .Role \"assistant\" }}<start_of_turn>model\n"
    "{{ .Content }}<end_of_turn>\n"
    "{{ end }}\n"
    "{{- if $last }}<start_of_turn>model\n"
    "{{ end }}\n"
    "{{- end }}\n";

// Ollama's single-file layout (convert/convert_gemma3.go; research/ollama.md 6.1-6.3): llama.cpp
// mmproj tensor names -> Ollama names, read right to left.
inline std::vector<NameRow> ollama_vision_globals() {
    return {
        {"v.patch_embd.", "v.patch_embedding."},
        {"v.position_embd.", "v.position_embedding."},
        {"v.post_ln.", "v.post_layernorm."},
        {"mm.input_projection.", "mm.mm_input_projection."},
        {"mm.soft_emb_norm.", "mm.mm_soft_emb_norm."},
    };
}
// per block, after "v.blk.N."; fc1 is llama.cpp's ffn_up and fc2 its ffn_down (tensor_mapping.py)
inline std::vector<NameRow> ollama_vision_layer_rows() {
    return {
        {"ln1.", "layer_norm1."}, {"ln2.", "layer_norm2."},  {"attn_out.", "attn_output."},
        {"ffn_up.", "mlp.fc1."},  {"ffn_down.", "mlp.fc2."}, {"attn_q.", "attn_q."},
        {"attn_k.", "attn_k."},   {"attn_v.", "attn_v."},
    };
}

// The gemma3.vision.* / gemma3.mm.* keys of Ollama's gemma3 converter, in its (sorted) order.
inline std::vector<std::pair<std::string, GgufValue>> ollama_vision_kvs(const HfConfig& c) {
    const json& v = *c.vision;
    auto u32 = [&](const char* key, std::optional<int64_t> dflt = std::nullopt) {
        const json* x = py_find(v, {key});
        if (!x) {
            if (!dflt) fail_input("config.json: vision_config has no " + std::string(key));
            return GgufValue::u32(static_cast<uint32_t>(*dflt));
        }
        return u32v(*x, std::string("vision ") + key);
    };
    const double eps = json_number(get_or(v, "layer_norm_eps", 1e-6), "layer_norm_eps");
    const int64_t tokens = json_int(get_or(c.raw, "mm_tokens_per_image", 256), "mm_tokens_per_image");
    return {
        {"gemma3.mm.tokens_per_image", GgufValue::u32(static_cast<uint32_t>(tokens))},
        {"gemma3.vision.attention.head_count", u32("num_attention_heads")},
        {"gemma3.vision.attention.layer_norm_epsilon", GgufValue::f32(static_cast<float>(eps))},
        {"gemma3.vision.block_count", u32("num_hidden_layers")},
        {"gemma3.vision.embedding_length", u32("hidden_size")},
        {"gemma3.vision.feed_forward_length", u32("intermediate_size")},
        {"gemma3.vision.image_size", u32("image_size")},
        {"gemma3.vision.num_channels", u32("num_channels", 3)},
        {"gemma3.vision.patch_size", u32("patch_size")},
    };
}

inline ArchSpec spec() {
    ArchSpec s;
    s.hf_architectures = {"Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"};
    s.family = "gemma3";
    s.display = "Gemma 3";
    s.defaults = apply_text_defaults;

    s.text = gemma_text_part("gemma3");
    // the converter keeps exactly as many token rows as the vocabulary has entries
    s.text.rows = {{containing("embed_tokens.weight"), RowsRow::Rule::tokens_exact}};
    // Gemma3RMSNorm computes x * (1 + w): the converter stores 1 + w, in the source dtype's
    // arithmetic (arch/transform.h), for every text tensor whose name ends in "norm.weight"
    s.text.transforms = {{suffix("norm.weight"), TensorTransform::norm_shift_by(1.0f)}};

    PartSpec v = mmproj_part();
    v.takes = [](std::string_view n) { return is_multimodal_name(n); };
    // transformers v5 nests the towers under "model." (llama.cpp's converter does not accept that
    // layout and writes an empty mmproj; cmf does); the projector's input matrix is a bare
    // parameter `mm_input_projection_weight`
    v.renames = {{Rename::Op::replace_prefix, "model.vision_tower.", "vision_tower."},
                 {Rename::Op::replace_prefix, "model.multi_modal_projector.", "multi_modal_projector."},
                 {Rename::Op::replace_all, "_weight", ".weight"}};
    v.ignore = {"vision_model.head."};  // the SigLIP pooling head: unused
    v.globals = {
        {"multi_modal_projector.mm_input_projection.weight", "mm.input_projection.weight"},
        {"multi_modal_projector.mm_soft_emb_norm.weight", "mm.soft_emb_norm.weight"},
        {"vision_tower.vision_model.embeddings.patch_embedding.weight", "v.patch_embd.weight"},
        {"vision_tower.vision_model.embeddings.patch_embedding.bias", "v.patch_embd.bias"},
        {"vision_tower.vision_model.embeddings.position_embedding.weight", "v.position_embd.weight"},
        {"vision_tower.vision_model.post_layernorm.weight", "v.post_ln.weight"},
        {"vision_tower.vision_model.post_layernorm.bias", "v.post_ln.bias"},
    };
    v.layer_prefix = "vision_tower.vision_model.encoder.layers.";
    v.out_layer_prefix = "v.blk.";
    v.layer_rows = {
        {"layer_norm1.", "ln1."},         {"layer_norm2.", "ln2."},           {"mlp.fc1.", "ffn_up."},
        {"mlp.fc2.", "ffn_down."},        {"self_attn.q_proj.", "attn_q."},   {"self_attn.k_proj.", "attn_k."},
        {"self_attn.v_proj.", "attn_v."}, {"self_attn.out_proj.", "attn_out."},
    };
    // SigLIP LayerNorms are ordinary LayerNorms; only the projector's soft_emb_norm is 1 + w
    v.transforms = {{containing("soft_emb_norm.weight"), TensorTransform::norm_shift_by(1.0f)}};
    // Gemma3VisionModel.tensor_force_quant (llama.cpp issue 13025): the projector input matrix
    // stays F16, the embeddings F32
    v.dtypes = {{containing("input_projection"), false, DtypeRow::Force::f16},
                {containing(".embeddings."), false, DtypeRow::Force::f32}};
    v.kv = mmproj_vision_kv_rows();
    v.kv.push_back([](KvOut& o, const KvCtx& c) {  // Gemma3VisionModel.set_gguf_parameters
        const json& vc = *c.config.vision;
        o.set("clip.projector_type", GgufValue::string("gemma3"));
        o.set("clip.vision.attention.layer_norm_epsilon", f32v(json_number(get_or(vc, "layer_norm_eps", 1e-6), "layer_norm_eps")));
        o.set("clip.use_gelu", GgufValue::boolean(true));
        // tokens per image side: sqrt(image_seq_length); the projector pools by (patches per side / that)
        const int64_t seq = json_int(get_or(c.preprocessor, "image_seq_length", 256), "image_seq_length");
        const int64_t per_side = static_cast<int64_t>(std::sqrt(static_cast<double>(seq)));
        const int64_t ps = json_int(require(vc, "patch_size"), "patch_size");
        if (per_side > 0 && ps > 0) {
            const int64_t scale = (json_int(require(vc, "image_size"), "image_size") / ps) / per_side;
            if (scale > 0 && scale != 4) o.set("clip.vision.projector.scale_factor", GgufValue::u32(static_cast<uint32_t>(scale)));
        }
    });
    s.mmproj = std::move(v);

    // Gemma3Model.set_vocab: tokenizer.model (or tokenizer.json) as SentencePiece
    s.tokenizer.load = [](const fs::path& dir, const json& h) { return tokenizer::load_gemma_vocab(dir, h); };
    s.chat = {"<start_of_turn>", "<end_of_turn>\n", "model", true};  // its chat template's turns
    s.ollama.layout = OllamaSpec::Layout::single_file;
    s.ollama.template_text = kOllamaTemplate;
    // the context most users can afford, and the turn end
    s.ollama.params = {{"num_ctx", 8192}, {"stop", {"<end_of_turn>"}}};
    s.ollama.vision_globals = ollama_vision_globals();
    s.ollama.vision_layer_rows = ollama_vision_layer_rows();
    s.ollama.vision_kvs = ollama_vision_kvs;
    return s;
}

}  // namespace cmf::arch::gemma3
