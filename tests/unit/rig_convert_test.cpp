// cmf's conversion against llama.cpp v0.5.0's own convert_hf_to_gguf.py on checkpoint shapes
// the golden files do not have: Gemma 3n and Gemma 4 with other layer counts, kv-sharing, FFN
// widths that are not multiples of 256, and F16/F32 sources (`cmf synth`), plus the Gemma 4
// vision mmproj. Together with family_oracle_test (cmf's recipes == llama_model_quantize on
// cmf's lossless file) this shows every recipe equal to llama.cpp's converter + llama-quantize.
//
// Needs the reference rig (../shared/tools/llama-ref/setup.sh RIG_DIR): $REF_RIG, else ../rig
// beside the project; skips with a message without it (or without /usr/bin/python3 + torch).
#include <gtest/gtest.h>

#include "cmf/format/gguf.h"
#include "llama_quantize_ref.h"
#include "rig_ref.h"
#include "test_support.h"

namespace cmf::test {
namespace {

struct Shape {
    const char* name;
    const char* synth;
    const char* outtype;  // --outtype of the lossless conversion
    const char* cmf_type;
    bool gemma4;
};

const Shape kShapes[] = {
    {"g3n_14l_kv4_ffn640", "--preset gemma3n-tiny --layers 14 --kv-shared 4 --ffn 640", "bf16", "BF16", false},
    {"g3n_f16_ffn1152", "--preset gemma3n-tiny --layers 6 --kv-shared 2 --ffn 1152 --dtype f16", "f16", "F16", false},
    {"g3n_f32_q8", "--preset gemma3n-tiny --layers 5 --kv-shared 1 --ffn 768 --dtype f32", "q8_0", "Q8_0-convert", false},
    {"g4_12l_kv3_ffn640", "--preset gemma4-tiny --layers 12 --kv-shared 3 --ffn 640", "bf16", "BF16", true},
    {"g4_f16_kv0_ffn1152", "--preset gemma4-tiny --layers 7 --kv-shared 0 --ffn 1152 --dtype f16", "f16", "F16", true},
    {"g4_f32_q8", "--preset gemma4-tiny --layers 6 --kv-shared 2 --ffn 384 --dtype f32", "q8_0", "Q8_0-convert", true},
};

void PrintTo(const Shape& s, std::ostream* os) { *os << s.name; }

class RigConvert : public ::testing::TestWithParam<Shape> {
protected:
    void SetUp() override { REQUIRE_RIG(); }
    RunResult reference(const fs::path& ck, const std::string& outtype, const fs::path& out, bool gemma4, bool mmproj) {
        return rig::convert(ck, outtype, out, gemma4, mmproj);
    }
    TempDir dir_;
};

TEST_P(RigConvert, LosslessAndConverterQ8_0AreLlamaCppsBytes) {
    const Shape& s = GetParam();
    const fs::path ck = dir_ / "ck";
    auto r = run_cmf("synth " + shell_quote(ck.string()) + " " + s.synth);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cmf("quantize " + shell_quote(ck.string()) + " --quant " + (std::string(s.cmf_type) == "Q8_0-convert" ? "q8_0_convert" : s.outtype) +
                " --quiet --name m --out " + shell_quote((dir_ / "cmf").string()) + (s.gemma4 ? " --mmproj --mmproj-type " + std::string(s.outtype) : ""));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const fs::path ref = dir_ / "ref.gguf";
    r = reference(ck, s.outtype, ref, s.gemma4, false);
    ASSERT_EQ(r.exit_code, 0) << r.output.substr(r.output.size() > 3000 ? r.output.size() - 3000 : 0);
    // general.name comes from the directory name on both sides ("ck"); the file is the same bytes
    llama_ref::expect_same_as_llama(dir_ / "cmf" / ("m-" + std::string(s.cmf_type) + ".gguf"), ref);
    if (s.gemma4) {
        const fs::path mref = dir_ / "mmproj-ref.gguf";
        r = reference(ck, s.outtype, mref, true, true);
        ASSERT_EQ(r.exit_code, 0) << r.output.substr(r.output.size() > 3000 ? r.output.size() - 3000 : 0);
        std::string t = s.outtype;
        for (auto& c : t) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        llama_ref::expect_same_as_llama(dir_ / "cmf" / ("mmproj-m-" + t + ".gguf"), mref);
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, RigConvert, ::testing::ValuesIn(kShapes),
                         [](const ::testing::TestParamInfo<Shape>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace cmf::test
