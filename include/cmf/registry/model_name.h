// Ollama model names: `[scheme://]host/namespace/model:tag` (ollama types/model/name.go), and the
// factory's naming scheme `{prefix}-{family}-{size}-{variant}` (e.g. coheara-medgemma-4b-q8).
//
// Parsing (research/ollama.md section 8):
//   1. an optional "http://" or "https://" prefix is the scheme (default https);
//   2. if the last ':' comes after the last '/', what follows it is the tag (default "latest");
//   3. the rest is cut from the right at '/' into model, namespace (default "library") and
//      host (default "registry.ollama.ai"); an empty part is invalid.
// Every part starts with an ASCII letter, digit or '_' and continues with letters, digits, '_',
// '-' plus: host '.' ':' (1-350 chars), namespace nothing (1-80), model '.' (1-80), tag '.' (1-80).
#pragma once

#include <cctype>
#include <string>
#include <string_view>

#include "cmf/core/error.h"

namespace cmf::ollama {

inline constexpr std::string_view kDefaultHost = "registry.ollama.ai";
inline constexpr std::string_view kDefaultNamespace = "library";
inline constexpr std::string_view kDefaultTag = "latest";

enum class NamePart { host, ns, model, tag };

inline const char* name_part_label(NamePart p) {
    switch (p) {
        case NamePart::host: return "host";
        case NamePart::ns: return "namespace";
        case NamePart::model: return "model";
        case NamePart::tag: return "tag";
    }
    return "?";
}

// Why `s` is not a valid name part, or "" when it is.
inline std::string name_part_problem(NamePart p, std::string_view s) {
    const size_t max_len = p == NamePart::host ? 350 : 80;
    if (s.empty()) return std::string("the ") + name_part_label(p) + " is empty";
    if (s.size() > max_len)
        return std::string("the ") + name_part_label(p) + " is longer than " + std::to_string(max_len) + " characters";
    for (size_t i = 0; i < s.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0x80) return std::string("the ") + name_part_label(p) + " '" + std::string(s) + "' has a non-ASCII character";
        const bool base = std::isalnum(c) || c == '_';
        bool ok = base;
        if (i > 0 && !ok) {
            ok = c == '-' || (c == '.' && p != NamePart::ns) || (c == ':' && p == NamePart::host);
        }
        if (!ok) {
            std::string why = std::string("the ") + name_part_label(p) + " '" + std::string(s) + "' ";
            if (i == 0) return why + "must start with a letter, digit or '_'";
            return why + "may not contain '" + std::string(1, static_cast<char>(c)) + "' (allowed: letters, digits, '_', '-'" +
                   (p == NamePart::ns ? "" : p == NamePart::host ? ", '.', ':'" : ", '.'") + ")";
        }
    }
    return "";
}

struct ModelName {
    std::string scheme = "https";
    std::string host{kDefaultHost};
    std::string ns{kDefaultNamespace};
    std::string model;
    std::string tag{kDefaultTag};

    std::string repository() const { return ns + "/" + model; }  // as used in /v2/<repo>/...
    std::string base_url() const { return scheme + "://" + host; }
    std::string display() const { return host + "/" + ns + "/" + model + ":" + tag; }
    // Relative path of the manifest under <store>/manifests.
    std::string manifest_rel_path() const { return host + "/" + ns + "/" + model + "/" + tag; }
};

// Parses and validates a name; a bad name is a usage error naming the rule it breaks.
inline ModelName parse_model_name(std::string_view text) {
    ModelName n;
    const std::string original(text);
    auto bad = [&](const std::string& why) -> ModelName {
        fail(ErrorKind::usage, "invalid model name '" + original + "': " + why +
                                   " (form: [host/][namespace/]model[:tag], e.g. alice/coheara-medgemma-4b-q8:latest)");
    };
    if (text.substr(0, 7) == "http://") {
        n.scheme = "http";
        text.remove_prefix(7);
    } else if (text.substr(0, 8) == "https://") {
        text.remove_prefix(8);
    } else if (text.find("://") != std::string_view::npos) {
        return bad("only http:// and https:// are allowed as a scheme");
    }
    const size_t last_colon = text.rfind(':'), last_slash = text.rfind('/');
    if (last_colon != std::string_view::npos && (last_slash == std::string_view::npos || last_colon > last_slash)) {
        n.tag = std::string(text.substr(last_colon + 1));
        text = text.substr(0, last_colon);
        if (n.tag.empty()) return bad("the tag after ':' is empty");
    }
    // model, namespace, host from the right
    std::string parts[3];
    int count = 0;
    while (true) {
        const size_t s = text.rfind('/');
        if (count == 2) {
            parts[count++] = std::string(text);  // the host takes the rest (a '/' in it is invalid)
            break;
        }
        if (s == std::string_view::npos) {
            parts[count++] = std::string(text);
            break;
        }
        parts[count++] = std::string(text.substr(s + 1));
        text = text.substr(0, s);
    }
    n.model = parts[0];
    if (count >= 2) n.ns = parts[1];
    if (count >= 3) n.host = parts[2];
    const std::pair<NamePart, const std::string*> checks[] = {
        {NamePart::host, &n.host}, {NamePart::ns, &n.ns}, {NamePart::model, &n.model}, {NamePart::tag, &n.tag}};
    for (const auto& [p, s] : checks)
        if (auto why = name_part_problem(p, *s); !why.empty()) return bad(why);
    return n;
}

// The factory's short variant names: llama-quantize labels -> q8, q4, q4s; others lower-cased.
inline std::string short_variant_name(std::string label) {
    for (auto& c : label) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (label == "q8_0") return "q8";
    if (label == "q4_k_m") return "q4";
    if (label == "q4_k_s") return "q4s";
    return label;
}

// `{prefix}-{family}-{size}-{variant}`, lower case, checked as an Ollama model part.
inline std::string compose_model_name(const std::string& prefix, const std::string& family, const std::string& size,
                                      const std::string& variant) {
    std::string out;
    for (const std::string* s : {&prefix, &family, &size, &variant}) {
        if (s->empty()) continue;
        if (!out.empty()) out += '-';
        out += *s;
    }
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (auto why = name_part_problem(NamePart::model, out); !why.empty())
        fail(ErrorKind::usage, "cannot name the model '" + out + "' from prefix '" + prefix + "', family '" + family + "', size '" +
                                   size + "', variant '" + variant + "': " + why);
    return out;
}

}  // namespace cmf::ollama
