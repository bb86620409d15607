// The GGUF tokenizer metadata of a Gemma 4 checkpoint, as llama.cpp v0.5.0's
// convert_hf_to_gguf.py writes it: the BPE route of Gemma4Model.set_vocab.
//
// Facts this file reproduces (llama.cpp conversion/gemma.py:641-669, gguf-py/gguf/vocab.py):
//  - Gemma4Model.set_vocab builds gguf.LlamaHfVocab(dir) from tokenizer.json (tokenizer.model is
//    not read), writes tokenizer.ggml.model "gemma4" and no tokenizer.ggml.pre, the tokens, scores
//    and types, then SpecialVocab(dir, load_merges=True) (no n_vocab), then add_space_prefix
//    false and add_bos_token true (gemma.py:668-669; the latter after add_space_prefix, or in
//    place of an add_bos_token SpecialVocab wrote).
//  - LlamaHfVocab.__init__ (vocab.py:556-571) refuses a tokenizer.json that is not BPE with
//    byte_fallback and a "Sequence" decoder; then it asks transformers' AutoTokenizer for the
//    vocabulary. The reference ran with a stand-in for AutoTokenizer with transformers-v5 "fast"
//    tokenizer semantics (shared/tools/llama-ref/pystub-gemma4/transformers/__init__.py); we
//    reproduce that stand-in:
//      base vocabulary = tokenizer.json model.vocab (a dict); vocab_size = its size;
//      added tokens    = tokenizer.json "added_tokens" (content -> id), then every special token
//                        of tokenizer_config.json not among them (an existing model.vocab entry
//                        keeps its id; an unknown string gets max id + 1);
//      special tokens  = the named slots bos, eos, unk, sep, pad, cls, mask; then every other
//                        tokenizer_config key ending in "_token" with a string value, in file
//                        order; then extra_special_tokens (a list; a dict's values go first among
//                        the model-specific ones); de-duplicated, first occurrence wins;
//      special ids     = their ids in model.vocab updated by the added tokens.
//    The stand-in refuses special_tokens_map.json or added_tokens.json beside tokenizer.json
//    (their merge rules are not reproduced); so do we.
//  - hf_tokens / added_tokens (vocab.py:618-660): rows 0..vocab_size-1 are model.vocab in id
//    order, then the added tokens with id >= vocab_size in id order. Every score is -1000. A base
//    row is BYTE when it reads <0x[0-9A-Fa-f]{2}>, else CONTROL when its id is a special id, else
//    NORMAL (so <unk> is CONTROL, and an added token that no config key names is NORMAL). An added
//    row is CONTROL when it is a special token, else USER_DEFINED.
//  - gemma.py:646-656: the seven chat-parser markers are then forced to USER_DEFINED.
//  - SpecialVocab(load_merges=True) (vocab.py:183-214, 118-145): merges from tokenizer.json
//    model.merges, either "a b" strings kept as they are or [a, b] pairs joined with a space after
//    each ' ' inside a part became U+0120; without them, merges.txt. Special ids, add flags and
//    the chat template as for Gemma 3 (load_special_vocab).
// The Gemma 4 embedding keeps len(model.vocab) + len(added_tokens) rows of tokenizer.json
// (gemma.py:170); GgufVocab.tokenizer_json_rows carries that count to the tensor plan.
#pragma once

#include "cmf/core/error.h"
#include "cmf/tokenizer/hf_files.h"
#include "cmf/tokenizer/vocab.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace cmf::tokenizer {

// LlamaHfVocab.get_token_score: every row (vocab.py:644-647).
inline constexpr float kGemma4TokenScore = -1000.0f;

// gemma.py:646 visible_tokens: "always render these tokens, so that the chat parser can read them".
inline constexpr std::array<std::string_view, 7> kGemma4VisibleTokens = {
    "<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|tool_response>", "<tool_response|>", "<|\"|>"};

namespace detail {

// A Python dict str -> int: insertion order, a repeated key keeps its first position and takes
// the new value.
struct OrderedTokenIds {
    std::vector<std::pair<std::string, int64_t>> items;
    std::unordered_map<std::string, size_t> index;

    void set(const std::string& key, int64_t id) {
        if (auto it = index.find(key); it != index.end()) {
            items[it->second].second = id;
            return;
        }
        index.emplace(key, items.size());
        items.emplace_back(key, id);
    }
    const int64_t* find(const std::string& key) const {
        auto it = index.find(key);
        return it == index.end() ? nullptr : &items[it->second].second;
    }
};

// LlamaHfVocab.get_token_type: re.fullmatch(br"<0x[0-9A-Fa-f]{2}>", text).
inline bool is_hf_byte_token(std::string_view t) {
    auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); };
    return t.size() == 6 && t.starts_with("<0x") && hex(t[3]) && hex(t[4]) && t[5] == '>';
}

// The stand-in's _tok_str: a string, or a serialized AddedToken's "content".
inline std::optional<std::string> special_token_text(const nlohmann::ordered_json* v) {
    if (!v) return std::nullopt;
    if (v->is_string()) return v->get<std::string>();
    if (v->is_object())
        if (auto c = v->find("content"); c != v->end() && c->is_string()) return c->get<std::string>();
    return std::nullopt;
}

// The v5 all_special_tokens list of the stand-in AutoTokenizer, from tokenizer_config.json
// (parsed with its key order).
inline std::vector<std::string> gemma4_special_tokens(const nlohmann::ordered_json& cfg) {
    static constexpr std::array<std::string_view, 7> kNamed = {"bos_token", "eos_token", "unk_token", "sep_token",
                                                              "pad_token", "cls_token", "mask_token"};
    auto get = [&](std::string_view key) -> const nlohmann::ordered_json* {
        auto it = cfg.find(key);
        return it == cfg.end() ? nullptr : &*it;
    };
    std::vector<std::optional<std::string>> all;
    for (std::string_view k : kNamed)
        if (auto s = special_token_text(get(k))) all.push_back(std::move(s));
    std::vector<std::optional<std::string>> model_specific;
    for (const auto& [k, v] : cfg.items())
        if (std::string_view(k).ends_with("_token") && std::find(kNamed.begin(), kNamed.end(), k) == kNamed.end() &&
            v.is_string())
            model_specific.push_back(v.get<std::string>());
    std::vector<std::optional<std::string>> extra_list;
    if (const auto* extra = get("extra_special_tokens")) {
        if (extra->is_object()) {
            std::vector<std::optional<std::string>> first;
            for (const auto& [k, v] : extra->items()) first.push_back(special_token_text(&v));
            model_specific.insert(model_specific.begin(), first.begin(), first.end());
        } else if (extra->is_array()) {
            for (const auto& v : *extra) extra_list.push_back(special_token_text(&v));
        }
    }
    all.insert(all.end(), model_specific.begin(), model_specific.end());
    all.insert(all.end(), extra_list.begin(), extra_list.end());
    std::vector<std::string> out;
    std::unordered_set<std::string> seen;
    for (auto& s : all)
        if (s && seen.insert(*s).second) out.push_back(std::move(*s));
    return out;
}

// One code point of valid UTF-8 at s[i], advancing i.
inline char32_t next_code_point(std::string_view s, size_t& i) {
    const auto c = static_cast<unsigned char>(s[i]);
    const int n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
    for (int k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    i += n;
    return cp;
}

// Python's str.isspace() code points, which str.split() / str.strip() use.
inline bool is_python_space(char32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

// str.split() (no separator): the runs of non-space code points.
inline std::vector<std::string> python_split(std::string_view s) {
    std::vector<std::string> out;
    std::string cur;
    bool in_word = false;
    for (size_t i = 0; i < s.size();) {
        const size_t start = i;
        if (is_python_space(next_code_point(s, i))) {
            if (in_word) out.push_back(std::move(cur));
            cur.clear();
            in_word = false;
        } else {
            cur.append(s.substr(start, i - start));
            in_word = true;
        }
    }
    if (in_word) out.push_back(std::move(cur));
    return out;
}

// One part of a [a, b] merge with its spaces spelled U+0120 (vocab.py:203-206).
inline std::string encode_merge_part(std::string_view part) {
    return replace_all(std::string(part), " ", "\xc4\xa0");
}

// SpecialVocab._try_load_from_tokenizer_json with load_merges (vocab.py:189-214). `merges` is
// model.merges or null.
inline std::vector<std::string> merges_from_tokenizer_json(const json* merges, const std::string& where,
                                                           std::vector<std::string>& warnings) {
    std::vector<std::string> out;
    if (!merges || !merges->is_array() || merges->empty()) return out;
    const json& first = (*merges)[0];
    if (first.is_string()) {
        out.reserve(merges->size());
        for (const json& m : *merges) {
            // GGUFWriter: "All items in a GGUF array should be of the same type" (gguf_writer.py:1627)
            if (!m.is_string()) fail_input(where + ": model.merges mixes strings with " + m.dump().substr(0, 60));
            out.push_back(m.get<std::string>());
        }
        return out;
    }
    if (!(first.is_array() && first.size() == 2 && first[0].is_string()))
        fail_input(where + ": unknown model.merges format (first entry " + first.dump().substr(0, 60) +
                   "); expected \"a b\" strings or [a, b] pairs");
    bool spaces = false;
    out.reserve(merges->size());
    for (const json& pair : *merges) {
        std::string joined;
        if (pair.is_array()) {
            // ' '.join(part for part in pair): any number of string parts
            for (size_t k = 0; k < pair.size(); ++k) {
                if (!pair[k].is_string()) fail_input(where + ": model.merges entry " + pair.dump().substr(0, 60) + " has a part that is not a string");
                const std::string& part = pair[k].get_ref<const std::string&>();
                spaces = spaces || part.find(' ') != std::string::npos;
                if (k) joined += ' ';
                joined += encode_merge_part(part);
            }
        } else if (pair.is_string()) {
            // Python iterates a str entry by code points: each one is a part
            const std::string& s = pair.get_ref<const std::string&>();
            for (size_t i = 0; i < s.size();) {
                const size_t start = i;
                next_code_point(s, i);
                if (start) joined += ' ';
                joined += encode_merge_part(std::string_view(s).substr(start, i - start));
            }
            spaces = spaces || s.find(' ') != std::string::npos;
        } else {
            fail_input(where + ": model.merges entry " + pair.dump().substr(0, 60) + " is not a pair of strings");
        }
        out.push_back(std::move(joined));
    }
    if (spaces) warnings.push_back("Spaces in merges detected, encoding as '\xc4\xa0'");
    return out;
}

// SpecialVocab._try_load_merges_txt (vocab.py:124-145): "a b" lines, an optional leading
// "#" line, blank lines skipped, other malformed lines skipped with a warning.
inline std::optional<std::vector<std::string>> merges_from_txt(const fs::path& file, std::vector<std::string>& warnings) {
    if (!fs::is_regular_file(file)) return std::nullopt;
    const std::string text = read_text_file_like_python(file);  // text mode: "\r\n" / "\r" -> "\n"
    std::vector<std::string_view> lines;
    for (size_t pos = 0; pos < text.size();) {
        size_t nl = text.find('\n', pos);
        nl = nl == std::string::npos ? text.size() : nl + 1;
        lines.emplace_back(text.data() + pos, nl - pos);
        pos = nl;
    }
    size_t first = 0;
    if (!lines.empty()) {
        const auto words = python_split(lines[0]);
        // first_line.strip().startswith('#'): the first non-space code point is '#'
        if (!words.empty() && words[0].starts_with("#")) first = 1;
    }
    std::vector<std::string> out;
    for (size_t n = first; n < lines.size(); ++n) {
        const auto parts = python_split(lines[n]);
        if (parts.empty()) continue;
        // line.split(None, 3) has exactly two fields only when the line has exactly two words
        if (parts.size() != 2) {
            warnings.push_back(file.filename().string() + ": Line " + std::to_string(n + 1) + ": Entry malformed, ignoring");
            continue;
        }
        out.push_back(parts[0] + " " + parts[1]);
    }
    return out;
}

}  // namespace detail

// The whole vocabulary of a Gemma 4 checkpoint directory (Gemma4Model.set_vocab).
inline GgufVocab load_gemma4_vocab(const fs::path& dir) {
    if (!fs::is_directory(dir)) fail_input(dir.string() + ": not a directory");
    const fs::path tj_file = dir / "tokenizer.json";
    const fs::path tc_file = dir / "tokenizer_config.json";
    const std::string where = tj_file.string();
    if (!fs::is_regular_file(tj_file))
        fail_input(dir.string() + ": no tokenizer.json; the Gemma 4 vocabulary is built from it (llama.cpp LlamaHfVocab)");

    GgufVocab v;
    v.model = "gemma4";
    v.pre.clear();  // Gemma4Model.set_vocab writes no tokenizer.ggml.pre
    v.source = where;

    const TokenizerJson tj = read_tokenizer_json(tj_file, /*keep_merges=*/true);
    if (!tj.doc.is_object()) fail_input(where + ": expected a JSON object");
    const json* model = py_get(tj.doc, "model", where);
    if (!model || !model->is_object()) fail_input(where + ": no \"model\" object");

    // LlamaHfVocab.__init__ pre-checks (vocab.py:560-571)
    const json* type = py_get(*model, "type", where);
    const bool is_bpe = type && type->is_string() && type->get_ref<const std::string&>() == "BPE";
    const json* byte_fallback = py_get(*model, "byte_fallback", where);
    if (is_bpe && py_truthy(py_get(*model, "ignore_merges", where)) && byte_fallback && !py_truthy(byte_fallback))
        fail_input(where + ": a Llama 3 style BPE tokenizer (ignore_merges, no byte_fallback); the Gemma 4 converter "
                           "needs a SentencePiece-style BPE tokenizer.json");
    if (!is_bpe)
        fail_input(where + ": model.type is " + (type ? type->dump() : std::string("missing")) +
                   "; the Gemma 4 converter (llama.cpp LlamaHfVocab) needs a BPE tokenizer.json");
    if (!py_truthy(byte_fallback))
        fail_input(where + ": model.byte_fallback is not true; the Gemma 4 converter (llama.cpp LlamaHfVocab) needs a "
                           "BPE tokenizer.json with byte_fallback");
    const json* decoder = py_get(tj.doc, "decoder", where);
    const json* decoder_type = decoder && decoder->is_object() ? py_get(*decoder, "type", where) : nullptr;
    if (!decoder_type || *decoder_type != "Sequence")
        fail_input(where + ": decoder.type is " + (decoder_type ? decoder_type->dump() : std::string("missing")) +
                   "; the Gemma 4 converter (llama.cpp LlamaHfVocab) needs a \"Sequence\" decoder");
    if (!tj.has_vocab_object) fail_input(where + ": model.vocab is not an object of token -> id");
    for (const char* legacy : {"special_tokens_map.json", "added_tokens.json"})
        if (fs::exists(dir / legacy))
            fail_input((dir / legacy).string() + ": present beside tokenizer.json; the Gemma 4 reference vocabulary "
                                                 "(transformers v5 semantics) was made without it and cmf does not "
                                                 "guess how it merges in; remove it to convert");

    // model.vocab as the Python dict json.load makes of it
    detail::OrderedTokenIds model_vocab;
    for (const auto& [piece, value] : tj.vocab) {
        const auto id = detail::py_int(&value);
        if (!id || value.is_boolean())
            fail_input(where + ": model.vocab id of " + json(piece).dump() + " is " + value.dump() + "; ids must be integers");
        model_vocab.set(piece, *id);
    }
    const uint64_t n_base = model_vocab.items.size();
    if (n_base == 0) fail_input(where + ": model.vocab is empty");
    if (n_base > kMaxVocabSize)
        fail_input(where + ": model.vocab has " + std::to_string(n_base) + " entries; refusing it as corrupt");

    // added tokens: tokenizer.json "added_tokens" (content -> int(id))
    detail::OrderedTokenIds added;
    uint64_t n_added_entries = 0;
    if (const json* at = py_get(tj.doc, "added_tokens", where)) {
        if (!at->is_array()) fail_input(where + ": added_tokens must be a list");
        n_added_entries = at->size();
        for (const json& a : *at) {
            const json* content = py_get(a, "content", where);
            const auto id = detail::py_int(py_get(a, "id", where));
            if (!content || !content->is_string() || !id)
                fail_input(where + ": an added_tokens entry needs a string \"content\" and an integer \"id\": " + a.dump().substr(0, 120));
            added.set(content->get<std::string>(), *id);
        }
    }

    // tokenizer_config.json: once in key order (for the special token list), once as SpecialVocab reads it
    std::optional<json> tokenizer_config;
    nlohmann::ordered_json cfg = nlohmann::ordered_json::object();
    if (fs::is_regular_file(tc_file)) {
        tokenizer_config = read_json_file(tc_file);
        if (!tokenizer_config->is_object())
            fail_input(tc_file.string() + ": expected a JSON object, found " + std::string(tokenizer_config->type_name()));
        cfg = nlohmann::ordered_json::parse(read_binary_file(tc_file));
    }
    const std::vector<std::string> specials = detail::gemma4_special_tokens(cfg);

    // v5 adds the special tokens tokenizer.json does not list: a model.vocab entry keeps its id,
    // an unknown string gets the next id after the largest one.
    for (const std::string& s : specials) {
        if (added.find(s)) continue;
        if (const int64_t* id = model_vocab.find(s)) {
            added.set(s, *id);
            continue;
        }
        int64_t max_id = INT64_MIN;
        for (const auto& [k, id] : model_vocab.items) max_id = std::max(max_id, id);
        for (const auto& [k, id] : added.items) max_id = std::max(max_id, id);
        added.set(s, max_id + 1);
    }

    // get_vocab(): model.vocab updated with the added tokens
    detail::OrderedTokenIds full = model_vocab;
    for (const auto& [k, id] : added.items) full.set(k, id);
    std::unordered_set<int64_t> special_ids;
    for (const std::string& s : specials) special_ids.insert(*full.find(s));
    const std::unordered_set<std::string> special_set(specials.begin(), specials.end());

    // hf_tokens: reverse_vocab[token_id] for every base id (a later entry of get_vocab() wins)
    std::vector<const std::string*> by_id(n_base, nullptr);
    for (const auto& [k, id] : full.items)
        if (id >= 0 && static_cast<uint64_t>(id) < n_base) by_id[static_cast<size_t>(id)] = &k;
    for (uint64_t id = 0; id < n_base; ++id)
        if (!by_id[id])
            fail_input(where + ": no token has id " + std::to_string(id) + "; model.vocab ids must be 0.." +
                       std::to_string(n_base - 1));

    // added tokens past the base vocabulary, sorted by id (stable: dict order among equal ids)
    std::vector<std::pair<std::string, int64_t>> extra;
    for (const auto& [k, id] : added.items)
        if (id >= 0 && static_cast<uint64_t>(id) >= n_base) extra.emplace_back(k, id);
    std::stable_sort(extra.begin(), extra.end(), [](const auto& a, const auto& b) { return a.second < b.second; });

    const size_t n = n_base + extra.size();
    v.tokens.reserve(n);
    v.token_types.reserve(n);
    for (uint64_t id = 0; id < n_base; ++id) {
        const std::string& t = *by_id[id];
        v.tokens.push_back(t);
        v.token_types.push_back(static_cast<int32_t>(detail::is_hf_byte_token(t)              ? TokenType::byte
                                                     : special_ids.count(static_cast<int64_t>(id)) ? TokenType::control
                                                                                                   : TokenType::normal));
    }
    for (size_t k = 0; k < extra.size(); ++k) {
        const auto& [t, id] = extra[k];
        // the converter lists added tokens without gaps: a token whose id is not its row lands elsewhere
        if (static_cast<uint64_t>(id) != n_base + k)
            v.warnings.push_back("added token " + json(t).dump() + " has id " + std::to_string(id) + " but is written at row " +
                                 std::to_string(n_base + k));
        v.tokens.push_back(t);
        v.token_types.push_back(static_cast<int32_t>(special_set.count(t) ? TokenType::control : TokenType::user_defined));
    }
    v.scores.assign(n, kGemma4TokenScore);
    for (size_t i = 0; i < n; ++i)
        if (std::find(kGemma4VisibleTokens.begin(), kGemma4VisibleTokens.end(), v.tokens[i]) != kGemma4VisibleTokens.end())
            v.token_types[i] = static_cast<int32_t>(TokenType::user_defined);

    // SpecialVocab(dir, load_merges=True)
    const json* merges = py_get(*model, "merges", where);
    v.merges = detail::merges_from_tokenizer_json(merges, where, v.warnings);
    if (v.merges.empty())
        if (auto txt = detail::merges_from_txt(dir / "merges.txt", v.warnings)) v.merges = std::move(*txt);
    if (v.merges.empty()) v.warnings.push_back("Adding merges requested but no merges found, output may be non-functional.");

    const size_t warnings_before = v.warnings.size();
    load_special_vocab(v, dir, &tj.doc, tokenizer_config ? &*tokenizer_config : nullptr);
    // load_special_vocab skips an id past the token list, as SpecialVocab(n_vocab=...) does; this
    // SpecialVocab has no n_vocab and writes such an id. Refuse rather than write a different file.
    for (size_t i = warnings_before; i < v.warnings.size(); ++i)
        if (v.warnings[i].starts_with("Special token type ") && v.warnings[i].find(" out of range") != std::string::npos)
            fail_input(dir.string() + ": " + v.warnings[i].substr(0, v.warnings[i].find(" - skipping")) +
                       "; llama.cpp v0.5.0 would write this id for Gemma 4 (its SpecialVocab has no vocabulary size), "
                       "which no token has; fix the checkpoint's special token ids");

    v.add_space_prefix = false;
    v.add_bos_last = true;
    v.tokenizer_json_rows = n_base + n_added_entries;  // gemma.py:170
    return v;
}

}  // namespace cmf::tokenizer
