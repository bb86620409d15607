// Tokenizer KVs of a GGUF, by the family's tokenizer route (arch/spec.h TokenizerSpec):
// tokenizer/vocab.h's ordered list, as GGUF values.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <type_traits>
#include <variant>

#include "cmf/arch/spec.h"
#include "cmf/format/gguf.h"
#include "cmf/tokenizer/gemma4_vocab.h"
#include "cmf/tokenizer/vocab.h"

namespace cmf {

inline GgufValue to_gguf_value(const tokenizer::KvValue& v) {
    return std::visit(
        [](const auto& x) -> GgufValue {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, bool>) return GgufValue::boolean(x);
            else if constexpr (std::is_same_v<T, uint32_t>) return GgufValue::u32(x);
            else if constexpr (std::is_same_v<T, int32_t>) return GgufValue::i32(x);
            else if constexpr (std::is_same_v<T, float>) return GgufValue::f32(x);
            else if constexpr (std::is_same_v<T, std::string>) return GgufValue::string(x);
            else if constexpr (std::is_same_v<T, std::vector<std::string>>) return GgufValue::string_array(x);
            else if constexpr (std::is_same_v<T, std::vector<float>>) return GgufValue::f32_array(x);
            else if constexpr (std::is_same_v<T, std::vector<int32_t>>) return GgufValue::i32_array(x);
            else static_assert(sizeof(T) == 0, "unhandled tokenizer KV type");
        },
        v);
}

struct VocabCounts {
    uint64_t tokens = 0;               // entries of tokenizer.ggml.tokens
    uint64_t tokenizer_json_rows = 0;  // len(model.vocab) + len(added_tokens) of tokenizer.json (0: not read)
};

// Appends the tokenizer.* KVs in the converter's order for the family's route.
inline VocabCounts add_tokenizer_kvs(GgufKvList& kv, const arch::TokenizerSpec& route, const std::filesystem::path& dir,
                                     const nlohmann::json& text_hparams) {
    VocabCounts c;
    switch (route.route) {
        case arch::TokenizerRoute::sentencepiece: {
            nlohmann::json h = text_hparams;
            // Gemma3NModel.set_vocab removes vocab_size_per_layer_input for the call, so the list
            // is vocab_size long (the padded multimodal ids included)
            if (route.size_by_vocab_size && h.is_object()) h.erase("vocab_size_per_layer_input");
            const tokenizer::GgufVocab v = tokenizer::load_gemma_vocab(dir, h);
            for (const auto& e : tokenizer::gguf_vocab_kvs(v)) kv.set(e.key, to_gguf_value(e.value));
            c.tokens = v.tokens.size();
            return c;
        }
        case arch::TokenizerRoute::gemma4_bpe: {
            const tokenizer::GgufVocab v = tokenizer::load_gemma4_vocab(dir);
            for (const auto& e : tokenizer::gguf_vocab_kvs(v)) kv.set(e.key, to_gguf_value(e.value));
            c.tokens = v.tokens.size();
            c.tokenizer_json_rows = v.tokenizer_json_rows;
            return c;
        }
    }
    return c;
}

}  // namespace cmf
