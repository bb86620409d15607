// The model card's share of a GGUF's general.* KVs, as llama.cpp's gguf-py takes it
// (gguf/metadata.py: Metadata.load -> apply_metadata_heuristic "Model Card Heuristics", then
// set_gguf_meta_model; gguf_writer.py for how each value is written).
//
// Facts this header follows (metadata.py / gguf_writer.py of llama.cpp v0.5.0):
//  - The card (README.md front matter, format/yaml_front_matter.h) is read from the directory
//    the converter was given: the checkpoint for a model and for its mmproj (MmprojModel uses
//    the same ModelBase.prepare_metadata), the adapter directory for convert_lora_to_gguf.py
//    (LoraModel sets dir_model_card = dir_lora_model).
//  - It is applied before config.json `_name_or_path` and the directory name, which only fill
//    what is still None: a card value, even an empty one, wins.
//  - A field takes the first of its card keys whose value is not null:
//      name <- name, model_name               author <- author, model_author, model_creator
//      version <- version, model_version      organization <- organization, model_organization
//      description <- description, model_description      finetune <- finetune, model_finetune
//      basename <- basename, model_basename, model_type   size_label <- size_label, model_size_label
//      source.url/doi/uuid/repo_url <- url/doi/uuid/repo_url, then model_url/...  (general.url,
//      .doi, .uuid, .repo_url come only from a --metadata file, which cmf does not take)
//      license, license.name, license.link <- license, license_name, license_link
//  - base models <- the value of the first PRESENT key of base_model, base_models,
//    base_model_sources (a null value still writes general.base_model.count = 0); datasets
//    likewise from datasets, dataset, dataset_sources. A string entry "org/name" gives name
//    (id_to_title of the name), organization (id_to_title of org), version (from the name's
//    parts) and repo_url https://huggingface.co/org/name; an http(s):// or ssh:// entry is the
//    repo_url, plus name/organization/version when it is https?://huggingface.co/ORG/NAME; a
//    mapping entry is used as it is; any other entry is an empty one (still counted).
//  - tags <- tags then pipeline_tag; languages <- languages then language: a string is one
//    element, a list adds its elements, anything else adds nothing.
//  - Written by set_gguf_meta_model in this order: name, author, version, organization,
//    finetune, basename, description, quantized_by, size_label, license, license.name,
//    license.link, url, doi, uuid, repo_url, source.url, source.doi, source.uuid,
//    source.repo_url, base_model.count + per entry name, author, version, organization,
//    description, url, doi, uuid, repo_url; dataset.count + the same per entry; tags; languages.
//  - add_string skips a falsy value ('' null 0 false [] {}) and cannot write any other non-text
//    value (the converter stops); a license list is joined with ','; tags and languages are
//    GGUF arrays typed by their first element (str, float, bool, int -> int32) that must all
//    share it, and an empty list is not written.
// Where the converter would stop, cmf::Error (kind input) names README.md, the line and the key.
#pragma once

#include <nlohmann/json.hpp>

#include <climits>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cmf/arch/model_name.h"
#include "cmf/core/error.h"
#include "cmf/format/gguf.h"
#include "cmf/format/yaml_front_matter.h"

namespace cmf {

// A model card larger than this is refused rather than read into memory (Hugging Face cards
// are kilobytes; the converter itself reads any size).
inline constexpr uint64_t kMaxModelCardBytes = 64ull << 20;

// README.md of a checkpoint or adapter directory, and its front matter.
struct ModelCard {
    fs::path path;             // DIR/README.md
    yaml::FrontMatter front;   // front.present is false without README.md or front matter

    std::string where(const std::string& key) const {
        auto it = front.key_lines.find(key);
        return path.string() + (it == front.key_lines.end() ? std::string() : ":" + std::to_string(it->second));
    }
};

// A card from its text (tests, and read_model_card below).
inline ModelCard parse_model_card(std::string_view text, const fs::path& path) {
    ModelCard card;
    card.path = path;
    card.front = yaml::parse_front_matter(text, path.string());
    return card;
}

inline ModelCard read_model_card(const fs::path& dir) {
    ModelCard card;
    card.path = dir / "README.md";
    if (!fs::is_regular_file(card.path)) return card;
    std::error_code ec;
    const uint64_t size = fs::file_size(card.path, ec);
    if (ec) fail_io(card.path.string() + ": " + ec.message());
    if (size > kMaxModelCardBytes)
        fail_input(card.path.string() + ": model card of " + std::to_string(size) + " bytes is larger than cmf reads (" +
                   std::to_string(kMaxModelCardBytes >> 20) + " MiB)");
    std::ifstream f(card.path, std::ios::binary);
    if (!f) fail_io(card.path.string() + ": cannot open the model card");
    std::ostringstream text;
    text << f.rdbuf();
    if (f.bad()) fail_io(card.path.string() + ": cannot read the model card");
    return parse_model_card(text.str(), card.path);
}

// A field's value as the card gives it (any YAML type), and the card key it came from.
struct CardField {
    nlohmann::json value;
    std::string key;
};

struct CardMetadata {
    std::optional<CardField> name, author, version, organization, description, finetune, basename, size_label, source_url,
        source_doi, source_uuid, source_repo_url, license, license_name, license_link;
    std::optional<std::vector<nlohmann::json>> base_models, datasets;  // a mapping per entry
    std::string base_models_key, datasets_key;
    std::vector<nlohmann::json> tags, languages;
    std::string tags_key, languages_key;  // the last card key that added elements
};

namespace card_detail {

using json = nlohmann::json;

// Python truthiness, which add_string / add_array test before writing.
inline bool py_truthy(const json& v) {
    switch (v.type()) {
        case json::value_t::null: return false;
        case json::value_t::boolean: return v.get<bool>();
        case json::value_t::number_integer: return v.get<int64_t>() != 0;
        case json::value_t::number_unsigned: return v.get<uint64_t>() != 0;
        case json::value_t::number_float: return v.get<double>() != 0.0;
        case json::value_t::string: return !v.get_ref<const std::string&>().empty();
        case json::value_t::array: case json::value_t::object: return !v.empty();
        default: return true;  // a date, an integer past 64 bits
    }
}

inline std::string py_kind(const json& v) {
    switch (v.type()) {
        case json::value_t::string: return "text";
        case json::value_t::null: return "null";
        case json::value_t::boolean: return "a boolean";
        case json::value_t::number_integer: case json::value_t::number_unsigned: return "an integer";
        case json::value_t::number_float: return "a number";
        case json::value_t::array: return "a list";
        case json::value_t::object: return "a mapping";
        case json::value_t::binary: return "a date or a large integer";
        default: return "a value";
    }
}

[[noreturn]] inline void not_writable(const ModelCard& card, const std::string& card_key, const std::string& what,
                                      const std::string& gguf_key) {
    fail_input(card.where(card_key) + ": model card '" + card_key + "' is " + what + ", which llama.cpp's converter cannot write as " +
               gguf_key + "; make it text (quote it)");
}

inline std::string checked_text(const ModelCard& card, const std::string& card_key, const std::string& s, const std::string& gguf_key) {
    // an escape such as "\ud800" makes a Python str that has no UTF-8 form
    if (!yaml::detail::valid_utf8(s)) not_writable(card, card_key, "text with a lone surrogate escape", gguf_key);
    return s;
}

// Metadata.get_model_id_components + id_to_title for a base model or dataset entry.
inline json entry_from_id(const std::string& id, int64_t total_params) {
    json e = json::object();
    auto components = [&](const std::string& model_id, bool with_repo_url) {
        const ModelNameParts c = model_id_components(model_id, total_params);
        if (c.name) e["name"] = id_to_title(*c.name);
        if (c.organization) e["organization"] = id_to_title(*c.organization);
        if (c.version) e["version"] = *c.version;
        if (with_repo_url && c.organization && c.name) e["repo_url"] = "https://huggingface.co/" + *c.organization + "/" + *c.name;
    };
    const std::string_view v = id;
    if (v.starts_with("http://") || v.starts_with("https://") || v.starts_with("ssh://")) {
        e["repo_url"] = id;
        // re.match(r"https?://huggingface.co/([^/]+/[^/]+)$"): '.' is any character but a line
        // break, [^/] takes line breaks, and '$' before a final line break changes nothing here
        if (v.find("huggingface.co") != std::string_view::npos) {
            std::string_view rest = v.substr(v.starts_with("https://") ? 8 : v.starts_with("http://") ? 7 : v.size());
            if (rest.size() > 15 && rest.substr(0, 11) == "huggingface" && rest[11] != '\n' && rest.substr(12, 3) == "co/") {
                const std::string_view group = rest.substr(15);
                const size_t slash = group.find('/');
                if (slash != std::string_view::npos && slash > 0 && slash + 1 < group.size() &&
                    group.find('/', slash + 1) == std::string_view::npos)
                    components(std::string(group), false);
            }
        }
    } else {
        components(id, true);
    }
    return e;
}

// The entries of base_model / datasets: a string is one entry, a list its entries.
inline std::vector<json> entries(const json& value, int64_t total_params) {
    std::vector<json> ids, out;
    if (value.is_string()) ids.push_back(value);
    else if (value.is_array()) ids.assign(value.begin(), value.end());
    for (const auto& id : ids) {
        if (id.is_string()) out.push_back(entry_from_id(id.get<std::string>(), total_params));
        else if (id.is_object()) out.push_back(id);
        else out.push_back(json::object());  // logger.error(... not in a known format), still counted
    }
    return out;
}

}  // namespace card_detail

// apply_metadata_heuristic's model-card part. total_params: gguf-py's count (negative for an
// adapter), which decides whether "4b" in an id is a size or a context length.
inline CardMetadata card_metadata(const ModelCard& card, int64_t total_params) {
    using nlohmann::json;
    CardMetadata m;
    if (!card.front.present) return m;
    const json& c = card.front.data;
    auto first = [&](std::optional<CardField>& field, std::initializer_list<const char*> keys) {
        for (const char* k : keys)
            if (auto it = c.find(k); it != c.end() && !it->is_null()) {
                field = CardField{*it, k};
                return;
            }
    };
    first(m.name, {"name", "model_name"});
    first(m.author, {"author", "model_author", "model_creator"});
    first(m.version, {"version", "model_version"});
    first(m.organization, {"organization", "model_organization"});
    first(m.description, {"description", "model_description"});
    first(m.finetune, {"finetune", "model_finetune"});
    first(m.basename, {"basename", "model_basename", "model_type"});
    first(m.size_label, {"size_label", "model_size_label"});
    first(m.source_url, {"url", "model_url"});
    first(m.source_doi, {"doi", "model_doi"});
    first(m.source_uuid, {"uuid", "model_uuid"});
    first(m.source_repo_url, {"repo_url", "model_repo_url"});
    first(m.license, {"license"});
    first(m.license_name, {"license_name"});
    first(m.license_link, {"license_link"});

    auto present = [&](std::initializer_list<const char*> keys, std::string& which) -> const json* {
        for (const char* k : keys)
            if (auto it = c.find(k); it != c.end()) {
                which = k;
                return &*it;
            }
        return nullptr;
    };
    if (const json* v = present({"base_model", "base_models", "base_model_sources"}, m.base_models_key))
        m.base_models = card_detail::entries(*v, total_params);
    if (const json* v = present({"datasets", "dataset", "dataset_sources"}, m.datasets_key))
        m.datasets = card_detail::entries(*v, total_params);

    auto append = [&](std::vector<json>& out, std::string& which, const char* key) {
        auto it = c.find(key);
        if (it == c.end()) return;
        if (it->is_string()) out.push_back(*it);
        else if (it->is_array()) out.insert(out.end(), it->begin(), it->end());
        else return;
        which = key;
    };
    append(m.tags, m.tags_key, "tags");
    append(m.tags, m.tags_key, "pipeline_tag");
    append(m.languages, m.languages_key, "languages");
    append(m.languages, m.languages_key, "language");
    return m;
}

// gguf_writer.add_string of a card value: text is written, a falsy value is not, anything else
// stops the converter (and cmf).
inline void put_card_text(GgufKvList& kv, const std::string& gguf_key, const nlohmann::json& v, const ModelCard& card,
                          const std::string& card_key) {
    if (!card_detail::py_truthy(v)) return;
    if (!v.is_string()) card_detail::not_writable(card, card_key, card_detail::py_kind(v), gguf_key);
    kv.set(gguf_key, GgufValue::string(card_detail::checked_text(card, card_key, v.get<std::string>(), gguf_key)));
}

namespace card_detail {

// gguf_writer.add_array: element type from the first element (GGUFValueType.get_type), all
// elements of that type.
inline void put_array(GgufKvList& kv, const std::string& gguf_key, const std::vector<json>& v, const ModelCard& card,
                      const std::string& card_key) {
    if (v.empty()) return;
    // 0 str, 1 float, 2 bool, 3 int, -1 what the converter cannot write (None, list, dict, a
    // date: get_type raises; an integer past 64 bits: struct.pack raises)
    auto kind = [](const json& e) -> int {
        if (e.is_string()) return 0;
        if (e.is_number_float()) return 1;
        if (e.is_boolean()) return 2;
        if (e.is_number_integer()) return 3;
        return -1;
    };
    const int k = kind(v[0]);
    if (v[0].is_array())  // gguf-py writes an array of arrays; GgufValue has no such value
        fail_input(card.where(card_key) + ": model card '" + card_key + "' is a list of lists, which cmf does not write as " + gguf_key +
                   "; flatten it");
    if (k < 0) not_writable(card, card_key, "a list holding " + py_kind(v[0]), gguf_key);
    for (const auto& e : v)
        if (kind(e) != k) not_writable(card, card_key, "a list mixing " + py_kind(v[0]) + " and " + py_kind(e), gguf_key);
    switch (k) {
        case 0: {
            std::vector<std::string> s;
            for (const auto& e : v) s.push_back(checked_text(card, card_key, e.get<std::string>(), gguf_key));
            kv.set(gguf_key, GgufValue::string_array(std::move(s)));
            return;
        }
        case 1: {
            std::vector<float> f;
            for (const auto& e : v) {
                const double d = e.get<double>();
                const float x = static_cast<float>(d);
                // struct.pack('<f') refuses a finite double that rounds to infinity
                if (std::isinf(x) && !std::isinf(d)) not_writable(card, card_key, "a list with a number beyond float32", gguf_key);
                f.push_back(x);
            }
            kv.set(gguf_key, GgufValue::f32_array(f));
            return;
        }
        case 2: {
            std::vector<uint8_t> b;
            for (const auto& e : v) b.push_back(e.get<bool>() ? 1 : 0);
            kv.set(gguf_key, GgufValue::array(GgufType::BOOL, b));
            return;
        }
        default: {
            std::vector<int32_t> n;
            for (const auto& e : v) {
                if (e.get<int64_t>() < INT32_MIN || e.get<int64_t>() > INT32_MAX)
                    not_writable(card, card_key, "a list with an integer outside int32", gguf_key);
                n.push_back(static_cast<int32_t>(e.get<int64_t>()));
            }
            kv.set(gguf_key, GgufValue::i32_array(n));
        }
    }
}

inline void put_entries(GgufKvList& kv, const char* prefix, const std::vector<json>& list, const ModelCard& card,
                        const std::string& card_key) {
    kv.set(std::string("general.") + prefix + ".count", GgufValue::u32(static_cast<uint32_t>(list.size())));
    for (size_t i = 0; i < list.size(); ++i)
        for (const char* f : {"name", "author", "version", "organization", "description", "url", "doi", "uuid", "repo_url"})
            if (auto it = list[i].find(f); it != list[i].end())
                put_card_text(kv, std::string("general.") + prefix + "." + std::to_string(i) + "." + f, *it, card, card_key);
}

}  // namespace card_detail

// set_gguf_meta_model from general.license on (the name fields come first, in general_kv.h).
inline void add_card_kvs(GgufKvList& kv, const CardMetadata& m, const ModelCard& card) {
    using nlohmann::json;
    if (m.license) {
        if (m.license->value.is_array()) {
            std::string joined;  // ",".join(license)
            for (size_t i = 0; i < m.license->value.size(); ++i) {
                const json& e = m.license->value[i];
                if (!e.is_string()) card_detail::not_writable(card, "license", "a list holding " + card_detail::py_kind(e), "general.license");
                if (i) joined += ',';
                joined += e.get<std::string>();
            }
            put_card_text(kv, "general.license", joined, card, "license");
        } else {
            put_card_text(kv, "general.license", m.license->value, card, "license");
        }
    }
    if (m.license_name) put_card_text(kv, "general.license.name", m.license_name->value, card, m.license_name->key);
    if (m.license_link) put_card_text(kv, "general.license.link", m.license_link->value, card, m.license_link->key);
    if (m.source_url) put_card_text(kv, "general.source.url", m.source_url->value, card, m.source_url->key);
    if (m.source_doi) put_card_text(kv, "general.source.doi", m.source_doi->value, card, m.source_doi->key);
    if (m.source_uuid) put_card_text(kv, "general.source.uuid", m.source_uuid->value, card, m.source_uuid->key);
    if (m.source_repo_url) put_card_text(kv, "general.source.repo_url", m.source_repo_url->value, card, m.source_repo_url->key);
    if (m.base_models) card_detail::put_entries(kv, "base_model", *m.base_models, card, m.base_models_key);
    if (m.datasets) card_detail::put_entries(kv, "dataset", *m.datasets, card, m.datasets_key);
    card_detail::put_array(kv, "general.tags", m.tags, card, m.tags_key);
    card_detail::put_array(kv, "general.languages", m.languages, card, m.languages_key);
}

}  // namespace cmf
