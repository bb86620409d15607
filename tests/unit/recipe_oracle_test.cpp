// Every llama-quantize recipe of `cmf quantize` against llama.cpp v0.5.0's llama_model_quantize,
// on a checkpoint made to reach the rules the 2-layer golden models never do: `cmf synth --preset
// recipes` (12 layers: use_more_bits and the n_layer/8 and n_layer/16 early-layer rules; hidden
// 320, not a multiple of 256: the K-quant fallbacks; FFN 3328: tensors over 1 Mi elements, split
// into several chunks), written as BF16, F16 and F32 safetensors.
//
// For each source dtype, cmf converts the checkpoint to the lossless GGUF of that dtype (what a
// user feeds llama-quantize after llama.cpp's converter: BF16 -> BF16, F16 -> F16, F32 -> F32)
// and, in the same run, straight to all 14 recipes. Each test then runs llama_model_quantize on
// the lossless file with that recipe's ftype and default parameters and requires cmf's file to
// have the same KVs and the same tensors: name, order, type, shape and data bytes.
//
// The checkpoint and cmf's outputs are made once per source dtype and kept under the build dir
// (recipe-oracle/<dtype>, ~1.5 GB in all), keyed by the cmf binary: ctest runs every test in its
// own process, and remaking them per test would take minutes. The llama.cpp side is run in every
// test. Without libllama (tests/llama/setup.sh) the tests skip with a message.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <tuple>

#include "cmf/format/gguf.h"
#include "cmf/format/safetensors.h"
#include "cmf/quant/recipe.h"
#include "llama_quantize_ref.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using cmf::test::RunResult;
using cmf::test::shell_quote;

// Bump when what prepare() writes changes, so stale caches are remade.
constexpr int kCacheVersion = 1;

struct Source {
    const char* dtype;     // cmf synth --dtype
    const char* lossless;  // cmf quantize --quant: the converter type that keeps the values
};
const Source kSources[] = {{"bf16", "BF16"}, {"f16", "F16"}, {"f32", "F32"}};

fs::path cache_root() { return fs::path(CMF_BINARY).parent_path() / "recipe-oracle"; }

// Which cmf made the cache: size and modification time of the binary.
std::string binary_stamp() {
    struct stat st {};
    if (::stat(CMF_BINARY, &st) != 0) return "missing";
    return "v" + std::to_string(kCacheVersion) + " size " + std::to_string(st.st_size) + " mtime " +
           std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

std::string all_recipes_arg() {
    std::string s;
    for (const auto& r : cmf::kQuantRecipes) s += std::string(s.empty() ? "" : ",") + r.name;
    return s;
}

struct Prepared {
    fs::path lossless;  // cmf's lossless conversion
    fs::path out_dir;   // r-<RECIPE>.gguf: cmf's recipes, straight from the checkpoint
    std::string error;
};

// Makes (or finds) one source dtype's files. Serialized across processes with flock, so
// `ctest -j` may run several tests of a dtype at once.
Prepared prepare(const Source& s) {
    static std::map<std::string, Prepared> done;  // in this process
    if (auto it = done.find(s.dtype); it != done.end()) return it->second;
    Prepared p;
    const fs::path dir = cache_root() / s.dtype;
    p.out_dir = dir / "cmf";
    p.lossless = p.out_dir / (std::string("r-") + s.lossless + ".gguf");
    std::error_code ec;
    fs::create_directories(dir, ec);
    const int fd = ::open((dir / ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (fd < 0 || ::flock(fd, LOCK_EX) != 0) {
        p.error = "cannot lock " + (dir / ".lock").string() + ": " + std::strerror(errno);
        if (fd >= 0) ::close(fd);
        return p;
    }
    const std::string stamp = binary_stamp() + " dtype " + s.dtype;
    if (cmf::test::read_file(dir / "stamp") != stamp) {
        fs::remove(dir / "stamp", ec);
        fs::remove_all(p.out_dir, ec);
        const fs::path ck = dir / "checkpoint";
        const auto t0 = std::chrono::steady_clock::now();
        RunResult r = cmf::test::run_cmf("synth " + shell_quote(ck.string()) + " --preset recipes --dtype " + s.dtype);
        if (r.exit_code != 0) p.error = "cmf synth failed: " + r.output;
        if (p.error.empty()) {
            r = cmf::test::run_cmf("quantize " + shell_quote(ck.string()) + " --quant " + s.lossless + "," + all_recipes_arg() +
                                   " --name r --quiet --out " + shell_quote(p.out_dir.string()));
            if (r.exit_code != 0) p.error = "cmf quantize failed: " + r.output;
        }
        fs::remove_all(ck, ec);  // only the GGUFs are compared
        if (p.error.empty()) {
            cmf::test::write_file(dir / "stamp", stamp);
            std::printf("[recipe-oracle] %s: synth + cmf quantize (lossless + %zu recipes) took %.1f s\n", s.dtype,
                        std::size(cmf::kQuantRecipes),
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
    }
    ::close(fd);
    if (p.error.empty()) done[s.dtype] = p;
    return p;
}

using cmf::test::llama_ref::expect_same_as_llama;

using Param = std::tuple<Source, cmf::QuantRecipe>;

// gtest's "where GetParam() = ..." line: names, not bytes
void PrintTo(const Source& s, std::ostream* os) { *os << s.dtype << " source"; }

class RecipeOracle : public ::testing::TestWithParam<Param> {};

TEST_P(RecipeOracle, TensorIdenticalToLlamaModelQuantize) {
    const auto& [src, recipe] = GetParam();
    const auto& lib = cmf::test::llama_ref::llama_lib();
    if (!lib.handle)
        GTEST_SKIP() << "SKIPPED: " << lib.error
                     << ". Run tests/llama/setup.sh to install the llama.cpp v0.5.0 reference (or set CMF_NODE_DIR).";
    const Prepared p = prepare(src);
    ASSERT_TRUE(p.error.empty()) << p.error;
    const fs::path ours = p.out_dir / (std::string("r-") + recipe.name + ".gguf");
    ASSERT_TRUE(fs::is_regular_file(ours)) << ours;
    cmf::test::TempDir tmp;
    const fs::path ref = tmp / "ref.gguf";
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(cmf::test::llama_ref::llama_quantize_plain(p.lossless, ref, static_cast<int32_t>(recipe.ftype)), 0u)
        << "llama_model_quantize failed on " << p.lossless;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    RecordProperty("llama_quantize_seconds", std::to_string(secs));
    expect_same_as_llama(ours, ref);
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
    std::string d = std::get<0>(info.param).lossless;
    return d + "_" + std::get<1>(info.param).name;
}

INSTANTIATE_TEST_SUITE_P(AllRecipes, RecipeOracle,
                         ::testing::Combine(::testing::ValuesIn(kSources), ::testing::ValuesIn(cmf::kQuantRecipes)), param_name);

// The checkpoint reaches what the test is for (cheap: shapes only, from cmf's lossless file).
TEST(RecipeOracleCheckpoint, ReachesTheRulesItIsFor) {
    const auto& lib = cmf::test::llama_ref::llama_lib();
    if (!lib.handle) GTEST_SKIP() << "SKIPPED: " << lib.error << " (tests/llama/setup.sh)";
    const Prepared p = prepare(kSources[0]);
    ASSERT_TRUE(p.error.empty()) << p.error;
    const cmf::GgufContents g = cmf::read_gguf(p.lossless);
    EXPECT_GE(g.kv.get("gemma3.block_count")->as_int().value_or(0), 12);
    const int64_t hidden = g.kv.get("gemma3.embedding_length")->as_int().value_or(0);
    EXPECT_NE(hidden % 256, 0) << "hidden size must not be a multiple of 256 (K-quant fallbacks)";
    int over_1mi = 0;
    for (const auto& t : g.tensors) over_1mi += t.n_elements() > (1u << 20);
    EXPECT_GT(over_1mi, 12) << "tensors over 1 Mi elements (multi-chunk quantization)";
    // the recipes' files really differ in the ways the rules say: Q4_K_M's ffn_down layers take
    // Q6_K only where use_more_bits holds, and a 320-wide matrix falls back from Q4_K
    const cmf::GgufContents q = cmf::read_gguf(p.out_dir / "r-Q4_K_M.gguf");
    int q6 = 0, q4 = 0;
    for (const auto& t : q.tensors)
        if (t.name.find("ffn_down") != std::string::npos) (t.type == cmf::GgmlType::Q6_K ? q6 : q4)++;
    EXPECT_GT(q6, 0);
    EXPECT_GT(q4, 0);
    EXPECT_EQ(q.find("blk.0.attn_q.weight")->type, cmf::GgmlType::Q5_0);
}

}  // namespace

namespace cmf {
void PrintTo(const QuantRecipe& r, std::ostream* os) { *os << r.name; }
}  // namespace cmf
