// Gemma 3n (Gemma3nForConditionalGeneration / Gemma3nForCausalLM, the E2B/E4B layout) as an
// ArchSpec: llama.cpp v0.5.0's `Gemma3NModel(Gemma3Model)` (conversion/gemma.py:486-629). The
// text model only: per-layer embeddings, AltUp, LAuReL, kv-sharing, activation sparsity and
// per-layer FFN lengths. The MobileNetV5 vision and USM audio towers are not converted (llama.cpp
// writes a metadata-only mmproj for them; cmf refuses --mmproj instead).
#pragma once

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cmf/arch/converter_base.h"
#include "cmf/arch/gemma3.h"
#include "cmf/arch/spec.h"

namespace cmf::arch::gemma3n {

// torch's float32 Normal(0, 1).icdf(p) = erfinv(2p - 1) * sqrt(2), every step in float as torch
// computes it on CPU (ATen's calc_erfinv<float>: a rational first guess - central range |y| <= 0.7
// or the tail form in sqrt(-log((1 - |y|) / 2)) - then two Newton steps on erf; the scalar
// sqrt(2) is applied as a float). torch runs its AVX2 kernel build on any x86-64 CPU with AVX2,
// compiled with FMA contraction, so the polynomials are fused multiply-adds: evaluated without
// fma, 106 of p = 0.000..1.000 come out one ulp off. Pinned against torch 1.13 for all 1001 by
// tests/unit/gemma3n_test.cpp (tests/data/icdf).
inline float erfinv_f32(float y) {
    static constexpr float a[4] = {0.886226899f, -1.645349621f, 0.914624893f, -0.140543331f};
    static constexpr float b[4] = {-2.118377725f, 1.442710462f, -0.329097515f, 0.012229801f};
    static constexpr float c[4] = {-1.970840454f, -1.624906493f, 3.429567803f, 1.641345311f};
    static constexpr float d[2] = {3.543889200f, 1.637067800f};
    const float ay = std::fabs(y);
    if (ay > 1.0f) return std::numeric_limits<float>::quiet_NaN();
    if (ay == 1.0f) return std::copysign(std::numeric_limits<float>::infinity(), y);
    float x;
    if (ay <= 0.7f) {
        const float z = y * y;
        const float num = std::fma(std::fma(std::fma(a[3], z, a[2]), z, a[1]), z, a[0]);
        const float den = std::fma(std::fma(std::fma(std::fma(b[3], z, b[2]), z, b[1]), z, b[0]), z, 1.0f);
        x = y * num / den;
    } else {
        const float z = std::sqrt(-std::log((1.0f - ay) / 2.0f));
        const float num = std::fma(std::fma(std::fma(c[3], z, c[2]), z, c[1]), z, c[0]);
        const float den = std::fma(std::fma(d[1], z, d[0]), z, 1.0f);
        x = std::copysign(num, y) / den;
    }
    const float two_over_sqrt_pi = 2.0f / static_cast<float>(std::sqrt(3.14159265358979323846));
    for (int step = 0; step < 2; ++step) x = x - (std::erf(x) - y) / (two_over_sqrt_pi * std::exp(-x * x));
    return x;
}

inline float normal_icdf_f32(float p) {
    const float y = 2.0f * p - 1.0f;
    return erfinv_f32(y) * static_cast<float>(std::sqrt(2.0));
}

// Gemma3NModel.set_gguf_parameters after Gemma3Model's (gemma.py:533-550).
inline std::vector<KvEmit> kv_rows() {
    return {
        [](KvOut& o, const KvCtx& c) {
            const json& h = c.config.text;
            o.set("altup.active_idx", u32v(require(h, "altup_active_idx"), "altup_active_idx"));
            o.set("altup.num_inputs", u32v(require(h, "altup_num_inputs"), "altup_num_inputs"));
            o.set("embedding_length_per_layer_input", u32v(require(h, "hidden_size_per_layer_input"), "hidden_size_per_layer_input"));
            o.set("attention.shared_kv_layers", u32v(require(h, "num_kv_shared_layers"), "num_kv_shared_layers"));
            const json& pattern = require(h, "activation_sparsity_pattern");
            if (!pattern.is_array()) fail_input("config.json: activation_sparsity_pattern must be a list");
            std::vector<float> scale;
            for (const auto& p : pattern) scale.push_back(normal_icdf_f32(static_cast<float>(json_number(p, "activation_sparsity_pattern"))));
            o.set("activation_sparsity_scale", GgufValue::f32_array(scale));
            const json& types = require(h, "layer_types");
            if (!types.is_array()) fail_input("config.json: layer_types must be a list");
            std::vector<uint8_t> swa;
            for (const auto& t : types) swa.push_back(t.is_string() && t.get<std::string>() == "sliding_attention" ? 1 : 0);
            o.set("attention.sliding_window_pattern", GgufValue::array(GgufType::BOOL, swa));
        },
    };
}

// Ollama's library template for gemma3n (ollama.com/library/gemma3n, the gemma3:4b form; see
// docs/ollama-families.md 2.3): Gemma 3 turns, system folded into a user turn.
inline constexpr std::string_view kOllamaTemplate =
    "{{- range $i, $_ := .Messages }}\n"
    "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
    "{{- if or (eq .Role \"user\") (eq .Role \"system\") }}<start_of_turn>user\n"
    "{{ .Content }}<end_of_turn>\n"
    "{{ if $last }}<start_of_turn>model\n"
    "{{ end }}\n"
    "{{- else if eq .Role \"assistant\" }}<start_of_turn>model\n"
    "{{ .Content }}{{ if not $last }}<end_of_turn>\n"
    "{{ end }}\n"
    "{{- end }}\n"
    "{{- end }}";

inline ArchSpec spec() {
    ArchSpec s;
    s.hf_architectures = {"Gemma3nForConditionalGeneration", "Gemma3nForCausalLM"};
    s.family = "gemma3n";
    s.display = "Gemma 3n";

    s.text = gemma3::gemma_text_part("gemma3n");
    // Gemma3NModel.filter_tensors: a bare `*_scale` parameter (altup.correct_output_scale) gets
    // ".weight" before TextModel's filter and the "language_model." removal
    s.text.renames.insert(s.text.renames.begin(), {Rename::Op::append_if_suffix, "_scale", ".weight"});
    for (NameRow r : std::initializer_list<NameRow>{
             {"model.embed_tokens_per_layer.weight", "per_layer_token_embd.weight"},
             {"model.per_layer_model_projection.weight", "per_layer_model_proj.weight"},
             {"model.per_layer_projection_norm.weight", "per_layer_proj_norm.weight"},
             {"model.altup_projections.weight", "altup_proj.weight"},
             {"model.altup_unembed_projections.weight", "altup_unembd_proj.weight"}})
        s.text.globals.push_back(r);
    for (NameRow r : std::initializer_list<NameRow>{
             {"per_layer_input_gate.weight", "inp_gate.weight"},
             {"per_layer_projection.weight", "proj.weight"},
             {"post_per_layer_input_norm.weight", "post_norm.weight"},
             {"altup.correction_coefs.weight", "altup_correct_coef.weight"},
             {"altup.correct_output_scale.weight", "altup_correct_scale.weight"},
             {"altup.prediction_coefs.weight", "altup_predict_coef.weight"},
             {"altup.modality_router.weight", "altup_router.weight"},
             {"altup.router_norm.weight", "altup_router_norm.weight"},
             {"laurel.linear_left.weight", "laurel_l.weight"},
             {"laurel.linear_right.weight", "laurel_r.weight"},
             {"laurel.post_laurel_norm.weight", "laurel_post_norm.weight"}})
        s.text.layer_rows.push_back(r);
    // the three AltUp projections of each kind are one tensor, ne [H, H, 3] (gemma.py:597-627)
    s.text.stacks = {{"model.altup_projections", 3}, {"model.altup_unembed_projections", 3}};
    // both embeddings padded with zero rows up to vocab_size for the vision/audio token ids,
    // never cut (gemma.py:571-587)
    s.text.rows = {{containing("embed_tokens.weight"), RowsRow::Rule::pad_to_vocab},
                   {containing("embed_tokens_per_layer"), RowsRow::Rule::pad_to_vocab}};
    // no norm shift: Gemma3p5RMSNorm stores the scale as is (gemma.py:509-511)
    s.text.check = [](const HfConfig& c) {
        const json& n = require(c.text, "altup_num_inputs");
        if (json_int(n, "altup_num_inputs") != 4)
            fail_input("config.json: altup_num_inputs is " + n.dump() + "; llama.cpp converts Gemma 3n with 4 AltUp inputs only");
    };
    for (auto& r : kv_rows()) s.text.kv.push_back(std::move(r));

    s.mmproj_refusal =
        "--mmproj: Gemma 3n's MobileNetV5 vision and USM audio towers are not converted (llama.cpp writes an mmproj "
        "without tensors for them); cmf writes the text GGUF only";
    // Gemma3NModel.set_vocab removes vocab_size_per_layer_input for the call, so the list is
    // vocab_size long (the padded multimodal ids included)
    s.tokenizer.load = [](const fs::path& dir, const json& h) {
        json without = h;
        if (without.is_object()) without.erase("vocab_size_per_layer_input");
        return tokenizer::load_gemma_vocab(dir, without);
    };
    s.chat = {"<start_of_turn>", "<end_of_turn>\n", "model", true};  // its chat template's turns
    s.ollama.layout = OllamaSpec::Layout::text_only;
    s.ollama.template_text = kOllamaTemplate;
    s.ollama.params = {{"num_ctx", 8192}, {"stop", {"<end_of_turn>"}}};
    return s;
}

}  // namespace cmf::arch::gemma3n
