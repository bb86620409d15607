// The ggml tensor type table: the numeric ids GGUF stores, block sizes and bytes per block.
//
// Ids and sizes are ggml's (ggml.h `enum ggml_type`, ggml.c `type_traits`); GGUF files store
// the id as a uint32 in each tensor info, so these values are part of the file format.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cmf {

enum class GgmlType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
    IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
    TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

struct GgmlTypeInfo {
    GgmlType type;
    std::string_view name;   // as ggml_type_name() prints it
    uint32_t block_size;     // elements per block
    uint32_t type_size;      // bytes per block
};

// QK_K = 256 elements per k-quant super-block (ggml-common.h).
inline constexpr uint32_t kQK_K = 256;

inline constexpr GgmlTypeInfo kGgmlTypes[] = {
    {GgmlType::F32, "f32", 1, 4},         {GgmlType::F16, "f16", 1, 2},
    {GgmlType::Q4_0, "q4_0", 32, 18},     {GgmlType::Q4_1, "q4_1", 32, 20},
    {GgmlType::Q5_0, "q5_0", 32, 22},     {GgmlType::Q5_1, "q5_1", 32, 24},
    {GgmlType::Q8_0, "q8_0", 32, 34},     {GgmlType::Q8_1, "q8_1", 32, 36},
    {GgmlType::Q2_K, "q2_K", 256, 84},    {GgmlType::Q3_K, "q3_K", 256, 110},
    {GgmlType::Q4_K, "q4_K", 256, 144},   {GgmlType::Q5_K, "q5_K", 256, 176},
    {GgmlType::Q6_K, "q6_K", 256, 210},   {GgmlType::Q8_K, "q8_K", 256, 292},
    {GgmlType::IQ4_NL, "iq4_nl", 32, 18}, {GgmlType::IQ4_XS, "iq4_xs", 256, 136},
    {GgmlType::I8, "i8", 1, 1},           {GgmlType::I16, "i16", 1, 2},
    {GgmlType::I32, "i32", 1, 4},         {GgmlType::I64, "i64", 1, 8},
    {GgmlType::F64, "f64", 1, 8},         {GgmlType::BF16, "bf16", 1, 2},
};

inline const GgmlTypeInfo* find_type_info(GgmlType t) {
    for (const auto& i : kGgmlTypes)
        if (i.type == t) return &i;
    return nullptr;
}

inline const GgmlTypeInfo& type_info(GgmlType t) {
    if (const auto* i = find_type_info(t)) return *i;
    static const GgmlTypeInfo unknown{t, "unknown", 0, 0};
    return unknown;
}

// The name llama.cpp's tools print in upper case (F16, Q4_K, BF16 ...).
inline std::string type_display_name(GgmlType t) {
    std::string s(type_info(t).name);
    for (auto& c : s) c = static_cast<char>((c >= 'a' && c <= 'z') ? c - 32 : c);
    return s;
}

// Bytes of one row of n elements; n must be a multiple of the block size.
inline uint64_t row_bytes(GgmlType t, uint64_t n) {
    const auto& i = type_info(t);
    return n / i.block_size * i.type_size;
}

}  // namespace cmf
