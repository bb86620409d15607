// LoRA adapters against llama.cpp v0.5.0's own outputs in ../shared/golden-next:
//   - `cmf quantize ADAPTER --base BASE` = convert_lora_to_gguf.py (tensors, order, types, KVs),
//     except adapter.lora.alpha of the rsLoRA adapter (intentional: it runs at PEFT's scale);
//   - `cmf quantize BASE --lora ADAPTER` = PEFT merge_and_unload() + convert_hf_to_gguf.py +
//     llama-quantize, tensor for tensor (the names differ: llama.cpp's come from the merged
//     checkpoint's directory name);
// plus :SCALE, and every refusal (one line, nothing written). Other shapes, ranks, dtypes and
// families are in rig_lora_test (llama.cpp's converter and PEFT's arithmetic in torch) and in
// tests/llama/check_lora.sh (the adapters running in llama.cpp).
#include <gtest/gtest.h>

#include <cmath>

#include "cmf/format/gguf.h"
#include "cmf/format/safetensors_writer.h"
#include "cmf/pipeline/adapter_gguf.h"
#include "golden_dump.h"
#include "test_support.h"

namespace cmf::test {
namespace {

std::optional<fs::path> golden_next() {
    const auto shared = shared_dir();
    if (!shared || !fs::is_directory(*shared / "golden-next" / "ckpt" / "tiny-text-lora")) return std::nullopt;
    return *shared / "golden-next";
}

#define REQUIRE_GOLDEN_NEXT()                                                                                  \
    do {                                                                                                       \
        if (!golden_next()) GTEST_SKIP() << "SKIPPED: ../shared/golden-next is not present (set CMF_SHARED_DIR)"; \
    } while (0)

fs::path adapter(const char* n) { return *golden_next() / "ckpt" / n; }
fs::path tiny_text() { return golden_dir() / "tiny-text"; }
Dump dump(const std::string& ref) { return read_dump((*golden_next() / "dumps" / (ref + ".dump.txt")).string()); }

// An F32 tensor of zeros for a hand-made adapter file.
StTensorSpec zeros(const std::string& name, std::vector<int64_t> shape) {
    StTensorSpec x;
    x.name = name;
    x.dtype = StDtype::F32;
    x.shape = std::move(shape);
    x.fill = [n = x.nbytes()](const std::function<void(const void*, size_t)>& w) {
        std::vector<char> z(n, 0);
        w(z.data(), z.size());
    };
    return x;
}

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

TEST(LoraGolden, AdapterGgufIsConvertLoraToGguf) {
    REQUIRE_GOLDEN_NEXT();
    TempDir d;
    for (const char* n : {"tiny-text-lora", "tiny-text-rslora"}) {
        auto r = run_cmf("quantize " + shell_quote(adapter(n).string()) + " --base " + shell_quote(tiny_text().string()) +
                         " --quant f32,f16,bf16,q8_0 --quiet --out " + shell_quote(d.path().string()));
        ASSERT_EQ(r.exit_code, 0) << r.output;
    }
    // named as convert_lora_to_gguf.py names its default output: gguf-py's naming convention
    for (const char* stem : {"Tiny-Text-Lora", "Tiny-Text-Rslora"})
        for (const char* t : {"F32", "F16", "BF16", "Q8_0"}) {
            const std::string ours = (d.path() / (std::string(stem) + "-" + t + "-LoRA.gguf")).string();
            const bool rs = std::string(stem) == "Tiny-Text-Rslora";
            const std::string ref = std::string(rs ? "tiny-text-rslora-" : "tiny-text-lora-") + lower(t);
            SCOPED_TRACE(ours + " vs " + ref);
            std::vector<std::string> ignore;
            if (rs) ignore.push_back("adapter.lora.alpha");
            auto cmp = compare_with_dump(ours, dump(ref), true, ignore);
            EXPECT_TRUE(cmp.ok()) << cmp.text();
            const GgufContents g = read_gguf(ours);
            float alpha = 0;
            std::memcpy(&alpha, g.kv.get("adapter.lora.alpha")->bytes.data(), 4);
            if (rs) {
                // llama.cpp runs scale = alpha / rank (float): PEFT's float32(8 / sqrt(8))
                EXPECT_EQ(alpha / 8.0f, static_cast<float>(8.0 / std::sqrt(8.0))) << alpha;
                EXPECT_NE(alpha, 8.0f);
            } else {
                EXPECT_EQ(alpha, 8.0f);
            }
        }
}

TEST(LoraGolden, MergeIsPeftMergeThenLlamaCpp) {
    REQUIRE_GOLDEN_NEXT();
    TempDir d;
    const std::vector<std::string> names = {"general.name", "general.finetune", "general.basename"};
    for (const char* n : {"lora", "rslora"}) {
        const fs::path out = d.path() / n;
        auto r = run_cmf("quantize " + shell_quote(tiny_text().string()) + " --lora " + shell_quote(adapter(("tiny-text-" + std::string(n)).c_str()).string()) +
                         " --quant bf16,f16,q4_k_m,q8_0 --quiet --out " + shell_quote(out.string()));
        ASSERT_EQ(r.exit_code, 0) << r.output;
        EXPECT_NE(r.output.find("merging tiny-text-" + std::string(n)), std::string::npos) << r.output;
        for (const auto& [ours, ref] : std::vector<std::pair<std::string, std::string>>{
                 {"BF16", "bf16"}, {"F16", "f16"}, {"Q4_K_M", "Q4_K_M.from-bf16"}, {"Q8_0", "Q8_0.from-bf16"}}) {
            SCOPED_TRACE(std::string(n) + " " + ours);
            // merged files are named after the base and the adapter
            auto cmp = compare_with_dump((out / ("tiny-text-tiny-text-" + std::string(n) + "-" + ours + ".gguf")).string(),
                                         dump("tiny-text-" + std::string(n) + "-merged-" + ref), true, names);
            EXPECT_TRUE(cmp.ok()) << cmp.text();
        }
    }
}

// --lora DIR:S multiplies PEFT's scale: the same as an adapter with S times the alpha; :0 is the
// base itself (W + 0 rounds back to W).
TEST(LoraGolden, ScaleMultiplier) {
    REQUIRE_GOLDEN_NEXT();
    TempDir d;
    const fs::path doubled = d.path() / "alpha16";
    fs::create_directories(doubled);
    fs::copy_file(adapter("tiny-text-lora") / "adapter_model.safetensors", doubled / "adapter_model.safetensors");
    auto cfg = nlohmann::json::parse(read_file(adapter("tiny-text-lora") / "adapter_config.json"));
    cfg["lora_alpha"] = 16;
    write_file(doubled / "adapter_config.json", cfg.dump());
    auto q = [&](const std::string& lora, const std::string& out) {
        auto r = run_cmf("quantize " + shell_quote(tiny_text().string()) + (lora.empty() ? "" : " --lora " + shell_quote(lora)) +
                         " --quant bf16 --quiet --out " + shell_quote((d.path() / out).string()));
        EXPECT_EQ(r.exit_code, 0) << r.output;
        for (const auto& e : fs::directory_iterator(d.path() / out))
            if (e.path().extension() == ".gguf") return file_sha256(e.path().string());
        return std::string("no GGUF");
    };
    const std::string x2 = q(adapter("tiny-text-lora").string() + ":2", "x2");
    EXPECT_EQ(x2, q(doubled.string(), "a16"));
    EXPECT_NE(x2, q(adapter("tiny-text-lora").string(), "x1"));
    EXPECT_EQ(q(adapter("tiny-text-lora").string() + ":0", "x0"), q("", "base"));
}

// Both forms and the base in one pass (--lora-gguf, --with-base): the merged file, llama.cpp's
// adapter file and the untouched base, each what its own run writes.
TEST(LoraGolden, OnePassWritesMergedAdapterAndBase) {
    REQUIRE_GOLDEN_NEXT();
    TempDir d;
    auto r = run_cmf("quantize " + shell_quote(tiny_text().string()) + " --lora " + shell_quote(adapter("tiny-text-lora").string()) +
                     " --quant bf16,q8_0 --with-base --lora-gguf f16 --quiet --out " + shell_quote((d.path() / "one").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("wrote 5 file(s)"), std::string::npos) << r.output;
    r = run_cmf("quantize " + shell_quote(tiny_text().string()) + " --quant bf16,q8_0 --quiet --out " + shell_quote((d.path() / "base").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const char* t : {"BF16", "Q8_0"}) {
        EXPECT_EQ(file_sha256((d.path() / "one" / ("tiny-text-" + std::string(t) + ".gguf")).string()),
                  file_sha256((d.path() / "base" / ("tiny-text-" + std::string(t) + ".gguf")).string()))
            << t << ": the base written beside the merge is not the plain conversion";
    }
    const std::vector<std::string> names = {"general.name", "general.finetune", "general.basename"};
    auto cmp = compare_with_dump((d.path() / "one" / "tiny-text-tiny-text-lora-BF16.gguf").string(), dump("tiny-text-lora-merged-bf16"), true, names);
    EXPECT_TRUE(cmp.ok()) << cmp.text();
    cmp = compare_with_dump((d.path() / "one" / "tiny-text-tiny-text-lora-Q8_0.gguf").string(), dump("tiny-text-lora-merged-Q8_0.from-bf16"), true, names);
    EXPECT_TRUE(cmp.ok()) << cmp.text();
    cmp = compare_with_dump((d.path() / "one" / "Tiny-Text-Lora-F16-LoRA.gguf").string(), dump("tiny-text-lora-f16"), true);
    EXPECT_TRUE(cmp.ok()) << cmp.text();
}

// rsLoRA alpha: for every rank, llama.cpp's float alpha / r is exactly PEFT's float32 scale.
TEST(LoraAlpha, RsloraAlphaGivesPeftScaleForEveryRank) {
    LoraAdapter ad;
    ad.rslora = true;
    int exact = 0, total = 0;
    for (double alpha : {8.0, 16.0, 32.0, 7.0, 0.5, 128.0})
        for (uint32_t r = 1; r <= 512; ++r) {
            ad.alpha = alpha;
            const float x = gguf_lora_alpha(ad, r);
            const float got = x / static_cast<float>(r), want = static_cast<float>(alpha / std::sqrt(static_cast<double>(r)));
            ++total;
            if (got == want) ++exact;
            else EXPECT_EQ(std::nextafter(got, want), want) << "more than one ulp off: alpha " << alpha << " r " << r;
            if ((r & (r - 1)) == 0) EXPECT_EQ(got, want) << "powers of two are exact: alpha " << alpha << " r " << r;
        }
    EXPECT_GT(exact, total * 8 / 10) << exact << " of " << total << " exact";
    ad.rslora = false;
    ad.alpha = 16;
    EXPECT_EQ(gguf_lora_alpha(ad, 8), 16.0f);
}

TEST(LoraRef, ParsesDirAndScale) {
    EXPECT_EQ(parse_lora_ref("a/b").dir, fs::path("a/b"));
    EXPECT_EQ(parse_lora_ref("a/b").multiplier, 1.0);
    EXPECT_EQ(parse_lora_ref("a/b:0.5").dir, fs::path("a/b"));
    EXPECT_EQ(parse_lora_ref("a/b:0.5").multiplier, 0.5);
    EXPECT_EQ(parse_lora_ref("c:/x").dir, fs::path("c:/x"));  // not a number: part of the path
    EXPECT_THROW(parse_lora_ref(":2"), Error);
    EXPECT_THROW(parse_lora_ref("a:inf"), Error);
}

// ---- refusals: one line, non-zero exit, nothing written

class LoraRefusal : public ::testing::Test {
protected:
    void SetUp() override {
        REQUIRE_GOLDEN_NEXT();
        ad_ = d_.path() / "ad";
        fs::create_directories(ad_);
        fs::copy_file(adapter("tiny-text-lora") / "adapter_model.safetensors", ad_ / "adapter_model.safetensors");
        cfg_ = nlohmann::json::parse(read_file(adapter("tiny-text-lora") / "adapter_config.json"));
        save();
    }
    void save() { write_file(ad_ / "adapter_config.json", cfg_.dump(2)); }
    // the golden tensors plus one more
    void add_tensor(const std::string& name, std::vector<int64_t> shape) {
        std::vector<StTensorSpec> specs;
        const auto tensors = read_safetensors_file(adapter("tiny-text-lora") / "adapter_model.safetensors");
        for (const auto& t : tensors) specs.push_back(copy_tensor_spec(t, t.name));
        specs.push_back(zeros(name, std::move(shape)));
        fs::remove(ad_ / "adapter_model.safetensors");
        write_safetensors(ad_ / "adapter_model.safetensors", specs);
    }
    // both commands refuse with `what` in one line, and the output directory stays empty
    void expect_refused(const std::string& what, bool merge = true, bool gguf = true) {
        const fs::path out = d_.path() / "out";
        std::vector<std::string> cmds;
        if (gguf) cmds.push_back("quantize " + shell_quote(ad_.string()) + " --base " + shell_quote(tiny_text().string()) + " --quant f16 --out " + shell_quote(out.string()));
        if (merge) cmds.push_back("quantize " + shell_quote(tiny_text().string()) + " --lora " + shell_quote(ad_.string()) + " --quant q8_0 --out " + shell_quote(out.string()));
        for (const auto& c : cmds) {
            auto r = run_cmf(c);
            EXPECT_NE(r.exit_code, 0) << c << "\n" << r.output;
            EXPECT_NE(r.output.find(what), std::string::npos) << c << "\n" << r.output;
            EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
            EXPECT_TRUE(!fs::exists(out) || fs::is_empty(out)) << "nothing may be written";
        }
    }
    TempDir d_;
    fs::path ad_;
    nlohmann::json cfg_;
};

TEST_F(LoraRefusal, PickleIsNeverLoaded) {
    fs::remove(ad_ / "adapter_model.safetensors");
    write_file(ad_ / "adapter_model.bin", "\x80\x02}q\x00.");
    expect_refused("adapter_model.bin is a Python pickle, which cmf never loads; save the adapter as safetensors");
}

TEST_F(LoraRefusal, Dora) {
    cfg_["use_dora"] = true;
    save();
    expect_refused("DoRA (use_dora)");
}

TEST_F(LoraRefusal, DoraMagnitudeTensors) {
    add_tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", {512});
    expect_refused("adapter is DoRA (base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector)");
}

TEST_F(LoraRefusal, ModulesToSave) {
    cfg_["modules_to_save"] = {"lm_head", "embed_tokens"};
    save();
    expect_refused("modules_to_save [\"lm_head\",\"embed_tokens\"]");
}

TEST_F(LoraRefusal, FullWeightsInTheFile) {
    add_tensor("base_model.model.model.embed_tokens.weight", {1088, 512});
    expect_refused("adapter holds full weights, not LoRA matrices (base_model.model.model.embed_tokens.weight");
}

TEST_F(LoraRefusal, EmbeddingTargets) {
    add_tensor("base_model.model.model.embed_tokens.lora_embedding_A", {8, 1088});
    expect_refused("adapter trains embeddings (base_model.model.model.embed_tokens.lora_embedding_A)");
}

TEST_F(LoraRefusal, BiasTerms) {
    add_tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias", {512});
    expect_refused("adapter has bias terms");
    cfg_["lora_bias"] = true;
    save();
    expect_refused("bias terms (lora_bias)");
}

TEST_F(LoraRefusal, NotLora) {
    cfg_["peft_type"] = "IA3";
    save();
    expect_refused("peft_type IA3 is not LORA");
}

TEST_F(LoraRefusal, TruncatedSafetensors) {
    const std::string full = read_file(ad_ / "adapter_model.safetensors");
    fs::remove(ad_ / "adapter_model.safetensors");
    write_file(ad_ / "adapter_model.safetensors", full.substr(0, 100));
    expect_refused("adapter_model.safetensors");
}

TEST_F(LoraRefusal, TargetTheBaseDoesNotHave) {
    // the golden pairs plus one for a layer tiny-text does not have
    std::vector<StTensorSpec> specs;
    for (const auto& t : read_safetensors_file(adapter("tiny-text-lora") / "adapter_model.safetensors")) specs.push_back(copy_tensor_spec(t, t.name));
    for (const auto& [n, shape] : std::vector<std::pair<std::string, std::vector<int64_t>>>{
             {"base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight", {8, 512}},
             {"base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight", {512, 8}}})
        specs.push_back(zeros(n, shape));
    fs::remove(ad_ / "adapter_model.safetensors");
    write_safetensors(ad_ / "adapter_model.safetensors", specs);
    expect_refused("adapter targets model.layers.7.self_attn.q_proj (blk.7.attn_q.weight), which the base checkpoint does not have", true, false);
}

TEST_F(LoraRefusal, AdapterOfAnotherShape) {
    std::vector<StTensorSpec> specs;
    for (const auto& t : read_safetensors_file(adapter("tiny-text-lora") / "adapter_model.safetensors")) {
        if (t.name == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight") specs.push_back(zeros(t.name, {8, 640}));
        else specs.push_back(copy_tensor_spec(t, t.name));
    }
    fs::remove(ad_ / "adapter_model.safetensors");
    write_safetensors(ad_ / "adapter_model.safetensors", specs);
    expect_refused("model.layers.0.self_attn.q_proj is 512x640 in the adapter but model.layers.0.self_attn.q_proj.weight is 512x512 in the base", true, false);
}

TEST_F(LoraRefusal, AdapterWithoutBaseAndWrongTypes) {
    const fs::path out = d_.path() / "out";
    auto r = run_cmf("quantize " + shell_quote(ad_.string()) + " --quant f16 --out " + shell_quote(out.string()));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("is a LoRA adapter: add --base BASE_DIR"), std::string::npos) << r.output;
    r = run_cmf("quantize " + shell_quote(ad_.string()) + " --base " + shell_quote(tiny_text().string()) + " --quant q4_k_m --out " + shell_quote(out.string()));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("a LoRA adapter is written as f32, f16, bf16 or q8_0"), std::string::npos) << r.output;
    r = run_cmf("quantize " + shell_quote(ad_.string()) + " --base " + shell_quote(tiny_text().string()) + " --mmproj --out " + shell_quote(out.string()));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_FALSE(fs::exists(out));
}

// llama.cpp applies adapters to the language model: an adapter on the vision tower is merged
// (--lora ... --mmproj, rig_lora_test) or refused as a GGUF adapter, naming the module.
TEST(LoraVision, VisionTargetsAreRefusedAsGgufAdapter) {
    TempDir d;
    auto r = run_cmf("synth " + shell_quote((d.path() / "mm").string()) + " --preset tiny-mm");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cmf("synth " + shell_quote((d.path() / "ad").string()) + " --adapter-for " + shell_quote((d.path() / "mm").string()) +
                " --vision --targets q_proj");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cmf("quantize " + shell_quote((d.path() / "ad").string()) + " --base " + shell_quote((d.path() / "mm").string()) + " --quant f16 --out " +
                shell_quote((d.path() / "out").string()));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("adapter targets the vision tower (vision_tower.vision_model.encoder.layers.0.self_attn.q_proj)"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("cmf quantize BASE --lora ADAPTER --mmproj"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d.path() / "out"));
}

}  // namespace
}  // namespace cmf::test
