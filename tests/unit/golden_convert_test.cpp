// cmf quantize against llama.cpp's own outputs in ../shared/golden: whole files where the golden
// GGUF is stored, tensor tables and KVs against the dumps otherwise.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "cmf/format/gguf.h"
#include "cmf/format/safetensors.h"
#include "cmf/format/safetensors_writer.h"
#include "cmf/quant/half.h"
#include "golden_dump.h"
#include "test_support.h"

namespace cmf::test {
namespace {

// Converts a golden checkpoint once per test binary and keeps the outputs for all tests.
class GoldenConvert : public ::testing::Test {
protected:
    static TempDir* out_;
    static void SetUpTestSuite() {
        if (!shared_dir()) return;
        out_ = new TempDir();
        const auto g = golden_dir();
        auto r = run_cmf("quantize " + shell_quote((g / "tiny-text").string()) + " --quant f16,bf16,q8_0,f32 --quiet --out " +
                         shell_quote((out_->path() / "text").string()));
        ASSERT_EQ(r.exit_code, 0) << r.output;
        for (const char* t : {"f16", "bf16", "q8_0", "f32"}) {
            r = run_cmf("quantize " + shell_quote((g / "tiny-mm").string()) + " --quant " + t + " --mmproj --mmproj-type " + t +
                        " --quiet --out " + shell_quote((out_->path() / "mm").string()));
            ASSERT_EQ(r.exit_code, 0) << r.output;
        }
    }
    static void TearDownTestSuite() {
        delete out_;
        out_ = nullptr;
    }
    void SetUp() override { CMF_REQUIRE_SHARED(); }
    static std::string out(const std::string& rel) { return (out_->path() / rel).string(); }
    static std::string golden(const std::string& rel) { return (golden_dir() / rel).string(); }
};
TempDir* GoldenConvert::out_ = nullptr;

// Files llama.cpp stored whole: ours must be the same bytes.
TEST_F(GoldenConvert, WholeFilesAreByteIdentical) {
    const std::pair<const char*, const char*> pairs[] = {
        {"text/tiny-text-F16.gguf", "gguf/tiny-text-f16.gguf"},
        {"mm/tiny-mm-F16.gguf", "gguf/tiny-mm-f16.gguf"},
        {"mm/mmproj-tiny-mm-F16.gguf", "gguf/mmproj-tiny-mm-f16.gguf"},
    };
    for (const auto& [ours, ref] : pairs) {
        SCOPED_TRACE(ours);
        const Dump d = read_dump(golden(std::string(ref).find("mmproj") != std::string::npos
                                            ? "mmproj-tiny-mm-f16.dump.txt"
                                            : "dumps/" + fs::path(ref).stem().string() + ".dump.txt"));
        auto cmp = compare_with_dump(out(ours), d, true);
        EXPECT_TRUE(cmp.ok()) << cmp.text();
        EXPECT_EQ(file_sha256(out(ours)), file_sha256(golden(ref)));
    }
}

// cmf's Q8_0 is llama-quantize's (its tensor and KV order); the tensor data and every KV value
// equal the converter's --outtype q8_0 file as well.
TEST_F(GoldenConvert, Q8_0HasTheConvertersDataAndValues) {
    for (const char* m : {"tiny-text", "tiny-mm"}) {
        SCOPED_TRACE(m);
        const std::string sub = std::string(m) == "tiny-text" ? "text/" : "mm/";
        auto cmp = compare_with_dump(out(sub + m + "-Q8_0.gguf"), read_dump(golden(std::string(m) == "tiny-text" ? "dumps/tiny-text-q8_0.dump.txt" : "dumps/tiny-mm-q8_0.dump.txt")),
                                     false, {}, false);
        EXPECT_TRUE(cmp.ok()) << cmp.text();
    }
}

// Every llama-quantize recipe in ../shared/golden, made from the BF16 source in one pass.
TEST_F(GoldenConvert, RecipesEqualLlamaQuantizeOnTheBf16Conversion) {
    for (const char* m : {"tiny-text", "tiny-mm"}) {
        TempDir d;
        auto r = run_cmf("quantize " + shell_quote((golden_dir() / m).string()) +
                         " --quant q4_k_m,q4_k_s,q5_k_m,q6_k,q4_0,q8_0 --quiet --out " + shell_quote(d.path().string()));
        ASSERT_EQ(r.exit_code, 0) << r.output;
        for (const char* t : {"Q4_K_M", "Q4_K_S", "Q5_K_M", "Q6_K", "Q4_0", "Q8_0"}) {
            SCOPED_TRACE(std::string(m) + " " + t);
            auto cmp = compare_with_dump((d.path() / (std::string(m) + "-" + t + ".gguf")).string(),
                                         read_dump(golden(std::string("dumps/") + m + "-" + t + ".from-bf16.dump.txt")), true);
            EXPECT_TRUE(cmp.ok()) << cmp.text();
        }
    }
}

// Bytes do not depend on the thread count.
TEST_F(GoldenConvert, OutputIsIndependentOfThreadCount) {
    TempDir a, b;
    const std::string src = shell_quote((golden_dir() / "tiny-mm").string());
    ASSERT_EQ(run_cmf("quantize " + src + " --quant q4_k_m,q8_0,f16 --mmproj --threads 1 --quiet --out " + shell_quote(a.path().string())).exit_code, 0);
    ASSERT_EQ(run_cmf("quantize " + src + " --quant q4_k_m,q8_0,f16 --mmproj --threads 3 --quiet --out " + shell_quote(b.path().string())).exit_code, 0);
    for (const char* f : {"tiny-mm-Q4_K_M.gguf", "tiny-mm-Q8_0.gguf", "tiny-mm-F16.gguf", "mmproj-tiny-mm-F16.gguf"})
        EXPECT_EQ(file_sha256((a.path() / f).string()), file_sha256((b.path() / f).string())) << f;
}

// BF16 and the other mmproj types exist only as dumps.
TEST_F(GoldenConvert, DumpsMatchTensorForTensorAndKvForKv) {
    const std::pair<const char*, const char*> pairs[] = {
        {"text/tiny-text-BF16.gguf", "dumps/tiny-text-bf16.dump.txt"},
        {"mm/tiny-mm-BF16.gguf", "dumps/tiny-mm-bf16.dump.txt"},
        {"mm/mmproj-tiny-mm-BF16.gguf", "dumps/mmproj-tiny-mm-bf16.dump.txt"},
        {"mm/mmproj-tiny-mm-Q8_0.gguf", "dumps/mmproj-tiny-mm-q8_0.dump.txt"},
        {"mm/mmproj-tiny-mm-F32.gguf", "dumps/mmproj-tiny-mm-f32.dump.txt"},
    };
    for (const auto& [ours, ref] : pairs) {
        SCOPED_TRACE(ours);
        auto cmp = compare_with_dump(out(ours), read_dump(golden(ref)), true);
        EXPECT_TRUE(cmp.ok()) << cmp.text();
    }
}

// BF16 output = the source bits; F32 output = the widened source; norms = source + 1.
TEST_F(GoldenConvert, Bf16AndF32EqualTheSourceExactly) {
    auto ck = open_safetensors_checkpoint(golden_dir() / "tiny-text");
    GgufContents bf = read_gguf(out("text/tiny-text-BF16.gguf"));
    GgufContents f32 = read_gguf(out("text/tiny-text-F32.gguf"));
    int norms = 0, mats = 0;
    for (const auto& st : ck.tensors) {
        ASSERT_EQ(st.dtype, StDtype::BF16);
        const std::string raw = read_range(st.file.string(), st.offset, st.nbytes);
        const auto* src = reinterpret_cast<const uint16_t*>(raw.data());
        const size_t n = st.nbytes / 2;
        const bool is_norm = st.name.size() >= 11 && st.name.compare(st.name.size() - 11, 11, "norm.weight") == 0;
        std::string target = st.name;
        // map HF -> GGUF with the same table the converter uses
        static const std::pair<const char*, const char*> rows[] = {
            {"input_layernorm.weight", "attn_norm.weight"}, {"self_attn.q_proj.weight", "attn_q.weight"},
            {"self_attn.k_proj.weight", "attn_k.weight"}, {"self_attn.v_proj.weight", "attn_v.weight"},
            {"self_attn.o_proj.weight", "attn_output.weight"}, {"self_attn.q_norm.weight", "attn_q_norm.weight"},
            {"self_attn.k_norm.weight", "attn_k_norm.weight"}, {"post_attention_layernorm.weight", "post_attention_norm.weight"},
            {"pre_feedforward_layernorm.weight", "ffn_norm.weight"}, {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
            {"mlp.gate_proj.weight", "ffn_gate.weight"}, {"mlp.up_proj.weight", "ffn_up.weight"}, {"mlp.down_proj.weight", "ffn_down.weight"}};
        if (st.name == "model.embed_tokens.weight") target = "token_embd.weight";
        else if (st.name == "model.norm.weight") target = "output_norm.weight";
        else {
            const std::string p = "model.layers.";
            auto dot = st.name.find('.', p.size());
            const std::string layer = st.name.substr(p.size(), dot - p.size()), suffix = st.name.substr(dot + 1);
            for (const auto& [hf, gg] : rows)
                if (suffix == hf) target = "blk." + layer + "." + gg;
        }
        const GgufTensorInfo* tb = bf.find(target);
        const GgufTensorInfo* tf = f32.find(target);
        ASSERT_TRUE(tb && tf) << target;
        const std::string fdata = read_range(out("text/tiny-text-F32.gguf"), f32.data_start + tf->offset, tf->nbytes);
        const auto* fv = reinterpret_cast<const float*>(fdata.data());
        ASSERT_EQ(tf->type, GgmlType::F32);
        ASSERT_EQ(tf->n_elements(), n);
        if (is_norm) {
            ++norms;
            ASSERT_EQ(tb->type, GgmlType::F32) << target;  // norms stay F32 in every file
            for (size_t i = 0; i < n; ++i) ASSERT_EQ(f32_bits(fv[i]), f32_bits(bf16_to_f32(src[i]) + 1.0f)) << target << " " << i;
        } else {
            ++mats;
            ASSERT_EQ(tb->type, GgmlType::BF16) << target;
            const std::string bdata = read_range(out("text/tiny-text-BF16.gguf"), bf.data_start + tb->offset, tb->nbytes);
            ASSERT_EQ(bdata, raw) << target;
            for (size_t i = 0; i < n; ++i) ASSERT_EQ(f32_bits(fv[i]), static_cast<uint32_t>(src[i]) << 16) << target;
        }
    }
    EXPECT_EQ(norms, 13);
    EXPECT_EQ(mats, 15);
}

// tiny-mm saved in the transformers-v5 layout: same text tensors, and a full mmproj (llama.cpp
// writes an empty one for this layout).
TEST_F(GoldenConvert, TransformersV5LayoutGivesSameTensorsAndAFullMmproj) {
    TempDir d;
    const fs::path v5 = d.path() / "tiny-mm-v5";
    fs::create_directories(v5);
    for (const auto& e : fs::directory_iterator(golden_dir() / "tiny-mm")) {
        const std::string fn = e.path().filename().string();
        if (fn != "config.json" && fn != "model.safetensors") fs::copy_file(e.path(), v5 / fn);
    }
    fs::copy_file(golden_dir() / "tiny-mm-v5" / "config.json", v5 / "config.json");
    auto ck = open_safetensors_checkpoint(golden_dir() / "tiny-mm");
    std::vector<StTensorSpec> specs;
    for (const auto& t : ck.tensors) {
        std::string n = t.name;
        if (n.rfind("language_model.model.", 0) == 0) n = "model.language_model." + n.substr(21);
        else if (n.rfind("vision_tower.", 0) == 0 || n.rfind("multi_modal_projector.", 0) == 0) n = "model." + n;
        specs.push_back(copy_tensor_spec(t, n));
    }
    write_safetensors(v5 / "model.safetensors", specs);
    auto r = run_cmf("quantize " + shell_quote(v5.string()) + " --quant f16 --mmproj --quiet --out " + shell_quote((d.path() / "out").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;

    // text: every KV of llama.cpp's v5 conversion, tensors identical to the legacy layout's
    auto text = compare_with_dump(d.path() / "out" / "tiny-mm-v5-F16.gguf", read_dump(golden("dumps/tiny-mm-v5-f16.dump.txt")), true);
    EXPECT_TRUE(text.ok()) << text.text();
    auto legacy = compare_with_dump(d.path() / "out" / "tiny-mm-v5-F16.gguf", read_dump(golden("tiny-mm-f16.dump.txt")), true,
                                    {"general.name", "general.version", "general.basename"});
    EXPECT_TRUE(legacy.ok()) << legacy.text();
    // mmproj: the vision tensors of the legacy conversion, not the empty file llama.cpp writes
    auto mm = compare_with_dump(d.path() / "out" / "mmproj-tiny-mm-v5-F16.gguf", read_dump(golden("mmproj-tiny-mm-f16.dump.txt")), true,
                                {"general.name", "general.version", "general.basename"});
    EXPECT_TRUE(mm.ok()) << mm.text();
    EXPECT_EQ(read_gguf(d.path() / "out" / "mmproj-tiny-mm-v5-F16.gguf").tensors.size(), 39u);
}

}  // namespace
}  // namespace cmf::test

namespace cmf::test {
namespace {
// The comparison itself must be able to fail: a file against another type's dump differs.
TEST_F(GoldenConvert, ComparatorDetectsDifferences) {
    auto cmp = compare_with_dump(out("text/tiny-text-F16.gguf"), read_dump(golden("dumps/tiny-text-q8_0.dump.txt")), true);
    EXPECT_FALSE(cmp.ok());
    EXPECT_NE(cmp.text().find("general.file_type"), std::string::npos);
    EXPECT_NE(cmp.text().find("type F16 vs Q8_0"), std::string::npos);
}
}  // namespace
}  // namespace cmf::test
