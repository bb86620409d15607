// The general.* KVs every GGUF starts with, in gguf-py's order (GGUFWriter adds the architecture,
// set_type the file kind, Metadata.set_gguf_meta_model the sampling defaults and the names).
#pragma once

#include <filesystem>
#include <string>

#include "cmf/arch/hf_config.h"
#include "cmf/arch/model_name.h"
#include "cmf/format/gguf.h"

namespace cmf {

struct GeneralInfo {
    std::string architecture;   // "gemma3", "clip"
    std::string type;           // "model", "mmproj"
    ModelNameParts name;
    uint64_t n_params = 0;      // elements of every tensor written (the size label's basis)
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

inline void add_general_kvs(GgufKvList& kv, const GeneralInfo& g, const fs::path& dir, bool with_size_label) {
    kv.set("general.architecture", GgufValue::string(g.architecture));
    kv.set("general.type", GgufValue::string(g.type));
    add_sampling_kvs(kv, dir);
    kv.set("general.name", GgufValue::string(g.name.name.value_or("model")));
    if (g.name.version) kv.set("general.version", GgufValue::string(*g.name.version));
    if (g.name.organization) kv.set("general.organization", GgufValue::string(*g.name.organization));
    if (g.name.finetune) kv.set("general.finetune", GgufValue::string(*g.name.finetune));
    if (g.name.basename) kv.set("general.basename", GgufValue::string(*g.name.basename));
    // a size label from the name wins; else one computed from the parameter count
    if (g.name.size_label) kv.set("general.size_label", GgufValue::string(*g.name.size_label));
    else if (with_size_label && g.n_params > 0) kv.set("general.size_label", GgufValue::string(size_label_for(g.n_params)));
}

}  // namespace cmf
