// Small Hugging Face checkpoint files around the tokenizer: JSON reading with the converter's
// (Python's) semantics, the ordered GGUF KV list the tokenizer code hands to the GGUF writer, and
// generation_config.json -> general.sampling.*.
//
// llama.cpp's convert_hf_to_gguf.py reads these files with Python's json module, so where the
// semantics differ from nlohmann::json defaults we follow Python: a repeated object key keeps the
// last value (nlohmann does the same), object key order is file order where it matters (recorded
// with a parser callback, see JsonKeyOrder), and "truthiness" (`if value:`) is Python's.
#pragma once

#include "cmf/core/error.h"
#include "cmf/format/sentencepiece.h"  // is_valid_utf8

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

namespace cmf::tokenizer {

namespace fs = std::filesystem;
using json = nlohmann::json;

// One GGUF metadata value, as simple as the tokenizer KVs need. The GGUF value type follows the
// alternative: bool BOOL, uint32_t UINT32, int32_t INT32, float FLOAT32, string STRING, and
// arrays of STRING / FLOAT32 / INT32.
using KvValue = std::variant<bool, uint32_t, int32_t, float, std::string, std::vector<std::string>,
                             std::vector<float>, std::vector<int32_t>>;

struct KvEntry {
    std::string key;
    KvValue value;
};

// KVs in the order gguf-py's GGUFWriter would write them.
using KvList = std::vector<KvEntry>;

// GGUFWriter keeps KVs in a dict: writing an existing key replaces the value but keeps the
// key's first position (gguf_writer.py add_key_value). This does the same on a KvList.
inline void kv_set(KvList& list, std::string key, KvValue value) {
    for (KvEntry& e : list)
        if (e.key == key) {
            e.value = std::move(value);
            return;
        }
    list.push_back({std::move(key), std::move(value)});
}

inline const KvEntry* kv_find(const KvList& list, std::string_view key) {
    for (const KvEntry& e : list)
        if (e.key == key) return &e;
    return nullptr;
}

// ---- files ----

inline std::string read_binary_file(const fs::path& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) fail_io(path.string() + ": cannot open file");
    const std::streamoff size = f.tellg();
    if (size < 0) fail_io(path.string() + ": cannot determine the file size");
    std::string data(static_cast<size_t>(size), '\0');
    f.seekg(0);
    if (!f.read(data.data(), size)) fail_io(path.string() + ": read error");
    return data;
}

// Python's open(path, encoding="utf-8").read(): text mode turns "\r\n" and lone "\r" into "\n"
// (universal newlines), and bytes that are not UTF-8 are an error.
inline std::string read_text_file_like_python(const fs::path& path);

// Records, in file order, the keys of one JSON object chosen by its path of parent keys
// ({} = the top-level object, {"added_tokens_decoder"} = that member of the top-level object).
// A key repeated in the file keeps its first position, like a Python dict.
struct JsonKeyOrder {
    std::vector<std::string> parent_path;
    std::vector<std::string> keys;
};

namespace detail {

// Streams over a JSON text and records the key order of the object that JsonKeyOrder names.
// (nlohmann's callback parser could do this while building the tree, but is ~10x slower than a
// plain parse plus this pass.)
class KeyOrderSax : public nlohmann::json_sax<json> {
public:
    explicit KeyOrderSax(JsonKeyOrder& order) : order_(order) {}
    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override { return open(true); }
    bool start_array(std::size_t) override { return open(false); }
    bool end_object() override { return close(); }
    bool end_array() override { return close(); }
    bool key(string_t& k) override {
        // path_ holds the key each open container was opened under; the last entry is ours
        if (path_.size() == order_.parent_path.size() + 1 && matches_ && seen_.insert(k).second) order_.keys.push_back(k);
        key_ = std::move(k);
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

private:
    bool open(bool is_object) {
        // an array element has no key: don't label it with the last key seen
        path_.push_back(!is_object_.empty() && is_object_.back() ? key_ : std::string());
        is_object_.push_back(is_object);
        key_.clear();
        // the container just opened is the wanted one when the keys below the root match
        matches_ = path_.size() == order_.parent_path.size() + 1 &&
                   std::equal(order_.parent_path.begin(), order_.parent_path.end(), path_.begin() + 1);
        return true;
    }
    bool close() {
        path_.pop_back();
        is_object_.pop_back();
        matches_ = path_.size() == order_.parent_path.size() + 1 &&
                   std::equal(order_.parent_path.begin(), order_.parent_path.end(), path_.begin() + 1);
        return true;
    }

    JsonKeyOrder& order_;
    std::vector<std::string> path_;  // key each open container was opened under ("" for the root, array items)
    std::vector<bool> is_object_;
    std::string key_;
    bool matches_ = false;
    std::unordered_set<std::string> seen_;
};

}  // namespace detail

// Parses a JSON file; a syntax error is a cmf::Error naming the file. `order`, if given, collects
// the key order of one object.
inline json read_json_file(const fs::path& path, JsonKeyOrder* order = nullptr) {
    const std::string text = read_binary_file(path);
    json doc;
    try {
        doc = json::parse(text);
    } catch (const json::exception& e) {
        fail_input(path.string() + ": invalid JSON: " + e.what());
    }
    if (order) {
        detail::KeyOrderSax sax(*order);
        json::sax_parse(text, &sax);
    }
    return doc;
}

// tokenizer.json, read in one streaming pass. The large parts are not built as a JSON tree:
// model.vocab (262k entries for Gemma 3) is collected as (piece, id) pairs in file order, and
// model.merges (half a million pairs, unused by a SentencePiece-style vocabulary) is skipped
// unless the caller asks for it (a BPE vocabulary writes tokenizer.ggml.merges; then it is kept
// in `doc` as doc["model"]["merges"]). Everything else is in `doc`, without model.vocab.
struct TokenizerJson {
    json doc;
    bool has_vocab_object = false;                   // model.vocab was an object (BPE / WordPiece)
    std::vector<std::pair<std::string, json>> vocab;  // model.vocab members, in file order
};

namespace detail {

class TokenizerJsonSax : public nlohmann::json_sax<json> {
public:
    TokenizerJsonSax(TokenizerJson& out, bool keep_merges) : out_(out), keep_merges_(keep_merges) {}

    bool null() override { return value(json(nullptr)); }
    bool boolean(bool v) override { return value(json(v)); }
    bool number_integer(number_integer_t v) override { return value(json(v)); }
    bool number_unsigned(number_unsigned_t v) override { return value(json(v)); }
    bool number_float(number_float_t v, const string_t&) override { return value(json(v)); }
    bool string(string_t& v) override { return value(json(std::move(v))); }
    bool binary(binary_t& v) override { return value(json::binary(std::move(v))); }

    bool start_object(std::size_t) override { return open(json::object(), true); }
    bool start_array(std::size_t) override { return open(json::array(), false); }
    bool end_object() override { return close(); }
    bool end_array() override { return close(); }

    bool key(string_t& k) override {
        if (skip_ > 0) return true;
        key_ = std::move(k);
        return true;
    }

    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
        error_ = e.what();
        return false;
    }
    const std::string& error() const { return error_; }

private:
    // True while the innermost open container is the top-level "model" object.
    bool in_model_object() const { return stack_.size() == 2 && path_.size() == 2 && path_[1] == "model"; }

    bool value(json&& v) {
        if (skip_ > 0) {
            return true;
        }
        if (in_vocab_) {
            out_.vocab.emplace_back(std::move(key_), std::move(v));
            return true;
        }
        if (stack_.empty()) {
            out_.doc = std::move(v);
            return true;
        }
        json& top = *stack_.back();
        if (top.is_object()) top[key_] = std::move(v);
        else top.push_back(std::move(v));
        return true;
    }

    bool open(json&& container, bool is_object) {
        if (skip_ > 0) {
            ++skip_;
            return true;
        }
        if (in_vocab_) {  // a vocab value that is not a number: keep it for the error message
            ++skip_;
            out_.vocab.emplace_back(std::move(key_), json(is_object ? "{...}" : "[...]"));
            return true;
        }
        if (in_model_object() && key_ == "merges" && !keep_merges_) {
            skip_ = 1;
            return true;
        }
        if (in_model_object() && key_ == "vocab" && is_object) {
            in_vocab_ = true;
            out_.has_vocab_object = true;
            return true;
        }
        if (stack_.empty()) {
            out_.doc = std::move(container);
            stack_.push_back(&out_.doc);
            path_.push_back("");
            return true;
        }
        json& top = *stack_.back();
        json* child;
        if (top.is_object()) {
            json& slot = top[key_];
            slot = std::move(container);
            child = &slot;
            path_.push_back(key_);
        } else {
            top.push_back(std::move(container));
            child = &top.back();
            path_.push_back("");
        }
        stack_.push_back(child);
        return true;
    }

    bool close() {
        if (skip_ > 0) {
            --skip_;
            return true;
        }
        if (in_vocab_) {
            in_vocab_ = false;
            return true;
        }
        stack_.pop_back();
        path_.pop_back();
        return true;
    }

    TokenizerJson& out_;
    bool keep_merges_ = false;
    std::vector<json*> stack_;       // open containers of `doc`
    std::vector<std::string> path_;  // key each open container was opened under ("" for the root / array items)
    std::string key_;
    int skip_ = 0;  // depth inside a container that is not kept
    bool in_vocab_ = false;
    std::string error_;
};

}  // namespace detail

inline TokenizerJson read_tokenizer_json(const fs::path& path, bool keep_merges = false) {
    const std::string text = read_binary_file(path);
    TokenizerJson out;
    detail::TokenizerJsonSax sax(out, keep_merges);
    if (!json::sax_parse(text, &sax)) fail_input(path.string() + ": invalid JSON: " + sax.error());
    return out;
}

// Python truthiness of a JSON value (`if value:`): null, false, 0, 0.0, "", [] and {} are false.
inline bool py_truthy(const json* v) {
    if (!v || v->is_null()) return false;
    if (v->is_boolean()) return v->get<bool>();
    if (v->is_number_integer()) return v->get<int64_t>() != 0;
    if (v->is_number_unsigned()) return v->get<uint64_t>() != 0;
    if (v->is_number_float()) return v->get<double>() != 0.0;
    if (v->is_string()) return !v->get_ref<const std::string&>().empty();
    if (v->is_array() || v->is_object()) return !v->empty();
    return true;
}
inline bool py_truthy(const json& v) { return py_truthy(&v); }

// dict.get(key): the member or nullptr. `where` names the file for the error when `obj` is not an
// object (Python would raise AttributeError there).
inline const json* py_get(const json& obj, std::string_view key, const std::string& where) {
    if (!obj.is_object()) fail_input(where + ": expected a JSON object, found " + std::string(obj.type_name()));
    auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
}

// ---- generation_config.json -> general.sampling.* ----

namespace detail {

// struct.pack("<i", v) as GGUFWriter.add_int32 does: Python ints (and bools) within int32 range.
inline int32_t sampling_int32(const json& v, std::string_view name, const fs::path& file) {
    if (v.is_boolean()) return v.get<bool>() ? 1 : 0;
    if (v.is_number_integer() || v.is_number_unsigned()) {
        if (v.is_number_unsigned() ? v.get<uint64_t>() <= uint64_t{std::numeric_limits<int32_t>::max()}
                                   : (v.get<int64_t>() >= std::numeric_limits<int32_t>::min() &&
                                      v.get<int64_t>() <= std::numeric_limits<int32_t>::max()))
            return static_cast<int32_t>(v.get<int64_t>());
        fail_input(file.string() + ": " + std::string(name) + " = " + v.dump() + " does not fit in a 32-bit integer");
    }
    fail_input(file.string() + ": " + std::string(name) + " must be an integer, found " + v.dump());
}

// struct.pack("<f", v) as GGUFWriter.add_float32 does: rounds the double to the nearest float and
// refuses a finite value that overflows float32.
inline float sampling_float(const json& v, std::string_view name, const fs::path& file) {
    double d;
    if (v.is_boolean()) d = v.get<bool>() ? 1.0 : 0.0;
    else if (v.is_number()) d = v.get<double>();
    else fail_input(file.string() + ": " + std::string(name) + " must be a number, found " + v.dump());
    const auto f = static_cast<float>(d);
    if (std::isinf(f) && !std::isinf(d))
        fail_input(file.string() + ": " + std::string(name) + " = " + v.dump() + " is too large for a 32-bit float");
    return f;
}

}  // namespace detail

// general.sampling.* from <dir>/generation_config.json, as gguf-py's Metadata.load and
// set_gguf_meta_model write them (metadata.py): in this order, each only when present and not null:
//   sequence (STRING, skipped when empty), top_k (INT32), top_p, min_p, xtc_probability,
//   xtc_threshold, temp <- "temperature", (FLOAT32), penalty_last_n (INT32),
//   penalty_repeat <- "penalty_repeat" else "repetition_penalty" (FLOAT32), mirostat (INT32),
//   mirostat_tau, mirostat_eta (FLOAT32).
// Like Metadata.load_generation_config, a missing or unparsable file yields no keys ("not all
// models have valid generation_config.json"). The GGUF writer places these keys itself (they go
// after general.type in convert_hf_to_gguf's output).
inline KvList load_sampling_kvs(const fs::path& dir) {
    KvList out;
    const fs::path file = dir / "generation_config.json";
    if (!fs::is_regular_file(file)) return out;
    json cfg;
    try {
        cfg = read_json_file(file);
    } catch (const Error&) {
        return out;  // the converter ignores an invalid generation_config.json
    }
    if (!py_truthy(cfg)) return out;
    if (!cfg.is_object()) fail_input(file.string() + ": expected a JSON object, found " + std::string(cfg.type_name()));

    auto val = [&](const char* key) -> const json* {
        auto it = cfg.find(key);
        return (it == cfg.end() || it->is_null()) ? nullptr : &*it;
    };
    if (const json* v = val("sequence")) {
        // GGUFWriter.add_string skips falsy values before looking at the type.
        if (py_truthy(v)) {
            if (!v->is_string()) fail_input(file.string() + ": sequence must be a string, found " + v->dump());
            out.push_back({"general.sampling.sequence", v->get<std::string>()});
        }
    }
    auto add_int = [&](const char* key, const char* gguf_key) {
        if (const json* v = val(key)) out.push_back({gguf_key, detail::sampling_int32(*v, key, file)});
    };
    auto add_float = [&](const char* key, const char* gguf_key) {
        if (const json* v = val(key)) out.push_back({gguf_key, detail::sampling_float(*v, key, file)});
    };
    add_int("top_k", "general.sampling.top_k");
    add_float("top_p", "general.sampling.top_p");
    add_float("min_p", "general.sampling.min_p");
    add_float("xtc_probability", "general.sampling.xtc_probability");
    add_float("xtc_threshold", "general.sampling.xtc_threshold");
    add_float("temperature", "general.sampling.temp");
    add_int("penalty_last_n", "general.sampling.penalty_last_n");
    // gen_config.get("penalty_repeat", gen_config.get("repetition_penalty")): a present
    // "penalty_repeat", even null, hides "repetition_penalty".
    if (cfg.contains("penalty_repeat")) add_float("penalty_repeat", "general.sampling.penalty_repeat");
    else add_float("repetition_penalty", "general.sampling.penalty_repeat");
    add_int("mirostat", "general.sampling.mirostat");
    add_float("mirostat_tau", "general.sampling.mirostat_tau");
    add_float("mirostat_eta", "general.sampling.mirostat_eta");
    return out;
}

// ---- text files ----

inline std::string read_text_file_like_python(const fs::path& path) {
    const std::string raw = read_binary_file(path);
    if (!sentencepiece::is_valid_utf8(raw)) fail_input(path.string() + ": not valid UTF-8 text");
    std::string out;
    out.reserve(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] == '\r') {
            out.push_back('\n');
            if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
        } else {
            out.push_back(raw[i]);
        }
    }
    return out;
}

}  // namespace cmf::tokenizer
