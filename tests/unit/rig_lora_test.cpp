// LoRA beyond the golden files, against llama.cpp v0.5.0's own tools in the reference rig
// (rig_ref.h): synthetic adapters (`cmf synth --adapter-for`, grid values, so B @ A is exact and
// PEFT's torch GEMM and cmf's agree bit for bit) of other ranks, alphas, dtypes and target sets.
//   - GGUF adapters: `cmf quantize ADAPTER --base BASE` is byte-identical to
//     convert_lora_to_gguf.py for every --outtype (rsLoRA: all but adapter.lora.alpha), including
//     r 32/64 where lora_b is whole Q8_0 blocks, and 12 layers (string order: layers.10 < .2),
//     and for Gemma 3 multimodal (v5 keys on an old-layout base), Gemma 3n and Gemma 4.
//   - Merges: `cmf quantize BASE --lora A[:S] [--lora B]` is byte-identical to PEFT's merge
//     (tests/rig/peft_merge.py) + convert_hf_to_gguf.py (+ llama-quantize for Q8_0/Q4_K_M), on a
//     sharded BF16 base, an F16 base with two adapters in order and a :SCALE, Gemma 3
//     multimodal with v5 keys on an old-layout base including vision-tower targets merged into
//     the mmproj, Gemma 3n and Gemma 4 - the families llama.cpp's adapter converter fails on.
#include <gtest/gtest.h>

#include "cmf/format/gguf.h"
#include "llama_quantize_ref.h"
#include "rig_ref.h"
#include "test_support.h"

namespace cmf::test {
namespace {

constexpr int32_t kFtypeQ8_0 = 7, kFtypeQ4_K_M = 15;

struct AdapterCase {
    const char* name;
    const char* base;     // cmf synth options of the base
    const char* adapter;  // cmf synth --adapter-for options
    bool rslora;
    bool gemma4 = false;
};

const AdapterCase kAdapters[] = {
    {"qv_r16_a32", "--preset tiny --layers 3", "--targets q_proj,v_proj --r 16 --alpha 32", false},
    {"all_r32_a16_bf16_12layers", "--preset tiny --layers 12", "--r 32 --alpha 16 --dtype bf16", false},
    {"mlp_r64_f16_rslora", "--preset tiny --layers 2 --dtype f16", "--targets gate_proj,up_proj,down_proj --r 64 --alpha 16 --dtype f16 --rslora", true},
    // the other families: llama.cpp v0.5.0's converter takes these (it drops vision-tower
    // targets without a word, which cmf refuses: lora_test)
    {"gemma3_mm_v5_keys_on_old_layout", "--preset tiny-mm", "--keys v5 --r 16 --alpha 32", false},
    {"gemma3n", "--preset gemma3n-tiny --layers 4 --kv-shared 1", "--r 8 --alpha 16", false},
    {"gemma4", "--preset gemma4-tiny --layers 4 --kv-shared 1", "--r 16 --alpha 16", false, true},
};

void PrintTo(const AdapterCase& c, std::ostream* os) { *os << c.name; }

class RigLoraAdapter : public ::testing::TestWithParam<AdapterCase> {
protected:
    void SetUp() override { REQUIRE_RIG(); }
    TempDir dir_;
};

TEST_P(RigLoraAdapter, IsConvertLoraToGgufBytes) {
    const AdapterCase& c = GetParam();
    const fs::path base = dir_ / "base", ad = dir_ / "adapter";
    auto r = run_cmf("synth " + shell_quote(base.string()) + " " + c.base);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cmf("synth " + shell_quote(ad.string()) + " --adapter-for " + shell_quote(base.string()) + " " + c.adapter);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cmf("quantize " + shell_quote(ad.string()) + " --base " + shell_quote(base.string()) + " --quant f32,f16,bf16,q8_0 --quiet --out " +
                shell_quote((dir_ / "cmf").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const char* t : {"f32", "f16", "bf16", "q8_0"}) {
        SCOPED_TRACE(t);
        const fs::path ref = dir_ / (std::string("ref-") + t + ".gguf");
        r = rig::convert_lora(ad, base, t, ref, c.gemma4);
        ASSERT_EQ(r.exit_code, 0) << rig::tail(r.output);
        std::string up = t;
        for (auto& ch : up) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        std::vector<std::string> ignore;
        if (c.rslora) ignore.push_back("adapter.lora.alpha");  // intentional: PEFT's scale (lora_test)
        llama_ref::expect_same_as_llama(dir_ / "cmf" / ("Adapter-" + up + "-LoRA.gguf"), ref, ignore);
    }
}

INSTANTIATE_TEST_SUITE_P(Adapters, RigLoraAdapter, ::testing::ValuesIn(kAdapters),
                         [](const ::testing::TestParamInfo<AdapterCase>& i) { return std::string(i.param.name); });

struct MergeCase {
    const char* name;
    const char* base;
    std::vector<std::pair<const char*, const char*>> adapters;  // synth options, ":SCALE" suffix or ""
    const char* lossless;                                       // the base dtype's --outtype
    std::vector<std::pair<const char*, int32_t>> quantized;     // cmf type, llama_ftype
    bool mmproj = false, gemma4 = false;
};

const MergeCase kMerges[] = {
    {"sharded_bf16", "--preset tiny --layers 3 --shards 3", {{"--targets q_proj,v_proj --r 16 --alpha 32", ""}}, "bf16",
     {{"Q8_0", kFtypeQ8_0}, {"Q4_K_M", kFtypeQ4_K_M}}},
    {"f16_two_adapters_scaled", "--preset tiny --layers 3 --dtype f16",
     {{"--r 32 --alpha 16", ""}, {"--r 16 --alpha 24 --dtype bf16 --rslora --seed 7 --targets o_proj,up_proj", ":0.5"}}, "f16",
     {{"Q8_0", kFtypeQ8_0}, {"Q4_K_M", kFtypeQ4_K_M}}},
    {"gemma3_mm_v5_keys_with_vision", "--preset tiny-mm", {{"--keys v5 --vision --r 16 --alpha 32", ""}}, "bf16",
     {{"Q4_K_M", kFtypeQ4_K_M}}, true},
    {"gemma3n", "--preset gemma3n-tiny --layers 5 --kv-shared 1", {{"--r 16 --alpha 16", ""}}, "bf16",
     {{"Q8_0", kFtypeQ8_0}, {"Q4_K_M", kFtypeQ4_K_M}}},
    {"gemma4", "--preset gemma4-tiny --layers 5 --kv-shared 1", {{"--r 8 --alpha 32 --rslora", ""}}, "bf16",
     {{"Q8_0", kFtypeQ8_0}, {"Q4_K_M", kFtypeQ4_K_M}}, false, true},
};

void PrintTo(const MergeCase& c, std::ostream* os) { *os << c.name; }

class RigLoraMerge : public ::testing::TestWithParam<MergeCase> {
protected:
    void SetUp() override {
        REQUIRE_RIG();
        REQUIRE_LLAMA();
    }
    TempDir dir_;
};

TEST_P(RigLoraMerge, IsPeftMergeThenLlamaCpp) {
    const MergeCase& c = GetParam();
    // both sides convert a directory named "base", so general.name agrees and files are bytes
    const fs::path base = dir_ / "base", merged = dir_ / "peft" / "base";
    auto r = run_cmf("synth " + shell_quote(base.string()) + " " + c.base);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::string loras;
    std::vector<std::string> refs;
    for (size_t i = 0; i < c.adapters.size(); ++i) {
        const fs::path ad = dir_ / ("adapter" + std::to_string(i));
        r = run_cmf("synth " + shell_quote(ad.string()) + " --adapter-for " + shell_quote(base.string()) + " " + c.adapters[i].first);
        ASSERT_EQ(r.exit_code, 0) << r.output;
        loras += " --lora " + shell_quote(ad.string() + c.adapters[i].second);
        refs.push_back(ad.string() + c.adapters[i].second);
    }
    // merged files are named after the base and the adapters
    std::string stem = "base";
    for (size_t i = 0; i < c.adapters.size(); ++i) stem += "-adapter" + std::to_string(i);
    std::string types = c.lossless;
    for (const auto& [t, f] : c.quantized) types += "," + std::string(t);
    r = run_cmf("quantize " + shell_quote(base.string()) + loras + " --quant " + types + (c.mmproj ? " --mmproj" : "") + " --quiet --out " +
                shell_quote((dir_ / "cmf").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;

    r = rig::peft_merge(base, merged, refs);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const fs::path ref = dir_ / "ref.gguf";
    r = rig::convert(merged, c.lossless, ref, c.gemma4);
    ASSERT_EQ(r.exit_code, 0) << rig::tail(r.output);
    std::string up = c.lossless;
    for (auto& ch : up) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    {
        SCOPED_TRACE(up);
        llama_ref::expect_same_as_llama(dir_ / "cmf" / (stem + "-" + up + ".gguf"), ref);
    }
    for (const auto& [t, ftype] : c.quantized) {
        SCOPED_TRACE(t);
        const fs::path q = dir_ / ("ref-" + std::string(t) + ".gguf");
        ASSERT_EQ(llama_ref::llama_quantize_plain(ref, q, ftype), 0u);
        llama_ref::expect_same_as_llama(dir_ / "cmf" / (stem + "-" + std::string(t) + ".gguf"), q);
    }
    if (c.mmproj) {
        SCOPED_TRACE("mmproj");
        const fs::path mref = dir_ / "mmproj-ref.gguf";
        r = rig::convert(merged, "f16", mref, c.gemma4, true);
        ASSERT_EQ(r.exit_code, 0) << rig::tail(r.output);
        llama_ref::expect_same_as_llama(dir_ / "cmf" / ("mmproj-" + stem + "-F16.gguf"), mref);
        // the merge reached the vision tower: the base's own mmproj differs
        r = run_cmf("quantize " + shell_quote(base.string()) + " --quant f16 --mmproj --quiet --out " + shell_quote((dir_ / "plain").string()));
        ASSERT_EQ(r.exit_code, 0) << r.output;
        EXPECT_NE(read_file(dir_ / "plain" / "mmproj-base-F16.gguf"), read_file(dir_ / "cmf" / ("mmproj-" + stem + "-F16.gguf")));
    }
}

INSTANTIATE_TEST_SUITE_P(Merges, RigLoraMerge, ::testing::ValuesIn(kMerges),
                         [](const ::testing::TestParamInfo<MergeCase>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace cmf::test
