// The GGUF tokenizer metadata of a Gemma 3 checkpoint, exactly as llama.cpp v0.5.0's
// convert_hf_to_gguf.py writes it.
//
// Facts this file reproduces (llama.cpp conversion/base.py, conversion/gemma.py,
// gguf-py/gguf/vocab.py and gguf_writer.py):
//  - the Gemma set_vocab (conversion/gemma.py): with tokenizer.model the SentencePiece route
//    (_set_vocab_sentencepiece) then add_add_space_prefix(False); without it the GPT-2/BPE route,
//    which needs the transformers library. We never take the BPE route: without tokenizer.model
//    we rebuild the SentencePiece pieces from tokenizer.json (see pieces_from_tokenizer_json) and
//    take the SentencePiece route, so both inputs give the same "llama" vocabulary.
//  - _create_vocab_sentencepiece: n = hparams "vocab_size_per_layer_input" or "vocab_size"
//    (first present key; a null/0 value falls back to the piece count). Rows start as
//    "[PAD<i>]", score -10000, UNUSED. Piece i < n gets its text and score, and type UNKNOWN,
//    CONTROL, UNUSED or BYTE from the piece type, else NORMAL (USER_DEFINED pieces become NORMAL).
//    Then added_tokens.json entries (id < n): score -1000, USER_DEFINED. Then tokenizer_config.json
//    "added_tokens_decoder" entries (id < n): score -1000, CONTROL when "special" is truthy or the
//    text looks special (does_token_look_special), else USER_DEFINED with U+2581 replaced by ' '.
//  - SpecialVocab(n_vocab = token count): special ids and add_*_token flags from tokenizer.json's
//    post_processor + tokenizer_config.json + config.json, and the chat template; see
//    load_special_vocab for the rules, and gguf_vocab_kvs for the order the KVs are written in.
#pragma once

#include "cmf/core/error.h"
#include "cmf/format/sentencepiece.h"
#include "cmf/tokenizer/hf_files.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cmf::tokenizer {

// tokenizer.ggml.token_type values (gguf-py constants.py TokenType).
enum class TokenType : int32_t {
    normal = 1,
    unknown = 2,
    control = 3,
    user_defined = 4,
    unused = 5,
    byte = 6,
};

// Fixed scores of _create_vocab_sentencepiece.
inline constexpr float kPadRowScore = -10000.0f;   // "[PAD<i>]" rows past the last piece
inline constexpr float kAddedTokenScore = -1000.0f;  // added_tokens.json / added_tokens_decoder rows

// A vocabulary larger than this is refused as corrupt rather than allocated (Gemma 3: 262208).
inline constexpr uint64_t kMaxVocabSize = uint64_t{1} << 24;

struct GgufVocab {
    std::string model = "llama";    // tokenizer.ggml.model
    std::string pre = "default";    // tokenizer.ggml.pre
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> token_types;
    std::vector<std::string> merges;  // tokenizer.ggml.merges: only a BPE ("gpt2") vocab has them

    // Special token ids and add_*_token flags as SpecialVocab resolved them. GGUF has no key for
    // "cls" ids or for add flags other than bos/eos/sep, so those are not kept.
    std::optional<uint32_t> bos_id, eos_id, unk_id, sep_id, pad_id, mask_id, eot_id, eom_id;
    std::optional<bool> add_bos, add_eos, add_sep;
    // The order SpecialVocab set them in (Python dict insertion order), which is the KV order:
    // names among "bos", "eos", "unk", "sep", "pad", "mask", "eot", "eom".
    std::vector<std::string> special_id_order;
    std::vector<std::string> add_flag_order;  // among "bos", "eos", "sep"

    std::optional<std::string> chat_template;  // tokenizer.chat_template
    // For a list of named templates: tokenizer.chat_template.<name> and tokenizer.chat_templates,
    // in writing order; they precede tokenizer.chat_template.
    KvList named_chat_template_kvs;
    std::optional<bool> normalizer_lowercase, normalizer_strip_accents;
    std::optional<bool> add_space_prefix;  // tokenizer.ggml.add_space_prefix
    // the Gemma 4 set_vocab ends with add_add_bos_token(True): written after add_space_prefix
    // (or over an earlier add_bos_token in place)
    std::optional<bool> add_bos_last;
    uint64_t tokenizer_json_rows = 0;  // len(model.vocab) + len(added_tokens): Gemma 4's embedding cut

    std::string source;                 // file the pieces came from: tokenizer.model or tokenizer.json
    std::vector<std::string> warnings;  // what the converter would have logged as warnings
};

// ---------------------------------------------------------------------------------------------
// does_token_look_special (conversion/base.py): added tokens some models fail to mark special.
inline bool does_token_look_special(std::string_view t) {
    if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
    if (t.starts_with("<|") && t.ends_with("|>")) return true;
    // fullwidth vertical bar U+FF5C, as deepseek-coder spells its markers
    if (t.starts_with("<\xef\xbd\x9c") && t.ends_with("\xef\xbd\x9c>")) return true;
    if (t.starts_with("<unused") && t.ends_with(">")) return true;
    return false;
}

inline std::string replace_all(std::string s, std::string_view from, std::string_view to) {
    size_t pos = 0;
    while ((pos = s.find(from, pos)) != std::string::npos) {
        s.replace(pos, from.size(), to);
        pos += to.size();
    }
    return s;
}

namespace detail {

inline constexpr std::string_view kSpaceMarker = "\xe2\x96\x81";  // U+2581, SentencePiece's space

// A JSON value used as a token id by the converter: a Python int (bools are ints in Python).
inline std::optional<int64_t> py_int(const json* v) {
    if (!v) return std::nullopt;
    if (v->is_boolean()) return v->get<bool>() ? 1 : 0;
    if (v->is_number_integer()) return v->get<int64_t>();
    if (v->is_number_unsigned()) {
        const uint64_t u = v->get<uint64_t>();
        return u > uint64_t{INT64_MAX} ? INT64_MAX : static_cast<int64_t>(u);
    }
    return std::nullopt;
}

// int(str) for the keys of added_tokens_decoder: optional blanks and sign around decimal digits.
inline std::optional<int64_t> parse_decimal_id(std::string_view s) {
    auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
    while (!s.empty() && blank(s.front())) s.remove_prefix(1);
    while (!s.empty() && blank(s.back())) s.remove_suffix(1);
    bool neg = false;
    if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
        neg = s[0] == '-';
        s.remove_prefix(1);
    }
    if (s.empty() || s.size() > 18) return std::nullopt;
    int64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + (c - '0');
    }
    return neg ? -v : v;
}

// hparams vocab size per _create_vocab_sentencepiece: the first of these keys that is present;
// a null or 0 value means "use the tokenizer's piece count".
inline uint64_t vocab_size_from_hparams(const nlohmann::json& hparams, size_t n_pieces, const fs::path& dir) {
    if (hparams.is_object()) {
        for (const char* key : {"vocab_size_per_layer_input", "vocab_size"}) {
            auto it = hparams.find(key);
            if (it == hparams.end()) continue;
            if (it->is_null()) break;
            if (it->is_boolean() || !(it->is_number_integer() || it->is_number_unsigned()))
                fail_input(dir.string() + ": config " + key + " must be an integer, found " + it->dump());
            if (it->is_number_integer() && it->get<int64_t>() < 0)
                fail_input(dir.string() + ": config " + key + " is negative (" + it->dump() + ")");
            const uint64_t v = it->get<uint64_t>();
            if (v == 0) break;
            if (v > kMaxVocabSize)
                fail_input(dir.string() + ": config " + key + " = " + std::to_string(v) + " is larger than " +
                           std::to_string(kMaxVocabSize) + "; refusing it as corrupt");
            return v;
        }
    }
    return n_pieces;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// tokenizer.json -> SentencePiece pieces.
//
// Gemma's tokenizer.json is transformers' conversion of its SentencePiece BPE model
// (convert_slow_tokenizer SpmConverter): model.type "BPE", byte_fallback true, model.vocab in
// piece-id order, and every CONTROL / USER_DEFINED piece listed in "added_tokens" with "special"
// true for CONTROL pieces and for pieces that are named special tokens (e.g. <start_of_turn>, a
// USER_DEFINED piece). What it drops is the piece scores and types; we restore them:
//  - an added token whose text is model.unk_token -> UNKNOWN; other added tokens -> CONTROL when
//    special, else USER_DEFINED; all score 0 (SentencePiece gives meta pieces score 0). A
//    USER_DEFINED piece marked special thus comes back CONTROL; that cannot show in the GGUF when
//    tokenizer_config.json's added_tokens_decoder lists the token (transformers writes every
//    added token there), as that rule sets its type and score;
//  - "<0xNN>" with byte_fallback -> BYTE, score 0;
//  - model.unk_token (if not an added token) -> UNKNOWN, score 0;
//  - every other piece -> NORMAL with score -k for the k-th normal piece in id order (k from 0,
//    so the first is -0.0f): SentencePiece's BPE trainer scores its final pieces -0, -1, -2, ...
//    in the order it stores them.
// Checked on shared/golden/tiny-text (identical to its tokenizer.model, float bits included). On
// the real Gemma 3 tokenizer.json the merges are ordered exactly as this scoring predicts
// (transformers sorts merges by the score of the merged piece), though without the real
// tokenizer.model the absolute values cannot be compared. In the GGUF the pieces that
// tokenizer_config.json's added_tokens_decoder lists get -1000 anyway, so only NORMAL scores matter.
inline sentencepiece::Model pieces_from_tokenizer_json(const TokenizerJson& tj, const fs::path& file) {
    using sentencepiece::PieceType;
    const std::string where = file.string();
    const json* model = py_get(tj.doc, "model", where);
    if (!model || !model->is_object()) fail_input(where + ": no \"model\" object");
    const json* type = py_get(*model, "type", where);
    if (!type || !type->is_string() || type->get_ref<const std::string&>() != "BPE")
        fail_input(where + ": model.type is " + (type ? type->dump() : std::string("missing")) +
                   "; only the SentencePiece-derived BPE tokenizer.json of Gemma is supported without tokenizer.model");
    if (!tj.has_vocab_object) fail_input(where + ": model.vocab is not an object of piece -> id");
    const size_t n = tj.vocab.size();
    if (n > kMaxVocabSize) fail_input(where + ": model.vocab has " + std::to_string(n) + " entries; refusing it as corrupt");

    std::vector<const std::string*> by_id(n, nullptr);
    for (const auto& [piece, value] : tj.vocab) {
        const auto id = detail::py_int(&value);
        if (!id || value.is_boolean() || *id < 0 || static_cast<uint64_t>(*id) >= n)
            fail_input(where + ": model.vocab id of " + json(piece).dump() + " is " + value.dump() +
                       "; ids must be 0.." + std::to_string(n ? n - 1 : 0));
        if (by_id[static_cast<size_t>(*id)])
            fail_input(where + ": model.vocab gives id " + std::to_string(*id) + " to two pieces");
        by_id[static_cast<size_t>(*id)] = &piece;
    }

    std::string unk;
    if (const json* u = py_get(*model, "unk_token", where); u && u->is_string()) unk = u->get<std::string>();
    const bool byte_fallback = py_truthy(py_get(*model, "byte_fallback", where));

    std::unordered_map<int64_t, bool> added;  // id -> special
    if (const json* at = py_get(tj.doc, "added_tokens", where); at && at->is_array()) {
        for (const json& a : *at) {
            const auto id = detail::py_int(py_get(a, "id", where));
            if (!id) fail_input(where + ": an added_tokens entry has no integer id: " + a.dump());
            added[*id] = py_truthy(py_get(a, "special", where));
        }
    }

    sentencepiece::Model m;
    m.trainer.model_type = sentencepiece::ModelType::bpe;
    m.trainer.byte_fallback = byte_fallback;
    m.trainer.vocab_size = static_cast<int32_t>(n);
    m.normalizer.name = "identity";
    m.normalizer.add_dummy_prefix = false;  // Gemma's tokenizer.json has no Prepend normalizer
    m.pieces.resize(n);
    uint32_t normal_rank = 0;
    for (size_t id = 0; id < n; ++id) {
        sentencepiece::Piece& p = m.pieces[id];
        p.piece = *by_id[id];
        p.score = 0.0f;
        if (auto a = added.find(static_cast<int64_t>(id)); a != added.end()) {
            p.type = (!unk.empty() && p.piece == unk) ? PieceType::unknown
                     : a->second                       ? PieceType::control
                                                       : PieceType::user_defined;
        } else if (byte_fallback && sentencepiece::is_byte_piece(p.piece)) {
            p.type = PieceType::byte;
        } else if (!unk.empty() && p.piece == unk) {
            p.type = PieceType::unknown;
        } else {
            p.type = PieceType::normal;
            p.score = -static_cast<float>(normal_rank++);
        }
    }
    return m;
}

// ---------------------------------------------------------------------------------------------
// _create_vocab_sentencepiece: tokens, scores and types from the pieces plus added_tokens.json
// and tokenizer_config.json's added_tokens_decoder. `tokenizer_config` is null when absent;
// `decoder_order` is the file order of added_tokens_decoder's keys.
inline void build_sentencepiece_rows(GgufVocab& v, const sentencepiece::Model& sp, const fs::path& dir,
                                     const nlohmann::json& hparams, const json* tokenizer_config,
                                     const std::vector<std::string>& decoder_order) {
    using sentencepiece::PieceType;
    const uint64_t n = detail::vocab_size_from_hparams(hparams, sp.pieces.size(), dir);
    v.tokens.resize(n);
    v.scores.assign(n, kPadRowScore);
    v.token_types.assign(n, static_cast<int32_t>(TokenType::unused));
    for (uint64_t i = 0; i < n; ++i) v.tokens[i] = "[PAD" + std::to_string(i) + "]";
    const std::string max_id = std::to_string(static_cast<int64_t>(n) - 1);  // for warnings

    for (size_t id = 0; id < sp.pieces.size(); ++id) {
        if (id >= n) {
            v.warnings.push_back("ignore tokens from " + std::to_string(id) + ": id is out of range, max=" + max_id);
            break;
        }
        const sentencepiece::Piece& p = sp.pieces[id];
        TokenType t = TokenType::normal;
        switch (p.type) {
            case PieceType::unknown: t = TokenType::unknown; break;
            case PieceType::control: t = TokenType::control; break;
            case PieceType::unused: t = TokenType::unused; break;
            case PieceType::byte: t = TokenType::byte; break;
            default: t = TokenType::normal; break;  // NORMAL and USER_DEFINED
        }
        v.tokens[id] = p.piece;
        v.scores[id] = p.score;
        v.token_types[id] = static_cast<int32_t>(t);
    }

    // added_tokens.json: {"text": id, ...} in file order.
    const fs::path added_file = dir / "added_tokens.json";
    if (fs::is_regular_file(added_file)) {
        JsonKeyOrder order;
        const json added = read_json_file(added_file, &order);
        if (!added.is_object())
            fail_input(added_file.string() + ": expected a JSON object of token -> id, found " + std::string(added.type_name()));
        for (const std::string& key : order.keys) {
            const json& val = added.at(key);
            const auto id = detail::py_int(&val);
            if (!id || val.is_boolean()) fail_input(added_file.string() + ": id of " + json(key).dump() + " is not an integer: " + val.dump());
            if (*id < 0) fail_input(added_file.string() + ": id of " + json(key).dump() + " is negative: " + val.dump());
            if (static_cast<uint64_t>(*id) >= n) {
                v.warnings.push_back("ignore token " + std::to_string(*id) + ": id is out of range, max=" + max_id);
                continue;
            }
            const auto i = static_cast<size_t>(*id);
            v.tokens[i] = key;
            v.scores[i] = kAddedTokenScore;
            v.token_types[i] = static_cast<int32_t>(TokenType::user_defined);
        }
    }

    if (!tokenizer_config) return;
    const std::string where = (dir / "tokenizer_config.json").string();
    const json* decoder = py_get(*tokenizer_config, "added_tokens_decoder", where);
    if (!decoder) return;
    if (!decoder->is_object()) fail_input(where + ": added_tokens_decoder must be an object, found " + std::string(decoder->type_name()));
    for (const std::string& key : decoder_order) {
        const auto id = detail::parse_decimal_id(key);
        if (!id) fail_input(where + ": added_tokens_decoder key " + json(key).dump() + " is not a token id");
        if (*id < 0) fail_input(where + ": added_tokens_decoder id " + key + " is negative");
        // (a key recorded from an earlier, overwritten "added_tokens_decoder" object is not in this one)
        const auto it = decoder->find(key);
        if (it == decoder->end()) continue;
        const json& data = *it;
        const json* content = py_get(data, "content", where);
        if (!content || !content->is_string())
            fail_input(where + ": added_tokens_decoder[" + key + "] has no string \"content\"");
        if (static_cast<uint64_t>(*id) >= n) {
            v.warnings.push_back("ignore token " + std::to_string(*id) + ": id is out of range, max=" + max_id);
            continue;
        }
        const auto i = static_cast<size_t>(*id);
        std::string token = content->get<std::string>();
        if (v.token_types[i] != static_cast<int32_t>(TokenType::unused) && v.tokens[i] != token)
            v.warnings.push_back("replacing token " + std::to_string(i) + ": " + json(v.tokens[i]).dump() + " -> " +
                                 json(token).dump());
        if (py_truthy(py_get(data, "special", where)) || does_token_look_special(token)) {
            v.token_types[i] = static_cast<int32_t>(TokenType::control);
        } else {
            // the converter pre-normalizes user-defined spaces: U+2581 -> ' '
            token = replace_all(std::move(token), detail::kSpaceMarker, " ");
            v.token_types[i] = static_cast<int32_t>(TokenType::user_defined);
        }
        v.scores[i] = kAddedTokenScore;
        v.tokens[i] = std::move(token);
    }
    // _create_vocab_sentencepiece ends with a padding loop for vocab_size > len(tokens); the rows
    // are already vocab_size long at that point, so it never adds anything.
}

// ---------------------------------------------------------------------------------------------
// gguf-py SpecialVocab (vocab.py), for a SentencePiece vocabulary (load_merges=False).
namespace detail {

struct SpecialState {
    std::vector<std::string> types{"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
    std::vector<std::pair<std::string, uint32_t>> ids;  // insertion order, first set wins
    std::vector<std::pair<std::string, bool>> add;      // insertion order, later sets overwrite
    std::optional<json> chat_template;                  // str or list, when set
    std::optional<bool> lowercase, strip_accents;
    uint64_t n_vocab = 0;
    std::vector<std::string>* warnings = nullptr;

    void set_add(const std::string& typ, bool value) {
        for (auto& [t, v] : add)
            if (t == typ) {
                v = value;
                return;
            }
        add.emplace_back(typ, value);
    }
    bool has_type(std::string_view t) const { return std::find(types.begin(), types.end(), t) != types.end(); }

    // _set_special_token: only Python ints count; negative is an error; out of range is skipped.
    void set_special(const std::string& typ, const json* tid, const std::string& where) {
        const auto id = py_int(tid);
        if (!id) return;
        if (*id < 0) fail_input(where + ": invalid value for special token type " + typ + ": " + std::to_string(*id));
        if (static_cast<uint64_t>(*id) < n_vocab) {
            for (const auto& e : ids)
                if (e.first == typ) return;
            ids.emplace_back(typ, static_cast<uint32_t>(*id));
            return;
        }
        warnings->push_back("Special token type " + typ + ", id " + std::to_string(*id) + " out of range, must be under " +
                            std::to_string(n_vocab) + " - skipping");
    }
};

// Python `x in (a, b)`: equality with either (None == None holds).
inline bool py_in(const json& x, const json& a, const json& b) { return x == a || x == b; }

inline json value_or_null(const json* v) { return v ? *v : json(nullptr); }

// item.get(name, {}).get("id")
inline json nested_id(const json& item, const char* name, const std::string& where) {
    const json* inner = py_get(item, name, where);
    if (!inner) return nullptr;
    return value_or_null(py_get(*inner, "id", where));
}

inline void parse_normalizer(SpecialState& s, const json& norm, const std::string& where, int depth) {
    if (depth > 64) fail_input(where + ": normalizer nesting is deeper than 64 levels");
    const json* type = py_get(norm, "type", where);
    if (!type || !type->is_string()) return;
    const std::string& t = type->get_ref<const std::string&>();
    if (t == "Lowercase") {
        s.lowercase = true;
    } else if (t == "StripAccents") {
        s.strip_accents = true;
    } else if (t == "BertNormalizer") {
        // The raw value is stored: null means "not set" again (nothing written); anything else is
        // packed as a bool by add_normalizer_*.
        auto assign = [](std::optional<bool>& slot, const json* v) {
            if (!v) return;
            slot = v->is_null() ? std::nullopt : std::optional<bool>(py_truthy(v));
        };
        assign(s.lowercase, py_get(norm, "lowercase", where));
        assign(s.strip_accents, py_get(norm, "strip_accents", where));
    } else if (t == "Sequence") {
        if (const json* list = py_get(norm, "normalizers", where); list && list->is_array())
            for (const json& n : *list) parse_normalizer(s, n, where, depth + 1);
    }
}

// Python list slicing lst[start:stop] with stop = nullopt meaning "to the end", stop < 0 from the end.
inline json py_slice(const json& lst, long start, std::optional<long> stop) {
    const long n = static_cast<long>(lst.size());
    long b = std::min(start, n);
    long e = stop ? (*stop < 0 ? std::max(0L, n + *stop) : std::min(*stop, n)) : n;
    json out = json::array();
    for (long i = b; i < e; ++i) out.push_back(lst[static_cast<size_t>(i)]);
    return out;
}

// One post_processor entry of tokenizer.json (_try_load_from_tokenizer_json's loop body).
inline void apply_post_processor(SpecialState& s, const json& processor, json& tc, bool has_tc, json& special_bos,
                                 json& special_cls, json& special_eos, json& special_sep, const std::string& where) {
    const json type = value_or_null(py_get(processor, "type", where));
    if (type == "RobertaProcessing") {
        s.set_add("bos", true);
        s.set_add("eos", true);
        s.set_add("sep", true);
        auto first_of = [&](const char* key, const json& fallback) -> json {
            const json* v = py_get(processor, key, where);
            if (!v) return fallback;
            if (!v->is_array() || v->empty()) fail_input(where + ": RobertaProcessing." + key + " must be a non-empty list");
            return (*v)[0];
        };
        if (!py_truthy(special_cls) && has_tc) {
            special_cls = first_of("cls", special_bos);
            tc["cls_token"] = special_cls;
        }
        if (!py_truthy(special_sep) && has_tc) {
            special_sep = first_of("sep", special_eos);
            tc["sep_token"] = special_sep;
        }
        return;
    }
    if (type != "TemplateProcessing") return;

    auto list_of = [&](const char* key) -> json {
        const json* v = py_get(processor, key, where);
        if (!v) return json::array();
        if (!v->is_array()) fail_input(where + ": TemplateProcessing." + key + " must be a list");
        return *v;
    };
    const json single = list_of("single");
    json pair = list_of("pair");
    json special_first = nullptr, special_last = nullptr;
    if (single.size() > 1) {
        special_first = nested_id(single.front(), "SpecialToken", where);
        if (py_truthy(special_first)) {
            if (!has_tc) {
                special_bos = special_first;
            } else if (!py_in(special_first, special_bos, special_cls)) {
                if (!py_truthy(special_bos)) tc["bos_token"] = special_bos = special_first;
                if (!py_truthy(special_cls)) tc["cls_token"] = special_cls = special_first;
            }
            const bool add = py_in(special_first, special_bos, special_cls);
            s.set_add("bos", add);
            if (!add) s.warnings->push_back("Unknown leading special token " + special_first.dump() + " in TemplateProcessing<single>");
        }
        special_last = nested_id(single.back(), "SpecialToken", where);
        if (py_truthy(special_last)) {
            if (!has_tc) {
                special_eos = special_last;
            } else if (special_last != special_eos) {
                if (!s.has_type("eot")) {
                    s.types.push_back("eot");
                    tc["eot_token"] = special_eos;
                } else if (!s.has_type("eom")) {
                    s.types.push_back("eom");
                    tc["eom_token"] = special_eos;
                } else {
                    s.warnings->push_back("Overriding EOS token " + special_eos.dump() + " with " + special_last.dump() +
                                          " without EOT/EOM fallback!");
                }
                tc["eos_token"] = special_eos = special_last;
            }
            const bool add = special_last == special_eos;
            s.set_add("eos", add);
            if (!add) s.warnings->push_back("Unknown trailing special token " + special_last.dump() + " in TemplateProcessing<single>");
        }
    }
    if (py_truthy(pair)) {
        const long seq_start =
            (py_truthy(special_first) && nested_id(pair.front(), "SpecialToken", where) == special_first) ? 1 : 0;
        const std::optional<long> seq_stop =
            (py_truthy(special_last) && nested_id(pair.back(), "SpecialToken", where) == special_last)
                ? std::optional<long>(-1)
                : std::nullopt;
        pair = py_slice(pair, seq_start, seq_stop);
        if (py_truthy(pair)) {
            const json tmpl_a = nested_id(pair.front(), "Sequence", where);
            const json tmpl_b = nested_id(pair.back(), "Sequence", where);
            if (tmpl_a == "A" && tmpl_b == "B") {
                pair = py_slice(pair, 1, -1);
                if (py_truthy(pair)) {
                    bool add_sep = false;
                    const json first_entry = nested_id(pair.front(), "SpecialToken", where);
                    if (py_truthy(first_entry)) {
                        if (py_in(first_entry, special_sep, special_eos) && !py_truthy(special_last)) add_sep = true;
                    }
                    if (pair.size() == 2) {
                        const json second_entry = nested_id(pair[1], "SpecialToken", where);
                        if (py_truthy(second_entry) && py_in(second_entry, special_sep, special_eos)) add_sep = true;
                    }
                    s.set_add("sep", add_sep);
                    if (add_sep && !py_truthy(special_sep) && has_tc) tc["sep_token"] = special_eos;
                }
            }
        }
    }
}

// GGUFWriter.add_chat_template for a list of {"name", "template"}: non-alphanumeric (ASCII)
// characters of a name become '_', one per code point.
inline std::string sanitize_template_name(std::string_view name) {
    std::string out;
    for (size_t i = 0; i < name.size();) {
        const auto c = static_cast<unsigned char>(name[i]);
        if (c < 0x80) {
            out.push_back(std::isalnum(c) ? static_cast<char>(c) : '_');
            ++i;
        } else {
            out.push_back('_');
            ++i;
            while (i < name.size() && (static_cast<unsigned char>(name[i]) & 0xc0) == 0x80) ++i;
        }
    }
    return out;
}

}  // namespace detail

// Resolves special ids, add_*_token flags, chat template and normalizer flags as
// SpecialVocab(dir, n_vocab=...) does, into `v`. `tokenizer_json` is the parsed tokenizer.json
// (null if absent), `tokenizer_config` likewise.
//
// Rules (vocab.py _try_load_from_tokenizer_json, then _try_load_from_config_json):
//  1. tokenizer.json "normalizer" -> lowercase / strip_accents flags.
//  2. If tokenizer.json is non-empty: its post_processor (or each of "processors") may set
//     add_bos/add_eos/add_sep: RobertaProcessing sets all three; TemplateProcessing sets add_bos
//     if "single" starts with the bos (or cls) token, add_eos if it ends with the eos token, and
//     add_sep from the middle of "pair" (Gemma: single = [<bos>, A] -> add_bos true; pair =
//     [<bos>, A, <bos>, B] -> add_sep false). A template naming other tokens rewrites the config's
//     bos/cls/eos/sep/eot/eom tokens as in vocab.py.
//  3. Only if tokenizer_config.json is a non-empty object: the chat template is
//     tokenizer_config["chat_template"] when that key exists (even null), else
//     chat_template.jinja (plus additional_chat_templates/*.jinja as a named list), else
//     chat_template.json's "chat_template". Then for each type bos, eos, unk, sep, pad, cls, mask
//     (+ eot/eom if step 2 added them): a boolean add_<type>_token sets the flag; <type>_token
//     (string or {"content": ...}) is looked up in tokenizer.json's added_tokens (first entry with
//     that content) and its id, if any, becomes the special id.
//  4. config.json "<type>_token_id" (or text_config's, when absent/null at the top) fills ids not
//     yet set. A special id must be an int < n_vocab (else skipped with a warning); the first id
//     set for a type wins.
// special_tokens_map.json is not read by this converter.
inline void load_special_vocab(GgufVocab& v, const fs::path& dir, const json* tokenizer_json,
                               const json* tokenizer_config_in) {
    detail::SpecialState s;
    s.n_vocab = v.tokens.size();
    s.warnings = &v.warnings;
    const std::string tj_where = (dir / "tokenizer.json").string();
    const std::string tc_where = (dir / "tokenizer_config.json").string();

    json added_tokens = json::array();
    if (tokenizer_json) {
        if (const json* norm = py_get(*tokenizer_json, "normalizer", tj_where); py_truthy(norm))
            detail::parse_normalizer(s, *norm, tj_where, 0);
        if (const json* at = py_get(*tokenizer_json, "added_tokens", tj_where)) added_tokens = *at;
    }
    json tc = tokenizer_config_in ? *tokenizer_config_in : json(nullptr);
    const bool has_tc = py_truthy(tc);
    if (has_tc && !tc.is_object()) fail_input(tc_where + ": expected a JSON object, found " + std::string(tc.type_name()));

    if (tokenizer_json && py_truthy(*tokenizer_json)) {
        auto tc_get = [&](const char* key) -> json {
            if (!has_tc) return nullptr;
            return detail::value_or_null(py_get(tc, key, tc_where));
        };
        json special_bos = tc_get("bos_token"), special_cls = tc_get("cls_token");
        json special_eos = tc_get("eos_token"), special_sep = tc_get("sep_token");
        if (!py_truthy(special_bos) && py_truthy(special_cls) && has_tc) tc["bos_token"] = special_bos = special_cls;
        if (!py_truthy(special_eos) && py_truthy(special_sep) && has_tc) tc["eos_token"] = special_eos = special_sep;
        if (const json* pp = py_get(*tokenizer_json, "post_processor", tj_where); py_truthy(pp)) {
            json processors;
            if (const json* list = py_get(*pp, "processors", tj_where)) {
                if (!list->is_array()) fail_input(tj_where + ": post_processor.processors must be a list");
                processors = *list;
            } else {
                processors = json::array({*pp});
            }
            for (const json& proc : processors)
                detail::apply_post_processor(s, proc, tc, has_tc, special_bos, special_cls, special_eos, special_sep,
                                             tj_where);
        }
    }

    if (has_tc) {
        // chat template: tokenizer_config wins when it has the key; else the side files.
        std::optional<json> alt;
        const fs::path jinja = dir / "chat_template.jinja";
        const fs::path ct_json = dir / "chat_template.json";
        if (fs::is_regular_file(jinja)) {
            alt = read_text_file_like_python(jinja);
            std::vector<fs::path> extra;
            const fs::path extra_dir = dir / "additional_chat_templates";
            if (fs::is_directory(extra_dir))
                for (const auto& e : fs::directory_iterator(extra_dir))
                    if (e.path().extension() == ".jinja" && e.is_regular_file()) extra.push_back(e.path());
            // pathlib's glob order is the directory's order; we sort by name to be deterministic.
            std::sort(extra.begin(), extra.end());
            if (!extra.empty()) {
                json list = json::array({json{{"name", "default"}, {"template", *alt}}});
                for (const fs::path& p : extra)
                    list.push_back(json{{"name", p.stem().string()}, {"template", read_text_file_like_python(p)}});
                alt = list;
            }
        } else if (fs::is_regular_file(ct_json)) {
            const json ct = read_json_file(ct_json);
            const json* t = py_get(ct, "chat_template", ct_json.string());
            alt = t ? *t : json(nullptr);
        }
        json chat_template = nullptr;
        if (const json* t = py_get(tc, "chat_template", tc_where)) chat_template = *t;
        else if (alt) chat_template = *alt;
        if (chat_template.is_string() || chat_template.is_array()) s.chat_template = chat_template;
        else if (!chat_template.is_null())
            v.warnings.push_back("Bad type for chat_template field in " + tc_where + " - ignoring");

        for (size_t i = 0; i < s.types.size(); ++i) {
            const std::string typ = s.types[i];
            if (const json* a = py_get(tc, "add_" + typ + "_token", tc_where); a && a->is_boolean())
                s.set_add(typ, a->get<bool>());
            const json* entry = py_get(tc, typ + "_token", tc_where);
            if (!entry) continue;
            std::string content;
            if (entry->is_string()) {
                content = entry->get<std::string>();
            } else if (entry->is_object()) {
                const json* c = py_get(*entry, "content", tc_where);
                if (!c || !c->is_string()) continue;
                content = c->get<std::string>();
            } else {
                continue;
            }
            json found = nullptr;
            if (added_tokens.is_array()) {
                for (const json& atok : added_tokens) {
                    const json* c = py_get(atok, "content", tj_where);
                    if (c && c->is_string() && c->get_ref<const std::string&>() == content) {
                        found = detail::value_or_null(py_get(atok, "id", tj_where));
                        break;
                    }
                }
            } else if (!added_tokens.is_null() && !added_tokens.empty()) {
                fail_input(tj_where + ": added_tokens must be a list");
            }
            s.set_special(typ, &found, tc_where);
        }
    }

    // config.json
    const fs::path config_file = dir / "config.json";
    if (fs::is_regular_file(config_file)) {
        const json config = read_json_file(config_file);
        const std::string where = config_file.string();
        for (const std::string& typ : s.types) {
            const json* id = py_get(config, typ + "_token_id", where);
            if ((!id || id->is_null()) && config.contains("text_config"))
                id = py_get(config["text_config"], typ + "_token_id", where);
            s.set_special(typ, id, where);
        }
    }

    // Into the vocab: only what GGUFWriter has a handler for (no cls id; add flags bos/eos/sep).
    for (const auto& [typ, id] : s.ids) {
        std::optional<uint32_t>* slot = typ == "bos"    ? &v.bos_id
                                        : typ == "eos"  ? &v.eos_id
                                        : typ == "unk"  ? &v.unk_id
                                        : typ == "sep"  ? &v.sep_id
                                        : typ == "pad"  ? &v.pad_id
                                        : typ == "mask" ? &v.mask_id
                                        : typ == "eot"  ? &v.eot_id
                                        : typ == "eom"  ? &v.eom_id
                                                        : nullptr;
        if (!slot) continue;
        *slot = id;
        v.special_id_order.push_back(typ);
    }
    for (const auto& [typ, value] : s.add) {
        std::optional<bool>* slot = typ == "bos" ? &v.add_bos : typ == "eos" ? &v.add_eos : typ == "sep" ? &v.add_sep : nullptr;
        if (!slot) continue;
        *slot = value;
        v.add_flag_order.push_back(typ);
    }
    if (s.chat_template) {
        const json& ct = *s.chat_template;
        if (ct.is_string()) {
            // GGUFWriter.add_string skips an empty string
            if (!ct.get_ref<const std::string&>().empty()) v.chat_template = ct.get<std::string>();
        } else {
            std::optional<std::string> dflt;
            std::vector<std::string> names;
            for (const json& choice : ct) {
                const json* name_v = py_get(choice, "name", tc_where);
                const json* tmpl = py_get(choice, "template", tc_where);
                if (name_v && !name_v->is_string()) fail_input(tc_where + ": chat template name must be a string");
                const std::string name = detail::sanitize_template_name(name_v ? name_v->get<std::string>() : "");
                if (name.empty() || !tmpl || tmpl->is_null()) continue;
                if (!tmpl->is_string()) fail_input(tc_where + ": chat template " + json(name).dump() + " must be a string");
                if (name == "default") {
                    dflt = tmpl->get<std::string>();
                } else {
                    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
                    if (!tmpl->get_ref<const std::string&>().empty())
                        kv_set(v.named_chat_template_kvs, "tokenizer.chat_template." + name, tmpl->get<std::string>());
                }
            }
            // gguf-py writes list(set(names)), whose order depends on Python's string hashing;
            // we keep first-seen order.
            if (!names.empty()) kv_set(v.named_chat_template_kvs, "tokenizer.chat_templates", names);
            if (dflt && !dflt->empty()) v.chat_template = *dflt;
        }
    }
    v.normalizer_lowercase = s.lowercase;
    v.normalizer_strip_accents = s.strip_accents;
}

// ---------------------------------------------------------------------------------------------
// The whole vocabulary of a Gemma 3 checkpoint directory. `hparams` is the text model's config
// with text_config merged over the top level (what the converter calls self.hparams); only
// "vocab_size_per_layer_input" / "vocab_size" are read.
inline GgufVocab load_gemma_vocab(const fs::path& dir, const nlohmann::json& hparams) {
    if (!fs::is_directory(dir)) fail_input(dir.string() + ": not a directory");
    GgufVocab v;

    const fs::path sp_file = dir / "tokenizer.model";
    const fs::path tj_file = dir / "tokenizer.json";
    const fs::path tc_file = dir / "tokenizer_config.json";

    std::optional<TokenizerJson> tokenizer_json;
    if (fs::is_regular_file(tj_file)) {
        tokenizer_json = read_tokenizer_json(tj_file);
        if (!tokenizer_json->doc.is_object()) fail_input(tj_file.string() + ": expected a JSON object");
    }
    std::optional<json> tokenizer_config;
    JsonKeyOrder decoder_order{{"added_tokens_decoder"}, {}};
    if (fs::is_regular_file(tc_file)) tokenizer_config = read_json_file(tc_file, &decoder_order);

    sentencepiece::Model sp;
    if (fs::is_regular_file(sp_file)) {
        sp = sentencepiece::read_sentencepiece_model(sp_file);
        sentencepiece::check_loadable(sp, sp_file.string());
        v.source = sp_file.string();
    } else if (tokenizer_json) {
        sp = pieces_from_tokenizer_json(*tokenizer_json, tj_file);
        v.source = tj_file.string();
    } else {
        fail_input(dir.string() + ": no tokenizer.model or tokenizer.json; cannot build the GGUF vocabulary");
    }

    const json* tc_ptr = tokenizer_config ? &*tokenizer_config : nullptr;
    if (tc_ptr && py_truthy(*tc_ptr) && !tc_ptr->is_object())
        fail_input(tc_file.string() + ": expected a JSON object, found " + std::string(tc_ptr->type_name()));
    build_sentencepiece_rows(v, sp, dir, hparams, tc_ptr && tc_ptr->is_object() ? tc_ptr : nullptr, decoder_order.keys);
    load_special_vocab(v, dir, tokenizer_json ? &tokenizer_json->doc : nullptr, tc_ptr);
    // the Gemma set_vocab: add_add_space_prefix(False) after the SentencePiece vocabulary.
    v.add_space_prefix = false;
    return v;
}

// ---------------------------------------------------------------------------------------------
// The tokenizer KVs in the order convert_hf_to_gguf writes them (_set_vocab_sentencepiece, then
// SpecialVocab.add_to_gguf, then the Gemma set_vocab):
//   tokenizer.ggml.model, .pre, .tokens, .scores, .token_type, [.merges],
//   special ids in SpecialVocab order (.bos_token_id, .eos_token_id, .unknown_token_id,
//   .seperator_token_id [sic], .padding_token_id, .mask_token_id, .eot_token_id, .eom_token_id),
//   add flags in SpecialVocab order (.add_bos_token, .add_eos_token, .add_sep_token),
//   [tokenizer.chat_template.<name>..., tokenizer.chat_templates], tokenizer.chat_template,
//   [.normalizer.lowercase, .normalizer.strip_accents], tokenizer.ggml.add_space_prefix.
// Empty strings and empty arrays are left out, as GGUFWriter.add_string / add_array do.
inline KvList gguf_vocab_kvs(const GgufVocab& v) {
    KvList out;
    if (!v.model.empty()) kv_set(out, "tokenizer.ggml.model", v.model);
    if (!v.pre.empty()) kv_set(out, "tokenizer.ggml.pre", v.pre);
    if (!v.tokens.empty()) kv_set(out, "tokenizer.ggml.tokens", v.tokens);
    if (!v.scores.empty()) kv_set(out, "tokenizer.ggml.scores", v.scores);
    if (!v.token_types.empty()) kv_set(out, "tokenizer.ggml.token_type", v.token_types);
    if (!v.merges.empty()) kv_set(out, "tokenizer.ggml.merges", v.merges);
    for (const std::string& typ : v.special_id_order) {
        const auto& [key, id] = typ == "bos"    ? std::pair{"tokenizer.ggml.bos_token_id", v.bos_id}
                                : typ == "eos"  ? std::pair{"tokenizer.ggml.eos_token_id", v.eos_id}
                                : typ == "unk"  ? std::pair{"tokenizer.ggml.unknown_token_id", v.unk_id}
                                : typ == "sep"  ? std::pair{"tokenizer.ggml.seperator_token_id", v.sep_id}
                                : typ == "pad"  ? std::pair{"tokenizer.ggml.padding_token_id", v.pad_id}
                                : typ == "mask" ? std::pair{"tokenizer.ggml.mask_token_id", v.mask_id}
                                : typ == "eot"  ? std::pair{"tokenizer.ggml.eot_token_id", v.eot_id}
                                : typ == "eom"  ? std::pair{"tokenizer.ggml.eom_token_id", v.eom_id}
                                                : std::pair{"", std::optional<uint32_t>{}};
        if (id && *key) kv_set(out, key, *id);
    }
    for (const std::string& typ : v.add_flag_order) {
        const auto& [key, flag] = typ == "bos"   ? std::pair{"tokenizer.ggml.add_bos_token", v.add_bos}
                                  : typ == "eos" ? std::pair{"tokenizer.ggml.add_eos_token", v.add_eos}
                                  : typ == "sep" ? std::pair{"tokenizer.ggml.add_sep_token", v.add_sep}
                                                 : std::pair{"", std::optional<bool>{}};
        if (flag && *key) kv_set(out, key, *flag);
    }
    for (const KvEntry& e : v.named_chat_template_kvs) kv_set(out, e.key, e.value);
    if (v.chat_template && !v.chat_template->empty()) kv_set(out, "tokenizer.chat_template", *v.chat_template);
    if (v.normalizer_lowercase) kv_set(out, "tokenizer.ggml.normalizer.lowercase", *v.normalizer_lowercase);
    if (v.normalizer_strip_accents) kv_set(out, "tokenizer.ggml.normalizer.strip_accents", *v.normalizer_strip_accents);
    if (v.add_space_prefix) kv_set(out, "tokenizer.ggml.add_space_prefix", *v.add_space_prefix);
    if (v.add_bos_last) kv_set(out, "tokenizer.ggml.add_bos_token", *v.add_bos_last);
    return out;
}

}  // namespace cmf::tokenizer
