// Gemma 3n and Gemma 4 through every llama-quantize path, against llama.cpp v0.5.0's
// llama_model_quantize (the prebuilt libllama that tests/llama/setup.sh installs):
//   - all 14 recipes;
//   - --keep-layers, --tensor-type (including per_layer_token_embd named while
//     --token-embedding-type is set), --token-embedding-type, --output-tensor-type, recorded in
//     the file's metadata;
//   - an importance matrix.
// For each checkpoint cmf converts straight from the safetensors in one pass; llama.cpp
// quantizes cmf's lossless conversion (which golden_next_test proves equal to llama.cpp's
// converter). Checkpoints: synthetic shapes the golden files do not have (other layer counts,
// kv-sharing, FFN widths that are not multiples of 256, F16 sources), and the golden-next tiny
// checkpoints when ../shared is present.
#include <gtest/gtest.h>

#include <random>

#include "cmf/format/gguf.h"
#include "cmf/quant/imatrix.h"
#include "cmf/quant/recipe.h"
#include "imatrix_files.h"
#include "llama_quantize_ref.h"
#include "test_support.h"

namespace cmf::test {
namespace {

using namespace llama_ref;

struct Case {
    const char* name;
    const char* synth;     // `cmf synth` arguments, or null for a golden-next checkpoint
    const char* lossless;  // the lossless converter type of its dtype
};

const Case kCases[] = {
    {"tiny-gemma3n", nullptr, "BF16"},
    {"tiny-gemma4", nullptr, "BF16"},
    {"g3n-14l-kv4-ffn640", "--preset gemma3n-tiny --layers 14 --kv-shared 4 --ffn 640", "BF16"},
    {"g3n-f16-ffn1152", "--preset gemma3n-tiny --layers 6 --kv-shared 2 --ffn 1152 --dtype f16", "F16"},
    {"g4-12l-kv3-ffn640", "--preset gemma4-tiny --layers 12 --kv-shared 3 --ffn 640", "BF16"},
    {"g4-f16-kv0-ffn1152", "--preset gemma4-tiny --layers 7 --kv-shared 0 --ffn 1152 --dtype f16", "F16"},
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class FamilyOracle : public ::testing::TestWithParam<Case> {
protected:
    void SetUp() override {
        REQUIRE_LLAMA();
        const Case& c = GetParam();
        if (c.synth) {
            ck_ = dir_ / "ck";
            auto r = run_cmf("synth " + shell_quote(ck_.string()) + " " + c.synth);
            ASSERT_EQ(r.exit_code, 0) << r.output;
        } else {
            CMF_REQUIRE_SHARED();
            ck_ = *shared_dir() / "golden-next" / "ckpt" / c.name;
            if (!fs::is_directory(ck_)) GTEST_SKIP() << "SKIPPED: " << ck_ << " is not present";
        }
        lossless_ = dir_ / "cmf" / (std::string("m-") + c.lossless + ".gguf");
    }

    RunResult cmf_quantize(const std::string& quant, const std::string& out, const std::string& extra = "") {
        return run_cmf("quantize " + shell_quote(ck_.string()) + " --quant " + quant + " --quiet --name m --out " +
                       shell_quote((dir_ / out).string()) + " " + extra);
    }

    TempDir dir_;
    fs::path ck_, lossless_;
};

TEST_P(FamilyOracle, EveryRecipeEqualsLlamaQuantize) {
    std::string all = GetParam().lossless;
    for (const auto& r : kQuantRecipes) all += std::string(",") + r.name;
    auto r = cmf_quantize(all, "cmf");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const auto& rec : kQuantRecipes) {
        SCOPED_TRACE(rec.name);
        const fs::path ref = dir_ / (std::string("ref-") + rec.name + ".gguf");
        QuantizeCall call;
        call.ftype = static_cast<int32_t>(rec.ftype);
        ASSERT_EQ(llama_quantize(lossless_, ref, call), 0u) << "llama_model_quantize failed";
        expect_same_as_llama(dir_ / "cmf" / (std::string("m-") + rec.name + ".gguf"), ref);
        fs::remove(ref);
    }
}

// The Gemma 4 phone team's case: sensitive layers kept out of int4, the per-layer embedding
// named by --tensor-type although --token-embedding-type is set.
TEST_P(FamilyOracle, OverridesEqualLlamaQuantizeAndAreRecorded) {
    const std::string args =
        "--keep-layers 0-1=q8_0 --tensor-type FFN_DOWN=q5_k --tensor-type per_layer_token_embd=q4_k "
        "--token-embedding-type q8_0 --output-tensor-type q6_k";
    auto r = cmf_quantize(std::string(GetParam().lossless) + ",q4_k_m,q4_k_s", "cmf", args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (auto [label, ftype] : {std::pair<const char*, int32_t>{"Q4_K_M", 15}, {"Q4_K_S", 14}}) {
        SCOPED_TRACE(label);
        QuantizeCall call;
        call.ftype = ftype;
        call.token_embedding_type = GgmlType::Q8_0;
        call.output_tensor_type = GgmlType::Q6_K;
        // as llama-quantize's CLI passes them: in order, lowercased
        call.tensor_types = {{"^blk\\.(0|1)\\.", GgmlType::Q8_0}, {"ffn_down", GgmlType::Q5_K}, {"per_layer_token_embd", GgmlType::Q4_K}};
        const fs::path ref = dir_ / (std::string("ref-") + label + ".gguf");
        ASSERT_EQ(llama_quantize(lossless_, ref, call), 0u);
        const fs::path ours = dir_ / "cmf" / ("m-" + std::string(label) + ".gguf");
        expect_same_as_llama(ours, ref, {"quantize.tensor_type_overrides", "quantize.token_embedding_type", "quantize.output_tensor_type"});
        const GgufContents g = read_gguf(ours);
        const GgufValue* rules = g.kv.get("quantize.tensor_type_overrides");
        ASSERT_TRUE(rules);
        EXPECT_EQ(rules->strs, (std::vector<std::string>{"^blk\\.(0|1)\\.=Q8_0", "ffn_down=Q5_K", "per_layer_token_embd=Q4_K"}));
        ASSERT_TRUE(g.kv.get("quantize.token_embedding_type"));
        EXPECT_EQ(g.kv.get("quantize.token_embedding_type")->str, "Q8_0");
        // the overrides did something: layer 0 is Q8_0, the per-layer table Q4_K, token_embd Q8_0
        if (const GgufTensorInfo* t = g.find("blk.0.attn_q.weight")) EXPECT_EQ(t->type, GgmlType::Q8_0);
        if (const GgufTensorInfo* t = g.find("per_layer_token_embd.weight")) EXPECT_EQ(t->type, GgmlType::Q4_K);
        if (const GgufTensorInfo* t = g.find("token_embd.weight")) EXPECT_EQ(t->type, GgmlType::Q8_0);
    }
}

TEST_P(FamilyOracle, ImatrixEqualsLlamaQuantize) {
    // values for every 2-D weight of the lossless file (the ones llama-quantize may quantize)
    auto r = cmf_quantize(GetParam().lossless, "cmf");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const GgufContents g = read_gguf(lossless_);
    GgufImatrixSpec spec;
    std::mt19937 rng(77);
    std::uniform_real_distribution<float> u(0.01f, 10.0f);
    for (const auto& t : g.tensors) {
        if (t.ne.size() != 2 || t.name == "token_embd.weight") continue;
        const float count = static_cast<float>(1 + rng() % 100);
        std::vector<float> sums(t.ne[0]);
        for (auto& x : sums) x = u(rng) * count;
        spec.entries.push_back({t.name, sums, {count}});
    }
    ASSERT_GT(spec.entries.size(), 10u);
    const fs::path im = dir_ / "calib.imatrix.gguf";
    write_file(im, gguf_imatrix_bytes(spec));
    r = cmf_quantize("q4_k_m,q3_k_s", "cmf", "--imatrix " + shell_quote(im.string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const ImatrixData m = load_imatrix(im);
    for (auto [label, ftype] : {std::pair<const char*, int32_t>{"Q4_K_M", 15}, {"Q3_K_S", 11}}) {
        SCOPED_TRACE(label);
        QuantizeCall call;
        call.ftype = ftype;
        call.imatrix = &m;
        const fs::path ref = dir_ / (std::string("ref-") + label + ".gguf");
        ASSERT_EQ(llama_quantize(lossless_, ref, call), 0u);
        expect_same_as_llama(dir_ / "cmf" / ("m-" + std::string(label) + ".gguf"), ref);
    }
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyOracle, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& i) {
                             std::string n = i.param.name;
                             for (auto& ch : n)
                                 if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                             return n;
                         });

}  // namespace
}  // namespace cmf::test
