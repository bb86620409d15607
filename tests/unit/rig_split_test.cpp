// `cmf split` against llama.cpp v0.5.0's own llama-gguf-split --split (the reference rig's build):
// for golden GGUFs and a `cmf synth` checkpoint quantized by `cmf quantize`, at several
// --split-max-size / --split-max-tensors settings, both write the same file names with the same
// bytes, or both refuse (a first tensor larger than the size).
//
// Needs $REF_RIG or ../rig with llama.cpp/build/bin/llama-gguf-split (../shared/tools/llama-ref/
// setup.sh) and ../shared/golden; skips with a message without them.
#include <gtest/gtest.h>

#include <algorithm>

#include "cmf/format/gguf.h"
#include "rig_ref.h"
#include "test_support.h"

namespace cmf::test {
namespace {

std::optional<fs::path> gguf_split_tool() {
    auto rig = rig::rig_dir();
    if (!rig) {
        // rig_dir() wants the converter too; this test needs only the tool
        const fs::path p = fs::path(CMF_SOURCE_DIR).parent_path() / "rig";
        if (fs::is_directory(p / "llama.cpp")) rig = p;
    }
    if (!rig) return std::nullopt;
    const fs::path tool = *rig / "llama.cpp" / "build" / "bin" / "llama-gguf-split";
    if (!fs::is_regular_file(tool)) return std::nullopt;
    return tool;
}

#define REQUIRE_GGUF_SPLIT()                                                                           \
    do {                                                                                               \
        CMF_REQUIRE_SHARED();                                                                          \
        if (!gguf_split_tool())                                                                        \
            GTEST_SKIP() << "SKIPPED: no llama-gguf-split in the reference rig ($REF_RIG or ../rig, "  \
                            "llama.cpp/build/bin; see ../shared/tools/llama-ref/setup.sh)";            \
    } while (0)

std::vector<std::string> split_files(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

// llama-gguf-split option -> cmf split option
std::string cmf_option(const std::string& gguf_split_option) {
    std::string o = gguf_split_option;
    for (auto [from, to] : {std::pair{"--split-max-size", "--max-size"}, std::pair{"--split-max-tensors", "--max-tensors"}})
        if (auto k = o.find(from); k != std::string::npos) o.replace(k, std::string(from).size(), to);
    return o;
}

// Splits `in` both ways with `option` and expects the same files, byte for byte, or both refusing.
// Returns the number of parts.
size_t expect_same_split(const fs::path& in, const std::string& option, bool expect_refusal = false) {
    SCOPED_TRACE(in.filename().string() + " " + option);
    TempDir dir;
    fs::create_directory(dir / "ref");
    fs::create_directory(dir / "cmf");
    const auto ref = run(shell_quote(gguf_split_tool()->string()) + " --split " + option + " " + shell_quote(in.string()) + " " +
                         shell_quote((dir / "ref" / "m").string()));
    const auto ours = run_cmf("split " + shell_quote(in.string()) + " " + shell_quote((dir / "cmf" / "m").string()) + " " + cmf_option(option));
    if (expect_refusal) {
        EXPECT_NE(ref.exit_code, 0) << ref.output;
        EXPECT_NE(ours.exit_code, 0) << ours.output;
        EXPECT_TRUE(split_files(dir / "cmf").empty());
        return 0;
    }
    EXPECT_EQ(ref.exit_code, 0) << ref.output;
    EXPECT_EQ(ours.exit_code, 0) << ours.output;
    const auto names = split_files(dir / "ref");
    EXPECT_EQ(split_files(dir / "cmf"), names);
    for (const auto& n : names) {
        const std::string a = read_file(dir / "ref" / n), b = read_file(dir / "cmf" / n);
        EXPECT_EQ(a.size(), b.size()) << n;
        if (a != b) {
            size_t k = 0;
            while (k < std::min(a.size(), b.size()) && a[k] == b[k]) ++k;
            ADD_FAILURE() << n << ": first difference at byte " << k;
        }
    }
    return names.size();
}

TEST(RigSplit, GoldenFilesAreSplitLikeLlamaGgufSplit) {
    REQUIRE_GGUF_SPLIT();
    const fs::path g = golden_dir() / "gguf";
    EXPECT_GE(expect_same_split(g / "tiny-text-f16.gguf", "--split-max-size 2M"), 4u);
    EXPECT_GE(expect_same_split(g / "tiny-text-f16.gguf", "--split-max-size 3M"), 3u);
    EXPECT_EQ(expect_same_split(g / "tiny-text-f16.gguf", "--split-max-size 20M"), 1u);  // one part, still named -00001-of-00001
    EXPECT_GE(expect_same_split(g / "tiny-text-f16.gguf", "--split-max-size 2M --no-tensor-first-split"), 5u);
    expect_same_split(g / "tiny-text-f16.gguf", "--split-max-size 1M", /*expect_refusal=*/true);  // token_embd is 1.11 MB
    EXPECT_GE(expect_same_split(g / "tiny-text-Q4_K_M.gguf", "--split-max-size 1M"), 3u);
    EXPECT_GE(expect_same_split(g / "tiny-text-q8_0.gguf", "--split-max-tensors 5"), 6u);
    EXPECT_EQ(expect_same_split(g / "tiny-text-q8_0.gguf", "--split-max-tensors 1"), 28u);
    EXPECT_GE(expect_same_split(g / "tiny-mm-Q6_K.gguf", "--split-max-size 1M"), 2u);
    // v.position_embd (2.1 MB) is not the first tensor: a part of its own, over the limit
    EXPECT_GE(expect_same_split(g / "mmproj-tiny-mm-f16.gguf", "--split-max-size 1M"), 3u);
}

TEST(RigSplit, QuantizedSynthCheckpointIsSplitLikeLlamaGgufSplit) {
    REQUIRE_GGUF_SPLIT();
    TempDir dir;
    auto r = run_cmf("synth " + shell_quote((dir / "ck").string()) + " --layers 4");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cmf("quantize " + shell_quote((dir / "ck").string()) + " --quant q8_0,q4_k_m --quiet --name s --out " + shell_quote((dir / "q").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const char* f : {"s-Q8_0.gguf", "s-Q4_K_M.gguf"}) {
        ASSERT_TRUE(fs::exists(dir / "q" / f)) << f;
        EXPECT_GE(expect_same_split(dir / "q" / f, "--split-max-size 1M"), 2u);
        EXPECT_GE(expect_same_split(dir / "q" / f, "--split-max-tensors 7"), 3u);
    }
}

// Shapes the golden files do not have: trailing dimensions of 1 (gguf-split writes ggml_n_dims()),
// an explicit general.alignment = 32, a bool array.
TEST(RigSplit, TrailingUnitDimensionsAndOddKvsAreSplitLikeLlamaGgufSplit) {
    REQUIRE_GGUF_SPLIT();
    TempDir dir;
    GgufLayout l;
    l.kv.set("general.architecture", GgufValue::string("llama"));
    l.kv.set("general.alignment", GgufValue::u32(32));
    l.kv.set("x.flags", GgufValue::array(GgufType::BOOL, std::vector<uint8_t>{1, 0, 1}));
    l.add_tensor("a", {32, 1}, GgmlType::F32);
    l.add_tensor("b", {32, 4, 1, 1}, GgmlType::F16);
    l.add_tensor("c", {32, 1, 2}, GgmlType::F32);
    l.add_tensor("d", {33}, GgmlType::F32);
    l.finalize();
    {
        GgufOutput out(dir / "in.gguf", l);
        for (size_t i = 0; i < l.tensors.size(); ++i) {
            std::string bytes(l.tensors[i].nbytes, static_cast<char>(i + 1));
            out.write_at(bytes.data(), bytes.size(), l.data_start + l.tensors[i].offset);
        }
        out.commit();
    }
    EXPECT_EQ(expect_same_split(dir / "in.gguf", "--split-max-tensors 2"), 2u);
    EXPECT_EQ(expect_same_split(dir / "in.gguf", "--split-max-tensors 1 --no-tensor-first-split"), 5u);
}

}  // namespace
}  // namespace cmf::test
