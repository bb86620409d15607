// Factory variant names: the old scripts' short names (q4s, q4, q8, f16) and any type name
// `cmf quantize` accepts (q6_k, q5_k_m, bf16, ...). The variant name is what markers, model
// names and status use ("status/q4s.built", "coheara-medgemma-4b-q4s"); the type is what the
// converter writes (Q4_K_S).
#pragma once

#include <cctype>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/pipeline/convert.h"

namespace cmf::factory {

struct FactoryVariant {
    std::string name;   // as the user wrote it, lower-case: "q4s", "q6_k"
    std::string type;   // the converter's label: "Q4_K_S", "F16"
};

inline std::string factory_type_name(const std::string& variant) {
    if (variant == "q4s") return "q4_k_s";
    if (variant == "q4") return "q4_k_m";
    if (variant == "q8") return "q8_0";
    return variant;
}

// Parses one variant; fails with a usage error naming the accepted names.
inline FactoryVariant parse_factory_variant(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto v = parse_variant(factory_type_name(s));
    bool name_ok = !s.empty() && s.size() <= 16;
    for (char c : s) name_ok &= (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
    if (!v || !name_ok)
        fail(ErrorKind::usage, "unknown variant '" + s + "' (use q4s, q4, q8, f16 or a type such as q6_k, q5_k_m, bf16)");
    return {s, v->label()};
}

// "q4,q8,f16" -> variants in order, duplicates (also by type: q8 and q8_0) rejected.
inline std::vector<FactoryVariant> parse_factory_variants(const std::string& list) {
    std::vector<FactoryVariant> out;
    size_t i = 0;
    while (i <= list.size()) {
        size_t j = list.find(',', i);
        if (j == std::string::npos) j = list.size();
        std::string item = list.substr(i, j - i);
        while (!item.empty() && item.front() == ' ') item.erase(item.begin());
        while (!item.empty() && item.back() == ' ') item.pop_back();
        if (!item.empty()) {
            FactoryVariant v = parse_factory_variant(item);
            for (const auto& x : out)
                if (x.type == v.type) fail(ErrorKind::usage, "variants '" + x.name + "' and '" + v.name + "' are the same type " + v.type);
            out.push_back(v);
        }
        i = j + 1;
    }
    if (out.empty()) fail(ErrorKind::usage, "no variant given (e.g. q4s,q4,q8,f16)");
    return out;
}

}  // namespace cmf::factory
