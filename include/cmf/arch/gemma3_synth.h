// Synthetic Gemma 3 checkpoints (`cmf synth --preset tiny|tiny-mm|medgemma-text|recipes`) in
// Hugging Face layout, for tests, fuzz seeds and benchmarks.
//
// A generated directory has what a real release has and what llama.cpp's converter reads:
//   config.json, generation_config.json, model.safetensors (or N shards + model.safetensors.index.json),
//   tokenizer.model (SentencePiece BPE with byte fallback), tokenizer.json, tokenizer_config.json,
//   special_tokens_map.json, added_tokens.json, and for the multimodal preset
//   preprocessor_config.json, processor_config.json and chat_template.json.
// The file set and the JSON keys mirror the golden tiny checkpoints (../shared/golden/tiny-text,
// tiny-mm), which were made to look like google/gemma-3-1b-it and gemma-3-4b-it.
// Gemma RMS norm weights sit around 0 because Gemma 3 computes x * (1 + w) and llama.cpp stores
// 1 + w; SigLIP LayerNorm weights sit around 1. --v5 writes the transformers-v5 layout.
#pragma once

#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/format/sentencepiece.h"
#include "cmf/synth/json_files.h"
#include "cmf/synth/model.h"
#include "cmf/synth/preset.h"
#include "cmf/synth/tokenizer.h"

namespace cmf::arch::gemma3 {

namespace synth_detail {
using cmf::synth::SynthModel;
using cmf::synth::SynthSpec;
using cmf::synth::SynthText;
using cmf::synth::SynthVision;
using nlohmann::json;
namespace fs = std::filesystem;
}  // namespace synth_detail

// The Gemma 3 chat template, as released in google/gemma-3-*-it tokenizer_config.json (the golden
// checkpoints carry the same string); llama.cpp copies it into tokenizer.chat_template.
inline constexpr const char* kChatTemplate = R"TPL({{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '

' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '

' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '
' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>
' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model
'}}
{%- endif -%}
)TPL";
// Gemma's leading pieces (ids 0..21 of the real tokenizer and of the golden ones), with the
// SentencePiece type and whether tokenizer_config.json marks them special.
inline constexpr cmf::synth::SynthSpecialPiece kSynthSpecials[] = {
    {"<pad>", sentencepiece::PieceType::control, true},
    {"<eos>", sentencepiece::PieceType::control, true},
    {"<bos>", sentencepiece::PieceType::control, true},
    {"<unk>", sentencepiece::PieceType::unknown, true},
    {"<mask>", sentencepiece::PieceType::user_defined, false},
    {"[multimodal]", sentencepiece::PieceType::user_defined, false},
    {"<unused0>", sentencepiece::PieceType::user_defined, false},
    {"<unused1>", sentencepiece::PieceType::user_defined, false},
    {"<unused2>", sentencepiece::PieceType::user_defined, false},
    {"<unused3>", sentencepiece::PieceType::user_defined, false},
    {"<start_of_turn>", sentencepiece::PieceType::user_defined, true},
    {"<end_of_turn>", sentencepiece::PieceType::user_defined, true},
    {"\n", sentencepiece::PieceType::user_defined, false},
    {"\n\n", sentencepiece::PieceType::user_defined, false},
    {"\n\n\n", sentencepiece::PieceType::user_defined, false},
    {"\t", sentencepiece::PieceType::user_defined, false},
    {"\xe2\x96\x81\xe2\x96\x81", sentencepiece::PieceType::user_defined, false},                  // "▁▁"
    {"\xe2\x96\x81\xe2\x96\x81\xe2\x96\x81", sentencepiece::PieceType::user_defined, false},      // "▁▁▁"
    {"<b>", sentencepiece::PieceType::user_defined, false},
    {"</b>", sentencepiece::PieceType::user_defined, false},
    {"<start_of_image>", sentencepiece::PieceType::user_defined, true},
    {"<end_of_image>", sentencepiece::PieceType::user_defined, true},
};
inline constexpr const char* kImageSoftToken = "<image_soft_token>";  // id = kSynthPieces

// The synthetic tokenizer's pieces (synth/tokenizer.h) with Gemma 3's leading pieces.
inline std::vector<sentencepiece::Piece> synth_pieces() { return cmf::synth::synth_pieces(kSynthSpecials); }

namespace synth_detail {

inline SynthText text_shape(int64_t vocab, int64_t hidden, int64_t ffn, int64_t heads, int64_t kv_heads, int64_t head_dim,
                            int64_t layers, int64_t max_position, int64_t sliding_window, double rope_linear_factor) {
    SynthText t;
    t.vocab = vocab;
    t.hidden = hidden;
    t.ffn = ffn;
    t.heads = heads;
    t.kv_heads = kv_heads;
    t.head_dim = head_dim;
    t.layers = layers;
    t.max_position = max_position;
    t.sliding_window = sliding_window;
    t.rope_theta = 1000000.0;
    t.rope_local_theta = 10000.0;
    t.rope_linear_factor = rope_linear_factor;
    return t;
}

// The tensor list (legacy names are the value keys; --v5 renames them).
inline void build(SynthModel& m, const SynthSpec& spec) {
    using cmf::synth::kSynthPieces;
    SynthText& t = m.text;
    if (spec.preset == "tiny") {
        // ../shared/golden/tiny-text: gemma-3-1b layout, 5,018,624 parameters
        m.architecture = "Gemma3ForCausalLM";
        t = text_shape(1088, 512, 1024, 4, 1, 128, 2, 32768, 512, 0.0);
        m.shards = 1;
    } else if (spec.preset == "tiny-mm") {
        // ../shared/golden/tiny-mm: gemma-3-4b-it / medgemma-4b-it layout, n_head * head_dim != hidden
        m.architecture = "Gemma3ForConditionalGeneration";
        t = text_shape(1088, 256, 512, 2, 1, 256, 2, 131072, 1024, 8.0);
        m.multimodal = true;
        m.vision = {896, 14, 128, 512, 2, 2};
        m.shards = 1;
    } else if (spec.preset == "medgemma-text") {
        // manifest.json "medium": the real 4B text shapes with 3 layers, ~954M parameters
        m.architecture = "Gemma3ForCausalLM";
        t = text_shape(262208, 2560, 10240, 8, 4, 256, 3, 131072, 1024, 8.0);
        m.shards = 2;
    } else if (spec.preset == "medgemma") {
        // google/medgemma-1.5-4b-it's shapes: the 4B text model (34 layers) and the SigLIP
        // so400m tower (27 layers, hidden 1152, FFN 4304, 16 heads); 4.3B parameters, 2 shards
        m.architecture = "Gemma3ForConditionalGeneration";
        t = text_shape(262208, 2560, 10240, 8, 4, 256, 34, 131072, 1024, 8.0);
        m.multimodal = true;
        m.vision = {896, 14, 1152, 4304, 27, 16};
        m.shards = 2;
    } else if (spec.preset == "recipes") {
        // for comparing llama-quantize recipes: 12 layers (use_more_bits and the n_layer/8,
        // n_layer/16 early-layer rules all pick different layers), hidden 320 (not a multiple of
        // 256: the K-quant fallbacks), FFN 3328 = 13 x 256 (ffn tensors of 1,064,960 > 1 Mi
        // elements: several chunks), n_head * head_dim = 1024 != hidden; ~50M parameters
        m.architecture = "Gemma3ForCausalLM";
        t = text_shape(4096, 320, 3328, 4, 1, 256, 12, 32768, 512, 0.0);
        m.shards = 1;
    } else {
        fail(ErrorKind::internal, "synth: no Gemma 3 preset '" + spec.preset + "'");
    }
    if (spec.kv_shared >= 0) fail(ErrorKind::usage, "synth: --kv-shared: preset " + spec.preset + " has no KV-shared layers");
    if (spec.layers > 0) t.layers = spec.layers;
    if (spec.ffn > 0) t.ffn = spec.ffn;
    if (t.vocab <= kSynthPieces) fail(ErrorKind::internal, "synth: vocab_size must exceed the tokenizer's pieces");

    // Legacy names are the value keys; v5 renames them (transformers >= 4.52 nests the towers of
    // Gemma3ForConditionalGeneration under "model."; Gemma3ForCausalLM keeps "model.layers.*").
    auto add = [&](const std::string& legacy, std::vector<int64_t> shape, float mean, float std) {
        cmf::synth::SynthTensor s;
        s.key = legacy;
        s.name = legacy;
        if (m.v5 && m.multimodal) {
            if (legacy.rfind("language_model.model.", 0) == 0) s.name = "model.language_model." + legacy.substr(21);
            else s.name = "model." + legacy;
        }
        s.shape = std::move(shape);
        s.mean = mean;
        s.std = std;
        m.tensors.push_back(std::move(s));
    };
    using cmf::synth::detail::layer_prefix;
    const std::string lm = m.multimodal ? "language_model." : "";
    const float w = 0.02f, gemma_norm = 0.05f;
    add(lm + "model.embed_tokens.weight", {t.vocab, t.hidden}, 0.0f, w);
    add(lm + "model.norm.weight", {t.hidden}, 0.0f, gemma_norm);
    for (int64_t i = 0; i < t.layers; ++i) {
        const std::string p = lm + layer_prefix("model.layers.", i);
        add(p + "input_layernorm.weight", {t.hidden}, 0.0f, gemma_norm);
        add(p + "post_attention_layernorm.weight", {t.hidden}, 0.0f, gemma_norm);
        add(p + "pre_feedforward_layernorm.weight", {t.hidden}, 0.0f, gemma_norm);
        add(p + "post_feedforward_layernorm.weight", {t.hidden}, 0.0f, gemma_norm);
        add(p + "self_attn.q_norm.weight", {t.head_dim}, 0.0f, gemma_norm);
        add(p + "self_attn.k_norm.weight", {t.head_dim}, 0.0f, gemma_norm);
        add(p + "self_attn.q_proj.weight", {t.heads * t.head_dim, t.hidden}, 0.0f, w);
        add(p + "self_attn.k_proj.weight", {t.kv_heads * t.head_dim, t.hidden}, 0.0f, w);
        add(p + "self_attn.v_proj.weight", {t.kv_heads * t.head_dim, t.hidden}, 0.0f, w);
        add(p + "self_attn.o_proj.weight", {t.hidden, t.heads * t.head_dim}, 0.0f, w);
        add(p + "mlp.gate_proj.weight", {t.ffn, t.hidden}, 0.0f, w);
        add(p + "mlp.up_proj.weight", {t.ffn, t.hidden}, 0.0f, w);
        add(p + "mlp.down_proj.weight", {t.hidden, t.ffn}, 0.0f, w);
    }
    if (m.multimodal) {
        const SynthVision& v = m.vision;
        const int64_t side = v.image / v.patch;
        const std::string vm = "vision_tower.vision_model.";
        // the projector's input matrix is a bare nn.Parameter, hence "_weight"
        add("multi_modal_projector.mm_input_projection_weight", {v.hidden, t.hidden}, 0.0f, w);
        add("multi_modal_projector.mm_soft_emb_norm.weight", {v.hidden}, 0.0f, gemma_norm);
        add(vm + "embeddings.patch_embedding.weight", {v.hidden, 3, v.patch, v.patch}, 0.0f, w);
        add(vm + "embeddings.patch_embedding.bias", {v.hidden}, 0.0f, w);
        add(vm + "embeddings.position_embedding.weight", {side * side, v.hidden}, 0.0f, w);
        add(vm + "post_layernorm.weight", {v.hidden}, 1.0f, w);
        add(vm + "post_layernorm.bias", {v.hidden}, 0.0f, w);
        for (int64_t i = 0; i < v.layers; ++i) {
            const std::string p = vm + layer_prefix("encoder.layers.", i);
            add(p + "layer_norm1.weight", {v.hidden}, 1.0f, w);
            add(p + "layer_norm1.bias", {v.hidden}, 0.0f, w);
            add(p + "layer_norm2.weight", {v.hidden}, 1.0f, w);
            add(p + "layer_norm2.bias", {v.hidden}, 0.0f, w);
            add(p + "mlp.fc1.weight", {v.ffn, v.hidden}, 0.0f, w);
            add(p + "mlp.fc1.bias", {v.ffn}, 0.0f, w);
            add(p + "mlp.fc2.weight", {v.hidden, v.ffn}, 0.0f, w);
            add(p + "mlp.fc2.bias", {v.hidden}, 0.0f, w);
            for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
                add(p + "self_attn." + proj + ".weight", {v.hidden, v.hidden}, 0.0f, w);
                add(p + "self_attn." + proj + ".bias", {v.hidden}, 0.0f, w);
            }
        }
    }
}

// The added tokens of Gemma 3's tokenizer: the 22 leading pieces plus <image_soft_token>.
inline std::vector<std::pair<int, std::pair<std::string, bool>>> added_tokens() {
    std::vector<std::pair<int, std::pair<std::string, bool>>> v;
    int id = 0;
    for (const auto& s : kSynthSpecials) v.push_back({id++, {s.text, s.special}});
    v.push_back({cmf::synth::kSynthPieces, {kImageSoftToken, true}});
    return v;
}

inline void write_tokenizer(const fs::path& dir) {
    using namespace cmf::synth;
    using cmf::synth::detail::write_json;
    using cmf::synth::detail::write_text;
    const auto pieces = gemma3::synth_pieces();
    write_text(dir / "tokenizer.model", sentencepiece::write_sentencepiece_model(pieces, synth_trainer_spec(), synth_normalizer_spec()));

    // tokenizer.json (Hugging Face tokenizers, BPE with byte fallback, as Gemma ships it)
    json added = json::array();
    for (const auto& [id, ts] : added_tokens()) added.push_back(added_tokens_json_entry(id, ts.first, ts.second));
    json vocab = json::object();
    for (size_t i = 0; i < pieces.size(); ++i) vocab[pieces[i].piece] = i;
    write_json(dir / "tokenizer.json", synth_bpe_tokenizer_json(vocab, synth_merges(pieces), added, bos_template_post_processor(2)));

    json decoder = json::object();
    for (const auto& [id, ts] : added_tokens()) decoder[std::to_string(id)] = cmf::synth::detail::added_token_entry(ts.first, ts.second);
    json tc = {
        {"add_bos_token", true},
        {"add_eos_token", false},
        {"added_tokens_decoder", decoder},
        {"boi_token", "<start_of_image>"},
        {"bos_token", "<bos>"},
        {"chat_template", kChatTemplate},
        {"clean_up_tokenization_spaces", false},
        {"eoi_token", "<end_of_image>"},
        {"eos_token", "<end_of_turn>"},
        {"extra_special_tokens", {{"boi_token", "<start_of_image>"}, {"eoi_token", "<end_of_image>"}, {"image_token", kImageSoftToken}}},
        {"image_token", kImageSoftToken},
        {"model_max_length", cmf::synth::detail::kModelMaxLengthPlaceholder},
        {"pad_token", "<pad>"},
        {"padding_side", "left"},
        {"processor_class", "Gemma3Processor"},
        {"sp_model_kwargs", nullptr},
        {"spaces_between_special_tokens", false},
        {"tokenizer_class", "GemmaTokenizer"},
        {"unk_token", "<unk>"},
        {"use_default_system_prompt", false},
    };
    write_text(dir / "tokenizer_config.json", cmf::synth::detail::dump_with_very_large_integer(tc));

    write_json(dir / "special_tokens_map.json",
               json{{"boi_token", "<start_of_image>"}, {"bos_token", special_token_object("<bos>")}, {"eoi_token", "<end_of_image>"},
                    {"eos_token", special_token_object("<eos>")}, {"image_token", kImageSoftToken}, {"pad_token", special_token_object("<pad>")},
                    {"unk_token", special_token_object("<unk>")}});
    write_json(dir / "added_tokens.json", json{{kImageSoftToken, kSynthPieces}});
}

inline json text_config(const SynthModel& m, bool top_level) {
    using cmf::synth::synth_torch_dtype;
    const SynthText& t = m.text;
    json c = {
        {"attention_bias", false},
        {"attention_dropout", 0.0},
        {"attn_logit_softcapping", nullptr},
        {"final_logit_softcapping", nullptr},
        {"head_dim", t.head_dim},
        {"hidden_activation", "gelu_pytorch_tanh"},
        {"hidden_size", t.hidden},
        {"initializer_range", 0.02},
        {"intermediate_size", t.ffn},
        {"max_position_embeddings", t.max_position},
        {"model_type", "gemma3_text"},
        {"num_attention_heads", t.heads},
        {"num_hidden_layers", t.layers},
        {"num_key_value_heads", t.kv_heads},
        {"query_pre_attn_scalar", t.head_dim},
        {"rms_norm_eps", 1e-06},
        {"sliding_window", t.sliding_window},
        {"use_cache", true},
        {"vocab_size", t.vocab},
    };
    if (top_level) {
        c["bos_token_id"] = 2;
        c["eos_token_id"] = json::array({1, 11});
        c["pad_token_id"] = 0;
    }
    if (m.v5) {
        // transformers v5: per-attention-type rope parameters and an explicit layer pattern
        json full = {{"rope_type", "default"}, {"rope_theta", t.rope_theta}};
        if (t.rope_linear_factor > 0) full = {{"factor", t.rope_linear_factor}, {"rope_type", "linear"}, {"rope_theta", t.rope_theta}};
        c["rope_parameters"] = {{"full_attention", full}, {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", t.rope_local_theta}}}};
        json types = json::array();
        // Gemma 3 interleaves five sliding-window layers with one global layer
        for (int64_t i = 0; i < t.layers; ++i) types.push_back((i + 1) % 6 == 0 ? "full_attention" : "sliding_attention");
        c["layer_types"] = types;
        c["dtype"] = synth_torch_dtype(m.dtype);
        if (top_level) c["transformers_version"] = "5.0.0";
    } else {
        c["cache_implementation"] = "hybrid";
        c["rope_local_base_freq"] = t.rope_local_theta;
        c["rope_scaling"] = t.rope_linear_factor > 0 ? json{{"factor", t.rope_linear_factor}, {"rope_type", "linear"}} : json(nullptr);
        c["rope_theta"] = t.rope_theta;
        c["sliding_window_pattern"] = 6;
        c["torch_dtype"] = synth_torch_dtype(m.dtype);
        if (top_level) c["transformers_version"] = "4.50.0.dev0";
    }
    return c;
}

inline json config(const SynthModel& m) {
    using cmf::synth::synth_torch_dtype;
    if (!m.multimodal) {
        json c = text_config(m, true);
        c["architectures"] = json::array({m.architecture});
        return c;
    }
    const SynthVision& v = m.vision;
    json vc = {
        {"attention_dropout", 0.0}, {"hidden_act", "gelu_pytorch_tanh"}, {"hidden_size", v.hidden},
        {"image_size", v.image},    {"intermediate_size", v.ffn},        {"layer_norm_eps", 1e-06},
        {"model_type", "siglip_vision_model"}, {"num_attention_heads", v.heads}, {"num_channels", 3},
        {"num_hidden_layers", v.layers}, {"patch_size", v.patch}, {"vision_use_head", false},
    };
    vc[m.v5 ? "dtype" : "torch_dtype"] = synth_torch_dtype(m.dtype);
    json c = {
        {"architectures", json::array({m.architecture})},
        {"boi_token_index", 20},
        {"eoi_token_index", 21},
        {"eos_token_id", json::array({1, 11})},
        {"image_token_index", cmf::synth::kSynthPieces},
        {"initializer_range", 0.02},
        {"mm_tokens_per_image", 256},
        {"model_type", "gemma3"},
        {"text_config", text_config(m, false)},
        {"transformers_version", m.v5 ? "5.0.0" : "4.51.3"},
        {"vision_config", vc},
    };
    c[m.v5 ? "dtype" : "torch_dtype"] = synth_torch_dtype(m.dtype);
    return c;
}

inline void write_files(const fs::path& dir, const SynthModel& m) {
    using cmf::synth::detail::write_json;
    write_json(dir / "config.json", config(m));
    write_json(dir / "generation_config.json",
               json{{"bos_token_id", 2}, {"cache_implementation", "hybrid"}, {"do_sample", true},
                    {"eos_token_id", json::array({1, 11})}, {"pad_token_id", 0}, {"top_k", 64}, {"top_p", 0.95},
                    {"transformers_version", "4.50.0.dev0"}});
    write_tokenizer(dir);
    if (m.multimodal) {
        const SynthVision& v = m.vision;
        write_json(dir / "preprocessor_config.json",
                   json{{"do_convert_rgb", nullptr}, {"do_normalize", true}, {"do_pan_and_scan", nullptr},
                        {"do_rescale", true}, {"do_resize", true}, {"image_mean", {0.5, 0.5, 0.5}},
                        {"image_processor_type", "Gemma3ImageProcessor"}, {"image_seq_length", 256},
                        {"image_std", {0.5, 0.5, 0.5}}, {"pan_and_scan_max_num_crops", nullptr},
                        {"pan_and_scan_min_crop_size", nullptr}, {"pan_and_scan_min_ratio_to_activate", nullptr},
                        {"processor_class", "Gemma3Processor"}, {"resample", 2},
                        {"rescale_factor", 0.00392156862745098}, {"size", {{"height", v.image}, {"width", v.image}}}});
        write_json(dir / "processor_config.json", json{{"image_seq_length", 256}, {"processor_class", "Gemma3Processor"}});
        write_json(dir / "chat_template.json", json{{"chat_template", kChatTemplate}});
    }
}

}  // namespace synth_detail

inline std::vector<cmf::synth::SynthPresetRow> synth_presets() {
    using synth_detail::build;
    using synth_detail::write_files;
    return {
        {"tiny", "Gemma3ForCausalLM, hidden 512, 2 layers, ~5M params", build, write_files},
        {"tiny-mm", "Gemma3ForConditionalGeneration with a small SigLIP tower (image 896, patch 14, vision hidden 128)", build,
         write_files},
        {"medgemma-text", "Gemma3ForCausalLM with the 4B text shapes (hidden 2560, FFN 10240, vocab 262208), 3 layers, 2 shards, ~1.9 GB",
         build, write_files},
        {"medgemma", "Gemma3ForConditionalGeneration with MedGemma 1.5 4B's shapes: 34 text layers (hidden 2560, vocab 262208) and the SigLIP tower (27 layers, hidden 1152), 4.3B params, 2 shards, ~8.6 GB",
         build, write_files},
        {"recipes", "Gemma3ForCausalLM for quantization recipes: 12 layers, hidden 320, FFN 3328, vocab 4096, ~50M params", build,
         write_files},
    };
}

}  // namespace cmf::arch::gemma3
