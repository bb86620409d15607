// Bad checkpoints and bad output locations: `cmf quantize` must fail with a non-zero exit code,
// exactly one line of output that names the problem, and no file left in the output directory
// (no partial GGUF, no temporary). Each case starts from a valid synthetic checkpoint
// (cmf/arch/synth_checkpoint.h) and breaks one thing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <string>

#include "cmf/format/safetensors.h"
#include "cmf/arch/synth_checkpoint.h"
#include "test_support.h"

namespace cmf::test {
namespace {

using nlohmann::json;

// A one-layer tiny checkpoint: the smallest valid input (~3 MB).
fs::path make_checkpoint(const TempDir& tmp, int shards = 1) {
    const fs::path ck = tmp / "ck";
    synth::SynthSpec spec;
    spec.preset = "tiny";
    spec.layers = 1;
    spec.shards = shards;
    synth::write_synthetic_checkpoint(ck, spec);
    return ck;
}

struct StFile {
    std::string header;  // the JSON text
    std::string data;    // the data section
};

StFile read_st(const fs::path& p) {
    const std::string raw = read_file(p);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(raw[static_cast<size_t>(i)]);
    return {raw.substr(8, n), raw.substr(8 + n)};
}

std::string le64(uint64_t n) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>(n >> (8 * i));
    return s;
}

void write_st(const fs::path& p, const std::string& header, const std::string& data) {
    write_file(p, le64(header.size()) + header + data);
}

// Rewrites the header of model.safetensors through `edit`, keeping the data section.
template <class F>
void edit_header(const fs::path& ck, F edit) {
    const fs::path p = ck / "model.safetensors";
    StFile f = read_st(p);
    json h = json::parse(f.header);
    edit(h);
    write_st(p, h.dump(), f.data);
}

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// Runs cmf quantize on `ck` into a fresh empty output directory and checks the failure contract.
void expect_clean_failure(const TempDir& tmp, const fs::path& ck, const std::string& keyword) {
    const fs::path out = tmp / "out";
    fs::create_directories(out);
    RunResult r = run_cmf("quantize " + shell_quote(ck.string()) + " --quant f16,q8_0 --out " + shell_quote(out.string()));
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_LT(r.exit_code, 70) << "an input problem must not be reported as an internal error: " << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << "expected exactly one line, got:\n" << r.output;
    EXPECT_TRUE(!r.output.empty() && r.output.back() == '\n') << r.output;
    EXPECT_EQ(r.output.rfind("cmf quantize: ", 0), 0u) << r.output;
    EXPECT_NE(lower(r.output).find(lower(keyword)), std::string::npos) << "'" << keyword << "' not in: " << r.output;
    std::vector<std::string> left;
    for (const auto& e : fs::directory_iterator(out)) left.push_back(e.path().filename().string());
    EXPECT_TRUE(left.empty()) << "output directory not empty, first entry: " << (left.empty() ? "" : left[0]);
}

TEST(BadInput, ValidCheckpointConverts) {
    // the baseline every case corrupts
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    RunResult r = run_cmf("quantize " + shell_quote(ck.string()) + " --quant f16 --quiet --out " + shell_quote((tmp / "out").string()));
    EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(BadInput, TruncatedSafetensors) {
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    const fs::path p = ck / "model.safetensors";
    fs::resize_file(p, fs::file_size(p) / 2);
    expect_clean_failure(tmp, ck, "truncated");
}

TEST(BadInput, HeaderLengthPastEndOfFile) {
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    const fs::path p = ck / "model.safetensors";
    std::string raw = read_file(p);
    raw.replace(0, 8, le64(raw.size()));  // header "longer" than the whole file
    write_file(p, raw);
    expect_clean_failure(tmp, ck, "runs past the end of the file");
}

TEST(BadInput, HeaderLengthOver100MB) {
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    const fs::path p = ck / "model.safetensors";
    std::string raw = read_file(p);
    raw.replace(0, 8, le64(200ull * 1024 * 1024));
    write_file(p, raw);
    expect_clean_failure(tmp, ck, "100 MB");
}

TEST(BadInput, OverlappingDataOffsets) {
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    // two [512] BF16 norms: make the second point at the first one's bytes
    edit_header(ck, [](json& h) {
        h["model.layers.0.post_attention_layernorm.weight"]["data_offsets"] = h["model.layers.0.input_layernorm.weight"]["data_offsets"];
    });
    expect_clean_failure(tmp, ck, "overlap");
}

TEST(BadInput, OffsetsOutOfRange) {
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    edit_header(ck, [](json& h) {
        h["model.norm.weight"]["data_offsets"] = json::array({uint64_t{1} << 40, (uint64_t{1} << 40) + 1024});
    });
    expect_clean_failure(tmp, ck, "data_offsets");
}

TEST(BadInput, ShapeTimesDtypeIsNotByteLength) {
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    edit_header(ck, [](json& h) { h["model.norm.weight"]["shape"] = json::array({511}); });
    expect_clean_failure(tmp, ck, "shape");
}

TEST(BadInput, UnknownDtype) {
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    edit_header(ck, [](json& h) { h["model.norm.weight"]["dtype"] = "Q4"; });
    expect_clean_failure(tmp, ck, "unknown dtype 'Q4'");
}

TEST(BadInput, UnsupportedDtypeI64) {
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    // same 1024 bytes, now 128 x I64: a valid header, but not a float weight
    edit_header(ck, [](json& h) {
        h["model.norm.weight"]["dtype"] = "I64";
        h["model.norm.weight"]["shape"] = json::array({128});
    });
    expect_clean_failure(tmp, ck, "I64");
}

TEST(BadInput, MissingConfigJson) {
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    fs::remove(ck / "config.json");
    expect_clean_failure(tmp, ck, "config.json");
}

TEST(BadInput, InvalidJsonInConfig) {
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    std::string cfg = read_file(ck / "config.json");
    cfg.insert(cfg.size() / 2, "{ not json,\n\n");
    write_file(ck / "config.json", cfg);
    expect_clean_failure(tmp, ck, "JSON");
}

TEST(BadInput, UnknownArchitecture) {
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    json cfg = json::parse(read_file(ck / "config.json"));
    cfg["architectures"] = json::array({"LlamaForCausalLM"});
    write_file(ck / "config.json", cfg.dump(2));
    expect_clean_failure(tmp, ck, "LlamaForCausalLM");
}

TEST(BadInput, MissingTokenizer) {
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    fs::remove(ck / "tokenizer.model");
    fs::remove(ck / "tokenizer.json");
    expect_clean_failure(tmp, ck, "tokenizer");
}

TEST(BadInput, IndexNamesMissingShard) {
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp, 2);
    ASSERT_TRUE(fs::is_regular_file(ck / "model.safetensors.index.json"));
    fs::remove(ck / synth::shard_file_name(2, 2));
    expect_clean_failure(tmp, ck, synth::shard_file_name(2, 2));
}

TEST(BadInput, NoSafetensorsFiles) {
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    fs::remove(ck / "model.safetensors");
    expect_clean_failure(tmp, ck, "safetensors");
}

// The output location cannot be written. chmod does not stop root, so the portable cases are a
// path under a regular file (ENOTDIR) and a path under /proc (no new entries there); a
// read-only directory is tested too when we are not root.
void expect_unwritable(const TempDir& tmp, const fs::path& ck, const fs::path& out, const std::string& keyword) {
    RunResult r = run_cmf("quantize " + shell_quote(ck.string()) + " --quant f16 --out " + shell_quote(out.string()));
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << "expected exactly one line, got:\n" << r.output;
    EXPECT_NE(lower(r.output).find(lower(keyword)), std::string::npos) << "'" << keyword << "' not in: " << r.output;
    EXPECT_NE(r.output.find(out.string()), std::string::npos) << "the message should name the path: " << r.output;
    (void)tmp;
}

TEST(BadInput, OutputUnderARegularFile) {
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    write_file(tmp / "somefile", "x");
    expect_unwritable(tmp, ck, tmp / "somefile" / "sub", "output directory");
    EXPECT_EQ(read_file(tmp / "somefile"), "x");
}

TEST(BadInput, OutputUnderProc) {
    if (!fs::is_directory("/proc/self")) GTEST_SKIP() << "no /proc";
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    const fs::path out = fs::path("/proc") / ("cmf-test-" + std::to_string(::getpid())) / "out";
    expect_unwritable(tmp, ck, out, "output directory");
    EXPECT_FALSE(fs::exists(out));
}

TEST(BadInput, ReadOnlyOutputDirectory) {
    if (::geteuid() == 0) GTEST_SKIP() << "running as root: permission bits do not stop writes (covered by the cases above)";
    TempDir tmp;
    const fs::path ck = make_checkpoint(tmp);
    const fs::path out = tmp / "ro";
    fs::create_directories(out);
    fs::permissions(out, fs::perms::owner_read | fs::perms::owner_exec);
    expect_unwritable(tmp, ck, out, "not writable");
    fs::permissions(out, fs::perms::owner_all);
    EXPECT_TRUE(fs::is_empty(out));
}

}  // namespace
}  // namespace cmf::test
