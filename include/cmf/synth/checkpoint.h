// Synthetic Gemma 3 checkpoints in Hugging Face layout, for tests, fuzz seeds and benchmarks.
//
// A generated directory has what a real release has and what llama.cpp's converter reads:
//   config.json, generation_config.json, model.safetensors (or N shards + model.safetensors.index.json),
//   tokenizer.model (SentencePiece BPE with byte fallback), tokenizer.json, tokenizer_config.json,
//   special_tokens_map.json, added_tokens.json, and for the multimodal preset
//   preprocessor_config.json, processor_config.json and chat_template.json.
// The file set and the JSON keys mirror the golden tiny checkpoints (../shared/golden/tiny-text,
// tiny-mm), which were made to look like google/gemma-3-1b-it and gemma-3-4b-it.
//
// Weights are BF16 (or F16 / F32 with SynthSpec::dtype) and depend only on (seed, tensor name): a counter-based PRNG (splitmix64 of
// seed-and-name key + element index) gives element i without generating 0..i-1, so the legacy and
// transformers-v5 layouts, and any shard split, hold bit-identical tensor data. Values are an
// approximate normal (sum of four 16-bit uniforms, Irwin-Hall), std 0.02 for matrices; Gemma RMS
// norm weights sit around 0 because Gemma computes x * (1 + w) and llama.cpp stores 1 + w;
// SigLIP LayerNorm weights sit around 1. Tensors are streamed in kSynthChunkElements pieces, so
// the 1.9 GB "medgemma-text" preset is written with a few MB of memory.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/core/temp_file.h"
#include "cmf/format/safetensors.h"
#include "cmf/format/safetensors_writer.h"
#include "cmf/format/sentencepiece.h"
#include "cmf/quant/half.h"

namespace cmf::synth {

namespace fs = std::filesystem;
using nlohmann::json;

// 1 Mi BF16 elements = 2 MiB per write: well under the 4 MB streaming budget.
inline constexpr uint64_t kSynthChunkElements = 1ull << 20;
// The golden generator's seed (manifest.json "generator"), used as our default for familiarity.
inline constexpr uint64_t kSynthDefaultSeed = 20250101;
// SentencePiece pieces in every synthetic tokenizer (the golden tiny tokenizers have 1024); the
// config's vocab_size is larger and the converter pads the token list with [PADn].
inline constexpr int kSynthPieces = 1024;

struct SynthSpec {
    std::string preset = "tiny";  // tiny | tiny-mm | medgemma-text | recipes
    int layers = 0;               // text layers; 0 = the preset's
    uint64_t seed = kSynthDefaultSeed;
    int shards = 0;               // safetensors files; 0 = the preset's (1, 1, 2)
    bool v5 = false;              // transformers-v5 tensor names and config form
    StDtype dtype = StDtype::BF16;  // safetensors dtype of every tensor: BF16, F16 or F32
};

struct SynthText {
    int64_t vocab = 0, hidden = 0, ffn = 0, heads = 0, kv_heads = 0, head_dim = 0, layers = 0;
    int64_t max_position = 0, sliding_window = 0;
    double rope_theta = 1000000.0, rope_local_theta = 10000.0;
    double rope_linear_factor = 0.0;  // 0: no rope scaling
};

struct SynthVision {
    int64_t image = 0, patch = 0, hidden = 0, ffn = 0, layers = 0, heads = 0;
};

// One tensor to generate: its name in the file, shape, and value distribution.
struct SynthTensor {
    std::string name;       // as written (legacy or v5 layout)
    std::string key;        // the legacy name: what the values are derived from
    std::vector<int64_t> shape;
    float mean = 0.0f, std = 0.02f;

    uint64_t n_elements() const {
        uint64_t n = 1;
        for (auto d : shape) n *= static_cast<uint64_t>(d);
        return n;
    }
};

struct SynthModel {
    std::string preset, architecture;  // Gemma3ForCausalLM | Gemma3ForConditionalGeneration
    SynthText text;
    bool multimodal = false;
    SynthVision vision;
    bool v5 = false;
    int shards = 1;
    uint64_t seed = kSynthDefaultSeed;
    StDtype dtype = StDtype::BF16;
    std::vector<SynthTensor> tensors;  // sorted by name (the safetensors header order)

    uint64_t n_params() const {
        uint64_t n = 0;
        for (const auto& t : tensors) n += t.n_elements();
        return n;
    }
};

// ---------------------------------------------------------------------------------------------
// Deterministic values

namespace detail {

inline constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;  // splitmix64 increment

inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// FNV-1a, then mixed with the seed: one independent stream per (seed, tensor).
inline uint64_t stream_key(uint64_t seed, const std::string& name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
    return mix64(h ^ mix64(seed + kGolden));
}

// Irwin-Hall with n = 4 from the four 16-bit lanes of one draw: each lane is a uniform
// (u + 0.5) / 65536, their sum has mean 2 and variance 1/3, so (sum - 2) * sqrt(3) has unit
// variance. The lanes are summed as integers (SWAR) and converted once: exact and fast. Tails
// stop at +-3.46 sigma, fine for test weights.
inline float approx_normal(uint64_t r) {
    const uint64_t pairs = (r & 0x0000ffff0000ffffull) + ((r >> 16) & 0x0000ffff0000ffffull);
    const auto sum = static_cast<int32_t>((pairs & 0xffffffffull) + (pairs >> 32));  // 0 .. 4 * 65535
    return static_cast<float>(sum - 131070) * (1.7320508f / 65536.0f);
}

// float -> bfloat16, round to nearest even (values here are always finite).
inline uint16_t to_bf16(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    b += 0x7fffu + ((b >> 16) & 1u);
    return static_cast<uint16_t>(b >> 16);
}

inline std::string layer_prefix(const char* base, int64_t i) { return std::string(base) + std::to_string(i) + "."; }

}  // namespace detail

// Element i of a tensor's data as F32, before rounding to the file's dtype.
// (Two statements, so no compiler fuses the multiply and add: the bits must not depend on it.)
inline float synth_value_f32(uint64_t key, uint64_t i, float mean, float std) {
    const float scaled = std * detail::approx_normal(detail::mix64(key + (i + 1) * detail::kGolden));
    const float v = mean + scaled;
    return v;
}

// Element i of a tensor's data, as BF16 bits.
inline uint16_t synth_value(uint64_t key, uint64_t i, float mean, float std) {
    return detail::to_bf16(synth_value_f32(key, i, mean, std));
}

// The dtypes `cmf synth --dtype` writes, by the name it takes.
inline std::optional<StDtype> parse_synth_dtype(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (s == "bf16") return StDtype::BF16;
    if (s == "f16") return StDtype::F16;
    if (s == "f32") return StDtype::F32;
    return std::nullopt;
}

// config.json's torch_dtype / dtype for a synth dtype.
inline const char* synth_torch_dtype(StDtype d) {
    return d == StDtype::F16 ? "float16" : d == StDtype::F32 ? "float32" : "bfloat16";
}

// ---------------------------------------------------------------------------------------------
// Presets and the tensor list

inline const std::vector<std::string>& synth_presets() {
    static const std::vector<std::string> p = {"tiny", "tiny-mm", "medgemma-text", "recipes"};
    return p;
}

inline SynthModel synth_model(const SynthSpec& spec) {
    SynthModel m;
    m.preset = spec.preset;
    m.seed = spec.seed;
    m.v5 = spec.v5;
    if (spec.dtype != StDtype::BF16 && spec.dtype != StDtype::F16 && spec.dtype != StDtype::F32)
        fail(ErrorKind::usage, "synth: dtype must be bf16, f16 or f32");
    m.dtype = spec.dtype;
    SynthText& t = m.text;
    if (spec.preset == "tiny") {
        // ../shared/golden/tiny-text: gemma-3-1b layout, 5,018,624 parameters
        m.architecture = "Gemma3ForCausalLM";
        t = {1088, 512, 1024, 4, 1, 128, 2, 32768, 512, 1000000.0, 10000.0, 0.0};
        m.shards = 1;
    } else if (spec.preset == "tiny-mm") {
        // ../shared/golden/tiny-mm: gemma-3-4b-it / medgemma-4b-it layout, n_head * head_dim != hidden
        m.architecture = "Gemma3ForConditionalGeneration";
        t = {1088, 256, 512, 2, 1, 256, 2, 131072, 1024, 1000000.0, 10000.0, 8.0};
        m.multimodal = true;
        m.vision = {896, 14, 128, 512, 2, 2};
        m.shards = 1;
    } else if (spec.preset == "medgemma-text") {
        // manifest.json "medium": the real 4B text shapes with 3 layers, ~954M parameters
        m.architecture = "Gemma3ForCausalLM";
        t = {262208, 2560, 10240, 8, 4, 256, 3, 131072, 1024, 1000000.0, 10000.0, 8.0};
        m.shards = 2;
    } else if (spec.preset == "recipes") {
        // for comparing llama-quantize recipes: 12 layers (use_more_bits and the n_layer/8,
        // n_layer/16 early-layer rules all pick different layers), hidden 320 (not a multiple of
        // 256: the K-quant fallbacks), FFN 3328 = 13 x 256 (ffn tensors of 1,064,960 > 1 Mi
        // elements: several chunks), n_head * head_dim = 1024 != hidden; ~50M parameters
        m.architecture = "Gemma3ForCausalLM";
        t = {4096, 320, 3328, 4, 1, 256, 12, 32768, 512, 1000000.0, 10000.0, 0.0};
        m.shards = 1;
    } else {
        fail(ErrorKind::usage, "synth: unknown preset '" + spec.preset + "' (tiny, tiny-mm, medgemma-text, recipes)");
    }
    if (spec.layers < 0 || spec.layers > 1000) fail(ErrorKind::usage, "synth: --layers must be from 1 to 1000");
    if (spec.layers > 0) t.layers = spec.layers;
    if (spec.shards < 0 || spec.shards > 1000) fail(ErrorKind::usage, "synth: --shards must be from 1 to 1000");
    if (spec.shards > 0) m.shards = spec.shards;
    if (t.vocab <= kSynthPieces) fail(ErrorKind::internal, "synth: vocab_size must exceed the tokenizer's pieces");

    // Legacy names are the value keys; v5 renames them (transformers >= 4.52 nests the towers of
    // Gemma3ForConditionalGeneration under "model."; Gemma3ForCausalLM keeps "model.layers.*").
    auto add = [&](const std::string& legacy, std::vector<int64_t> shape, float mean, float std) {
        SynthTensor s;
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
    const std::string lm = m.multimodal ? "language_model." : "";
    const float w = 0.02f, gemma_norm = 0.05f;
    add(lm + "model.embed_tokens.weight", {t.vocab, t.hidden}, 0.0f, w);
    add(lm + "model.norm.weight", {t.hidden}, 0.0f, gemma_norm);
    for (int64_t i = 0; i < t.layers; ++i) {
        const std::string p = lm + detail::layer_prefix("model.layers.", i);
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
            const std::string p = vm + detail::layer_prefix("encoder.layers.", i);
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
    std::sort(m.tensors.begin(), m.tensors.end(), [](const SynthTensor& a, const SynthTensor& b) { return a.name < b.name; });
    if (static_cast<size_t>(m.shards) > m.tensors.size())
        fail(ErrorKind::usage, "synth: --shards " + std::to_string(m.shards) + " is more than the " +
                                   std::to_string(m.tensors.size()) + " tensors of the checkpoint");
    return m;
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

// The Gemma 3 chat template, as released in google/gemma-3-*-it tokenizer_config.json (the golden
// checkpoints carry the same string); llama.cpp copies it into tokenizer.chat_template.
inline constexpr const char* kGemma3ChatTemplate = R"TPL({{ bos_token }}
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
struct SynthSpecialPiece {
    const char* text;
    sentencepiece::PieceType type;
    bool special;
};
inline constexpr SynthSpecialPiece kSynthSpecials[] = {
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

// SentencePiece's whitespace marker U+2581.
inline constexpr const char* kSpaceMark = "\xe2\x96\x81";

namespace detail {

inline size_t utf8_len(unsigned char c) { return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4; }

// Splits before the last code point: "Hello" -> {"Hell", "o"}.
inline std::pair<std::string, std::string> split_last(const std::string& s) {
    size_t i = 0, last = 0;
    while (i < s.size()) {
        last = i;
        i += utf8_len(static_cast<unsigned char>(s[i]));
    }
    return {s.substr(0, last), s.substr(last)};
}

}  // namespace detail

// The pieces: specials, 256 byte pieces, then NORMAL pieces with falling scores. Every NORMAL
// piece of two or more code points is its prefix plus one code point, and both halves are
// pieces with higher scores, so a BPE merge chain reaches every word (llama.cpp's SPM tokenizer
// merges the best-scored adjacent pair that is a piece): "Hello", "▁Hello", "user", "model"
// each become one token. Single characters cover ASCII, so any ASCII text tokenizes without
// byte fallback.
inline std::vector<sentencepiece::Piece> synth_pieces() {
    using sentencepiece::Piece;
    using sentencepiece::PieceType;
    std::vector<Piece> out;
    std::set<std::string> normal_ns;  // NORMAL/USER_DEFINED share one namespace in SentencePiece
    for (const auto& s : kSynthSpecials) {
        out.push_back({s.text, 0.0f, s.type});
        if (s.type == PieceType::user_defined) normal_ns.insert(s.text);
    }
    static const char* hex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) out.push_back({std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">", 0.0f, PieceType::byte});

    std::vector<std::string> normal;
    auto want = [&](const std::string& p) {
        if (normal_ns.insert(p).second) normal.push_back(p);
    };
    want(kSpaceMark);
    for (int c = 33; c < 127; ++c) want(std::string(1, static_cast<char>(c)));
    for (const char* u : {"\xc3\xa9", "\xc3\xbc", "\xc3\xb1", "\xce\xb1", "\xc2\xb0", "\xe4\xb8\xad", "\xe6\x96\x87"})
        want(u);  // é ü ñ α ° 中 文
    static const char* words[] = {
        "Hello", "hello", "world", "user", "model", "the", "and", "of", "to", "in", "is", "it", "that", "for",
        "with", "on", "as", "are", "was", "be", "this", "have", "from", "or", "by", "not", "what", "can",
        "you", "your", "patient", "doctor", "image", "scan", "chest", "normal", "findings", "report",
        "medical", "health", "heart", "lung", "blood", "pain", "treatment", "disease", "clinical",
        "Gemma", "How", "What", "The", "This", "Please", "describe", "answer", "question", "help",
        "time", "day", "good", "right", "left", "small", "large", "no", "yes", "one", "two", "three",
    };
    // prefixes first (higher scores), so every merge step of every word exists
    std::vector<std::string> forms;
    for (const char* wd : words) {
        forms.push_back(wd);
        forms.push_back(std::string(kSpaceMark) + wd);
    }
    for (size_t len = 2; len <= 16; ++len)
        for (const auto& f : forms) {
            std::vector<size_t> starts;
            for (size_t i = 0; i < f.size(); i += detail::utf8_len(static_cast<unsigned char>(f[i]))) starts.push_back(i);
            if (starts.size() >= len) want(starts.size() == len ? f : f.substr(0, starts[len]));
        }
    // fill the rest with letter bigrams (lower-case, then ▁-prefixed)
    const size_t room = static_cast<size_t>(kSynthPieces) - out.size();
    for (char a = 'a'; a <= 'z' && normal.size() < room; ++a)
        for (char b = 'a'; b <= 'z' && normal.size() < room; ++b) want(std::string{a, b});
    for (char a = 'a'; a <= 'z' && normal.size() < room; ++a) want(std::string(kSpaceMark) + a);
    for (char a = 'A'; a <= 'Z' && normal.size() < room; ++a)
        for (char b = 'a'; b <= 'z' && normal.size() < room; ++b) want(std::string{a, b});
    if (normal.size() < room) fail(ErrorKind::internal, "synth: not enough tokenizer pieces");
    normal.resize(room);
    for (size_t i = 0; i < normal.size(); ++i) out.push_back({normal[i], -static_cast<float>(i), PieceType::normal});
    return out;
}

inline sentencepiece::TrainerSpec synth_trainer_spec() {
    sentencepiece::TrainerSpec t;
    t.model_type = sentencepiece::ModelType::bpe;
    t.vocab_size = kSynthPieces;
    t.byte_fallback = true;
    t.unk_id = 3;
    t.bos_id = 2;
    t.eos_id = 1;
    t.pad_id = 0;
    t.unk_piece = "<unk>";
    t.bos_piece = "<bos>";
    t.eos_piece = "<eos>";
    t.pad_piece = "<pad>";
    return t;
}

inline sentencepiece::NormalizerSpec synth_normalizer_spec() {
    // Gemma 3's tokenizer: no normalization, no dummy prefix, whitespace kept and escaped as ▁
    sentencepiece::NormalizerSpec n;
    n.name = "identity";
    n.add_dummy_prefix = false;
    n.remove_extra_whitespaces = false;
    n.escape_whitespaces = true;
    return n;
}

namespace detail {

inline json added_token_entry(const std::string& content, bool special) {
    return json{{"content", content}, {"lstrip", false}, {"normalized", false}, {"rstrip", false},
                {"single_word", false}, {"special", special}};
}

// The added tokens of Gemma 3's tokenizer: the 22 leading pieces plus <image_soft_token>.
inline std::vector<std::pair<int, std::pair<std::string, bool>>> added_tokens() {
    std::vector<std::pair<int, std::pair<std::string, bool>>> v;
    int id = 0;
    for (const auto& s : kSynthSpecials) v.push_back({id++, {s.text, s.special}});
    v.push_back({kSynthPieces, {kImageSoftToken, true}});
    return v;
}

inline void write_text(const fs::path& p, const std::string& s) {
    TempFile out(p);
    out.write(s);
    out.commit();
}

// transformers writes JSON with indent 2 and sorted keys (nlohmann's object order) plus a newline.
inline void write_json(const fs::path& p, const json& j) { write_text(p, j.dump(2) + "\n"); }

}  // namespace detail

inline void write_synthetic_tokenizer(const fs::path& dir, const SynthModel& m) {
    using namespace detail;
    const auto pieces = synth_pieces();
    write_text(dir / "tokenizer.model", sentencepiece::write_sentencepiece_model(pieces, synth_trainer_spec(), synth_normalizer_spec()));

    // tokenizer.json (Hugging Face tokenizers, BPE with byte fallback, as Gemma ships it)
    json added = json::array();
    for (const auto& [id, ts] : added_tokens()) {
        json e = {{"id", id}, {"content", ts.first}, {"single_word", false}, {"lstrip", false},
                  {"rstrip", false}, {"normalized", false}, {"special", ts.second}};
        added.push_back(std::move(e));
    }
    json vocab = json::object();
    json merges = json::array();
    for (size_t i = 0; i < pieces.size(); ++i) {
        vocab[pieces[i].piece] = i;
        if (pieces[i].type == sentencepiece::PieceType::normal) {
            auto [a, b] = split_last(pieces[i].piece);
            if (!a.empty()) merges.push_back(json::array({a, b}));
        }
    }
    json tj = {
        {"version", "1.0"},
        {"truncation", nullptr},
        {"padding", nullptr},
        {"added_tokens", added},
        {"normalizer", {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpaceMark}}},
        {"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "MergedWithPrevious"}, {"invert", false}}},
        {"post_processor",
         {{"type", "TemplateProcessing"},
          {"single", json::array({{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
          {"pair", json::array({{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                {{"SpecialToken", {{"id", "<bos>"}, {"type_id", 1}}}}, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
          {"special_tokens", {{"<bos>", {{"id", "<bos>"}, {"ids", {2}}, {"tokens", {"<bos>"}}}}}}}},
        {"decoder",
         {{"type", "Sequence"},
          {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", kSpaceMark}}}, {"content", " "}},
                                    {{"type", "ByteFallback"}}, {{"type", "Fuse"}}})}}},
        {"model",
         {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", true}, {"ignore_merges", false},
          {"vocab", vocab}, {"merges", merges}}},
    };
    write_json(dir / "tokenizer.json", tj);

    json decoder = json::object();
    for (const auto& [id, ts] : added_tokens()) decoder[std::to_string(id)] = added_token_entry(ts.first, ts.second);
    json tc = {
        {"add_bos_token", true},
        {"add_eos_token", false},
        {"added_tokens_decoder", decoder},
        {"boi_token", "<start_of_image>"},
        {"bos_token", "<bos>"},
        {"chat_template", kGemma3ChatTemplate},
        {"clean_up_tokenization_spaces", false},
        {"eoi_token", "<end_of_image>"},
        {"eos_token", "<end_of_turn>"},
        {"extra_special_tokens", {{"boi_token", "<start_of_image>"}, {"eoi_token", "<end_of_image>"}, {"image_token", kImageSoftToken}}},
        {"image_token", kImageSoftToken},
        {"model_max_length", 1000000000000000000ull},  // replaced below by Python's 1e30 integer
        {"pad_token", "<pad>"},
        {"padding_side", "left"},
        {"processor_class", "Gemma3Processor"},
        {"sp_model_kwargs", nullptr},
        {"spaces_between_special_tokens", false},
        {"tokenizer_class", "GemmaTokenizer"},
        {"unk_token", "<unk>"},
        {"use_default_system_prompt", false},
    };
    // transformers' VERY_LARGE_INTEGER (int(1e30)) does not fit a 64-bit integer: splice its text in
    std::string tcs = tc.dump(2) + "\n";
    const std::string placeholder = "1000000000000000000";
    if (auto p = tcs.find("\"model_max_length\": " + placeholder); p != std::string::npos)
        tcs.replace(p + 20, placeholder.size(), "1000000000000000019884624838656");
    write_text(dir / "tokenizer_config.json", tcs);

    auto special_obj = [](const char* s) {
        return json{{"content", s}, {"lstrip", false}, {"normalized", false}, {"rstrip", false}, {"single_word", false}};
    };
    write_json(dir / "special_tokens_map.json",
               json{{"boi_token", "<start_of_image>"}, {"bos_token", special_obj("<bos>")}, {"eoi_token", "<end_of_image>"},
                    {"eos_token", special_obj("<eos>")}, {"image_token", kImageSoftToken}, {"pad_token", special_obj("<pad>")},
                    {"unk_token", special_obj("<unk>")}});
    write_json(dir / "added_tokens.json", json{{kImageSoftToken, kSynthPieces}});
    (void)m;
}

// ---------------------------------------------------------------------------------------------
// Configs

inline json synth_text_config(const SynthModel& m, bool top_level) {
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

inline json synth_config(const SynthModel& m) {
    if (!m.multimodal) {
        json c = synth_text_config(m, true);
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
        {"image_token_index", kSynthPieces},
        {"initializer_range", 0.02},
        {"mm_tokens_per_image", 256},
        {"model_type", "gemma3"},
        {"text_config", synth_text_config(m, false)},
        {"transformers_version", m.v5 ? "5.0.0" : "4.51.3"},
        {"vision_config", vc},
    };
    c[m.v5 ? "dtype" : "torch_dtype"] = synth_torch_dtype(m.dtype);
    return c;
}

// ---------------------------------------------------------------------------------------------
// Weights

// BF16 values are the F32 values rounded to nearest even; F16 the same values rounded to F16
// (round to nearest even); F32 the values themselves, so each dtype carries bits the narrower
// ones cannot.
inline StTensorSpec synth_tensor_spec(const SynthTensor& t, uint64_t seed, StDtype dtype = StDtype::BF16) {
    StTensorSpec s;
    s.name = t.name;
    s.dtype = dtype;
    s.shape = t.shape;
    const uint64_t key = detail::stream_key(seed, t.key);
    const uint64_t n = t.n_elements();
    const float mean = t.mean, sd = t.std;
    s.fill = [key, n, mean, sd, dtype](const std::function<void(const void*, size_t)>& write) {
        const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, kSynthChunkElements));
        if (dtype == StDtype::F32) {
            std::vector<float> buf(chunk);
            for (uint64_t i0 = 0; i0 < n; i0 += buf.size()) {
                const uint64_t k = std::min<uint64_t>(buf.size(), n - i0);
                for (uint64_t i = 0; i < k; ++i) buf[i] = synth_value_f32(key, i0 + i, mean, sd);
                write(buf.data(), k * sizeof(float));
            }
            return;
        }
        std::vector<uint16_t> buf(chunk);
        for (uint64_t i0 = 0; i0 < n; i0 += buf.size()) {
            const uint64_t k = std::min<uint64_t>(buf.size(), n - i0);
            if (dtype == StDtype::F16)
                for (uint64_t i = 0; i < k; ++i) buf[i] = f32_to_f16(synth_value_f32(key, i0 + i, mean, sd));
            else
                for (uint64_t i = 0; i < k; ++i) buf[i] = synth_value(key, i0 + i, mean, sd);
            write(buf.data(), k * sizeof(uint16_t));
        }
    };
    return s;
}

// Splits the name-sorted tensor list into `shards` consecutive runs of about equal bytes. Keeping
// name order across shards means llama.cpp's visiting order (shards by file name, tensors by name
// inside each) is the same as for a single file, so sharding never changes the GGUF.
inline std::vector<std::vector<const SynthTensor*>> synth_shard_split(const SynthModel& m) {
    const uint64_t esz = st_dtype_info(m.dtype).size;
    uint64_t total = 0;
    for (const auto& t : m.tensors) total += t.n_elements() * esz;
    const size_t n = static_cast<size_t>(m.shards);
    std::vector<std::vector<const SynthTensor*>> out(n);
    size_t s = 0;
    uint64_t acc = 0;
    for (size_t i = 0; i < m.tensors.size(); ++i) {
        out[s].push_back(&m.tensors[i]);
        acc += m.tensors[i].n_elements() * esz;
        const size_t left_tensors = m.tensors.size() - i - 1, left_shards = n - s - 1;
        // close this shard at its share of the bytes, or when each later shard needs a tensor
        if (left_shards > 0 && (acc >= total * (s + 1) / n || left_tensors == left_shards)) ++s;
    }
    return out;
}

inline std::string shard_file_name(int i, int n) {
    char b[64];
    std::snprintf(b, sizeof b, "model-%05d-of-%05d.safetensors", i, n);
    return b;
}

// Writes the whole checkpoint into `dir` (created if missing). Stale model*.safetensors files
// and index from an earlier run are removed first: the converter would read them too.
inline void write_synthetic_checkpoint(const fs::path& dir, const SynthSpec& spec) {
    const SynthModel m = synth_model(spec);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (!fs::is_directory(dir)) fail_io("cannot create directory " + dir.string() + (ec ? ": " + ec.message() : ""));
    std::vector<fs::path> stale;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string fn = e.path().filename().string();
        const bool shard = fn.rfind("model", 0) == 0 && fn.size() > 12 && fn.substr(fn.size() - 12) == ".safetensors";
        if (shard || fn == "model.safetensors.index.json") stale.push_back(e.path());
    }
    for (const auto& p : stale)
        if (!ec) fs::remove(p, ec);
    if (ec) fail_io("cannot clean " + dir.string() + ": " + ec.message());

    const std::map<std::string, std::string> meta = {{"format", "pt"}};
    if (m.shards == 1) {
        std::vector<StTensorSpec> specs;
        for (const auto& t : m.tensors) specs.push_back(synth_tensor_spec(t, m.seed, m.dtype));
        write_safetensors(dir / "model.safetensors", specs, meta);
    } else {
        json weight_map = json::object();
        uint64_t total = 0;
        const auto split = synth_shard_split(m);
        for (size_t s = 0; s < split.size(); ++s) {
            const std::string fn = shard_file_name(static_cast<int>(s + 1), m.shards);
            std::vector<StTensorSpec> specs;
            for (const SynthTensor* t : split[s]) {
                specs.push_back(synth_tensor_spec(*t, m.seed, m.dtype));
                weight_map[t->name] = fn;
                total += t->n_elements() * st_dtype_info(m.dtype).size;
            }
            write_safetensors(dir / fn, specs, meta);
        }
        detail::write_json(dir / "model.safetensors.index.json", json{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}});
    }

    detail::write_json(dir / "config.json", synth_config(m));
    // Published models carry the base model's terms (Ollama license layer, model card); a
    // synthetic checkpoint has its own, so demos can publish it like a real one.
    detail::write_text(dir / "LICENSE",
                       "Synthetic test checkpoint written by `cmf synth`: random weights and a made-up\n"
                       "vocabulary, generated for demos and tests. It derives from no model and carries no\n"
                       "third-party terms; use it for anything.\n");
    detail::write_json(dir / "generation_config.json",
                       json{{"bos_token_id", 2}, {"cache_implementation", "hybrid"}, {"do_sample", true},
                            {"eos_token_id", json::array({1, 11})}, {"pad_token_id", 0}, {"top_k", 64}, {"top_p", 0.95},
                            {"transformers_version", "4.50.0.dev0"}});
    write_synthetic_tokenizer(dir, m);
    if (m.multimodal) {
        const SynthVision& v = m.vision;
        detail::write_json(dir / "preprocessor_config.json",
                           json{{"do_convert_rgb", nullptr}, {"do_normalize", true}, {"do_pan_and_scan", nullptr},
                                {"do_rescale", true}, {"do_resize", true}, {"image_mean", {0.5, 0.5, 0.5}},
                                {"image_processor_type", "Gemma3ImageProcessor"}, {"image_seq_length", 256},
                                {"image_std", {0.5, 0.5, 0.5}}, {"pan_and_scan_max_num_crops", nullptr},
                                {"pan_and_scan_min_crop_size", nullptr}, {"pan_and_scan_min_ratio_to_activate", nullptr},
                                {"processor_class", "Gemma3Processor"}, {"resample", 2},
                                {"rescale_factor", 0.00392156862745098}, {"size", {{"height", v.image}, {"width", v.image}}}});
        detail::write_json(dir / "processor_config.json", json{{"image_seq_length", 256}, {"processor_class", "Gemma3Processor"}});
        detail::write_json(dir / "chat_template.json", json{{"chat_template", kGemma3ChatTemplate}});
    }
}

}  // namespace cmf::synth
