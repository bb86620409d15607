// cmf quantize on F16 checkpoints against llama.cpp v0.5.0's own outputs (tests/data/f16-golden,
// made by its regenerate.sh with the reference rig): the golden BF16 checkpoints tiny-text and
// tiny-mm rounded to F16, converted by convert_hf_to_gguf.py (--outtype f16/bf16/f32/q8_0, and
// --mmproj) and quantized by llama-quantize from the F16 conversion, every recipe cmf offers.
//
// What it proves: for an F16 source, every output type is tensor-for-tensor (name, order, shape,
// type, data sha256) and KV-for-KV llama.cpp's. The tensors that need care are the Gemma norms:
// the converter adds 1 in float16 (arch/transform.h), so 1 + w is rounded to half before it is
// widened to the F32 the GGUF stores.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "cmf/format/safetensors.h"
#include "cmf/format/safetensors_writer.h"
#include "cmf/quant/half.h"
#include "cmf/quant/recipe.h"
#include "golden_dump.h"
#include "test_support.h"

namespace cmf::test {
namespace {

fs::path f16_dumps_dir() { return fs::path(CMF_SOURCE_DIR) / "tests" / "data" / "f16-golden"; }

// The F16 copy of a BF16 checkpoint, as tests/data/f16-golden/make_f16_checkpoint.py makes it:
// BF16 tensors rounded to half (nearest even), "bfloat16" -> "float16" in config.json, every other
// file copied. The directory name is kept (it names the model).
void make_f16_checkpoint(const fs::path& src, const fs::path& dst) {
    fs::create_directories(dst);
    for (const auto& e : fs::directory_iterator(src)) {
        const std::string fn = e.path().filename().string();
        if (fn == "config.json") {
            std::ifstream in(e.path());
            std::stringstream ss;
            ss << in.rdbuf();
            std::string s = ss.str();
            for (size_t p; (p = s.find("\"bfloat16\"")) != std::string::npos;) s.replace(p, 10, "\"float16\"");
            std::ofstream(dst / fn) << s;
        } else if (e.path().extension() != ".safetensors") {
            fs::copy_file(e.path(), dst / fn);
        }
    }
    auto ck = open_safetensors_checkpoint(src);
    std::vector<StTensorSpec> specs;
    for (const auto& t : ck.tensors) {
        ASSERT_EQ(t.file.filename(), "model.safetensors") << "one-file checkpoints only";
        StTensorSpec s = copy_tensor_spec(t, t.name);
        if (t.dtype == StDtype::BF16) {
            s.dtype = StDtype::F16;
            s.fill = [t](const std::function<void(const void*, size_t)>& write) {
                const std::string raw = read_range(t.file.string(), t.offset, t.nbytes);
                std::vector<uint16_t> h(t.nbytes / 2);
                for (size_t i = 0; i < h.size(); ++i) {
                    uint16_t b;
                    std::memcpy(&b, raw.data() + 2 * i, 2);
                    h[i] = f32_to_f16(bf16_to_f32(b));
                }
                write(h.data(), h.size() * 2);
            };
        }
        specs.push_back(std::move(s));
    }
    write_safetensors(dst / "model.safetensors", specs, {{"format", "pt"}});
}

// Every llama-quantize recipe cmf offers, by llama-quantize's name.
std::vector<std::string> recipe_names() {
    std::vector<std::string> v;
    for (const auto& r : kQuantRecipes) v.push_back(r.name);
    return v;
}

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

class GoldenF16 : public ::testing::Test {
protected:
    static TempDir* tmp_;
    static std::string setup_error_;
    static void SetUpTestSuite() {
        if (!shared_dir() || !fs::is_directory(f16_dumps_dir())) return;
        tmp_ = new TempDir();
        std::string quant = "f16,bf16,f32";
        for (const auto& r : recipe_names()) quant += "," + lower(r);
        for (const char* m : {"tiny-text", "tiny-mm"}) {
            make_f16_checkpoint(golden_dir() / m, tmp_->path() / "ckpt" / m);
            const std::string src = shell_quote((tmp_->path() / "ckpt" / m).string());
            const bool mm = std::string(m) == "tiny-mm";
            auto r = run_cmf("quantize " + src + " --quant " + quant + (mm ? " --mmproj --mmproj-type f16" : "") +
                             " --quiet --out " + shell_quote((tmp_->path() / "out").string()));
            if (r.exit_code != 0) setup_error_ += r.output;
            if (!mm) continue;
            for (const char* t : {"bf16", "f32", "q8_0"}) {
                r = run_cmf("quantize " + src + " --quant f16 --mmproj --mmproj-type " + t + " --quiet --out " +
                            shell_quote((tmp_->path() / (std::string("mm-") + t)).string()));
                if (r.exit_code != 0) setup_error_ += r.output;
            }
        }
    }
    static void TearDownTestSuite() {
        delete tmp_;
        tmp_ = nullptr;
    }
    void SetUp() override {
        CMF_REQUIRE_SHARED();
        if (!fs::is_directory(f16_dumps_dir())) GTEST_SKIP() << "SKIPPED: " << f16_dumps_dir() << " is missing";
        ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    }
    static std::string out(const std::string& rel) { return (tmp_->path() / rel).string(); }
    static Dump dump(const std::string& name) {
        const fs::path p = f16_dumps_dir() / (name + ".dump.txt");
        EXPECT_TRUE(fs::is_regular_file(p)) << p;
        return read_dump(p.string());
    }
};
TempDir* GoldenF16::tmp_ = nullptr;
std::string GoldenF16::setup_error_;

// The test checkpoint is what the reference was made from: F16 everywhere.
TEST_F(GoldenF16, CheckpointsAreF16) {
    for (const char* m : {"tiny-text", "tiny-mm"}) {
        auto ck = open_safetensors_checkpoint(tmp_->path() / "ckpt" / m);
        for (const auto& t : ck.tensors) EXPECT_EQ(t.dtype, StDtype::F16) << m << " " << t.name;
    }
}

// convert_hf_to_gguf.py --outtype f16 / bf16 / f32 on the F16 checkpoint.
TEST_F(GoldenF16, ConverterTypesMatch) {
    for (const char* m : {"tiny-text", "tiny-mm"})
        for (const char* t : {"F16", "BF16", "F32"}) {
            SCOPED_TRACE(std::string(m) + " " + t);
            auto cmp = compare_with_dump(out(std::string("out/") + m + "-" + t + ".gguf"), dump(std::string(m) + "-" + lower(t)), true);
            EXPECT_TRUE(cmp.ok()) << cmp.text();
        }
}

// llama-quantize on the F16 conversion, for every recipe cmf offers (Q8_0 included).
TEST_F(GoldenF16, EveryRecipeMatchesLlamaQuantizeOnTheF16Conversion) {
    for (const char* m : {"tiny-text", "tiny-mm"})
        for (const auto& t : recipe_names()) {
            SCOPED_TRACE(std::string(m) + " " + t);
            auto cmp = compare_with_dump(out(std::string("out/") + m + "-" + t + ".gguf"), dump(std::string(m) + "-" + t), true);
            EXPECT_TRUE(cmp.ok()) << cmp.text();
        }
}

// cmf's Q8_0 (llama-quantize's order) has the converter's --outtype q8_0 data and KV values too.
TEST_F(GoldenF16, Q8_0HasTheConvertersDataAndValues) {
    for (const char* m : {"tiny-text", "tiny-mm"}) {
        SCOPED_TRACE(m);
        auto cmp = compare_with_dump(out(std::string("out/") + m + "-Q8_0.gguf"), dump(std::string(m) + "-q8_0"), false, {}, false);
        EXPECT_TRUE(cmp.ok()) << cmp.text();
    }
}

// convert_hf_to_gguf.py --mmproj --outtype f16 / bf16 / f32 / q8_0.
TEST_F(GoldenF16, MmprojTypesMatch) {
    const std::pair<const char*, const char*> files[] = {
        {"out/mmproj-tiny-mm-F16.gguf", "mmproj-tiny-mm-f16"},
        {"mm-bf16/mmproj-tiny-mm-BF16.gguf", "mmproj-tiny-mm-bf16"},
        {"mm-f32/mmproj-tiny-mm-F32.gguf", "mmproj-tiny-mm-f32"},
        {"mm-q8_0/mmproj-tiny-mm-Q8_0.gguf", "mmproj-tiny-mm-q8_0"},
    };
    for (const auto& [ours, ref] : files) {
        SCOPED_TRACE(ours);
        auto cmp = compare_with_dump(out(ours), dump(ref), true);
        EXPECT_TRUE(cmp.ok()) << cmp.text();
    }
}

// The rule itself, on the stored F32 norms: 1 + w rounded to half, then widened. For these
// weights the half sum differs from the float sum in most elements, so this is what fails when the
// add is done in float.
TEST_F(GoldenF16, NormsAreOnePlusWeightRoundedToHalf) {
    auto ck = open_safetensors_checkpoint(tmp_->path() / "ckpt" / "tiny-text");
    GgufContents g = read_gguf(out("out/tiny-text-F32.gguf"));
    const StTensor* st = nullptr;
    for (const auto& t : ck.tensors)
        if (t.name == "model.norm.weight") st = &t;
    ASSERT_NE(st, nullptr);
    const GgufTensorInfo* gt = g.find("output_norm.weight");
    ASSERT_NE(gt, nullptr);
    ASSERT_EQ(gt->type, GgmlType::F32);
    const std::string raw = read_range(st->file.string(), st->offset, st->nbytes);
    const std::string data = read_range(out("out/tiny-text-F32.gguf"), g.data_start + gt->offset, gt->nbytes);
    size_t differs_from_f32_add = 0;
    for (size_t i = 0; i < st->nbytes / 2; ++i) {
        uint16_t h;
        float v;
        std::memcpy(&h, raw.data() + 2 * i, 2);
        std::memcpy(&v, data.data() + 4 * i, 4);
        const float w = f16_to_f32(h);
        ASSERT_EQ(f32_bits(v), f32_bits(f16_to_f32(f32_to_f16(w + 1.0f)))) << i;
        differs_from_f32_add += f32_bits(v) != f32_bits(w + 1.0f);
    }
    EXPECT_GT(differs_from_f32_add, 0u);
}

}  // namespace
}  // namespace cmf::test
