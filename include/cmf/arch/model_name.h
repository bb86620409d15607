// general.name / basename / version / size_label, derived the way llama.cpp's gguf-py does it
// (gguf/metadata.py `get_model_id_components`, `id_to_title`; gguf/utility.py
// `model_weight_count_rounded_notation`), so that our `general.*` KVs equal the converter's.
//
// The converter takes the model id from config.json `_name_or_path` when it looks like
// "org/name", else from the checkpoint directory name, and splits it at '-' into annotated parts.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace cmf {

struct ModelNameParts {
    std::optional<std::string> name, organization, basename, finetune, version, size_label;
};

namespace name_detail {

inline bool is_lower_word(const std::string& w) {
    // Python str.islower(): at least one cased char and no upper-case ones
    bool cased = false;
    for (unsigned char c : w) {
        if (c >= 'A' && c <= 'Z') return false;
        if (c >= 'a' && c <= 'z') cased = true;
    }
    return cased;
}

inline std::string title_word(const std::string& w) {
    // Python str.title(): upper-case a letter that follows a non-letter, lower-case the rest
    std::string o = w;
    bool prev_alpha = false;
    for (auto& c : o) {
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (alpha) c = static_cast<char>(prev_alpha ? std::tolower(c) : std::toupper(c));
        prev_alpha = alpha;
    }
    return o;
}

inline std::string trim(const std::string& s) {
    size_t b = s.find_first_not_of(" \t\n\r"), e = s.find_last_not_of(" \t\n\r");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

}  // namespace name_detail

// "tiny-mm-v5" -> "Tiny Mm v5": words become title case unless acronyms or version numbers.
inline std::string id_to_title(const std::string& id) {
    using namespace name_detail;
    std::string s = trim(id);
    for (auto& c : s)
        if (c == '-') c = ' ';
    static const std::regex version_like(R"(^(v\d+(?:\.\d+)*|\d.*)$)");
    std::string out;
    size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && s[i] == ' ') ++i;
        size_t j = i;
        while (j < s.size() && s[j] != ' ') ++j;
        if (j > i) {
            std::string w = s.substr(i, j - i);
            if (is_lower_word(w) && !std::regex_match(w, version_like)) w = title_word(w);
            if (!out.empty()) out += ' ';
            out += w;
        }
        i = j;
    }
    return out;
}

// gguf-py's get_model_id_components. total_params > 0 for a model (size labels far from the real
// parameter count are taken for context lengths).
inline ModelNameParts model_id_components(const std::string& model_id, int64_t total_params) {
    ModelNameParts r;
    if (model_id.find(' ') != std::string::npos) {
        r.name = model_id;
        return r;
    }
    std::string full = model_id;
    std::optional<std::string> org;
    if (auto p = model_id.find('/'); p != std::string::npos) {
        org = model_id.substr(0, p);
        full = model_id.substr(p + 1);
    }
    if (org && !org->empty() && (*org)[0] == '.') org.reset();

    std::vector<std::string> parts;
    {
        size_t i = 0;
        while (true) {
            size_t j = full.find('-', i);
            std::string p = full.substr(i, j == std::string::npos ? std::string::npos : j - i);
            if (!p.empty()) parts.push_back(p);
            if (j == std::string::npos) break;
            i = j + 1;
        }
    }
    std::vector<std::set<std::string>> types(parts.size());
    static const std::regex re_version(R"((v|iter)?\d+([.]\d+)*)", std::regex::icase);
    static const std::regex re_type(R"(i?q\d(_\w)*|b?fp?(16|32))", std::regex::icase);
    static const std::regex re_size(R"((([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl))", std::regex::icase);
    static const std::regex re_finetune(R"(chat|instruct|vision|lora)", std::regex::icase);

    for (size_t i = 0; i < parts.size(); ++i) {
        std::string part = parts[i];
        if (std::regex_match(part, re_version)) {
            types[i].insert("version");
        } else if (std::regex_match(part, re_type)) {
            types[i].insert("type");
            for (auto& c : parts[i]) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        } else if (i > 0 && std::regex_match(part, re_size)) {
            for (auto& c : part)
                if (c == '_') c = '.';
            if (std::isdigit(static_cast<unsigned char>(part.back())) && part.size() >= 2)
                part = part.substr(0, part.size() - 2) + "." + part.back() + part[part.size() - 2];
            if (part.size() > 1 && std::isdigit(static_cast<unsigned char>(part[part.size() - 2])))
                if (std::string("kmbt").find(part.back()) != std::string::npos)
                    part.back() = static_cast<char>(std::toupper(static_cast<unsigned char>(part.back())));
            if (total_params != 0) {
                const std::string scale = " KMBT";
                auto sp = scale.find(part.back());
                char* end = nullptr;
                std::string num = part.substr(0, part.size() - 1);
                double v = std::strtod(num.c_str(), &end);
                if (!num.empty() && end && *end == '\0') {
                    // Python: find() gives -1 when absent, pow(1000, -1) = 0.001
                    double label = v * std::pow(1000.0, sp == std::string::npos ? -1.0 : static_cast<double>(sp));
                    bool ctx = (total_params < 0 && label < static_cast<double>(std::llabs(total_params) / 8)) ||
                               (total_params > 0 && std::fabs(label - static_cast<double>(total_params)) >
                                                        static_cast<double>(7 * total_params / 8));
                    if (ctx) {
                        types[i].insert("finetune");
                        part.back() = static_cast<char>(std::tolower(static_cast<unsigned char>(part.back())));
                    }
                }
            }
            if (types[i].empty()) types[i].insert("size_label");
            parts[i] = part;
        } else if (i > 0 && std::regex_match(part, re_finetune)) {
            std::string low = part;
            for (auto& c : low) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            if (total_params < 0 && low == "lora") types[i].insert("type");
            else types[i].insert("finetune");
        }
    }
    // word-based size labels are dropped when a number-based one exists
    bool numeric_size = false;
    for (size_t i = 0; i < parts.size(); ++i)
        if (types[i].count("size_label"))
            for (char c : parts[i])
                if (std::isdigit(static_cast<unsigned char>(c))) numeric_size = true;
    if (numeric_size)
        for (size_t i = 0; i < parts.size(); ++i)
            if (types[i].count("size_label")) {
                bool all_alpha = true;
                for (char c : parts[i])
                    if (!std::isalpha(static_cast<unsigned char>(c))) all_alpha = false;
                if (all_alpha) types[i].erase("size_label");
            }
    bool at_start = true;
    for (size_t i = 0; i < parts.size(); ++i) {
        auto& t = types[i];
        if (at_start && ((t.empty() && std::isalpha(static_cast<unsigned char>(parts[i][0]))) || t.count("version"))) {
            t.insert("basename");
        } else {
            at_start = false;
            if (t.empty()) t.insert("finetune");
        }
    }
    for (size_t k = parts.size(); k-- > 0;) {
        if (types[k].count("basename") && types[k].size() > 1) types[k].erase("basename");
        else break;
    }
    auto join = [&](const char* tag, bool dedupe, bool skip_basename) -> std::optional<std::string> {
        std::string o;
        std::set<std::string> seen;
        for (size_t i = 0; i < parts.size(); ++i) {
            if (!types[i].count(tag)) continue;
            if (skip_basename && types[i].count("basename")) continue;
            if (dedupe && !seen.insert(parts[i]).second) continue;
            if (!o.empty()) o += '-';
            o += parts[i];
        }
        if (o.empty()) return std::nullopt;
        return o;
    };
    r.name = full;
    r.organization = org;
    r.basename = join("basename", false, false);
    r.size_label = join("size_label", true, false);
    r.finetune = join("finetune", false, false);
    r.version = join("version", false, true);
    if (!r.size_label && !r.finetune && !r.version) r.basename.reset();
    return r;
}

// "5.0M", "1.9M", "954M", "4.3B": two significant digits at least, as gguf-py prints them.
inline std::string size_label_for(uint64_t n_params) {
    double n = static_cast<double>(n_params);
    double scaled;
    char suffix;
    if (n > 1e12) { scaled = n * 1e-12; suffix = 'T'; }
    else if (n > 1e9) { scaled = n * 1e-9; suffix = 'B'; }
    else if (n > 1e6) { scaled = n * 1e-6; suffix = 'M'; }
    else { scaled = n * 1e-3; suffix = 'K'; }
    // Python: len(str(round(x)).lstrip('0')); round() is half-to-even like nearbyint
    char digits[64];
    std::snprintf(digits, sizeof digits, "%.0f", std::nearbyint(scaled));
    std::string d = digits;
    size_t nz = d.find_first_not_of('0');
    int len = nz == std::string::npos ? 0 : static_cast<int>(d.size() - nz);
    int fix = std::max(2 - len, 0);
    char out[64];
    std::snprintf(out, sizeof out, "%.*f%c", fix, scaled, suffix);
    return out;
}

// The converter's choice of model id: config.json `_name_or_path` if it is "name" or "org/name",
// then the directory name fills what is still missing.
inline ModelNameParts derive_model_name(const std::string& name_or_path, const std::string& dir_name, int64_t total_params) {
    ModelNameParts m;
    auto merge = [&](const std::string& id) {
        ModelNameParts c = model_id_components(id, total_params);
        if (!m.name && c.name) m.name = id_to_title(*c.name);
        if (!m.organization && c.organization) m.organization = id_to_title(*c.organization);
        if (!m.basename) m.basename = c.basename;
        if (!m.finetune) m.finetune = c.finetune;
        if (!m.version) m.version = c.version;
        if (!m.size_label) m.size_label = c.size_label;
    };
    if (!name_or_path.empty() && std::count(name_or_path.begin(), name_or_path.end(), '/') <= 1) merge(name_or_path);
    if (!dir_name.empty()) merge(dir_name);
    if (!m.name) m.name = dir_name;
    return m;
}

}  // namespace cmf
