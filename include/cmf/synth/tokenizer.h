// A made-up tokenizer for synthetic checkpoints: SentencePiece BPE pieces with byte fallback, and
// the Hugging Face tokenizer.json (BPE, byte_fallback, U+2581 for spaces) that goes with them.
//
// A family supplies its leading special pieces (ids 0..n-1); then come the 256 byte pieces
// <0x00>..<0xFF>, then NORMAL pieces with falling scores. Every NORMAL piece of two or more code
// points is its prefix plus one code point, and both halves are pieces with higher scores, so a
// BPE merge chain reaches every word: SentencePiece (llama.cpp's SPM tokenizer merges the
// best-scored adjacent pair that is a piece) and a tokenizer.json whose merges split each such
// piece before its last code point, in piece order. "Hello", "▁Hello", "user", "model" each
// become one token. Single characters cover ASCII, so ASCII text needs no byte fallback.
#pragma once

#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmf/core/error.h"
#include "cmf/format/sentencepiece.h"

namespace cmf::synth {

using nlohmann::json;

// SentencePiece pieces in a synthetic tokenizer (the golden tiny tokenizers have 1024); a
// family's config vocab_size may be larger, and the converter pads the token list.
inline constexpr int kSynthPieces = 1024;

// SentencePiece's whitespace marker U+2581.
inline constexpr const char* kSpaceMark = "\xe2\x96\x81";

// A leading piece: its text, SentencePiece type, and whether tokenizer files mark it special.
struct SynthSpecialPiece {
    const char* text;
    sentencepiece::PieceType type;
    bool special;
};

namespace detail {

inline size_t utf8_len(unsigned char c) { return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4; }

// Splits before the last code point: "Hello" -> {"Hell", "o"}.
inline std::pair<std::string, std::string> split_last(const std::string& s) {
    size_t i = 0, last = 0;
    while (i < s.size()) {
        last = i;
        i += utf8_len(static_cast<unsigned char>(s[i]));
    }
    return {s.substr(0, last), s.substr(last)};
}

inline json added_token_entry(const std::string& content, bool special) {
    return json{{"content", content}, {"lstrip", false}, {"normalized", false}, {"rstrip", false},
                {"single_word", false}, {"special", special}};
}

}  // namespace detail

// The pieces: `specials`, 256 byte pieces, then NORMAL pieces up to `n_pieces` (see the top).
inline std::vector<sentencepiece::Piece> synth_pieces(std::span<const SynthSpecialPiece> specials, int n_pieces = kSynthPieces) {
    using sentencepiece::Piece;
    using sentencepiece::PieceType;
    std::vector<Piece> out;
    std::set<std::string> normal_ns;  // NORMAL/USER_DEFINED share one namespace in SentencePiece
    for (const auto& s : specials) {
        out.push_back({s.text, 0.0f, s.type});
        if (s.type == PieceType::user_defined) normal_ns.insert(s.text);
    }
    static const char* hex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) out.push_back({std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">", 0.0f, PieceType::byte});

    std::vector<std::string> normal;
    auto want = [&](const std::string& p) {
        if (normal_ns.insert(p).second) normal.push_back(p);
    };
    want(kSpaceMark);
    for (int c = 33; c < 127; ++c) want(std::string(1, static_cast<char>(c)));
    for (const char* u : {"\xc3\xa9", "\xc3\xbc", "\xc3\xb1", "\xce\xb1", "\xc2\xb0", "\xe4\xb8\xad", "\xe6\x96\x87"})
        want(u);  // é ü ñ α ° 中 文
    static const char* words[] = {
        "Hello", "hello", "world", "user", "model", "the", "and", "of", "to", "in", "is", "it", "that", "for",
        "with", "on", "as", "are", "was", "be", "this", "have", "from", "or", "by", "not", "what", "can",
        "you", "your", "patient", "doctor", "image", "scan", "chest", "normal", "findings", "report",
        "medical", "health", "heart", "lung", "blood", "pain", "treatment", "disease", "clinical",
        "Gemma", "How", "What", "The", "This", "Please", "describe", "answer", "question", "help",
        "time", "day", "good", "right", "left", "small", "large", "no", "yes", "one", "two", "three",
    };
    // prefixes first (higher scores), so every merge step of every word exists
    std::vector<std::string> forms;
    for (const char* wd : words) {
        forms.push_back(wd);
        forms.push_back(std::string(kSpaceMark) + wd);
    }
    for (size_t len = 2; len <= 16; ++len)
        for (const auto& f : forms) {
            std::vector<size_t> starts;
            for (size_t i = 0; i < f.size(); i += detail::utf8_len(static_cast<unsigned char>(f[i]))) starts.push_back(i);
            if (starts.size() >= len) want(starts.size() == len ? f : f.substr(0, starts[len]));
        }
    // fill the rest with letter bigrams (lower-case, then ▁-prefixed)
    if (static_cast<size_t>(n_pieces) < out.size()) fail(ErrorKind::internal, "synth: too few tokenizer pieces");
    const size_t room = static_cast<size_t>(n_pieces) - out.size();
    for (char a = 'a'; a <= 'z' && normal.size() < room; ++a)
        for (char b = 'a'; b <= 'z' && normal.size() < room; ++b) want(std::string{a, b});
    for (char a = 'a'; a <= 'z' && normal.size() < room; ++a) want(std::string(kSpaceMark) + a);
    for (char a = 'A'; a <= 'Z' && normal.size() < room; ++a)
        for (char b = 'a'; b <= 'z' && normal.size() < room; ++b) want(std::string{a, b});
    if (normal.size() < room) fail(ErrorKind::internal, "synth: not enough tokenizer pieces");
    normal.resize(room);
    for (size_t i = 0; i < normal.size(); ++i) out.push_back({normal[i], -static_cast<float>(i), PieceType::normal});
    return out;
}

inline sentencepiece::TrainerSpec synth_trainer_spec(int n_pieces = kSynthPieces) {
    sentencepiece::TrainerSpec t;
    t.model_type = sentencepiece::ModelType::bpe;
    t.vocab_size = n_pieces;
    t.byte_fallback = true;
    t.unk_id = 3;
    t.bos_id = 2;
    t.eos_id = 1;
    t.pad_id = 0;
    t.unk_piece = "<unk>";
    t.bos_piece = "<bos>";
    t.eos_piece = "<eos>";
    t.pad_piece = "<pad>";
    return t;
}

inline sentencepiece::NormalizerSpec synth_normalizer_spec() {
    // as Gemma's tokenizers: no normalization, no dummy prefix, whitespace kept and escaped as ▁
    sentencepiece::NormalizerSpec n;
    n.name = "identity";
    n.add_dummy_prefix = false;
    n.remove_extra_whitespaces = false;
    n.escape_whitespaces = true;
    return n;
}

// The merges of the pieces: every NORMAL piece of two or more code points, split before its last
// code point, in piece order (so a prefix's merge ranks before the merges that extend it).
inline json synth_merges(const std::vector<sentencepiece::Piece>& pieces) {
    json merges = json::array();
    for (const auto& p : pieces)
        if (p.type == sentencepiece::PieceType::normal) {
            auto [a, b] = detail::split_last(p.piece);
            if (!a.empty()) merges.push_back(json::array({a, b}));
        }
    return merges;
}

// tokenizer.json's "added_tokens" entry (the field order of the tokenizers library).
inline json added_tokens_json_entry(int64_t id, const std::string& content, bool special) {
    return json{{"id", id},          {"content", content}, {"single_word", false}, {"lstrip", false},
                {"rstrip", false},   {"normalized", false}, {"special", special}};
}

// tokenizer.json of a BPE model with byte fallback over U+2581-escaped text, the form Gemma's
// releases ship: `vocab` (piece -> id) and `merges` for the model, `added` for "added_tokens",
// `post_processor` as given.
inline json synth_bpe_tokenizer_json(json vocab, json merges, json added, json post_processor) {
    return json{
        {"version", "1.0"},
        {"truncation", nullptr},
        {"padding", nullptr},
        {"added_tokens", std::move(added)},
        {"normalizer", {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpaceMark}}},
        {"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "MergedWithPrevious"}, {"invert", false}}},
        {"post_processor", std::move(post_processor)},
        {"decoder",
         {{"type", "Sequence"},
          {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", kSpaceMark}}}, {"content", " "}},
                                    {{"type", "ByteFallback"}}, {{"type", "Fuse"}}})}}},
        {"model",
         {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", true}, {"ignore_merges", false},
          {"vocab", std::move(vocab)}, {"merges", std::move(merges)}}},
    };
}

// The post-processor that prepends <bos> (id `bos_id`) to every sequence.
inline json bos_template_post_processor(int64_t bos_id) {
    return json{{"type", "TemplateProcessing"},
                {"single", json::array({{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                {"pair", json::array({{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                      {{"SpecialToken", {{"id", "<bos>"}, {"type_id", 1}}}}, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
                {"special_tokens", {{"<bos>", {{"id", "<bos>"}, {"ids", {bos_id}}, {"tokens", {"<bos>"}}}}}}};
}

// The special-token object of special_tokens_map.json.
inline json special_token_object(const char* s) {
    return json{{"content", s}, {"lstrip", false}, {"normalized", false}, {"rstrip", false}, {"single_word", false}};
}

}  // namespace cmf::synth
