// --tensor-type / --keep-layers / --token-embedding-type / --output-tensor-type: llama-quantize's
// meaning, and every override recorded in the file's metadata.
#include <gtest/gtest.h>

#include "cmf/format/gguf.h"
#include "cmf/quant/recipe.h"
#include "test_support.h"

namespace cmf::test {
namespace {

GgmlType type_of(const GgufContents& g, const std::string& n) {
    const GgufTensorInfo* t = g.find(n);
    EXPECT_TRUE(t) << n;
    return t ? t->type : GgmlType::F32;
}

class Overrides : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new TempDir();
        ASSERT_EQ(run_cmf("synth " + shell_quote((dir_->path() / "m").string()) + " --preset tiny --layers 8").exit_code, 0);
    }
    static void TearDownTestSuite() { delete dir_; }
    static GgufContents quantize(const std::string& args, const std::string& out) {
        auto r = run_cmf("quantize " + shell_quote((dir_->path() / "m").string()) + " --quant q4_k_m --quiet " + args + " --out " +
                         shell_quote((dir_->path() / out).string()));
        EXPECT_EQ(r.exit_code, 0) << r.output;
        return read_gguf(dir_->path() / out / "m-Q4_K_M.gguf");
    }
    static TempDir* dir_;
};
TempDir* Overrides::dir_ = nullptr;

TEST_F(Overrides, NoneGivesTheRecipeAndNoExtraKeys) {
    GgufContents g = quantize("", "plain");
    // 8 layers: use_more_bits picks layers 0, 3, 6, 7 for attn_v / ffn_down
    for (int l = 0; l < 8; ++l) {
        const bool more = l < 1 || l >= 7 || (l - 1) % 3 == 2;
        EXPECT_EQ(type_of(g, "blk." + std::to_string(l) + ".attn_v.weight"), more ? GgmlType::Q6_K : GgmlType::Q4_K) << l;
        EXPECT_EQ(type_of(g, "blk." + std::to_string(l) + ".ffn_down.weight"), more ? GgmlType::Q6_K : GgmlType::Q4_K) << l;
    }
    EXPECT_EQ(type_of(g, "token_embd.weight"), GgmlType::Q6_K);
    EXPECT_EQ(g.kv.get("quantize.tensor_type_overrides"), nullptr);
    EXPECT_EQ(g.kv.items().back().first, "general.file_type");
}

TEST_F(Overrides, KeepLayersAndTensorTypeAreRecorded) {
    GgufContents g = quantize("--keep-layers 1-2=q8_0 --tensor-type 'ffn_gate=q5_k' --token-embedding-type q8_0", "ov");
    for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}) {
        EXPECT_EQ(type_of(g, std::string("blk.1.") + n + ".weight"), GgmlType::Q8_0) << n;
        EXPECT_EQ(type_of(g, std::string("blk.2.") + n + ".weight"), GgmlType::Q8_0) << n;
    }
    EXPECT_EQ(type_of(g, "blk.4.ffn_gate.weight"), GgmlType::Q5_K);       // the regex rule
    EXPECT_EQ(type_of(g, "blk.4.ffn_up.weight"), GgmlType::Q4_K);         // untouched
    EXPECT_EQ(type_of(g, "blk.1.attn_norm.weight"), GgmlType::F32);       // never quantized
    EXPECT_EQ(type_of(g, "token_embd.weight"), GgmlType::Q8_0);
    const GgufValue* rules = g.kv.get("quantize.tensor_type_overrides");
    ASSERT_TRUE(rules);
    ASSERT_EQ(rules->strs.size(), 2u);
    EXPECT_EQ(rules->strs[0], "^blk\\.(1|2)\\.=Q8_0");
    EXPECT_EQ(rules->strs[1], "ffn_gate=Q5_K");
    ASSERT_TRUE(g.kv.get("quantize.token_embedding_type"));
    EXPECT_EQ(g.kv.get("quantize.token_embedding_type")->str, "Q8_0");
}

TEST_F(Overrides, BadOverridesAreUsageErrors) {
    for (const char* bad : {"--tensor-type '(=q8_0'", "--tensor-type attn_v=q9_9", "--keep-layers x-y=q8_0", "--keep-layers 1-2"}) {
        auto r = run_cmf("quantize " + shell_quote((dir_->path() / "m").string()) + " --quant q4_k_m " + bad + " --out " +
                         shell_quote((dir_->path() / "bad").string()));
        EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.output;
        EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    }
}

}  // namespace
}  // namespace cmf::test
