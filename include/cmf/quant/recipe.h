// llama-quantize's file types ("recipes") and its per-tensor type choice, as in llama.cpp v0.5.0
// src/llama-quant.cpp (tensor_allows_quantization, llama_tensor_get_type_impl,
// tensor_type_fallback) — restricted to what a dense, non-MoE, non-Falcon model takes.
//
// The input is what the converter's lossless file of the checkpoint's dtype holds (2-D weights
// BF16/F16/F32, 1-D and norms F32), so the choice equals `llama-quantize model-<dtype>.gguf
// out.gguf TYPE` (recipe_oracle_test checks all 14 types from BF16, F16 and F32 sources).
#pragma once

#include <cstdio>
#include <optional>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/quant/types.h"

namespace cmf {

struct QuantRecipe {
    const char* name;     // as llama-quantize spells it
    uint32_t ftype;       // llama_ftype, stored in general.file_type
    GgmlType base;        // llama_ftype_get_default_type
};

// llama.h `enum llama_ftype`
inline constexpr QuantRecipe kQuantRecipes[] = {
    {"Q4_0", 2, GgmlType::Q4_0},     {"Q4_1", 3, GgmlType::Q4_1},     {"Q8_0", 7, GgmlType::Q8_0},
    {"Q5_0", 8, GgmlType::Q5_0},     {"Q5_1", 9, GgmlType::Q5_1},     {"Q2_K", 10, GgmlType::Q2_K},
    {"Q3_K_S", 11, GgmlType::Q3_K},  {"Q3_K_M", 12, GgmlType::Q3_K},  {"Q3_K_L", 13, GgmlType::Q3_K},
    {"Q4_K_S", 14, GgmlType::Q4_K},  {"Q4_K_M", 15, GgmlType::Q4_K},  {"Q5_K_S", 16, GgmlType::Q5_K},
    {"Q5_K_M", 17, GgmlType::Q5_K},  {"Q6_K", 18, GgmlType::Q6_K},
};

inline const QuantRecipe* find_recipe(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (s == "Q4_K") s = "Q4_K_M";  // llama-quantize's aliases
    if (s == "Q5_K") s = "Q5_K_M";
    if (s == "Q3_K") s = "Q3_K_M";
    for (const auto& r : kQuantRecipes)
        if (s == r.name) return &r;
    return nullptr;
}

// A ggml type by the name a user types on the command line (q4_k, Q6_K, f16, bf16 ...).
inline std::optional<GgmlType> parse_ggml_type(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const auto& i : kGgmlTypes) {
        std::string n(i.name);
        for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (n == s) return i.type;
    }
    return std::nullopt;
}

// User overrides, with llama-quantize's meaning. `tensor_types` are tried in order; the first
// regex that matches anywhere in the name (std::regex_search) wins.
struct TypeOverrides {
    std::vector<std::pair<std::string, GgmlType>> tensor_types;  // pattern text, type
    std::optional<GgmlType> token_embedding_type;
    std::optional<GgmlType> output_tensor_type;
    bool has_imatrix = false;
};

// What the recipe needs to know of one tensor.
struct RecipeTensor {
    std::string name;            // GGUF name
    std::vector<uint64_t> ne;    // innermost first
    GgmlType input_type;         // its type in the converter's BF16 file
};

namespace recipe_detail {

enum class Category { output, token_embd, attn_qkv, attn_kv_b, attn_v, attn_k, attn_q, attn_output, ffn_up, ffn_gate, ffn_down, other };

inline bool has(const std::string& s, const char* p) { return s.find(p) != std::string::npos; }

inline Category category_of(const std::string& n) {
    if (n == "output.weight") return Category::output;
    if (n == "token_embd.weight" || n == "per_layer_token_embd.weight") return Category::token_embd;
    if (has(n, "attn_qkv.weight")) return Category::attn_qkv;
    if (has(n, "attn_kv_b.weight")) return Category::attn_kv_b;
    if (has(n, "attn_v.weight")) return Category::attn_v;
    if (has(n, "attn_k.weight")) return Category::attn_k;
    if (has(n, "attn_q.weight")) return Category::attn_q;
    if (has(n, "attn_output.weight")) return Category::attn_output;
    if (has(n, "ffn_up")) return Category::ffn_up;
    if (has(n, "ffn_gate")) return Category::ffn_gate;
    if (has(n, "ffn_down")) return Category::ffn_down;
    return Category::other;
}

inline bool is_attn_v(Category c) { return c == Category::attn_v || c == Category::attn_qkv || c == Category::attn_kv_b; }

// tensor_allows_quantization, the parts that can apply to Gemma-family names
inline bool allows_quantization(const RecipeTensor& t) {
    if (t.ne.size() < 2) return false;
    const std::string& n = t.name;
    bool q = n.size() >= 6 && n.compare(n.size() - 6, 6, "weight") == 0;
    for (const char* p : {"_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
                          "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "attn_rel_b.weight",
                          ".position_embd", ".rel_pos", ".patch_embd", ".patch_merger"})
        q = q && !has(n, p);
    q = q && n != "position_embd.weight" && n != "token_types.weight";
    return q;
}

inline bool use_more_bits(int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

inline bool is_quantized(GgmlType t) { return type_info(t).block_size > 1; }

// tensor_type_fallback: rows that are not whole blocks of the chosen type
inline GgmlType fallback(const RecipeTensor& t, GgmlType target) {
    const uint64_t ncols = t.ne[0];
    const uint32_t bs = type_info(target).block_size;
    if (ncols % bs == 0) return target;
    GgmlType r = target;
    switch (target) {
        case GgmlType::Q2_K: case GgmlType::Q3_K: r = GgmlType::Q4_0; break;
        case GgmlType::Q4_K: r = GgmlType::Q5_0; break;
        case GgmlType::Q5_K: r = GgmlType::Q5_1; break;
        case GgmlType::Q6_K: r = GgmlType::Q8_0; break;
        default:
            if (bs > 32) fail_input("no fallback type for " + type_display_name(target) + " on tensor " + t.name);
    }
    if (ncols % type_info(r).block_size != 0) r = GgmlType::F16;
    return r;
}

}  // namespace recipe_detail

// Chooses every tensor's type for one recipe. `tensors` must be in llama-quantize's processing
// order (see llama_quantize_order): the attn_v / ffn_down counters depend on it.
inline std::vector<GgmlType> choose_tensor_types(const std::vector<RecipeTensor>& tensors, const QuantRecipe& recipe,
                                                 uint32_t n_layer, uint32_t n_head, uint32_t n_head_kv,
                                                 const TypeOverrides& ov = {}) {
    using namespace recipe_detail;
    const uint32_t ft = recipe.ftype;
    enum : uint32_t { Q4_0 = 2, Q8_0 = 7, Q5_0 = 8, Q2_K = 10, Q3_K_S = 11, Q3_K_M = 12, Q3_K_L = 13, Q4_K_S = 14, Q4_K_M = 15, Q5_K_S = 16, Q5_K_M = 17 };
    const uint32_t n_gqa = n_head_kv ? n_head / n_head_kv : 0;
    std::vector<std::pair<std::regex, GgmlType>> patterns;
    for (const auto& [p, t] : ov.tensor_types) {
        try {
            patterns.emplace_back(std::regex(p), t);
        } catch (const std::regex_error&) {
            fail(ErrorKind::usage, "--tensor-type: '" + p + "' is not a valid regular expression");
        }
    }
    bool tied = true;
    int n_attention_wv = 0;
    for (const auto& t : tensors) {
        const Category c = category_of(t.name);
        if (is_attn_v(c)) ++n_attention_wv;
        if (c == Category::output) tied = false;
    }
    int i_attention_wv = 0, i_ffn_down = 0, i_ffn_gate = 0, i_ffn_up = 0;
    const int n_ffn = static_cast<int>(n_layer);

    std::vector<GgmlType> out;
    for (const auto& t : tensors) {
        if (!allows_quantization(t)) {
            out.push_back(t.input_type);
            continue;
        }
        const Category cat = category_of(t.name);
        if (ov.token_embedding_type && cat == Category::token_embd) {
            // per_layer_token_embd follows --token-embedding-type unless a --tensor-type pattern
            // names it (llama-quant.cpp llama_tensor_get_type: it is a separate, large table)
            bool named = false;
            if (t.name == "per_layer_token_embd.weight")
                for (const auto& pr : patterns) named = named || std::regex_search(t.name, pr.first);
            if (!named) {
                out.push_back(*ov.token_embedding_type);
                continue;
            }
        }
        if (ov.output_tensor_type && cat == Category::output) {
            out.push_back(*ov.output_tensor_type);
            continue;
        }
        GgmlType nt = recipe.base;
        bool manual = false;
        for (const auto& [re, type] : patterns)
            if (std::regex_search(t.name, re)) {
                nt = type;
                manual = true;
                break;
            }
        if (!manual) {
            if (cat == Category::output || (tied && cat == Category::token_embd)) {
                if (ov.output_tensor_type) nt = *ov.output_tensor_type;
                else if (t.ne[0] % type_info(nt).block_size != 0) nt = GgmlType::Q8_0;
                else if (nt != GgmlType::Q8_0) nt = GgmlType::Q6_K;
            } else if (cat == Category::token_embd) {
                // only the IQ / ternary recipes change an untied embedding
            } else if (is_attn_v(cat)) {
                if (ft == Q2_K) nt = n_gqa >= 4 ? GgmlType::Q4_K : GgmlType::Q3_K;
                else if (ft == Q3_K_M) nt = i_attention_wv < 2 ? GgmlType::Q5_K : GgmlType::Q4_K;
                else if (ft == Q3_K_L) nt = GgmlType::Q5_K;
                else if ((ft == Q4_K_M || ft == Q5_K_M) && use_more_bits(i_attention_wv, n_attention_wv)) nt = GgmlType::Q6_K;
                else if (ft == Q4_K_S && i_attention_wv < 4) nt = GgmlType::Q5_K;
                ++i_attention_wv;
            } else if (cat == Category::ffn_down) {
                const int i_layer = i_ffn_down, n = n_ffn;
                if (ft == Q2_K) nt = GgmlType::Q3_K;
                else if (ft == Q3_K_M) nt = i_layer < n / 16 ? GgmlType::Q5_K : GgmlType::Q4_K;
                else if (ft == Q3_K_L) nt = GgmlType::Q5_K;
                else if (ft == Q4_K_M) { if (use_more_bits(i_layer, n)) nt = GgmlType::Q6_K; }
                else if (ft == Q5_K_M && use_more_bits(i_layer, n)) nt = GgmlType::Q6_K;
                else if (ft == Q4_K_S && i_layer < n / 8) nt = GgmlType::Q5_K;
                else if ((ft == Q4_0 || ft == Q5_0) && ov.has_imatrix && i_layer < n / 8)
                    nt = ft == Q4_0 ? GgmlType::Q4_1 : GgmlType::Q5_1;
                ++i_ffn_down;
            } else if (cat == Category::attn_output) {
                if (ft == Q2_K) nt = GgmlType::Q3_K;
                else if (ft == Q3_K_M) nt = GgmlType::Q4_K;
                else if (ft == Q3_K_L) nt = GgmlType::Q5_K;
            } else if (cat == Category::ffn_gate) {
                ++i_ffn_gate;
            } else if (cat == Category::ffn_up) {
                ++i_ffn_up;
            }
            (void)Q8_0; (void)Q3_K_S; (void)Q5_K_S;
        }
        if (is_quantized(nt)) nt = fallback(t, nt);
        out.push_back(nt);
    }
    return out;
}

// llama_model_loader's weight_name_comparer: tensors outside blocks first, then by block number,
// each group by name.
inline bool llama_quantize_order(const std::string& a, const std::string& b) {
    auto layer = [](const std::string& s) {
        int l = -1;
        std::sscanf(s.c_str(), "blk.%d.", &l);
        return l;
    };
    const int la = layer(a), lb = layer(b);
    if (la != lb) return la < lb;
    return a < b;
}

}  // namespace cmf
