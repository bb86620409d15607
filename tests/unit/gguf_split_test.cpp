// GGUF split sets (include/cmf/format/gguf_split.h): llama-gguf-split's assignment rule and
// names, the KVs and layout of each part, bad inputs refused with one line, and no part left
// behind by a failure. Byte equality with llama-gguf-split itself: rig_split_test.cpp.
#include "cmf/format/gguf_split.h"

#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <functional>

#include "test_support.h"

namespace cmf {
namespace {

using test::TempDir;
using Parts = std::vector<std::vector<size_t>>;

struct TensorSpec {
    std::string name;
    std::vector<uint64_t> ne;
    GgmlType type = GgmlType::F32;
};

// A GGUF written by format/gguf.h with a few KVs and tensor bytes that differ per tensor.
void write_model(const fs::path& path, const std::vector<TensorSpec>& specs, const std::vector<std::pair<std::string, GgufValue>>& extra_kv = {}) {
    GgufLayout l;
    l.kv.set("general.architecture", GgufValue::string("gemma3"));
    l.kv.set("gemma3.block_count", GgufValue::u32(2));
    l.kv.set("tokenizer.ggml.tokens", GgufValue::string_array({"<pad>", "<bos>", "a"}));
    for (const auto& [k, v] : extra_kv) l.kv.set(k, v);
    for (const auto& s : specs) l.add_tensor(s.name, s.ne, s.type);
    l.finalize();
    GgufOutput out(path, l);
    for (size_t i = 0; i < l.tensors.size(); ++i) {
        std::string data(l.tensors[i].nbytes, '\0');
        for (size_t j = 0; j < data.size(); ++j) data[j] = static_cast<char>(i * 31 + j * 7 + 1);
        out.write_at(data.data(), data.size(), l.data_start + l.tensors[i].offset);
    }
    out.commit();
}

std::string tensor_bytes(const fs::path& path, const GgufContents& g, const GgufTensorInfo& t) {
    return test::read_file(path).substr(g.data_start + t.offset, t.nbytes);
}

std::vector<std::string> files_in(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

ErrorKind error_kind_of(const std::function<void()>& f, std::string* message = nullptr) {
    try {
        f();
    } catch (const Error& e) {
        if (message) *message = e.what();
        return e.kind();
    }
    ADD_FAILURE() << "no cmf::Error thrown";
    return ErrorKind::internal;
}

// Eight F32 tensors of 64 elements (256 bytes each), for the end-to-end tests.
std::vector<TensorSpec> eight_tensors() {
    std::vector<TensorSpec> s;
    for (int i = 0; i < 8; ++i) s.push_back({"blk." + std::to_string(i) + ".w", {64}, GgmlType::F32});
    return s;
}

TEST(GgufSplitName, IsLlamaSplitPath) {
    EXPECT_EQ(gguf_split_path("out/model", 0, 3), "out/model-00001-of-00003.gguf");
    EXPECT_EQ(gguf_split_path("m", 2, 3), "m-00003-of-00003.gguf");
    EXPECT_EQ(gguf_split_path("m", 0, 1), "m-00001-of-00001.gguf");
    EXPECT_EQ(gguf_split_path("m", 65534, 65535), "m-65535-of-65535.gguf");
}

TEST(GgufSplitSize, DecimalUnitsLikeGgufSplit) {
    EXPECT_EQ(parse_gguf_split_size("2M"), 2000000u);
    EXPECT_EQ(parse_gguf_split_size("45G"), 45000000000u);
    EXPECT_EQ(parse_gguf_split_size("4096"), 4096u);
    for (const char* bad : {"", "M", "0M", "0", "1.5G", "-1G", "12K", "1 G", "10000000000000G"})
        EXPECT_EQ(error_kind_of([&] { parse_gguf_split_size(bad); }), ErrorKind::usage) << bad;
}

TEST(GgufSplitAssign, SizeCountsPaddedTensorsOnlyAndCutsAboveTheLimit) {
    GgufSplitLimit l;
    l.max_bytes = 64;
    // 32 + 32 = 64 is not above the limit; the third starts a new part
    EXPECT_EQ(gguf_split_assign({32, 32, 32, 32, 32}, l), (Parts{{0, 1}, {2, 3}, {4}}));
    // each tensor counts padded to 32: 33 -> 64
    EXPECT_EQ(gguf_split_assign({33, 1, 1}, l), (Parts{{0}, {1, 2}}));
    EXPECT_EQ(gguf_split_assign({1, 1, 1, 1}, l), (Parts{{0, 1}, {2, 3}}));
    // a later tensor larger than the limit gets a part of its own, over the limit
    EXPECT_EQ(gguf_split_assign({32, 200, 32}, l), (Parts{{0}, {1}, {2}}));
    EXPECT_EQ(gguf_split_assign({32, 200, 200, 32, 32}, l), (Parts{{0}, {1}, {2}, {3, 4}}));
    // everything fits: still one part
    l.max_bytes = 1000;
    EXPECT_EQ(gguf_split_assign({100, 100}, l), (Parts{{0, 1}}));
    // no tensors: one part without tensors
    EXPECT_EQ(gguf_split_assign({}, l), (Parts{{}}));
}

TEST(GgufSplitAssign, FirstTensorLargerThanTheLimitIsRefused) {
    GgufSplitLimit l;
    l.max_bytes = 64;
    std::string msg;
    EXPECT_EQ(error_kind_of([&] { gguf_split_assign({65, 1}, l, {"token_embd.weight", "x"}); }, &msg), ErrorKind::usage);
    EXPECT_NE(msg.find("token_embd.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("96 bytes"), std::string::npos) << msg;
    l.no_tensors_in_first = true;  // the first tensor opens part 1 then: refused as well
    EXPECT_EQ(error_kind_of([&] { gguf_split_assign({65, 1}, l); }), ErrorKind::usage);
}

TEST(GgufSplitAssign, ByTensorCount) {
    GgufSplitLimit l;
    l.max_tensors = 2;
    EXPECT_EQ(gguf_split_assign({1, 1, 1, 1, 1}, l), (Parts{{0, 1}, {2, 3}, {4}}));
    l.max_tensors = 1;
    EXPECT_EQ(gguf_split_assign({1, 1, 1}, l), (Parts{{0}, {1}, {2}}));
    l.max_tensors = 128;
    EXPECT_EQ(gguf_split_assign({1, 1, 1}, l), (Parts{{0, 1, 2}}));
    // sizes do not matter in this mode
    l.max_tensors = 2;
    EXPECT_EQ(gguf_split_assign({1u << 30, 1u << 30, 1}, l), (Parts{{0, 1}, {2}}));
}

TEST(GgufSplitAssign, NoTensorFirstSplitLeavesPartZeroEmpty) {
    GgufSplitLimit l;
    l.max_tensors = 2;
    l.no_tensors_in_first = true;
    EXPECT_EQ(gguf_split_assign({1, 1, 1}, l), (Parts{{}, {0, 1}, {2}}));
    EXPECT_EQ(gguf_split_assign({}, l), (Parts{{}, {}}));
    l = {};
    l.max_bytes = 64;
    l.no_tensors_in_first = true;
    EXPECT_EQ(gguf_split_assign({32, 32, 32}, l), (Parts{{}, {0, 1}, {2}}));
}

TEST(GgufSplitAssign, NeedsExactlyOneLimitAndAtMost65535Parts) {
    EXPECT_EQ(error_kind_of([] { gguf_split_assign({1}, GgufSplitLimit{}); }), ErrorKind::usage);
    EXPECT_EQ(error_kind_of([] { gguf_split_assign({1}, GgufSplitLimit{64, 2, false}); }), ErrorKind::usage);
    GgufSplitLimit l;
    l.max_tensors = 1;
    EXPECT_EQ(gguf_split_assign(std::vector<uint64_t>(65535, 1), l).size(), 65535u);
    EXPECT_EQ(error_kind_of([&] { gguf_split_assign(std::vector<uint64_t>(65536, 1), l); }), ErrorKind::usage);
}

TEST(GgufSplitWrite, PartsCarryTheSplitKeysAndTheTensorBytes) {
    TempDir dir;
    const fs::path in = dir / "m.gguf";
    write_model(in, eight_tensors());
    fs::create_directory(dir / "out");
    GgufSplitLimit l;
    l.max_bytes = 3 * 256;
    const auto parts = split_gguf(in, (dir / "out" / "m").string(), l);
    ASSERT_EQ(parts.size(), 3u);
    EXPECT_EQ(files_in(dir / "out"), (std::vector<std::string>{"m-00001-of-00003.gguf", "m-00002-of-00003.gguf", "m-00003-of-00003.gguf"}));

    const GgufContents src = read_gguf(in);
    std::vector<std::string> seen;
    for (size_t k = 0; k < parts.size(); ++k) {
        SCOPED_TRACE(parts[k].path.string());
        const GgufContents g = read_gguf(parts[k].path);
        EXPECT_EQ(g.version, 3u);
        EXPECT_EQ(g.file_size, parts[k].file_size);
        EXPECT_EQ(g.data_start % 32, 0u);
        // part 0: every input KV in input order, then the three split keys; others: the split keys
        std::vector<std::string> keys;
        for (const auto& [key, v] : g.kv.items()) keys.push_back(key);
        std::vector<std::string> want;
        if (k == 0)
            for (const auto& [key, v] : src.kv.items()) want.push_back(key);
        for (const char* s : {"split.no", "split.tensors.count", "split.count"}) want.push_back(s);
        EXPECT_EQ(keys, want);
        if (k == 0) {
            for (const auto& [key, v] : src.kv.items()) EXPECT_TRUE(*g.kv.get(key) == v) << key;
        }
        EXPECT_EQ(g.kv.get("split.no")->type, GgufType::UINT16);
        EXPECT_EQ(g.kv.get("split.no")->as<uint16_t>(), k);
        EXPECT_EQ(g.kv.get("split.count")->type, GgufType::UINT16);
        EXPECT_EQ(g.kv.get("split.count")->as<uint16_t>(), 3);
        EXPECT_EQ(g.kv.get("split.tensors.count")->type, GgufType::INT32);
        EXPECT_EQ(g.kv.get("split.tensors.count")->as<int32_t>(), 8);
        // tensors packed from offset 0 at 32-byte alignment; the file ends with the last one's padding
        uint64_t off = 0;
        for (const auto& t : g.tensors) {
            EXPECT_EQ(t.offset, off);
            off += gguf_pad(t.nbytes, 32);
            const GgufTensorInfo* o = src.find(t.name);
            ASSERT_NE(o, nullptr);
            EXPECT_EQ(t.ne, o->ne);
            EXPECT_EQ(tensor_bytes(parts[k].path, g, t), tensor_bytes(in, src, *o)) << t.name;
            seen.push_back(t.name);
        }
        EXPECT_EQ(g.file_size, g.data_start + off);
        EXPECT_EQ(parts[k].data_bytes, off);
    }
    std::vector<std::string> all;
    for (const auto& t : src.tensors) all.push_back(t.name);
    EXPECT_EQ(seen, all);  // every tensor once, in input order
}

TEST(GgufSplitWrite, OnePartIsStillASplitSet) {
    TempDir dir;
    const fs::path in = dir / "m.gguf";
    write_model(in, eight_tensors());
    GgufSplitLimit l;
    l.max_bytes = kGgufSplitGigabyte;
    const auto parts = split_gguf(in, (dir / "m").string(), l);
    ASSERT_EQ(parts.size(), 1u);
    EXPECT_EQ(parts[0].path, dir / "m-00001-of-00001.gguf");
    const GgufContents g = read_gguf(parts[0].path);
    EXPECT_EQ(g.kv.get("split.count")->as<uint16_t>(), 1);
    EXPECT_EQ(g.tensors.size(), 8u);
}

TEST(GgufSplitWrite, TrailingDimensionsOfOneAreDroppedAsGgmlNDims) {
    TempDir dir;
    const fs::path in = dir / "m.gguf";
    write_model(in, {{"a", {32, 1}, GgmlType::F32}, {"b", {32, 4, 1, 1}, GgmlType::F16}, {"c", {32, 1, 2}, GgmlType::F32}});
    GgufSplitLimit l;
    l.max_tensors = 2;
    const auto parts = split_gguf(in, (dir / "s").string(), l);
    ASSERT_EQ(parts.size(), 2u);
    const GgufContents p0 = read_gguf(parts[0].path), p1 = read_gguf(parts[1].path);
    EXPECT_EQ(p0.tensors[0].ne, (std::vector<uint64_t>{32}));
    EXPECT_EQ(p0.tensors[1].ne, (std::vector<uint64_t>{32, 4}));
    EXPECT_EQ(p1.tensors[0].ne, (std::vector<uint64_t>{32, 1, 2}));
}

TEST(GgufSplitWrite, NoTensorFirstSplitWritesAMetadataOnlyFirstPart) {
    TempDir dir;
    const fs::path in = dir / "m.gguf";
    write_model(in, eight_tensors());
    GgufSplitLimit l;
    l.max_tensors = 4;
    l.no_tensors_in_first = true;
    const auto parts = split_gguf(in, (dir / "m").string(), l);
    ASSERT_EQ(parts.size(), 3u);
    const GgufContents g = read_gguf(parts[0].path);
    EXPECT_TRUE(g.tensors.empty());
    EXPECT_EQ(g.file_size, g.data_start);
    EXPECT_NE(g.kv.get("general.architecture"), nullptr);
    EXPECT_EQ(read_gguf(parts[1].path).tensors.size(), 4u);
}

TEST(GgufSplitRefuses, NotAGgufTruncatedAlreadySplitOddAlignment) {
    TempDir dir;
    fs::create_directory(dir / "out");
    GgufSplitLimit l;
    l.max_tensors = 2;
    auto refused = [&](const fs::path& in, ErrorKind kind, const std::string& words) {
        std::string msg;
        EXPECT_EQ(error_kind_of([&] { split_gguf(in, (dir / "out" / "x").string(), l); }, &msg), kind) << in;
        EXPECT_NE(msg.find(words), std::string::npos) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
        EXPECT_TRUE(files_in(dir / "out").empty());
    };
    test::write_file(dir / "text.gguf", "this is not a GGUF file at all, just some text");
    refused(dir / "text.gguf", ErrorKind::input, "not a GGUF file");
    refused(dir / "missing.gguf", ErrorKind::io, "cannot open");

    const fs::path good = dir / "m.gguf";
    write_model(good, eight_tensors());
    const std::string bytes = test::read_file(good);
    test::write_file(dir / "cut.gguf", bytes.substr(0, bytes.size() - 300));
    refused(dir / "cut.gguf", ErrorKind::input, "truncated");
    test::write_file(dir / "head.gguf", bytes.substr(0, 40));
    refused(dir / "head.gguf", ErrorKind::input, "impossible for the file size");

    const auto parts = split_gguf(good, (dir / "set").string(), l);
    refused(parts[0].path, ErrorKind::input, "already part of a split set");
    refused(parts[2].path, ErrorKind::input, "already part of a split set");

    write_model(dir / "a64.gguf", eight_tensors(), {{"general.alignment", GgufValue::u32(64)}});
    refused(dir / "a64.gguf", ErrorKind::input, "general.alignment is 64");

    GgufSplitLimit tiny;
    tiny.max_bytes = 100;  // the 256-byte first tensor cannot fit
    std::string msg;
    EXPECT_EQ(error_kind_of([&] { split_gguf(good, (dir / "out" / "x").string(), tiny); }, &msg), ErrorKind::usage);
    EXPECT_NE(msg.find("blk.0.w"), std::string::npos) << msg;
    EXPECT_TRUE(files_in(dir / "out").empty());

    EXPECT_EQ(error_kind_of([&] { split_gguf(good, (dir / "nodir" / "x").string(), l); }), ErrorKind::io);
}

// A write that fails in the last part (RLIMIT_FSIZE below its size, after the first parts are
// complete) leaves nothing in the output directory, neither the finished parts nor temporaries.
TEST(GgufSplitRefuses, FailureLeavesNoPartBehind) {
    TempDir dir;
    const fs::path in = dir / "m.gguf";
    std::vector<TensorSpec> specs = eight_tensors();
    specs.push_back({"big", {4096}, GgmlType::F32});  // 16 KiB: its part is the only large one
    write_model(in, specs);
    fs::create_directory(dir / "out");
    GgufSplitLimit l;
    l.max_tensors = 4;
    const auto plan = plan_gguf_split(read_gguf(in), in, (dir / "out" / "m").string(), l);
    ASSERT_EQ(plan.size(), 3u);
    ASSERT_LT(plan[0].file_size, 8192u);
    ASSERT_LT(plan[1].file_size, 8192u);
    ASSERT_GT(plan[2].file_size, 8192u);

    struct rlimit old {};
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
    auto old_handler = ::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of the signal
    struct rlimit lim = old;
    lim.rlim_cur = 8192;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
    std::string msg;
    const ErrorKind kind = error_kind_of([&] { split_gguf(in, (dir / "out" / "m").string(), l); }, &msg);
    ::setrlimit(RLIMIT_FSIZE, &old);
    ::signal(SIGXFSZ, old_handler);
    EXPECT_EQ(kind, ErrorKind::io) << msg;
    EXPECT_NE(msg.find("m-00003-of-00003.gguf"), std::string::npos) << msg;
    EXPECT_TRUE(files_in(dir / "out").empty()) << files_in(dir / "out").size() << " files left";
    // and the same split without the limit goes through
    EXPECT_EQ(split_gguf(in, (dir / "out" / "m").string(), l).size(), 3u);
    EXPECT_EQ(files_in(dir / "out").size(), 3u);
}

TEST(GgufSplitCli, WritesAndNamesTheParts) {
    TempDir dir;
    const fs::path in = dir / "model.gguf";
    write_model(in, eight_tensors());
    auto r = test::run_cmf("split " + test::shell_quote(in.string()) + " --max-size 1000");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (int k = 1; k <= 3; ++k) {
        const std::string name = "model-0000" + std::to_string(k) + "-of-00003.gguf";
        EXPECT_TRUE(fs::exists(dir / name)) << name;
        EXPECT_NE(r.output.find(name), std::string::npos) << r.output;
    }
    // OUT_PREFIX that is a directory: DIR/<input stem>
    fs::create_directory(dir / "hf");
    r = test::run_cmf("split " + test::shell_quote(in.string()) + " " + test::shell_quote((dir / "hf").string()) + " --max-tensors 4");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(files_in(dir / "hf"), (std::vector<std::string>{"model-00001-of-00002.gguf", "model-00002-of-00002.gguf"}));

    r = test::run_cmf("split " + test::shell_quote(in.string()));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    r = test::run_cmf("split " + test::shell_quote(in.string()) + " --max-size 1M --max-tensors 3");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    r = test::run_cmf("split " + test::shell_quote(in.string()) + " --max-tensors 0");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    r = test::run_cmf("split " + test::shell_quote((dir / "model-00001-of-00003.gguf").string()) + " x --max-size 1G");
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find("already part of a split set"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace cmf
