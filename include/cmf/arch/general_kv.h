// The general.* KVs every GGUF starts with, in gguf-py's order (GGUFWriter adds the architecture,
// set_type the file kind, Metadata.set_gguf_meta_model the sampling defaults, the names and the
// model card's license, base models, datasets, tags and languages: arch/card_metadata.h).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "cmf/arch/card_metadata.h"
#include "cmf/arch/hf_config.h"
#include "cmf/arch/model_name.h"
#include "cmf/format/gguf.h"

namespace cmf {

struct GeneralInfo {
    std::string architecture;   // "gemma3", "clip"
    std::string type;           // "model", "mmproj"
    ModelNameParts name;
    uint64_t n_params = 0;      // elements of every tensor written (the size label's basis)
    int64_t total_params = 0;   // gguf-py's total_params when not n_params: an adapter's is negative
};

// generation_config.json -> general.sampling.*; values of the wrong kind are ignored, as the
// converter only copies what is there.
inline void add_sampling_kvs(GgufKvList& kv, const fs::path& dir) {
    auto g = read_json_if_exists(dir / "generation_config.json");
    if (!g || !g->is_object()) return;
    auto str = [&](const char* k, const char* key) {
        if (auto it = g->find(k); it != g->end() && it->is_string()) kv.set(key, GgufValue::string(it->get<std::string>()));
    };
    auto i32 = [&](const char* k, const char* key) {
        if (auto it = g->find(k); it != g->end() && it->is_number_integer()) kv.set(key, GgufValue::i32(it->get<int32_t>()));
    };
    auto f32 = [&](std::initializer_list<const char*> ks, const char* key) {
        for (const char* k : ks)
            if (auto it = g->find(k); it != g->end() && it->is_number()) {
                kv.set(key, GgufValue::f32(static_cast<float>(it->get<double>())));
                return;
            }
    };
    str("sequence", "general.sampling.sequence");
    i32("top_k", "general.sampling.top_k");
    f32({"top_p"}, "general.sampling.top_p");
    f32({"min_p"}, "general.sampling.min_p");
    f32({"xtc_probability"}, "general.sampling.xtc_probability");
    f32({"xtc_threshold"}, "general.sampling.xtc_threshold");
    f32({"temperature"}, "general.sampling.temp");
    i32("penalty_last_n", "general.sampling.penalty_last_n");
    f32({"penalty_repeat", "repetition_penalty"}, "general.sampling.penalty_repeat");
    i32("mirostat", "general.sampling.mirostat");
    f32({"mirostat_tau"}, "general.sampling.mirostat_tau");
    f32({"mirostat_eta"}, "general.sampling.mirostat_eta");
}

// dir: where the converter reads README.md, config.json and generation_config.json (the
// checkpoint; for an adapter, the adapter's directory).
inline void add_general_kvs(GgufKvList& kv, const GeneralInfo& g, const fs::path& dir, bool with_size_label) {
    kv.set("general.architecture", GgufValue::string(g.architecture));
    kv.set("general.type", GgufValue::string(g.type));
    add_sampling_kvs(kv, dir);
    const ModelCard card = read_model_card(dir);
    const CardMetadata c = card_metadata(card, g.total_params != 0 ? g.total_params : static_cast<int64_t>(g.n_params));
    // the card is applied first and config.json / the directory name only fill what it leaves
    // None, so a card value, even one add_string then skips, replaces the derived one
    auto text = [&](const char* key, const std::optional<CardField>& from_card, const std::optional<std::string>& derived) {
        if (from_card) put_card_text(kv, key, from_card->value, card, from_card->key);
        else if (derived && !derived->empty()) kv.set(key, GgufValue::string(*derived));  // add_string skips ''
    };
    text("general.name", c.name, g.name.name.value_or("model"));
    text("general.author", c.author, std::nullopt);
    text("general.version", c.version, g.name.version);
    text("general.organization", c.organization, g.name.organization);
    text("general.finetune", c.finetune, g.name.finetune);
    text("general.basename", c.basename, g.name.basename);
    text("general.description", c.description, std::nullopt);
    // general.quantized_by comes only from a --metadata override file, which cmf does not take
    // a size label from the card, else from the name, else one computed from the parameter count
    std::optional<std::string> size = g.name.size_label;
    if (!size && with_size_label && g.n_params > 0) size = size_label_for(g.n_params);
    text("general.size_label", c.size_label, size);
    add_card_kvs(kv, c, card);
}

}  // namespace cmf
