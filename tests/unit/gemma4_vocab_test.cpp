// The Gemma 4 tokenizer route (arch/gemma4_vocab.h): the tokenizer.* KVs of the tiny Gemma 4
// checkpoint against llama.cpp v0.5.0's GGUF (../shared/golden-next dump + array payload hashes),
// the transformers-v5 special-token rules on small synthetic tokenizers, and the refusals.
#include "cmf/format/gguf.h"
#include "cmf/tokenizer/gguf_vocab.h"
#include "cmf/arch/gemma4_vocab.h"
#include "cmf/tokenizer/hf_files.h"
#include "cmf/tokenizer/vocab.h"

#include "golden_dump.h"
#include "test_support.h"

#include <cstring>
#include <functional>
#include <map>
#include <sstream>

namespace {

namespace fs = std::filesystem;
using cmf::test::TempDir;
using cmf::test::write_file;
using cmf::tokenizer::GgufVocab;
using cmf::tokenizer::KvList;
using cmf::tokenizer::KvValue;
using cmf::tokenizer::load_gemma4_vocab;
using nlohmann::json;

constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4, kByte = 6;

cmf::GgufValue to_gguf(const KvValue& v) { return cmf::to_gguf_value(v); }

// The bytes of a GGUF array after its element type and count: little-endian items, a string
// being u64 length + bytes. array_hashes.txt holds the sha256 of exactly these bytes.
std::optional<std::string> array_payload(const KvValue& v) {
    std::string out;
    auto put = [&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
    if (const auto* s = std::get_if<std::vector<std::string>>(&v)) {
        for (const std::string& x : *s) {
            const uint64_t n = x.size();
            put(&n, 8);
            out += x;
        }
    } else if (const auto* f = std::get_if<std::vector<float>>(&v)) {
        put(f->data(), f->size() * 4);
    } else if (const auto* i = std::get_if<std::vector<int32_t>>(&v)) {
        put(i->data(), i->size() * 4);
    } else {
        return std::nullopt;
    }
    return out;
}

// "<file> <key> <TYPE> len=N sha256=<hex>" rows of array_hashes.txt for one GGUF file.
std::map<std::string, std::string> array_hashes(const fs::path& list, const std::string& gguf) {
    std::map<std::string, std::string> out;
    std::istringstream in(cmf::test::read_file(list));
    std::string file, key, type, len, sha;
    while (in >> file >> key >> type >> len >> sha)
        if (file == gguf && sha.starts_with("sha256=")) out[key] = sha.substr(7);
    return out;
}

std::optional<fs::path> golden_next() {
    const auto shared = cmf::test::shared_dir();
    if (!shared || !fs::is_directory(*shared / "golden-next" / "ckpt" / "tiny-gemma4")) return std::nullopt;
    return *shared / "golden-next";
}

#define REQUIRE_GOLDEN_NEXT()                                                                         \
    do {                                                                                              \
        if (!golden_next())                                                                           \
            GTEST_SKIP() << "SKIPPED: ../shared/golden-next (Gemma 4 reference data) is not present; " \
                            "set CMF_SHARED_DIR to run this test";                                    \
    } while (0)

template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const cmf::Error& e) {
        EXPECT_EQ(e.kind(), cmf::ErrorKind::input);
        return e.what();
    }
    return "";
}

// ============================================================================================
// tiny-gemma4 against llama.cpp's GGUF

TEST(Gemma4Vocab, MatchesGoldenTinyGemma4) {
    REQUIRE_GOLDEN_NEXT();
    const fs::path g = *golden_next();
    const GgufVocab v = load_gemma4_vocab(g / "ckpt" / "tiny-gemma4");
    const KvList kvs = cmf::tokenizer::gguf_vocab_kvs(v);

    std::vector<cmf::test::DumpKv> ref;
    for (const auto& kv : cmf::test::read_dump((g / "dumps" / "tiny-gemma4-f16.dump.txt").string()).kvs)
        if (kv.key.starts_with("tokenizer.")) ref.push_back(kv);

    std::vector<std::string> ours_keys, ref_keys;
    for (const auto& e : kvs) ours_keys.push_back(e.key);
    for (const auto& kv : ref) ref_keys.push_back(kv.key);
    const std::vector<std::string> expected_order = {
        "tokenizer.ggml.model",          "tokenizer.ggml.tokens",          "tokenizer.ggml.scores",
        "tokenizer.ggml.token_type",     "tokenizer.ggml.merges",          "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",   "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.mask_token_id",  "tokenizer.chat_template",        "tokenizer.ggml.add_space_prefix",
        "tokenizer.ggml.add_bos_token"};
    EXPECT_EQ(ref_keys, expected_order) << "the golden dump changed";
    ASSERT_EQ(ours_keys, ref_keys) << "tokenizer KV keys or their order differ";

    // scalars exactly; arrays by type, length and first 20 items as the dump prints them
    for (size_t i = 0; i < kvs.size(); ++i)
        EXPECT_EQ(cmf::test::render_kv(to_gguf(kvs[i].value)), ref[i].type + " " + ref[i].value) << kvs[i].key;

    // arrays: the whole payload
    const auto hashes = array_hashes(g / "array_hashes.txt", "tiny-gemma4-f16.gguf");
    size_t n_arrays = 0;
    for (const auto& e : kvs) {
        const auto payload = array_payload(e.value);
        if (!payload) continue;
        ++n_arrays;
        ASSERT_TRUE(hashes.count(e.key)) << e.key << " has no entry in array_hashes.txt";
        EXPECT_EQ(cmf::test::sha256_hex(payload->data(), payload->size()), hashes.at(e.key)) << e.key;
    }
    EXPECT_EQ(n_arrays, 4u);
    EXPECT_EQ(hashes.size(), 6u) << "tiny-gemma4-f16.gguf: 2 gemma4.* arrays + 4 tokenizer arrays";

    // the embedding cut: len(model.vocab) + len(added_tokens) of tokenizer.json
    const json tj = json::parse(cmf::test::read_file(g / "ckpt" / "tiny-gemma4" / "tokenizer.json"));
    EXPECT_EQ(v.tokenizer_json_rows, tj["model"]["vocab"].size() + tj["added_tokens"].size());
    EXPECT_EQ(v.source, (g / "ckpt" / "tiny-gemma4" / "tokenizer.json").string());
}

// ============================================================================================
// Synthetic tokenizers: the rules one at a time

json base_tokenizer_json() {
    json vocab = json::object();
    const char* pieces[] = {"<pad>", "<eos>", "<bos>", "<unk>", "<0x0A>", "<0x0a>", "\xe2\x96\x81the",
                            "<|channel>", "[multimodal]", "<unused0>", "<|turn>", "<0xZZ>"};
    int id = 0;
    for (const char* p : pieces) vocab[p] = id++;
    json added = json::array();
    for (int i : {0, 1, 2, 3}) added.push_back({{"id", i}, {"content", pieces[i]}, {"special", true}});
    // marked special but named by no config key: not special under v5
    added.push_back({{"id", 9}, {"content", "<unused0>"}, {"special", true}});
    return {{"version", "1.0"},
            {"added_tokens", added},
            {"normalizer", nullptr},
            {"post_processor", nullptr},
            {"decoder", {{"type", "Sequence"}, {"decoders", json::array()}}},
            {"model",
             {{"type", "BPE"},
              {"unk_token", "<unk>"},
              {"byte_fallback", true},
              {"vocab", vocab},
              {"merges", json::array({json::array({"\xe2\x96\x81", "the"}), json::array({"a b", "c"})})}}}};
}

void write_checkpoint(const fs::path& dir, const json& tokenizer, const std::string& tokenizer_config) {
    write_file(dir / "tokenizer.json", tokenizer.dump());
    if (!tokenizer_config.empty()) write_file(dir / "tokenizer_config.json", tokenizer_config);
}

TEST(Gemma4Vocab, TokenTypesFollowTheV5SpecialTokens) {
    TempDir d;
    json tj = base_tokenizer_json();
    tj["added_tokens"].push_back({{"id", 12}, {"content", "<extra_plain>"}, {"special", false}});
    // key order matters: sot_token's "<|turn>" is in model.vocab (keeps id 10); "<|new_a>" and
    // "<|new_b>" are unknown and get ids 13, 14 in all_special_tokens order (dict values of
    // extra_special_tokens first among the model-specific tokens).
    write_checkpoint(d.path(), tj, R"({
        "bos_token": "<bos>", "eos_token": {"content": "<eos>"}, "unk_token": "<unk>", "pad_token": "<pad>",
        "zz_token": "<|new_b>", "sot_token": "<|turn>", "add_bos_token": true, "flag_token": 5,
        "extra_special_tokens": {"x": "<|new_a>"}
    })");
    const GgufVocab v = load_gemma4_vocab(d.path());
    const std::vector<std::string> tokens = {"<pad>", "<eos>", "<bos>", "<unk>", "<0x0A>", "<0x0a>", "\xe2\x96\x81the",
                                             "<|channel>", "[multimodal]", "<unused0>", "<|turn>", "<0xZZ>",
                                             "<extra_plain>", "<|new_a>", "<|new_b>"};
    EXPECT_EQ(v.tokens, tokens);
    const std::vector<int32_t> types = {kControl, kControl, kControl, kControl, kByte, kByte, kNormal,
                                        kUserDefined, kNormal, kNormal, kControl, kNormal,
                                        kUserDefined, kControl, kControl};
    EXPECT_EQ(v.token_types, types);
    EXPECT_EQ(v.scores, std::vector<float>(tokens.size(), -1000.0f));
    EXPECT_EQ(v.model, "gemma4");
    EXPECT_EQ(v.pre, "");
    EXPECT_EQ(v.tokenizer_json_rows, 12u + 6u);
    // [a, b] merges: joined with a space, a space inside a part becomes U+0120
    EXPECT_EQ(v.merges, (std::vector<std::string>{"\xe2\x96\x81 the", "a\xc4\xa0" "b c"}));

    const KvList kvs = cmf::tokenizer::gguf_vocab_kvs(v);
    std::vector<std::string> keys;
    for (const auto& e : kvs) keys.push_back(e.key);
    EXPECT_EQ(keys, (std::vector<std::string>{"tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                                              "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
                                              "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                              "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
                                              "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_space_prefix"}))
        << "add_bos_token from tokenizer_config keeps its place; Gemma4Model.set_vocab overwrites it in place";
    EXPECT_EQ(std::get<bool>(cmf::tokenizer::kv_find(kvs, "tokenizer.ggml.add_bos_token")->value), true);
}

TEST(Gemma4Vocab, MergesFormats) {
    {
        TempDir d;
        json tj = base_tokenizer_json();
        tj["model"]["merges"] = json::array({"a b", "\xe2\x96\x81 the"});  // old format: kept as is
        write_checkpoint(d.path(), tj, "");
        EXPECT_EQ(load_gemma4_vocab(d.path()).merges, (std::vector<std::string>{"a b", "\xe2\x96\x81 the"}));
    }
    {
        TempDir d;
        json tj = base_tokenizer_json();
        tj["model"]["merges"] = json::array();  // none: merges.txt
        write_checkpoint(d.path(), tj, "");
        write_file(d / "merges.txt", "#version: 0.2\r\na b\n\nbad line here\n  c\xc2\xa0" "d  \n");
        const GgufVocab v = load_gemma4_vocab(d.path());
        EXPECT_EQ(v.merges, (std::vector<std::string>{"a b", "c d"}));
        EXPECT_NE(std::find(v.warnings.begin(), v.warnings.end(), "merges.txt: Line 4: Entry malformed, ignoring"),
                  v.warnings.end());
    }
    {
        TempDir d;
        json tj = base_tokenizer_json();
        tj["model"]["merges"] = json::array({1, 2});
        write_checkpoint(d.path(), tj, "");
        EXPECT_NE(error_of([&] { load_gemma4_vocab(d.path()); }).find("unknown model.merges format"), std::string::npos);
    }
}

// ============================================================================================
// Refusals

TEST(Gemma4Vocab, RefusesWhatLlamaHfVocabRefuses) {
    auto refusal = [](const std::function<void(json&)>& edit, const std::string& tc = "") {
        TempDir d;
        json tj = base_tokenizer_json();
        edit(tj);
        write_checkpoint(d.path(), tj, tc);
        return error_of([&] { load_gemma4_vocab(d.path()); });
    };
    std::string e = refusal([](json& tj) { tj["model"]["type"] = "Unigram"; });
    EXPECT_NE(e.find("model.type is \"Unigram\"; the Gemma 4 converter (llama.cpp LlamaHfVocab) needs a BPE tokenizer.json"),
              std::string::npos)
        << e;
    e = refusal([](json& tj) { tj["model"].erase("byte_fallback"); });
    EXPECT_NE(e.find("model.byte_fallback is not true"), std::string::npos) << e;
    e = refusal([](json& tj) { tj["model"]["byte_fallback"] = false; });
    EXPECT_NE(e.find("model.byte_fallback is not true"), std::string::npos) << e;
    e = refusal([](json& tj) {
        tj["model"]["byte_fallback"] = false;
        tj["model"]["ignore_merges"] = true;
    });
    EXPECT_NE(e.find("Llama 3 style BPE"), std::string::npos) << e;
    e = refusal([](json& tj) { tj["decoder"] = {{"type", "ByteLevel"}}; });
    EXPECT_NE(e.find("decoder.type is \"ByteLevel\"; the Gemma 4 converter"), std::string::npos) << e;
    e = refusal([](json& tj) { tj.erase("decoder"); });
    EXPECT_NE(e.find("decoder.type is missing"), std::string::npos) << e;
    e = refusal([](json& tj) { tj["model"]["vocab"].erase("<0x0A>"); });
    EXPECT_NE(e.find("no token has id 4"), std::string::npos) << e;
    // SpecialVocab without n_vocab would write an id no token has
    e = refusal([](json& tj) { tj["added_tokens"].push_back({{"id", 99}, {"content", "<mask>"}, {"special", true}}); },
                R"({"mask_token": "<mask>", "bos_token": "<bos>"})");
    EXPECT_NE(e.find("Special token type mask, id 99 out of range"), std::string::npos) << e;

    // every message is one line
    for (const auto& msg : {refusal([](json& tj) { tj["model"]["type"] = "WordPiece"; })})
        EXPECT_EQ(msg.find('\n'), std::string::npos);
}

TEST(Gemma4Vocab, RefusesMissingTokenizerJsonAndLegacyFiles) {
    TempDir d;
    EXPECT_NE(error_of([&] { load_gemma4_vocab(d.path()); }).find("no tokenizer.json"), std::string::npos);
    write_checkpoint(d.path(), base_tokenizer_json(), "");
    EXPECT_NO_THROW(load_gemma4_vocab(d.path()));
    write_file(d / "special_tokens_map.json", "{}");
    EXPECT_NE(error_of([&] { load_gemma4_vocab(d.path()); }).find("special_tokens_map.json: present beside tokenizer.json"),
              std::string::npos);
}

}  // namespace
