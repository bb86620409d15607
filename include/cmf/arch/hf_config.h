// Reading a Hugging Face checkpoint's JSON configuration files.
//
// config.json comes in two forms for Gemma 3: the older one (`rope_scaling`,
// `sliding_window_pattern`, `rope_local_base_freq`, `torch_dtype`) and the transformers-v5 one
// (`rope_parameters` keyed by attention type, `layer_types`, `dtype`). Both normalize to the same
// hparams here, the way llama.cpp's TextModel does it: text_config merged over the top level, and
// the rope parameters mirrored into one `rope_parameters` object.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cmf/core/error.h"

namespace cmf {

namespace fs = std::filesystem;
using nlohmann::json;

inline json read_json_file(const fs::path& p) {
    std::ifstream in(p);
    if (!in) fail_io("cannot read " + p.string());
    try {
        return json::parse(in);
    } catch (const json::exception& e) {
        fail_input(p.string() + ": not valid JSON (" + std::string(e.what()).substr(0, 120) + ")");
    }
}

inline std::optional<json> read_json_if_exists(const fs::path& p) {
    if (!fs::is_regular_file(p)) return std::nullopt;
    return read_json_file(p);
}

// First of `keys` present (and not null) in `obj`, like the converter's find_hparam(optional=True).
inline const json* find_key(const json& obj, std::initializer_list<const char*> keys) {
    for (const char* k : keys) {
        auto it = obj.find(k);
        if (it != obj.end() && !it->is_null()) return &*it;
    }
    return nullptr;
}

struct HfConfig {
    fs::path dir;
    json raw;              // config.json as written
    json text;             // top level merged with text_config (the converter's TextModel hparams)
    json rope_parameters;  // normalized: {rope_theta?, rope_type?, factor?, full_attention?, sliding_attention?}
    std::optional<json> vision;  // vision_config
    std::string architecture;    // architectures[0]

    bool has_vision() const { return vision.has_value(); }
};

inline HfConfig load_hf_config(const fs::path& dir) {
    HfConfig c;
    c.dir = dir;
    const fs::path p = dir / "config.json";
    if (!fs::is_directory(dir)) fail_input(dir.string() + ": not a directory");
    if (!fs::is_regular_file(p)) fail_input(dir.string() + ": no config.json (is this a Hugging Face checkpoint directory?)");
    c.raw = read_json_file(p);
    if (!c.raw.is_object()) fail_input(p.string() + ": not a JSON object");
    auto arch = c.raw.find("architectures");
    if (arch == c.raw.end() || !arch->is_array() || arch->empty() || !(*arch)[0].is_string())
        fail_input(p.string() + ": no \"architectures\" list");
    c.architecture = (*arch)[0].get<std::string>();

    c.text = c.raw;
    if (auto tc = c.raw.find("text_config"); tc != c.raw.end() && tc->is_object())
        for (auto it = tc->begin(); it != tc->end(); ++it) c.text[it.key()] = it.value();
    if (auto vc = c.raw.find("vision_config"); vc != c.raw.end() && vc->is_object()) c.vision = *vc;

    // rope_parameters (v5) or rope_scaling (older), then the older flat keys mirrored in
    json rp = json::object();
    if (const json* r = find_key(c.text, {"rope_parameters"}); r && r->is_object()) rp = *r;
    else if (const json* s = find_key(c.text, {"rope_scaling"}); s && s->is_object()) rp = *s;
    if (!rp.contains("full_attention") && !rp.contains("sliding_attention")) {
        if (const json* l = find_key(c.text, {"local_rope_theta", "rope_local_theta", "rope_theta_local", "swa_rope_theta",
                                              "rope_local_base_freq"}))
            rp["sliding_attention"] = json{{"rope_theta", *l}};
        if (!rp.contains("rope_theta"))
            if (const json* g = find_key(c.text, {"global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta",
                                                  "rotary_emb_base"}))
                rp["rope_theta"] = *g;
        if (!rp.contains("rope_type") && rp.contains("type")) rp["rope_type"] = rp["type"];
    }
    c.rope_parameters = rp;
    return c;
}

// Number helpers that name the file and key when config.json holds the wrong kind of value.
inline int64_t json_int(const json& v, const std::string& what) {
    if (v.is_number_integer() || v.is_number_unsigned()) return v.get<int64_t>();
    if (v.is_number_float()) {
        double d = v.get<double>();
        if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
    }
    fail_input("config.json: " + what + " must be an integer");
}
inline double json_number(const json& v, const std::string& what) {
    if (v.is_number()) return v.get<double>();
    fail_input("config.json: " + what + " must be a number");
}

}  // namespace cmf
