// Synthetic Gemma 4 checkpoints (`cmf synth --preset gemma4-tiny|gemma4-e2b-1b`):
// Gemma4ForConditionalGeneration in the transformers-v5 layout (model.language_model.*,
// model.vision_tower.*, model.embed_vision.*). The file set and keys follow the golden-next
// tiny-gemma4 checkpoint (../shared/golden-next/README.md "The checkpoints"), itself shaped like
// google/gemma-4-E2B-it:
//   config.json, generation_config.json, processor_config.json (with a vision tower),
//   tokenizer.json (BPE with byte fallback; no tokenizer.model), a v5 tokenizer_config.json
//   (special tokens as named *_token keys, no added_tokens_decoder) and chat_template.jinja.
// No special_tokens_map.json or added_tokens.json: a v5 save writes neither.
//
// Text tensors per layer: attention with q/k norms (head_dim on sliding layers, global_head_dim
// on full-attention layers; K/V/k_norm also on the kv-shared layers, as the released archives
// carry them), the MLP (twice as wide on the kv-shared layers: use_double_wide_mlp), the
// per-layer input gate/projection and `layer_scalar` [1] (a buffer, value 1). Vision tower
// (gemma4-tiny): every projection a Gemma4ClippableLinear, `.linear.weight` plus 0-dim
// input_min/input_max/output_min/output_max.
//
// Shapes under the options (`cmf synth --help`):
//   --layers N      layer_types: 4 sliding : 1 full counted back from the last layer with its own
//                   K/V, plus the last layer (synth/model.h interleaved_layer_types); the
//                   kv-shared count scales with N (floor, at most N - 2). gemma4-e2b-1b: 8
//                   layers, 3 shared, full attention at 4 and 7.
//   --kv-shared N   num_kv_shared_layers (0 .. layers - 1); the double-wide MLP follows it
//   --ffn N         intermediate_size (2N on the kv-shared layers)
// The vocabulary: 35 leading special tokens in the release's order (ids compacted as in the
// golden checkpoint), 256 byte tokens, the synthetic pieces (synth/tokenizer.h) up to 1024, then
// `<unusedN>` filler up to vocab_size. Norm scales are stored as they are (x * w): around 1.
#pragma once

#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/format/sentencepiece.h"
#include "cmf/synth/json_files.h"
#include "cmf/synth/model.h"
#include "cmf/synth/preset.h"
#include "cmf/synth/tokenizer.h"

namespace cmf::arch::gemma4 {

// A chat template in Gemma 4's turn format: <|turn>ROLE\n ... <turn|>\n per message, the
// assistant's role written "model", a system message as its own turn, images and audio as their
// placeholder tokens, and <|turn>model\n to prompt a reply. llama.cpp copies it into
// tokenizer.chat_template from chat_template.jinja.
inline constexpr const char* kChatTemplate = R"TPL({{- bos_token -}}
{%- for message in messages -%}
    {%- if message['role'] == 'assistant' -%}
        {%- set role = 'model' -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{- '<|turn>' + role + '\n' -}}
    {%- if message['content'] is string -%}
        {{- message['content'] | trim -}}
    {%- elif message['content'] is iterable -%}
        {%- for part in message['content'] -%}
            {%- if part['type'] == 'text' -%}
                {{- part['text'] | trim -}}
            {%- elif part['type'] == 'image' -%}
                {{- '<|image|>' -}}
            {%- elif part['type'] == 'audio' -%}
                {{- '<|audio|>' -}}
            {%- else -%}
                {{- raise_exception('unsupported content type: ' + part['type']) -}}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{- '<turn|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|turn>model\n' -}}
{%- endif -%}
)TPL";

// The leading tokens, in the release's order: text, whether tokenizer.json marks it special.
// (The SentencePiece type only keeps synth_pieces from repeating them as NORMAL pieces.)
inline constexpr cmf::synth::SynthSpecialPiece kSynthSpecials[] = {
    {"<pad>", sentencepiece::PieceType::control, true},
    {"<eos>", sentencepiece::PieceType::control, true},
    {"<bos>", sentencepiece::PieceType::control, true},
    {"<unk>", sentencepiece::PieceType::unknown, true},
    {"<mask>", sentencepiece::PieceType::user_defined, true},
    {"[multimodal]", sentencepiece::PieceType::user_defined, false},
    {"<unused0>", sentencepiece::PieceType::user_defined, false},
    {"<unused1>", sentencepiece::PieceType::user_defined, false},
    {"<|tool>", sentencepiece::PieceType::user_defined, true},
    {"<tool|>", sentencepiece::PieceType::user_defined, true},
    {"<|tool_call>", sentencepiece::PieceType::user_defined, true},
    {"<tool_call|>", sentencepiece::PieceType::user_defined, true},
    {"<|tool_response>", sentencepiece::PieceType::user_defined, true},
    {"<tool_response|>", sentencepiece::PieceType::user_defined, true},
    {"<|\"|>", sentencepiece::PieceType::user_defined, true},
    {"<|channel>", sentencepiece::PieceType::user_defined, true},
    {"<channel|>", sentencepiece::PieceType::user_defined, true},
    {"<|think|>", sentencepiece::PieceType::user_defined, true},
    {"<|turn>", sentencepiece::PieceType::user_defined, true},
    {"<turn|>", sentencepiece::PieceType::user_defined, true},
    {"\n", sentencepiece::PieceType::user_defined, false},
    {"\n\n", sentencepiece::PieceType::user_defined, false},
    {"\n\n\n", sentencepiece::PieceType::user_defined, false},
    {"\t", sentencepiece::PieceType::user_defined, false},
    {"\xe2\x96\x81\xe2\x96\x81", sentencepiece::PieceType::user_defined, false},              // "▁▁"
    {"\xe2\x96\x81\xe2\x96\x81\xe2\x96\x81", sentencepiece::PieceType::user_defined, false},  // "▁▁▁"
    {"<b>", sentencepiece::PieceType::user_defined, false},
    {"</b>", sentencepiece::PieceType::user_defined, false},
    {"<|image>", sentencepiece::PieceType::user_defined, true},
    {"<|audio>", sentencepiece::PieceType::user_defined, true},
    {"<|image|>", sentencepiece::PieceType::user_defined, true},
    {"<|audio|>", sentencepiece::PieceType::user_defined, true},
    {"<image|>", sentencepiece::PieceType::user_defined, true},
    {"<audio|>", sentencepiece::PieceType::user_defined, true},
    {"<|video|>", sentencepiece::PieceType::user_defined, true},
};
// ids of the leading tokens used by the configs
inline constexpr int64_t kToolResponseId = 12, kEotId = 19, kBoiId = 28, kBoaId = 29, kImageId = 30, kAudioId = 31, kEoiId = 32,
                         kEoaId = 33, kVideoId = 34;
// The first filler is <unused2>: the leading tokens hold <unused0> and <unused1>.
inline constexpr int64_t kFirstFillerUnused = 2;

// The synthetic pieces behind the leading tokens (synth/tokenizer.h), kSynthPieces in all.
inline std::vector<sentencepiece::Piece> synth_pieces() { return cmf::synth::synth_pieces(kSynthSpecials); }

namespace synth_detail {

using cmf::synth::SynthModel;
using cmf::synth::SynthSpec;
using cmf::synth::SynthText;
using cmf::synth::SynthVision;
using nlohmann::json;
namespace fs = std::filesystem;

inline constexpr int64_t kPositionEmbeddingSize = 10240;  // vision_config position_embedding_size
inline constexpr int64_t kPoolingKernel = 3, kVisionSoftTokens = 280;

struct Preset {
    const char* name;
    SynthText text;
    bool vision;
    int shards;
};

inline SynthText text_shape(int64_t hidden, int64_t layers, int64_t heads, int64_t kv_heads, int64_t ffn, int64_t kv_shared, int64_t vocab) {
    SynthText t;
    t.vocab = vocab;
    t.hidden = hidden;
    t.ffn = ffn;
    t.heads = heads;
    t.kv_heads = kv_heads;
    t.head_dim = 256;
    t.global_head_dim = 512;
    t.layers = layers;
    t.max_position = 131072;
    t.sliding_window = 512;
    t.kv_shared = kv_shared;
    t.per_layer_vocab = vocab;
    t.per_layer_width = 256;
    return t;
}

inline const std::vector<Preset>& presets() {
    static const std::vector<Preset> p = {
        // golden-next tiny-gemma4: 10 layers, 5 kv-shared, plus a 2-layer vision tower
        {"gemma4-tiny", text_shape(256, 10, 2, 1, 512, 5, cmf::synth::kSynthPieces), true, 1},
        // google/gemma-4-E2B widths (hidden 1536, FFN 6144, heads 8/1, vocab 262144) with 8
        // layers, 3 kv-shared: 1,331,235,592 parameters (the two embeddings 940M of them), text only
        {"gemma4-e2b-1b", text_shape(1536, 8, 8, 1, 6144, 3, 262144), false, 2},
    };
    return p;
}

inline void build(SynthModel& m, const SynthSpec& spec) {
    const Preset* p = nullptr;
    for (const auto& r : presets())
        if (spec.preset == r.name) p = &r;
    if (!p) fail(ErrorKind::internal, "synth: no Gemma 4 preset '" + spec.preset + "'");
    m.architecture = "Gemma4ForConditionalGeneration";
    m.v5 = true;  // the family exists in the transformers-v5 layout only
    m.shards = p->shards;
    SynthText& t = m.text;
    t = p->text;
    if (spec.layers > 0) {
        t.layers = spec.layers;
        t.kv_shared = cmf::synth::default_kv_shared(p->text.kv_shared, p->text.layers, t.layers);
    }
    if (spec.kv_shared >= 0) {
        if (spec.kv_shared > t.layers - 1)
            fail(ErrorKind::usage, "synth: --kv-shared must be at most layers - 1 (" + std::to_string(t.layers - 1) + ")");
        t.kv_shared = spec.kv_shared;
    }
    if (spec.ffn > 0) t.ffn = spec.ffn;
    t.layer_types = cmf::synth::interleaved_layer_types(t.layers, t.kv_shared, 5);
    if (p->vision) {
        m.multimodal = true;
        m.vision = {0, 16, 128, 512, 2, 2};  // image size is the processor's (max_soft_tokens), not fixed
    }

    using cmf::synth::detail::layer_prefix;
    const float w = 0.02f, norm_sd = 0.05f;
    const int64_t H = t.hidden, P = t.per_layer_width;
    const std::string lm = "model.language_model.";
    m.add(lm + "embed_tokens.weight", {t.vocab, H}, 0.0f, w);
    m.add(lm + "embed_tokens_per_layer.weight", {t.per_layer_vocab, t.layers * P}, 0.0f, w);
    m.add(lm + "per_layer_model_projection.weight", {t.layers * P, H}, 0.0f, w);
    m.add(lm + "per_layer_projection_norm.weight", {P}, 1.0f, norm_sd);
    m.add(lm + "norm.weight", {H}, 1.0f, norm_sd);
    for (int64_t i = 0; i < t.layers; ++i) {
        const std::string p = lm + layer_prefix("layers.", i);
        const bool full = t.layer_types[static_cast<size_t>(i)] == "full_attention";
        const int64_t hd = full ? t.global_head_dim : t.head_dim;
        const int64_t ffn = i >= t.layers - t.kv_shared ? 2 * t.ffn : t.ffn;  // use_double_wide_mlp
        for (const char* n : {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                              "post_feedforward_layernorm", "post_per_layer_input_norm"})
            m.add(p + n + ".weight", {H}, 1.0f, norm_sd);
        m.add(p + "layer_scalar", {1}, 1.0f, 0.0f);
        m.add(p + "self_attn.q_norm.weight", {hd}, 1.0f, norm_sd);
        m.add(p + "self_attn.k_norm.weight", {hd}, 1.0f, norm_sd);
        m.add(p + "self_attn.q_proj.weight", {t.heads * hd, H}, 0.0f, w);
        m.add(p + "self_attn.k_proj.weight", {t.kv_heads * hd, H}, 0.0f, w);
        m.add(p + "self_attn.v_proj.weight", {t.kv_heads * hd, H}, 0.0f, w);
        m.add(p + "self_attn.o_proj.weight", {H, t.heads * hd}, 0.0f, w);
        m.add(p + "mlp.gate_proj.weight", {ffn, H}, 0.0f, w);
        m.add(p + "mlp.up_proj.weight", {ffn, H}, 0.0f, w);
        m.add(p + "mlp.down_proj.weight", {H, ffn}, 0.0f, w);
        m.add(p + "per_layer_input_gate.weight", {P, H}, 0.0f, w);
        m.add(p + "per_layer_projection.weight", {H, P}, 0.0f, w);
    }
    if (!m.multimodal) return;

    const SynthVision& v = m.vision;
    const int64_t vhd = v.hidden / v.heads;
    const std::string vt = "model.vision_tower.";
    m.add("model.embed_vision.embedding_projection.weight", {H, v.hidden}, 0.0f, w);
    m.add(vt + "patch_embedder.input_proj.weight", {v.hidden, 3 * v.patch * v.patch}, 0.0f, w);
    m.add(vt + "patch_embedder.position_embedding_table", {2, kPositionEmbeddingSize, v.hidden}, 0.0f, w);
    // a Gemma4ClippableLinear: the matrix, and the clamp bounds of its input and output (0-dim)
    auto clippable = [&](const std::string& stem, int64_t out, int64_t in) {
        m.add(stem + ".linear.weight", {out, in}, 0.0f, w);
        m.add(stem + ".input_min", {}, -8.0f, 1.0f);
        m.add(stem + ".input_max", {}, 8.0f, 1.0f);
        m.add(stem + ".output_min", {}, -8.0f, 1.0f);
        m.add(stem + ".output_max", {}, 8.0f, 1.0f);
    };
    for (int64_t i = 0; i < v.layers; ++i) {
        const std::string p = vt + layer_prefix("encoder.layers.", i);
        for (const char* n : {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"})
            m.add(p + n + ".weight", {v.hidden}, 1.0f, norm_sd);
        m.add(p + "self_attn.q_norm.weight", {vhd}, 1.0f, norm_sd);
        m.add(p + "self_attn.k_norm.weight", {vhd}, 1.0f, norm_sd);
        for (const char* proj : {"q_proj", "k_proj", "v_proj", "o_proj"}) clippable(p + "self_attn." + proj, v.hidden, v.hidden);
        clippable(p + "mlp.gate_proj", v.ffn, v.hidden);
        clippable(p + "mlp.up_proj", v.ffn, v.hidden);
        clippable(p + "mlp.down_proj", v.hidden, v.ffn);
    }
}

inline json text_config(const SynthModel& m) {
    const SynthText& t = m.text;
    const char* dtype = cmf::synth::synth_torch_dtype(m.dtype);
    return json{
        {"attention_bias", false},
        {"attention_dropout", 0.0},
        {"attention_k_eq_v", false},
        {"bos_token_id", 2},
        {"dtype", dtype},
        {"enable_moe_block", false},
        {"eos_token_id", 1},
        {"final_logit_softcapping", 30.0},
        {"global_head_dim", t.global_head_dim},
        {"head_dim", t.head_dim},
        {"hidden_activation", "gelu_pytorch_tanh"},
        {"hidden_size", t.hidden},
        {"hidden_size_per_layer_input", t.per_layer_width},
        {"initializer_range", 0.02},
        {"intermediate_size", t.ffn},
        {"layer_types", t.layer_types},
        {"max_position_embeddings", t.max_position},
        {"model_type", "gemma4_text"},
        // llama.cpp's converter reads these keys without a default: present even when null
        {"moe_intermediate_size", nullptr},
        {"num_attention_heads", t.heads},
        {"num_experts", nullptr},
        {"num_global_key_value_heads", nullptr},
        {"num_hidden_layers", t.layers},
        {"num_key_value_heads", t.kv_heads},
        {"num_kv_shared_layers", t.kv_shared},
        {"pad_token_id", 0},
        {"rms_norm_eps", 1e-06},
        {"rope_parameters",
         {{"full_attention", {{"partial_rotary_factor", 0.25}, {"rope_theta", t.rope_theta}, {"rope_type", "proportional"}}},
          {"sliding_attention", {{"rope_theta", t.rope_local_theta}, {"rope_type", "default"}}}}},
        {"sliding_window", t.sliding_window},
        {"tie_word_embeddings", true},
        {"top_k_experts", nullptr},
        {"use_bidirectional_attention", nullptr},
        {"use_cache", true},
        {"use_double_wide_mlp", true},
        {"vocab_size", t.vocab},
        {"vocab_size_per_layer_input", t.per_layer_vocab},
    };
}

inline json config(const SynthModel& m) {
    const char* dtype = cmf::synth::synth_torch_dtype(m.dtype);
    json vision = nullptr;
    if (m.multimodal) {
        const SynthVision& v = m.vision;
        vision = {
            {"attention_bias", false}, {"attention_dropout", 0.0}, {"default_output_length", kVisionSoftTokens},
            {"dtype", dtype}, {"head_dim", v.hidden / v.heads}, {"hidden_activation", "gelu_pytorch_tanh"},
            {"hidden_size", v.hidden}, {"initializer_range", 0.02}, {"intermediate_size", v.ffn},
            {"max_position_embeddings", 131072}, {"model_type", "gemma4_vision"}, {"num_attention_heads", v.heads},
            {"num_hidden_layers", v.layers}, {"num_key_value_heads", v.heads}, {"patch_size", v.patch},
            {"pooling_kernel_size", kPoolingKernel}, {"position_embedding_size", kPositionEmbeddingSize},
            {"rms_norm_eps", 1e-06}, {"rope_parameters", {{"rope_theta", 100.0}, {"rope_type", "default"}}},
            {"standardize", false}, {"use_clipped_linears", true},
        };
    }
    return json{
        {"architectures", json::array({m.architecture})},
        {"audio_config", nullptr},
        {"audio_token_id", kAudioId},
        {"boa_token_id", kBoaId},
        {"boi_token_id", kBoiId},
        {"dtype", dtype},
        {"eoa_token_id", kEoaId},
        {"eoa_token_index", kEoaId},
        {"eoi_token_id", kEoiId},
        {"eos_token_id", json::array({1, kEotId})},
        {"image_token_id", kImageId},
        {"initializer_range", 0.02},
        {"model_type", "gemma4"},
        {"text_config", text_config(m)},
        {"tie_word_embeddings", true},
        {"transformers_version", "5.5.0.dev0"},
        {"video_token_id", kVideoId},
        {"vision_config", vision},
        {"vision_soft_tokens_per_image", kVisionSoftTokens},
    };
}

inline void write_tokenizer(const fs::path& dir, const SynthModel& m) {
    using namespace cmf::synth;
    using cmf::synth::detail::write_json;
    using cmf::synth::detail::write_text;
    const auto pieces = gemma4::synth_pieces();
    if (m.text.vocab < static_cast<int64_t>(pieces.size())) fail(ErrorKind::internal, "synth: vocab_size below the tokenizer's pieces");
    json vocab = json::object();
    for (size_t i = 0; i < pieces.size(); ++i) vocab[pieces[i].piece] = i;
    for (int64_t id = static_cast<int64_t>(pieces.size()); id < m.text.vocab; ++id)
        vocab["<unused" + std::to_string(id - static_cast<int64_t>(pieces.size()) + kFirstFillerUnused) + ">"] = id;
    json added = json::array();
    int64_t id = 0;
    for (const auto& s : kSynthSpecials) added.push_back(added_tokens_json_entry(id++, s.text, s.special));
    // no <bos> template: llama.cpp and the chat template add it
    const json post = {{"type", "TemplateProcessing"},
                       {"single", json::array({{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                       {"pair", json::array({{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
                       {"special_tokens", json::object()}};
    write_json(dir / "tokenizer.json", synth_bpe_tokenizer_json(std::move(vocab), synth_merges(pieces), std::move(added), post));

    // transformers v5: the model-specific special tokens as *_token keys
    const json tc = {
        {"audio_token", "<|audio|>"},
        {"backend", "tokenizers"},
        {"boa_token", "<|audio>"},
        {"boi_token", "<|image>"},
        {"bos_token", "<bos>"},
        {"eoa_token", "<audio|>"},
        {"eoc_token", "<channel|>"},
        {"eoi_token", "<image|>"},
        {"eos_token", "<eos>"},
        {"eot_token", "<turn|>"},
        {"escape_token", "<|\"|>"},
        {"etc_token", "<tool_call|>"},
        {"etd_token", "<tool|>"},
        {"etr_token", "<tool_response|>"},
        {"extra_special_tokens", json::array({"<|video|>"})},
        {"image_token", "<|image|>"},
        {"mask_token", "<mask>"},
        {"model_max_length", cmf::synth::detail::kModelMaxLengthPlaceholder},
        {"pad_token", "<pad>"},
        {"padding_side", "left"},
        {"processor_class", "Gemma4Processor"},
        {"soc_token", "<|channel>"},
        {"sot_token", "<|turn>"},
        {"stc_token", "<|tool_call>"},
        {"std_token", "<|tool>"},
        {"str_token", "<|tool_response>"},
        {"think_token", "<|think|>"},
        {"tokenizer_class", "GemmaTokenizer"},
        {"unk_token", "<unk>"},
    };
    write_text(dir / "tokenizer_config.json", cmf::synth::detail::dump_with_very_large_integer(tc));
    write_text(dir / "chat_template.jinja", kChatTemplate);
}

inline void write_files(const fs::path& dir, const SynthModel& m) {
    using cmf::synth::detail::write_json;
    write_json(dir / "config.json", config(m));
    write_json(dir / "generation_config.json",
               json{{"bos_token_id", 2}, {"do_sample", true}, {"eos_token_id", json::array({1, kEotId, kToolResponseId})},
                    {"pad_token_id", 0}, {"temperature", 1.0}, {"top_k", 64}, {"top_p", 0.95},
                    {"transformers_version", "5.5.0.dev0"}});
    if (m.multimodal) {
        const SynthVision& v = m.vision;
        write_json(dir / "processor_config.json",
                   json{{"image_processor",
                         {{"do_normalize", false}, {"do_rescale", true}, {"do_resize", true}, {"image_mean", {0.0, 0.0, 0.0}},
                          {"image_processor_type", "Gemma4ImageProcessor"}, {"image_std", {1.0, 1.0, 1.0}},
                          {"max_soft_tokens", kVisionSoftTokens}, {"patch_size", v.patch}, {"pooling_kernel_size", kPoolingKernel},
                          {"rescale_factor", 0.00392156862745098}, {"resample", 3}}},
                        {"image_seq_length", kVisionSoftTokens},
                        {"processor_class", "Gemma4Processor"}});
    }
    write_tokenizer(dir, m);
}

}  // namespace synth_detail

inline std::vector<cmf::synth::SynthPresetRow> synth_presets() {
    using synth_detail::build;
    using synth_detail::write_files;
    return {
        {"gemma4-tiny", "Gemma4ForConditionalGeneration, hidden 256, 10 layers, 5 kv-shared, small clipped-linear vision tower, ~18.8M params",
         build, write_files},
        {"gemma4-e2b-1b", "Gemma4ForConditionalGeneration text only, gemma-4-E2B widths, 8 layers, 3 kv-shared, 2 shards, 1.33B params",
         build, write_files},
    };
}

}  // namespace cmf::arch::gemma4
