// Synthetic Gemma 3n checkpoints (`cmf synth --preset gemma3n-tiny|gemma3n-e2b-1b`):
// Gemma3nForConditionalGeneration in the transformers >= 4.53 layout (model.language_model.*),
// text tensors only. The file set and keys follow the golden-next tiny-gemma3n checkpoint
// (../shared/golden-next/README.md "The checkpoints"), itself shaped like google/gemma-3n-E2B-it:
//   config.json (text_config plus vision_config/audio_config with the real keys, no tower
//   tensors), generation_config.json, preprocessor_config.json, tokenizer.model (SentencePiece,
//   1024 pieces), tokenizer.json, tokenizer_config.json (with the chat template),
//   special_tokens_map.json.
// Tensors per layer: attention with q/k norms (K/V also on the kv-shared layers, as the released
// archives carry them), the MLP, AltUp (correct_output_scale is a bare Parameter, no ".weight"),
// LAuReL and the per-layer input gate/projection; globals: both embeddings, the per-layer model
// projection, the three AltUp projections of each kind.
//
// Shapes under the options (all documented in `cmf synth --help`):
//   --layers N      layer_types: 4 sliding : 1 full counted back from the last layer with its own
//                   K/V, plus the last layer (synth/model.h interleaved_layer_types); the kv-shared
//                   count scales with N (floor, at most N - 2), and so does the number of leading
//                   layers with activation sparsity 0.95 (floor).
//   --kv-shared N   num_kv_shared_layers (0 .. layers - 1)
//   --ffn N         intermediate_size, the same N for every layer
// Multimodal ids follow the release shifted to the per-layer vocabulary V: <end_of_image> V,
// <image_soft_token> V + 1, <end_of_audio> V + 128, <audio_soft_token> V + 129; vocab_size is
// V + 256. Gemma 3n stores norm scales as they are (x * w), so norm weights sit around 1.
#pragma once

#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/format/sentencepiece.h"
#include "cmf/synth/json_files.h"
#include "cmf/synth/model.h"
#include "cmf/synth/preset.h"
#include "cmf/synth/tokenizer.h"

namespace cmf::arch::gemma3n {

// The chat template of the Gemma 3n releases: Gemma 3 turns, image and audio items as their soft
// tokens, message text untrimmed (as in the golden-next tiny-gemma3n tokenizer_config.json).
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
        {{ message['content'] }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'audio' -%}
                {{ '<audio_soft_token>' }}
            {%- elif item['type'] == 'image' -%}
                {{ '<image_soft_token>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] }}
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

// The leading pieces of the Gemma 3n tokenizer: Gemma 3's, with <mask> special and
// <start_of_audio> at 21 (<end_of_image> moves behind the text vocabulary).
inline constexpr cmf::synth::SynthSpecialPiece kSynthSpecials[] = {
    {"<pad>", sentencepiece::PieceType::control, true},
    {"<eos>", sentencepiece::PieceType::control, true},
    {"<bos>", sentencepiece::PieceType::control, true},
    {"<unk>", sentencepiece::PieceType::unknown, true},
    {"<mask>", sentencepiece::PieceType::user_defined, true},
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
    {"\xe2\x96\x81\xe2\x96\x81", sentencepiece::PieceType::user_defined, false},              // "▁▁"
    {"\xe2\x96\x81\xe2\x96\x81\xe2\x96\x81", sentencepiece::PieceType::user_defined, false},  // "▁▁▁"
    {"<b>", sentencepiece::PieceType::user_defined, false},
    {"</b>", sentencepiece::PieceType::user_defined, false},
    {"<start_of_image>", sentencepiece::PieceType::user_defined, true},
    {"<start_of_audio>", sentencepiece::PieceType::user_defined, true},
};
inline constexpr int64_t kBoiId = 20, kBoaId = 21;
// Offsets from the per-layer vocabulary size V (the release: V = 262144)
inline constexpr int64_t kEoiOffset = 0, kImageOffset = 1, kEoaOffset = 128, kAudioOffset = 129, kMultimodalIds = 256;

inline std::vector<sentencepiece::Piece> synth_pieces() { return cmf::synth::synth_pieces(kSynthSpecials); }

namespace synth_detail {

using cmf::synth::SynthModel;
using cmf::synth::SynthSpec;
using cmf::synth::SynthText;
using nlohmann::json;
namespace fs = std::filesystem;

struct Preset {
    const char* name;
    SynthText text;
    int shards;
};

inline SynthText text_shape(int64_t hidden, int64_t layers, int64_t heads, int64_t kv_heads, int64_t ffn, int64_t kv_shared,
                            int64_t sparse, int64_t per_layer_vocab) {
    SynthText t;
    t.vocab = per_layer_vocab + kMultimodalIds;
    t.hidden = hidden;
    t.ffn = ffn;
    t.heads = heads;
    t.kv_heads = kv_heads;
    t.head_dim = 256;
    t.layers = layers;
    t.max_position = 32768;
    t.sliding_window = 512;
    t.kv_shared = kv_shared;
    t.per_layer_vocab = per_layer_vocab;
    // llama.cpp's runtime hard-codes these three (golden-next README), so every preset keeps them
    t.per_layer_width = 256;
    t.laurel_rank = 64;
    t.altup_inputs = 4;
    t.sparse_layers = sparse;
    return t;
}

inline const std::vector<Preset>& presets() {
    static const std::vector<Preset> p = {
        // golden-next tiny-gemma3n: 10 layers, 5 kv-shared, sparsity on 3
        {"gemma3n-tiny", text_shape(256, 10, 2, 1, 512, 5, 3, cmf::synth::kSynthPieces), 1},
        // google/gemma-3n-E2B widths (hidden 2048, FFN 8192, heads 8/2, vocab 262400 / 262144)
        // with 6 layers: 1,341,282,016 parameters (the two embeddings 940M of them)
        {"gemma3n-e2b-1b", text_shape(2048, 6, 8, 2, 8192, 2, 2, 262144), 2},
    };
    return p;
}

inline void build(SynthModel& m, const SynthSpec& spec) {
    const Preset* p = nullptr;
    for (const auto& r : presets())
        if (spec.preset == r.name) p = &r;
    if (!p) fail(ErrorKind::internal, "synth: no Gemma 3n preset '" + spec.preset + "'");
    m.architecture = "Gemma3nForConditionalGeneration";
    m.v5 = true;  // the family exists in the transformers >= 4.53 layout only
    m.shards = p->shards;
    SynthText& t = m.text;
    t = p->text;
    if (spec.layers > 0) {
        t.layers = spec.layers;
        t.kv_shared = cmf::synth::default_kv_shared(p->text.kv_shared, p->text.layers, t.layers);
        t.sparse_layers = std::min<int64_t>(t.layers, cmf::synth::scale_layer_count(p->text.sparse_layers, p->text.layers, t.layers));
    }
    if (spec.kv_shared >= 0) {
        if (spec.kv_shared > t.layers - 1)
            fail(ErrorKind::usage, "synth: --kv-shared must be at most layers - 1 (" + std::to_string(t.layers - 1) + ")");
        t.kv_shared = spec.kv_shared;
    }
    if (spec.ffn > 0) t.ffn = spec.ffn;
    t.layer_types = cmf::synth::interleaved_layer_types(t.layers, t.kv_shared, 5);

    using cmf::synth::detail::layer_prefix;
    const float w = 0.02f, norm_sd = 0.05f;
    const int64_t H = t.hidden, P = t.per_layer_width, A = t.altup_inputs;
    const std::string lm = "model.language_model.";
    m.add(lm + "embed_tokens.weight", {t.vocab, H}, 0.0f, w);
    m.add(lm + "embed_tokens_per_layer.weight", {t.per_layer_vocab, t.layers * P}, 0.0f, w);
    m.add(lm + "per_layer_model_projection.weight", {t.layers * P, H}, 0.0f, w);
    m.add(lm + "per_layer_projection_norm.weight", {P}, 1.0f, norm_sd);
    m.add(lm + "norm.weight", {H}, 1.0f, norm_sd);
    for (int k = 0; k < A - 1; ++k) {
        m.add(lm + "altup_projections." + std::to_string(k) + ".weight", {H, H}, 0.0f, w);
        m.add(lm + "altup_unembed_projections." + std::to_string(k) + ".weight", {H, H}, 0.0f, w);
    }
    for (int64_t i = 0; i < t.layers; ++i) {
        const std::string p = lm + layer_prefix("layers.", i);
        for (const char* n : {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                              "post_feedforward_layernorm", "post_per_layer_input_norm", "altup.router_norm",
                              "laurel.post_laurel_norm"})
            m.add(p + n + ".weight", {H}, 1.0f, norm_sd);
        m.add(p + "self_attn.q_norm.weight", {t.head_dim}, 1.0f, norm_sd);
        m.add(p + "self_attn.k_norm.weight", {t.head_dim}, 1.0f, norm_sd);
        m.add(p + "self_attn.q_proj.weight", {t.heads * t.head_dim, H}, 0.0f, w);
        m.add(p + "self_attn.k_proj.weight", {t.kv_heads * t.head_dim, H}, 0.0f, w);
        m.add(p + "self_attn.v_proj.weight", {t.kv_heads * t.head_dim, H}, 0.0f, w);
        m.add(p + "self_attn.o_proj.weight", {H, t.heads * t.head_dim}, 0.0f, w);
        m.add(p + "mlp.gate_proj.weight", {t.ffn, H}, 0.0f, w);
        m.add(p + "mlp.up_proj.weight", {t.ffn, H}, 0.0f, w);
        m.add(p + "mlp.down_proj.weight", {H, t.ffn}, 0.0f, w);
        m.add(p + "altup.correct_output_scale", {H}, 1.0f, norm_sd);  // a bare Parameter
        m.add(p + "altup.correction_coefs.weight", {A, A}, 0.0f, w);
        m.add(p + "altup.prediction_coefs.weight", {A * A, A}, 0.0f, w);
        m.add(p + "altup.modality_router.weight", {A, H}, 0.0f, w);
        m.add(p + "laurel.linear_left.weight", {t.laurel_rank, H}, 0.0f, w);
        m.add(p + "laurel.linear_right.weight", {H, t.laurel_rank}, 0.0f, w);
        m.add(p + "per_layer_input_gate.weight", {P, H}, 0.0f, w);
        m.add(p + "per_layer_projection.weight", {H, P}, 0.0f, w);
    }
}

inline json text_config(const SynthModel& m) {
    const SynthText& t = m.text;
    json sparsity = json::array(), ffn = json::array();
    for (int64_t i = 0; i < t.layers; ++i) {
        sparsity.push_back(i < t.sparse_layers ? 0.95 : 0.0);
        ffn.push_back(t.ffn);
    }
    return json{
        {"activation_sparsity_pattern", sparsity},
        {"altup_active_idx", 0},
        {"altup_coef_clip", 120.0},
        {"altup_correct_scale", true},
        {"altup_lr_multiplier", 1.0},
        {"altup_num_inputs", t.altup_inputs},
        {"attention_bias", false},
        {"attention_dropout", 0.0},
        {"final_logit_softcapping", 30.0},
        {"head_dim", t.head_dim},
        {"hidden_activation", "gelu_pytorch_tanh"},
        {"hidden_size", t.hidden},
        {"hidden_size_per_layer_input", t.per_layer_width},
        {"initializer_range", 0.02},
        {"intermediate_size", ffn},
        {"laurel_rank", t.laurel_rank},
        {"layer_types", t.layer_types},
        {"max_position_embeddings", t.max_position},
        {"model_type", "gemma3n_text"},
        {"num_attention_heads", t.heads},
        {"num_hidden_layers", t.layers},
        {"num_key_value_heads", t.kv_heads},
        {"num_kv_shared_layers", t.kv_shared},
        {"query_pre_attn_scalar", t.head_dim},
        {"rms_norm_eps", 1e-06},
        {"rope_local_base_freq", t.rope_local_theta},
        {"rope_scaling", nullptr},
        {"rope_theta", t.rope_theta},
        {"sliding_window", t.sliding_window},
        {"torch_dtype", cmf::synth::synth_torch_dtype(m.dtype)},
        {"use_cache", true},
        {"vocab_size", t.vocab},
        {"vocab_size_per_layer_input", t.per_layer_vocab},
    };
}

inline json config(const SynthModel& m) {
    const int64_t V = m.text.per_layer_vocab;
    const char* dtype = cmf::synth::synth_torch_dtype(m.dtype);
    // the towers' configs carry the release's keys; the checkpoint has no tower tensors
    json audio = {
        {"conf_attention_chunk_size", 12}, {"conf_attention_context_left", 13}, {"conf_attention_context_right", 0},
        {"conf_attention_logit_cap", 50.0}, {"conf_conv_kernel_size", 5}, {"conf_num_attention_heads", 8},
        {"conf_num_hidden_layers", 12}, {"conf_reduction_factor", 4}, {"conf_residual_weight", 0.5},
        {"gradient_clipping", 10000000000.0}, {"hidden_size", 1536}, {"input_feat_size", 128},
        {"model_type", "gemma3n_audio"}, {"rms_norm_eps", 1e-06}, {"sscp_conv_channel_size", {128, 32}},
        {"sscp_conv_group_norm_eps", 0.001}, {"sscp_conv_kernel_size", json::array({{3, 3}, {3, 3}})},
        {"sscp_conv_stride_size", json::array({{2, 2}, {2, 2}})}, {"torch_dtype", dtype},
        {"vocab_offset", V + kEoaOffset}, {"vocab_size", 128},
    };
    json vision = {
        {"architecture", "mobilenetv5_300m_enc"}, {"do_pooling", false}, {"hidden_size", 2048},
        {"initializer_range", 0.02}, {"label_names", {"LABEL_0", "LABEL_1"}}, {"model_args", nullptr},
        {"model_type", "gemma3n_vision"}, {"num_classes", 2}, {"rms_norm_eps", 1e-06}, {"torch_dtype", dtype},
        {"vocab_offset", V + kEoiOffset}, {"vocab_size", 128},
    };
    return json{
        {"architectures", json::array({m.architecture})},
        {"audio_config", audio},
        {"audio_soft_tokens_per_image", 188},
        {"audio_token_id", V + kAudioOffset},
        {"boa_token_id", kBoaId},
        {"boi_token_id", kBoiId},
        {"eoa_token_id", V + kEoaOffset},
        {"eoi_token_id", V + kEoiOffset},
        {"eos_token_id", json::array({1, 11})},
        {"image_token_id", V + kImageOffset},
        {"initializer_range", 0.02},
        {"model_type", "gemma3n"},
        {"text_config", text_config(m)},
        {"torch_dtype", dtype},
        {"transformers_version", "4.53.0.dev0"},
        {"vision_config", vision},
        {"vision_soft_tokens_per_image", 256},
    };
}

// The added tokens: the leading pieces, then the four multimodal ids behind the text vocabulary.
inline std::vector<std::pair<int64_t, std::pair<std::string, bool>>> added_tokens(int64_t V) {
    std::vector<std::pair<int64_t, std::pair<std::string, bool>>> v;
    int64_t id = 0;
    for (const auto& s : kSynthSpecials) v.push_back({id++, {s.text, s.special}});
    v.push_back({V + kEoiOffset, {"<end_of_image>", true}});
    v.push_back({V + kImageOffset, {"<image_soft_token>", true}});
    v.push_back({V + kEoaOffset, {"<end_of_audio>", true}});
    v.push_back({V + kAudioOffset, {"<audio_soft_token>", true}});
    return v;
}

inline void write_tokenizer(const fs::path& dir, const SynthModel& m) {
    using namespace cmf::synth;
    using cmf::synth::detail::write_json;
    using cmf::synth::detail::write_text;
    const auto pieces = gemma3n::synth_pieces();
    write_text(dir / "tokenizer.model", sentencepiece::write_sentencepiece_model(pieces, synth_trainer_spec(), synth_normalizer_spec()));

    const auto added_list = added_tokens(m.text.per_layer_vocab);
    json added = json::array(), decoder = json::object();
    for (const auto& [id, ts] : added_list) {
        added.push_back(added_tokens_json_entry(id, ts.first, ts.second));
        decoder[std::to_string(id)] = cmf::synth::detail::added_token_entry(ts.first, ts.second);
    }
    json vocab = json::object();
    for (size_t i = 0; i < pieces.size(); ++i) vocab[pieces[i].piece] = i;
    write_json(dir / "tokenizer.json", synth_bpe_tokenizer_json(vocab, synth_merges(pieces), added, bos_template_post_processor(2)));

    const json extra = {{"audio_token", "<audio_soft_token>"}, {"boa_token", "<start_of_audio>"}, {"boi_token", "<start_of_image>"},
                        {"eoa_token", "<end_of_audio>"},       {"eoi_token", "<end_of_image>"},   {"image_token", "<image_soft_token>"}};
    json tc = {
        {"add_bos_token", true},
        {"add_eos_token", false},
        {"added_tokens_decoder", decoder},
        {"bos_token", "<bos>"},
        {"chat_template", kChatTemplate},
        {"clean_up_tokenization_spaces", false},
        {"eos_token", "<end_of_turn>"},
        {"extra_special_tokens", extra},
        {"model_max_length", cmf::synth::detail::kModelMaxLengthPlaceholder},
        {"pad_token", "<pad>"},
        {"padding_side", "left"},
        {"processor_class", "Gemma3nProcessor"},
        {"sp_model_kwargs", nullptr},
        {"spaces_between_special_tokens", false},
        {"tokenizer_class", "GemmaTokenizer"},
        {"unk_token", "<unk>"},
        {"use_default_system_prompt", false},
    };
    for (auto it = extra.begin(); it != extra.end(); ++it) tc[it.key()] = it.value();
    write_text(dir / "tokenizer_config.json", cmf::synth::detail::dump_with_very_large_integer(tc));

    json stm = extra;
    for (const char* k : {"bos", "eos", "pad", "unk"})
        stm[std::string(k) + "_token"] = special_token_object((std::string("<") + k + ">").c_str());
    write_json(dir / "special_tokens_map.json", stm);
}

inline void write_files(const fs::path& dir, const SynthModel& m) {
    using cmf::synth::detail::write_json;
    write_json(dir / "config.json", config(m));
    write_json(dir / "generation_config.json",
               json{{"bos_token_id", 2}, {"cache_implementation", "hybrid"}, {"do_sample", true},
                    {"eos_token_id", json::array({1, 11})}, {"pad_token_id", 0}, {"top_k", 64}, {"top_p", 0.95},
                    {"transformers_version", "4.53.0.dev0"}});
    write_json(dir / "preprocessor_config.json",
               json{{"do_normalize", false}, {"do_rescale", true}, {"do_resize", true}, {"image_mean", {0.5, 0.5, 0.5}},
                    {"image_processor_type", "SiglipImageProcessorFast"}, {"image_seq_length", 256},
                    {"image_std", {0.5, 0.5, 0.5}}, {"processor_class", "Gemma3nProcessor"}, {"resample", 2},
                    {"rescale_factor", 0.00392156862745098}, {"size", {{"height", 768}, {"width", 768}}}});
    write_tokenizer(dir, m);
}

}  // namespace synth_detail

inline std::vector<cmf::synth::SynthPresetRow> synth_presets() {
    using synth_detail::build;
    using synth_detail::write_files;
    return {
        {"gemma3n-tiny", "Gemma3nForConditionalGeneration (text tensors), hidden 256, 10 layers, 5 kv-shared, ~13.5M params", build,
         write_files},
        {"gemma3n-e2b-1b", "Gemma3nForConditionalGeneration with gemma-3n-E2B widths, 6 layers, 2 kv-shared, 2 shards, 1.34B params",
         build, write_files},
    };
}

}  // namespace cmf::arch::gemma3n
