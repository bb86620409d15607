// Writing the small files of a synthetic checkpoint: JSON the way transformers saves it, plain
// text, and the LICENSE every synthetic checkpoint carries.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "cmf/core/temp_file.h"

namespace cmf::synth {

namespace fs = std::filesystem;
using nlohmann::json;

namespace detail {

inline void write_text(const fs::path& p, const std::string& s) {
    TempFile out(p);
    out.write(s);
    out.commit();
}

// transformers writes JSON with indent 2 and sorted keys (nlohmann's object order) plus a newline.
inline void write_json(const fs::path& p, const json& j) { write_text(p, j.dump(2) + "\n"); }

// The "model_max_length" a tokenizer_config.json carries when the model sets none: transformers'
// VERY_LARGE_INTEGER, int(1e30), which does not fit a 64-bit integer. Put
// kModelMaxLengthPlaceholder in the json and dump with this to get its digits.
inline constexpr unsigned long long kModelMaxLengthPlaceholder = 1000000000000000000ull;
inline std::string dump_with_very_large_integer(const json& j) {
    std::string s = j.dump(2) + "\n";
    const std::string placeholder = "1000000000000000000";
    if (auto p = s.find("\"model_max_length\": " + placeholder); p != std::string::npos)
        s.replace(p + 20, placeholder.size(), "1000000000000000019884624838656");
    return s;
}

// Published models carry the base model's terms (Ollama license layer, model card); a
// synthetic checkpoint has its own, so demos can publish it like a real one.
inline void write_synth_license(const fs::path& dir) {
    write_text(dir / "LICENSE",
               "Synthetic test checkpoint written by `cmf synth`: random weights and a made-up\n"
               "vocabulary, generated for demos and tests. It derives from no model and carries no\n"
               "third-party terms; use it for anything.\n");
}

}  // namespace detail

}  // namespace cmf::synth
