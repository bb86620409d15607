// cmf quantize against llama.cpp v0.5.0's own outputs for Gemma 3n and Gemma 4 in
// ../shared/golden-next: every tensor (name, shape, type, data sha256, order) and every KV
// (type, value, order; ARRAY payloads in full through array_hashes.txt), converted straight
// from the BF16 checkpoints. The converter's --outtype q8_0 files are compared by value (cmf's
// Q8_0 is llama-quantize's, in its order; the data is the same).
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cmf/format/gguf.h"
#include "golden_dump.h"
#include "test_support.h"

namespace cmf::test {
namespace {

std::optional<fs::path> golden_next() {
    const auto shared = shared_dir();
    if (!shared || !fs::is_directory(*shared / "golden-next" / "ckpt")) return std::nullopt;
    return *shared / "golden-next";
}

#define REQUIRE_GOLDEN_NEXT()                                                                                  \
    do {                                                                                                       \
        if (!golden_next()) GTEST_SKIP() << "SKIPPED: ../shared/golden-next is not present (set CMF_SHARED_DIR)"; \
    } while (0)

// The bytes of an ARRAY KV after its element type and count (strings: u64 length + bytes).
std::string array_payload(const GgufValue& v) {
    if (v.elem != GgufType::STRING) return v.bytes;
    std::string out;
    for (const auto& s : v.strs) {
        const uint64_t n = s.size();
        out.append(reinterpret_cast<const char*>(&n), 8);
        out += s;
    }
    return out;
}

// key -> sha256 of the full payload, for one reference file.
std::map<std::string, std::string> array_hashes(const std::string& ref_gguf) {
    std::map<std::string, std::string> out;
    std::istringstream in(read_file(*golden_next() / "array_hashes.txt"));
    std::string file, key, type, len, sha;
    while (in >> file >> key >> type >> len >> sha)
        if (file == ref_gguf && sha.rfind("sha256=", 0) == 0) out[key] = sha.substr(7);
    return out;
}

// Every ARRAY KV of `ours` has the reference's full payload, and the reference has no other.
void expect_arrays_equal(const std::string& ours, const std::string& ref_gguf) {
    const auto want = array_hashes(ref_gguf);
    ASSERT_FALSE(want.empty()) << "no array_hashes.txt rows for " << ref_gguf;
    const GgufContents g = read_gguf(ours);
    size_t seen = 0;
    for (const auto& [k, v] : g.kv.items()) {
        if (v.type != GgufType::ARRAY) continue;
        ++seen;
        auto it = want.find(k);
        if (it == want.end()) {
            ADD_FAILURE() << k << ": array not in the reference " << ref_gguf;
            continue;
        }
        const std::string p = array_payload(v);
        EXPECT_EQ(sha256_hex(p.data(), p.size()), it->second) << k << " payload differs from " << ref_gguf;
    }
    EXPECT_EQ(seen, want.size()) << "array KV count differs from " << ref_gguf;
}

class GoldenNext : public ::testing::Test {
protected:
    static TempDir* out_;
    static void SetUpTestSuite() {
        if (!golden_next()) return;
        out_ = new TempDir();
        const fs::path ck = *golden_next() / "ckpt";
        for (const char* m : {"tiny-gemma3n", "tiny-gemma4"}) {
            auto r = run_cmf("quantize " + shell_quote((ck / m).string()) + " --quant f16,bf16,q8_0,q4_k_m,q8_0_convert --quiet --out " +
                             shell_quote(out_->path().string()));
            ASSERT_EQ(r.exit_code, 0) << r.output;
        }
        // every mmproj type llama.cpp offers, each next to the text file of the same type
        for (const char* t : {"f16", "bf16", "f32", "q8_0"}) {
            auto r = run_cmf("quantize " + shell_quote((ck / "tiny-gemma4").string()) + " --quant f16 --mmproj --mmproj-type " + t +
                             " --quiet --out " + shell_quote((out_->path() / "mm").string()));
            ASSERT_EQ(r.exit_code, 0) << r.output;
        }
    }
    static void TearDownTestSuite() {
        delete out_;
        out_ = nullptr;
    }
    void SetUp() override { REQUIRE_GOLDEN_NEXT(); }
    static std::string out(const std::string& f) { return (out_->path() / f).string(); }
    static Dump dump(const std::string& ref) { return read_dump((*golden_next() / "dumps" / (ref + ".dump.txt")).string()); }

    // ours against one reference file: tensors, KVs and full arrays, in order
    static void expect_same(const std::string& ours, const std::string& ref) {
        SCOPED_TRACE(ours + " vs " + ref);
        auto cmp = compare_with_dump(out(ours), dump(ref), true);
        EXPECT_TRUE(cmp.ok()) << cmp.text();
        expect_arrays_equal(out(ours), ref + ".gguf");
    }
};
TempDir* GoldenNext::out_ = nullptr;

TEST_F(GoldenNext, Gemma3nConverterTypes) {
    expect_same("tiny-gemma3n-F16.gguf", "tiny-gemma3n-f16");
    expect_same("tiny-gemma3n-BF16.gguf", "tiny-gemma3n-bf16");
}

TEST_F(GoldenNext, Gemma3nRecipesFromBf16) {
    expect_same("tiny-gemma3n-Q8_0.gguf", "tiny-gemma3n-Q8_0.from-bf16");
    expect_same("tiny-gemma3n-Q4_K_M.gguf", "tiny-gemma3n-Q4_K_M.from-bf16");
}

// q8_0_convert is the converter's --outtype q8_0 file; llama-quantize's Q8_0 differs from it
// exactly where llama-quantize keeps the source type
TEST_F(GoldenNext, Gemma3nConverterQ8_0) {
    expect_same("tiny-gemma3n-Q8_0-convert.gguf", "tiny-gemma3n-q8_0");
    auto cmp = compare_with_dump(out("tiny-gemma3n-Q8_0.gguf"), dump("tiny-gemma3n-q8_0"), false, {}, false);
    for (const auto& d : cmp.diffs)
        EXPECT_TRUE(d.find("altup") != std::string::npos || d.find("laurel") != std::string::npos ||
                    d.find("per_layer_model_proj") != std::string::npos)
            << d;
    EXPECT_FALSE(cmp.ok()) << "llama-quantize's Q8_0 keeps some tensors in BF16";
}

TEST_F(GoldenNext, Gemma4ConverterTypes) {
    expect_same("tiny-gemma4-F16.gguf", "tiny-gemma4-f16");
    expect_same("tiny-gemma4-BF16.gguf", "tiny-gemma4-bf16");
}

TEST_F(GoldenNext, Gemma4RecipesFromBf16) {
    expect_same("tiny-gemma4-Q8_0.gguf", "tiny-gemma4-Q8_0.from-bf16");
    expect_same("tiny-gemma4-Q4_K_M.gguf", "tiny-gemma4-Q4_K_M.from-bf16");
}

// q8_0_convert is the converter's --outtype q8_0 file; llama-quantize's Q8_0 differs from it
// exactly where llama-quantize keeps the source type
TEST_F(GoldenNext, Gemma4ConverterQ8_0) {
    expect_same("tiny-gemma4-Q8_0-convert.gguf", "tiny-gemma4-q8_0");
    auto cmp = compare_with_dump(out("tiny-gemma4-Q8_0.gguf"), dump("tiny-gemma4-q8_0"), false, {}, false);
    for (const auto& d : cmp.diffs)
        EXPECT_TRUE(d.find("altup") != std::string::npos || d.find("laurel") != std::string::npos ||
                    d.find("per_layer_model_proj") != std::string::npos)
            << d;
    EXPECT_FALSE(cmp.ok()) << "llama-quantize's Q8_0 keeps some tensors in BF16";
}

TEST_F(GoldenNext, Gemma4MmprojEveryType) {
    for (const char* t : {"F16", "BF16", "F32", "Q8_0"}) {
        std::string low = t;
        for (auto& c : low) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        expect_same("mm/mmproj-tiny-gemma4-" + std::string(t) + ".gguf", "mmproj-tiny-gemma4-" + low);
    }
}

// The quality report of every variant of the one pass: one row per tensor of its GGUF; the
// lossless BF16 file has no error at all (rope_freqs and the padded rows included), Q4_K_M some.
TEST_F(GoldenNext, QualityReportsOfTheOnePass) {
    for (const char* m : {"tiny-gemma3n", "tiny-gemma4"}) {
        SCOPED_TRACE(m);
        for (const char* t : {"F16", "BF16", "Q8_0", "Q4_K_M", "Q8_0-convert"}) {
            const std::string stem = std::string(m) + "-" + t;
            const auto q = nlohmann::json::parse(read_file(out(stem + ".quality.json")));
            EXPECT_EQ(q["tensors"].size(), read_gguf(out(stem + ".gguf")).tensors.size()) << t;
            const double rel = q["overall"]["relative_rms"].get<double>();
            if (std::string(t) == "BF16") EXPECT_EQ(rel, 0.0);
            else EXPECT_GT(rel, 0.0) << t;
            if (std::string(t) == "Q4_K_M") EXPECT_LT(rel, 0.1);
        }
    }
}

// llama.cpp writes an mmproj without tensors for Gemma 3n's towers; cmf refuses with one line.
TEST_F(GoldenNext, Gemma3nMmprojIsRefused) {
    TempDir d;
    auto r = run_cmf("quantize " + shell_quote((*golden_next() / "ckpt" / "tiny-gemma3n").string()) + " --quant f16 --mmproj --out " +
                     shell_quote(d.path().string()));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("MobileNetV5"), std::string::npos) << r.output;
    EXPECT_TRUE(fs::is_empty(d.path())) << "nothing may be written";
}

}  // namespace
}  // namespace cmf::test
