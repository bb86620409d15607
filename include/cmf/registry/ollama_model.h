// An Ollama model as blobs: the layers (model GGUF, projector, template, system, licenses,
// params), the config blob and the manifest that names them by digest (ollama manifest/,
// types/model/config.go, server/create.go; research/ollama.md sections 3 and 5).
//
// Byte forms, because the digests are the identity of a model:
//   - params, config: Go json.Encoder output: compact, HTML-escaped ('<' -> \u003c), keys of a
//     map sorted, struct fields in declaration order, followed by one '\n';
//   - manifest: compact, fields schemaVersion, mediaType, config, layers; layer fields
//     mediaType, digest, size. Written to the store with a trailing '\n' (ollama create), sent
//     to a registry without it (json.Marshal in PushModel);
//   - template, system, license: the raw UTF-8 text, nothing added.
// The same inputs give the same bytes, hence the same digests.
#pragma once

#include <openssl/evp.h>

#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmf/arch/registry.h"
#include "cmf/core/digest.h"
#include "cmf/core/error.h"
#include "cmf/format/gguf.h"

namespace cmf::ollama {

namespace fs = std::filesystem;

inline constexpr const char* kMediaModel = "application/vnd.ollama.image.model";
inline constexpr const char* kMediaProjector = "application/vnd.ollama.image.projector";
inline constexpr const char* kMediaAdapter = "application/vnd.ollama.image.adapter";
inline constexpr const char* kMediaTemplate = "application/vnd.ollama.image.template";
inline constexpr const char* kMediaSystem = "application/vnd.ollama.image.system";
inline constexpr const char* kMediaParams = "application/vnd.ollama.image.params";
inline constexpr const char* kMediaLicense = "application/vnd.ollama.image.license";
inline constexpr const char* kMediaConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr const char* kMediaManifest = "application/vnd.docker.distribution.manifest.v2+json";

// The family's Ollama defaults (arch/<family>.h OllamaSpec) by GGUF general.architecture: the
// turn template, the params and, for families Ollama renders natively, its renderer/parser names.
// Unknown architectures get none (the user supplies them).
struct FamilyDefaults {
    std::string template_text;
    nlohmann::json params = nlohmann::json::object();
    std::string renderer, parser;
};
inline FamilyDefaults family_defaults(std::string_view gguf_architecture) {
    FamilyDefaults d;
    if (const arch::ArchSpec* s = arch::find_spec_by_gguf(gguf_architecture)) {
        d.template_text = std::string(s->ollama.template_text);
        d.params = s->ollama.params;
        d.renderer = std::string(s->ollama.renderer);
        d.parser = std::string(s->ollama.parser);
    }
    return d;
}

// ---------------------------------------------------------------------------------------------
// Digests

inline std::string sha256_digest(std::string_view data) { return "sha256:" + sha256_hex(data); }

// "sha256:<hex>" of a file's bytes, and its size.
inline std::pair<std::string, uint64_t> sha256_file(const fs::path& p) {
    Digest h;
    const uint64_t n = read_file_chunks(p, [&](const char* b, size_t len) { h.update(b, len); });
    return {"sha256:" + h.hex(), n};
}

// ^sha256[:-][0-9a-fA-F]{64}$ (manifest/layer.go); returns the 64 hex characters.
inline std::optional<std::string> digest_hex(std::string_view d) {
    if (d.size() != 71 || d.substr(0, 6) != "sha256" || (d[6] != ':' && d[6] != '-')) return std::nullopt;
    for (char c : d.substr(7))
        if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
    return std::string(d.substr(7));
}

// ---------------------------------------------------------------------------------------------
// Go json.Encoder byte form

// nlohmann's compact dump with Go's default HTML escaping added. '<', '>', '&' and U+2028/9 can
// only occur inside JSON strings, so replacing them after the dump is exact.
template <class Json>
inline std::string go_json(const Json& j, bool trailing_newline) {
    const std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::string o;
    o.reserve(s.size() + 16);
    for (size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '<') o += "\\u003c";
        else if (c == '>') o += "\\u003e";
        else if (c == '&') o += "\\u0026";
        else if (c == '\xE2' && i + 2 < s.size() && s[i + 1] == '\x80' && (s[i + 2] == '\xA8' || s[i + 2] == '\xA9')) {
            o += s[i + 2] == '\xA8' ? "\\u2028" : "\\u2029";
            i += 2;
        } else o += c;
    }
    if (trailing_newline) o += '\n';
    return o;
}

// ---------------------------------------------------------------------------------------------
// Params (Modelfile PARAMETER; api.Options field types)

enum class ParamKind { integer, number, boolean, string_list };

inline const std::map<std::string, ParamKind>& param_kinds() {
    static const std::map<std::string, ParamKind> k = {
        {"num_keep", ParamKind::integer},        {"seed", ParamKind::integer},
        {"num_predict", ParamKind::integer},     {"top_k", ParamKind::integer},
        {"top_p", ParamKind::number},            {"min_p", ParamKind::number},
        {"typical_p", ParamKind::number},        {"repeat_last_n", ParamKind::integer},
        {"temperature", ParamKind::number},      {"repeat_penalty", ParamKind::number},
        {"presence_penalty", ParamKind::number}, {"frequency_penalty", ParamKind::number},
        {"stop", ParamKind::string_list},        {"num_ctx", ParamKind::integer},
        {"num_batch", ParamKind::integer},       {"num_gpu", ParamKind::integer},
        {"main_gpu", ParamKind::integer},        {"use_mmap", ParamKind::boolean},
        {"num_thread", ParamKind::integer},      {"draft_num_predict", ParamKind::integer},
    };
    return k;
}

// Sets one PARAMETER the way the ollama CLI types it; a repeated `stop` appends, other keys replace.
// `fresh_stop` tracks whether `stop` still holds the default list (the first user stop replaces it).
inline void set_param(nlohmann::json& params, const std::string& key, const std::string& value, bool* fresh_stop = nullptr) {
    auto it = param_kinds().find(key);
    if (it == param_kinds().end()) fail(ErrorKind::usage, "unknown Ollama parameter '" + key + "'");
    auto bad = [&](const char* what) { fail(ErrorKind::usage, "parameter " + key + ": '" + value + "' is not " + what); };
    switch (it->second) {
        case ParamKind::integer: {
            size_t pos = 0;
            long long v = 0;
            try {
                v = std::stoll(value, &pos);
            } catch (...) {
                bad("an integer");
            }
            if (pos != value.size()) bad("an integer");
            params[key] = v;
            break;
        }
        case ParamKind::number: {
            // api.Options holds float32; Go prints the shortest float32 form, which read back
            // as a double prints the same way
            size_t pos = 0;
            float v = 0;
            try {
                v = std::stof(value, &pos);
            } catch (...) {
                bad("a number");
            }
            if (pos != value.size()) bad("a number");
            char buf[64];
            auto r = std::to_chars(buf, buf + sizeof buf, v);
            params[key] = std::stod(std::string(buf, r.ptr));
            break;
        }
        case ParamKind::boolean:
            if (value == "true" || value == "1") params[key] = true;
            else if (value == "false" || value == "0") params[key] = false;
            else bad("true or false");
            break;
        case ParamKind::string_list:
            if (fresh_stop && *fresh_stop) {
                params[key] = nlohmann::json::array();
                *fresh_stop = false;
            }
            if (!params.contains(key) || !params[key].is_array()) params[key] = nlohmann::json::array();
            params[key].push_back(value);
            break;
    }
}

inline std::string params_bytes(const nlohmann::json& params) { return go_json(params, true); }

// ---------------------------------------------------------------------------------------------
// Config blob (types/model/config.go ConfigV2)

// format.HumanNumber: the parameter-size string of model_type.
inline std::string human_number(uint64_t b) {
    char s[64];
    auto fmt = [&](double v, const char* whole, const char* frac) {
        std::snprintf(s, sizeof s, v == static_cast<double>(static_cast<uint64_t>(v)) ? whole : frac, v);
        return std::string(s);
    };
    if (b >= 1000000000ull) return fmt(static_cast<double>(b) / 1e9, "%.0fB", "%.1fB");
    if (b >= 1000000ull) return fmt(static_cast<double>(b) / 1e6, "%.0fM", "%.2fM");
    if (b >= 1000ull) {
        std::snprintf(s, sizeof s, "%.0fK", static_cast<double>(b) / 1e3);
        return s;
    }
    return std::to_string(b);
}

// ggml FileType.String() of general.file_type (llama_ftype ids). Ollama only accepts values > 0,
// so 0 (F32) and a missing key read "unknown".
inline std::string file_type_string(std::optional<int64_t> ft) {
    static const std::map<int64_t, const char*> names = {
        {1, "F16"},     {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},    {8, "Q5_0"},     {9, "Q5_1"},     {10, "Q2_K"},
        {11, "Q3_K_S"}, {12, "Q3_K_M"}, {13, "Q3_K_L"}, {14, "Q4_K_S"}, {15, "Q4_K_M"},  {16, "Q5_K_S"},   {17, "Q5_K_M"},
        {18, "Q6_K"},   {19, "IQ2_XXS"}, {20, "IQ2_XS"}, {21, "Q2_K_S"}, {22, "IQ3_XS"}, {23, "IQ3_XXS"}, {24, "IQ1_S"},
        {25, "IQ4_NL"}, {26, "IQ3_S"},  {27, "IQ3_M"},  {28, "IQ2_S"},  {29, "IQ2_M"},   {30, "IQ4_XS"},  {31, "IQ1_M"},
        {32, "BF16"},   {36, "TQ1_0"},  {37, "TQ2_0"},  {38, "MXFP4_MOE"},
    };
    if (!ft || *ft <= 0) return "unknown";
    auto it = names.find(*ft);
    return it == names.end() ? "unknown" : it->second;
}

struct GgufSummary {
    std::string architecture;
    std::optional<int64_t> file_type;
    uint64_t parameter_count = 0;  // sum of all tensors' elements (what Ollama computes on load)
    bool has_vision = false;       // <arch>.vision.block_count: the single-file layout
    std::string name;              // general.name, for the license notice
    std::string type;              // general.type ("model", "mmproj")
};

inline GgufSummary summarize_gguf(const fs::path& p) {
    const GgufContents g = read_gguf(p);
    GgufSummary s;
    auto str = [&](const char* k) {
        const GgufValue* v = g.kv.get(k);
        return v && v->type == GgufType::STRING ? v->str : std::string();
    };
    s.architecture = str("general.architecture");
    s.name = str("general.name");
    s.type = str("general.type");
    if (const GgufValue* v = g.kv.get("general.file_type")) s.file_type = v->as_int();
    for (const auto& t : g.tensors) s.parameter_count += t.n_elements();
    s.has_vision = !s.architecture.empty() && g.kv.get(s.architecture + ".vision.block_count");
    return s;
}

// The config blob. `renderer`/`parser` name Ollama's built-in prompt renderer and output parser
// for families without a Go template (server/create.go sets them; empty: not written).
inline std::string config_bytes(const GgufSummary& model, const std::string& renderer = "", const std::string& parser = "") {
    nlohmann::ordered_json c;
    c["model_format"] = "gguf";
    c["model_family"] = model.architecture;
    c["model_families"] = nlohmann::ordered_json::array({model.architecture});
    c["model_type"] = human_number(model.parameter_count);
    c["file_type"] = file_type_string(model.file_type);
    if (!renderer.empty()) c["renderer"] = renderer;
    if (!parser.empty()) c["parser"] = parser;
    // hard-coded by Ollama whatever the host
    c["architecture"] = "amd64";
    c["os"] = "linux";
    return go_json(c, true);
}

// ---------------------------------------------------------------------------------------------
// Layers and manifest

// One blob: either the bytes of a file (`file`) or in memory (`data`).
struct OllamaBlob {
    std::string media_type;
    std::string digest;  // "sha256:<hex>"
    uint64_t size = 0;
    fs::path file;
    std::string data;

    static OllamaBlob from_bytes(std::string media_type, std::string data) {
        OllamaBlob b;
        b.media_type = std::move(media_type);
        b.digest = sha256_digest(data);
        b.size = data.size();
        b.data = std::move(data);
        return b;
    }
    static OllamaBlob from_file(std::string media_type, const fs::path& p) {
        OllamaBlob b;
        b.media_type = std::move(media_type);
        std::tie(b.digest, b.size) = sha256_file(p);
        b.file = p;
        return b;
    }
};

struct OllamaModel {
    std::vector<OllamaBlob> layers;
    OllamaBlob config;

    // Compact manifest JSON; `trailing_newline` for the local store (json.Encoder).
    std::string manifest_bytes(bool trailing_newline) const {
        auto desc = [](const OllamaBlob& b) {
            nlohmann::ordered_json d;
            d["mediaType"] = b.media_type;
            d["digest"] = b.digest;
            d["size"] = b.size;
            return d;
        };
        nlohmann::ordered_json m;
        m["schemaVersion"] = 2;
        m["mediaType"] = kMediaManifest;
        m["config"] = desc(config);
        m["layers"] = nlohmann::ordered_json::array();
        for (const auto& l : layers) m["layers"].push_back(desc(l));
        return go_json(m, trailing_newline);
    }
    // Blobs in push order: layers, then the config.
    std::vector<const OllamaBlob*> blobs() const {
        std::vector<const OllamaBlob*> v;
        for (const auto& l : layers) v.push_back(&l);
        v.push_back(&config);
        return v;
    }
};

// A parsed manifest (from a store or registry): descriptors only.
struct ManifestDesc {
    std::string media_type, digest;
    uint64_t size = 0;
};
struct ParsedManifest {
    ManifestDesc config;
    std::vector<ManifestDesc> layers;
};

inline ParsedManifest parse_manifest(const std::string& bytes, const std::string& where) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(bytes);
    } catch (const std::exception&) {
        fail(ErrorKind::remote, where + ": manifest is not valid JSON");
    }
    auto desc = [&](const nlohmann::json& d) {
        ManifestDesc m;
        if (!d.is_object() || !d.contains("digest") || !d["digest"].is_string() || !d.contains("size") || !d["size"].is_number_unsigned())
            fail(ErrorKind::remote, where + ": manifest has a malformed descriptor");
        m.digest = d["digest"].get<std::string>();
        if (!digest_hex(m.digest)) fail(ErrorKind::remote, where + ": manifest has a bad digest '" + m.digest.substr(0, 80) + "'");
        m.size = d["size"].get<uint64_t>();
        if (d.contains("mediaType") && d["mediaType"].is_string()) m.media_type = d["mediaType"].get<std::string>();
        return m;
    };
    if (!j.is_object() || !j.contains("config") || !j.contains("layers") || !j["layers"].is_array())
        fail(ErrorKind::remote, where + ": not an image manifest (no config or layers)");
    ParsedManifest p;
    p.config = desc(j["config"]);
    for (const auto& l : j["layers"]) p.layers.push_back(desc(l));
    return p;
}

// What goes into a model besides the GGUF.
struct AssembleOptions {
    fs::path model_gguf;
    std::optional<fs::path> projector_gguf;  // llama.cpp mmproj, when the vision tower is a separate file
    std::optional<fs::path> adapter_gguf;    // a GGUF LoRA adapter (general.type adapter): Modelfile ADAPTER
    std::optional<std::string> template_text;  // default: the family's (family_defaults)
    std::optional<std::string> system;
    std::optional<nlohmann::json> params;       // default: the family's
    std::vector<std::string> licenses;  // the base model's terms, in order
    bool derivative_notice = true;      // add the "modified, quantized derivative" notice
};

// The notice that this is a modified, quantized derivative (the Gemma Terms of Use ask modified
// files to carry a prominent notice that they were modified).
inline std::string derivative_notice_text(const GgufSummary& m) {
    const std::string base = m.name.empty() ? "the base model" : m.name;
    return "NOTICE: This model is a modified, quantized derivative of " + base +
           ". It was converted to GGUF and quantized (file type " + file_type_string(m.file_type) +
           ") by cmf (Cloud Model Factory); its weights differ from the original. Use of this model is "
           "subject to the license terms of the base model, included in this package.\n";
}

// Layer order of `ollama create`: model, projector, template, system, licenses, params. With
// ADAPTER (FROM base + ADAPTER file, server/create.go): the adapter follows the base's layers and
// the params layer is re-appended last, so it sits before params. Ollama itself checks the
// adapter only when it loads it (llama.cpp: general.type adapter, the base's architecture);
// cmf checks both here. The config blob is the base model's (Ollama >= 0.30 leaves it alone).
inline OllamaModel assemble_model(const AssembleOptions& o) {
    const GgufSummary ms = summarize_gguf(o.model_gguf);
    if (ms.architecture.empty()) fail_input(o.model_gguf.string() + ": GGUF has no general.architecture");
    if (ms.type == "mmproj" || ms.architecture == "clip")
        fail_input(o.model_gguf.string() + ": this is a projector (mmproj) file, not a model");
    OllamaModel m;
    m.layers.push_back(OllamaBlob::from_file(kMediaModel, o.model_gguf));
    if (o.projector_gguf) {
        if (ms.has_vision)
            fail_input(o.model_gguf.string() + " already holds the vision tower (single-file layout); no projector layer is needed");
        m.layers.push_back(OllamaBlob::from_file(kMediaProjector, *o.projector_gguf));
    }
    const FamilyDefaults fam = family_defaults(ms.architecture);
    const std::string& tmpl = o.template_text ? *o.template_text : fam.template_text;
    const nlohmann::json& params = o.params ? *o.params : fam.params;
    if (!tmpl.empty()) m.layers.push_back(OllamaBlob::from_bytes(kMediaTemplate, tmpl));
    if (o.system && !o.system->empty()) m.layers.push_back(OllamaBlob::from_bytes(kMediaSystem, *o.system));
    for (const auto& l : o.licenses) m.layers.push_back(OllamaBlob::from_bytes(kMediaLicense, l));
    if (o.derivative_notice) m.layers.push_back(OllamaBlob::from_bytes(kMediaLicense, derivative_notice_text(ms)));
    if (o.adapter_gguf) {
        const GgufSummary as = summarize_gguf(*o.adapter_gguf);
        if (as.type != "adapter")
            fail_input(o.adapter_gguf->string() + ": not a GGUF LoRA adapter (general.type is '" + as.type +
                       "'); write one with cmf quantize ADAPTER_DIR --base BASE_DIR");
        if (as.architecture != ms.architecture)
            fail_input(o.adapter_gguf->string() + ": adapter for " + as.architecture + ", but the model is " + ms.architecture);
        m.layers.push_back(OllamaBlob::from_file(kMediaAdapter, *o.adapter_gguf));
    }
    if (!params.is_null() && !params.empty()) m.layers.push_back(OllamaBlob::from_bytes(kMediaParams, params_bytes(params)));
    m.config = OllamaBlob::from_bytes(kMediaConfig, config_bytes(ms, fam.renderer, fam.parser));
    return m;
}

}  // namespace cmf::ollama
