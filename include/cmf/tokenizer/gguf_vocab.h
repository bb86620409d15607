// Tokenizer KVs of a GGUF: tokenizer/vocab.h's ordered list, as GGUF values.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <type_traits>
#include <variant>

#include "cmf/format/gguf.h"
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

// Appends a vocabulary's tokenizer.* KVs in the converter's order (the family's route built it:
// arch/spec.h TokenizerSpec::load).
inline VocabCounts add_tokenizer_kvs(GgufKvList& kv, const tokenizer::GgufVocab& v) {
    for (const auto& e : tokenizer::gguf_vocab_kvs(v)) kv.set(e.key, to_gguf_value(e.value));
    return {v.tokens.size(), v.tokenizer_json_rows};
}

}  // namespace cmf
