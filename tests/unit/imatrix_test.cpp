// Importance matrices: the loader (both file formats, hostile input), the KVs llama-quantize
// adds, and `cmf quantize --imatrix` against llama.cpp v0.5.0 itself.
//
// The reference is the prebuilt libllama.v0.5.0.so that tests/llama/setup.sh installs, loaded by
// llama_quantize_ref.h: the test calls llama_model_quantize on the BF16 GGUF cmf writes, with the
// imatrix and the kv overrides built exactly as tools/quantize/quantize.cpp builds them. Without
// the library the test fails (pointing at setup.sh); CMF_ALLOW_MISSING_GGML=1 turns that into a skip.
#include <openssl/evp.h>

#include <cstring>
#include <random>

#include "cmf/format/gguf.h"
#include "cmf/quant/imatrix.h"
#include "imatrix_files.h"
#include "llama_quantize_ref.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using cmf::GgmlType;
using cmf::GgufType;
using cmf::GgufValue;
using cmf::ImatrixData;
using cmf::test::GgufEntry;
using cmf::test::GgufImatrixSpec;
using cmf::test::gguf_imatrix_bytes;

struct LegacyEntry {
    std::string name;
    int32_t ncall = 1;
    std::vector<float> values;
};

void put_i32(std::string& o, int32_t v) { o.append(reinterpret_cast<const char*>(&v), 4); }

std::string legacy_imatrix_bytes(const std::vector<LegacyEntry>& entries, std::optional<int32_t> chunks = std::nullopt,
                                 std::optional<std::string> dataset = std::nullopt) {
    std::string o;
    put_i32(o, static_cast<int32_t>(entries.size()));
    for (const auto& e : entries) {
        put_i32(o, static_cast<int32_t>(e.name.size()));
        o += e.name;
        put_i32(o, e.ncall);
        put_i32(o, static_cast<int32_t>(e.values.size()));
        o.append(reinterpret_cast<const char*>(e.values.data()), e.values.size() * 4);
    }
    if (chunks) {
        put_i32(o, *chunks);
        if (dataset) {
            put_i32(o, static_cast<int32_t>(dataset->size()));
            o += *dataset;
        }
    }
    return o;
}

ImatrixData load_bytes(const cmf::test::TempDir& d, const std::string& bytes, const std::string& name = "m.imatrix") {
    cmf::test::write_file(d / name, bytes);
    return cmf::load_imatrix(d / name);
}

// Loads and expects one cmf::Error of kind input with a one-line message.
void expect_input_error(const cmf::test::TempDir& d, const std::string& bytes, const std::string& what) {
    try {
        load_bytes(d, bytes);
        ADD_FAILURE() << what << ": loaded without error";
    } catch (const cmf::Error& e) {
        EXPECT_EQ(e.kind(), cmf::ErrorKind::input) << what << ": " << e.what();
        EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << what << ": message is not one line";
    } catch (const std::exception& e) {
        ADD_FAILURE() << what << ": threw a non-cmf exception: " << e.what();
    }
}

std::vector<float> random_positive(std::mt19937& rng, size_t n) {
    std::uniform_real_distribution<float> u(0.01f, 10.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = u(rng);
    return v;
}

// ---------------------------------------------------------------------------------------
// (a) parsing

TEST(ImatrixLoad, GgufValuesAreSumsOverRoundedCountsPerMatrix) {
    cmf::test::TempDir d;
    GgufImatrixSpec s;
    s.datasets = {"first.txt", "second.txt"};
    // two matrices (experts) of 4 columns: counts 3 (a float that lround keeps), 2.5 (-> 3) ...
    s.entries.push_back({"blk.0.ffn_down.weight", {1, 2, 3, 4, 5, 6, 7, 8}, {3.0f, 2.5f}});
    // ... and a zero count: llama.cpp stores 1 for every column of that matrix
    s.entries.push_back({"blk.0.attn_q.weight", {9, 9, 9, 4, 4, 4}, {0.0f, 2.0f}});
    // a tensor without either suffix is not an entry
    const ImatrixData m = load_bytes(d, gguf_imatrix_bytes(s));
    ASSERT_EQ(m.values.size(), 2u);
    const auto& a = m.values.at("blk.0.ffn_down.weight");
    const std::vector<float> want_a = {1 / 3.0f, 2 / 3.0f, 3 / 3.0f, 4 / 3.0f, 5 / 3.0f, 6 / 3.0f, 7 / 3.0f, 8 / 3.0f};
    EXPECT_EQ(a, want_a);
    const std::vector<float> want_b = {1, 1, 1, 2, 2, 2};
    EXPECT_EQ(m.values.at("blk.0.attn_q.weight"), want_b);
    EXPECT_EQ(m.datasets, (std::vector<std::string>{"first.txt", "second.txt"}));
    EXPECT_EQ(m.chunks, 17);
    EXPECT_EQ(m.file, (d / "m.imatrix").string());
}

TEST(ImatrixLoad, LegacyValuesAreStoredOverNcall) {
    cmf::test::TempDir d;
    const ImatrixData m = load_bytes(d, legacy_imatrix_bytes({{"blk.1.attn_k.weight", 3, {3, 6, 1}},
                                                              {"blk.1.attn_v.weight", 0, {0.5f, 0.25f}},
                                                              {"blk.1.attn_q.weight", -2, {7}}},
                                                             42, std::string("wiki.train.raw")));
    ASSERT_EQ(m.values.size(), 3u);
    EXPECT_EQ(m.values.at("blk.1.attn_k.weight"), (std::vector<float>{3 / 3.0f, 6 / 3.0f, 1 / 3.0f}));
    // ncall <= 0: the stored values as they are
    EXPECT_EQ(m.values.at("blk.1.attn_v.weight"), (std::vector<float>{0.5f, 0.25f}));
    EXPECT_EQ(m.values.at("blk.1.attn_q.weight"), (std::vector<float>{7}));
    EXPECT_EQ(m.chunks, 42);
    EXPECT_EQ(m.datasets, (std::vector<std::string>{"wiki.train.raw"}));

    // the trailer is optional, in whole or after the chunk count
    const ImatrixData bare = load_bytes(d, legacy_imatrix_bytes({{"x", 1, {1}}}));
    EXPECT_EQ(bare.chunks, 0);
    EXPECT_TRUE(bare.datasets.empty());
    const ImatrixData no_ds = load_bytes(d, legacy_imatrix_bytes({{"x", 1, {1}}}, 5));
    EXPECT_EQ(no_ds.chunks, 5);
    EXPECT_TRUE(no_ds.datasets.empty());
    // names and the dataset are C strings in llama.cpp: cut at the first NUL
    const ImatrixData nul = load_bytes(d, legacy_imatrix_bytes({{std::string("ab\0cd", 5), 1, {1}}}, 1, std::string("ds\0x", 4)));
    EXPECT_EQ(nul.values.count("ab"), 1u);
    EXPECT_EQ(nul.datasets, (std::vector<std::string>{"ds"}));
}

TEST(ImatrixLoad, BothFormatsGiveTheSameValues) {
    cmf::test::TempDir d;
    std::mt19937 rng(7);
    GgufImatrixSpec g;
    std::vector<LegacyEntry> l;
    for (int b = 0; b < 3; ++b)
        for (const char* w : {"attn_q", "attn_k", "ffn_down"}) {
            const std::string name = "blk." + std::to_string(b) + "." + w + ".weight";
            const std::vector<float> v = random_positive(rng, 64);
            // counts and ncall powers of two: both formats then carry v exactly
            std::vector<float> sums(v.size());
            for (size_t i = 0; i < v.size(); ++i) sums[i] = v[i] * 4.0f;
            g.entries.push_back({name, sums, {4.0f}});
            std::vector<float> stored(v.size());
            for (size_t i = 0; i < v.size(); ++i) stored[i] = v[i] * 2.0f;
            l.push_back({name, 2, stored});
        }
    const ImatrixData a = load_bytes(d, gguf_imatrix_bytes(g), "a.gguf");
    const ImatrixData b = load_bytes(d, legacy_imatrix_bytes(l, 17, std::string("calibration.txt")), "b.dat");
    EXPECT_EQ(a.values, b.values);
    EXPECT_EQ(a.values.size(), 9u);
    EXPECT_EQ(a.chunks, b.chunks);
    EXPECT_EQ(a.datasets, b.datasets);
}

// ---------------------------------------------------------------------------------------
// (b) hostile input

TEST(ImatrixLoad, HostileLegacyFilesFailWithOneLine) {
    cmf::test::TempDir d;
    expect_input_error(d, "", "empty file");
    expect_input_error(d, "ab", "2 bytes");
    std::string s;
    put_i32(s, 0);
    expect_input_error(d, s, "zero entries");
    s.clear();
    put_i32(s, -5);
    expect_input_error(d, s, "negative entries");
    s.clear();
    put_i32(s, 0x7fffffff);
    s += std::string(64, '\0');
    expect_input_error(d, s, "huge entry count");
    s.clear();
    put_i32(s, 1);
    put_i32(s, -1);
    s += std::string(32, '\0');
    expect_input_error(d, s, "negative name length");
    s.clear();
    put_i32(s, 1);
    put_i32(s, 0x7ffffff0);
    s += std::string(32, '\0');
    expect_input_error(d, s, "name past the end");
    s.clear();
    put_i32(s, 1);
    put_i32(s, 1);
    s += "x";
    put_i32(s, 1);
    put_i32(s, 0);
    s += std::string(16, '\0');
    expect_input_error(d, s, "zero values");
    s.clear();
    put_i32(s, 1);
    put_i32(s, 1);
    s += "x";
    put_i32(s, 1);
    put_i32(s, 0x40000000);
    s += std::string(16, '\0');
    expect_input_error(d, s, "values past the end");
    expect_input_error(d, legacy_imatrix_bytes({{"x", 1, {1}}}, 3) + "ab", "half a dataset length");
    std::string ds = legacy_imatrix_bytes({{"x", 1, {1}}}, 3, std::string("dataset"));
    expect_input_error(d, ds.substr(0, ds.size() - 2), "cut dataset name");

    // every truncation of a valid file fails, except at the two places the optional trailer may end
    const std::string full = legacy_imatrix_bytes({{"blk.0.attn_q.weight", 2, {1, 2, 3, 4}}, {"blk.0.attn_k.weight", 3, {5, 6}}}, 9,
                                                  std::string("calib"));
    const size_t body = full.size() - 4 - 4 - 5;
    for (size_t n = 0; n < full.size(); ++n) {
        if (n == body || n == body + 4) {
            EXPECT_NO_THROW(load_bytes(d, full.substr(0, n))) << "cut at " << n;
        } else {
            expect_input_error(d, full.substr(0, n), "cut at " + std::to_string(n));
        }
    }
}

TEST(ImatrixLoad, HostileGgufFilesFailWithOneLine) {
    cmf::test::TempDir d;
    GgufImatrixSpec good;
    good.entries.push_back({"blk.0.attn_q.weight", {1, 2, 3, 4}, {2.0f}});
    good.entries.push_back({"blk.0.attn_k.weight", {1, 2, 3, 4, 5, 6, 7, 8}, {1.0f, 2.0f}});
    const std::string full = gguf_imatrix_bytes(good);
    ASSERT_NO_THROW(load_bytes(d, full));

    GgufImatrixSpec s = good;
    s.with_metadata = false;
    expect_input_error(d, gguf_imatrix_bytes(s), "no imatrix metadata");
    s = good;
    s.entries.clear();
    expect_input_error(d, gguf_imatrix_bytes(s), "no tensors");
    s = good;
    s.entries[0].counts = {std::nanf("")};
    expect_input_error(d, gguf_imatrix_bytes(s), "NaN count");
    s = good;
    s.entries[0].counts = {1e30f};
    expect_input_error(d, gguf_imatrix_bytes(s), "count past int64");

    auto custom = [&](auto&& edit) {
        cmf::GgufLayout l;
        l.kv.set("imatrix.datasets", GgufValue::string_array({"x"}));
        l.kv.set("imatrix.chunk_count", GgufValue::u32(1));
        l.kv.set("imatrix.chunk_size", GgufValue::u32(1));
        edit(l);
        l.finalize();
        std::string out = l.header;
        out.resize(l.file_size, '\0');
        return out;
    };
    expect_input_error(d, custom([](cmf::GgufLayout& l) { l.kv.set("imatrix.chunk_count", GgufValue::i32(1)); l.add_tensor("a.in_sum2", {4, 1}, GgmlType::F32); l.add_tensor("a.counts", {1, 1}, GgmlType::F32); }),
                       "chunk_count not u32");
    expect_input_error(d, custom([](cmf::GgufLayout& l) { l.add_tensor("a.in_sum2", {4, 1}, GgmlType::F32); }), "sums without counts");
    expect_input_error(d, custom([](cmf::GgufLayout& l) { l.add_tensor("a.counts", {1, 1}, GgmlType::F32); }), "counts without sums");
    expect_input_error(d, custom([](cmf::GgufLayout& l) { l.add_tensor("a.in_sum2", {4, 1}, GgmlType::F16); l.add_tensor("a.counts", {1, 1}, GgmlType::F32); }),
                       "F16 sums");
    expect_input_error(d, custom([](cmf::GgufLayout& l) { l.add_tensor("a.in_sum2", {5, 1}, GgmlType::F32); l.add_tensor("a.counts", {1, 2}, GgmlType::F32); }),
                       "sums not a multiple of counts");
    expect_input_error(d, custom([](cmf::GgufLayout& l) { l.add_tensor("a.in_sum2", {4, 1}, GgmlType::F32); l.add_tensor("a.in_sum2", {4, 1}, GgmlType::F32); l.add_tensor("a.counts", {1, 1}, GgmlType::F32); }),
                       "duplicate tensor");

    // every truncation that cuts into the header or the data fails (the last tensor's padding may go)
    cmf::test::write_file(d / "full.gguf", full);
    const cmf::GgufContents g = cmf::read_gguf(d / "full.gguf");
    uint64_t end = 0;
    for (const auto& t : g.tensors) end = std::max(end, g.data_start + t.offset + t.nbytes);
    for (size_t n = 0; n < end; ++n) expect_input_error(d, full.substr(0, n), "GGUF cut at " + std::to_string(n));
}

TEST(ImatrixLoad, RandomCorruptionNeverCrashes) {
    cmf::test::TempDir d;
    std::mt19937 rng(99);
    GgufImatrixSpec g;
    g.entries.push_back({"blk.0.attn_q.weight", {1, 2, 3, 4}, {2.0f}});
    const std::vector<std::string> seeds = {gguf_imatrix_bytes(g),
                                            legacy_imatrix_bytes({{"blk.0.attn_q.weight", 2, {1, 2, 3, 4}}}, 3, std::string("ds"))};
    int errors = 0;
    for (int it = 0; it < 1000; ++it) {
        std::string s = seeds[it % 2];
        const int flips = 1 + static_cast<int>(rng() % 4);
        for (int f = 0; f < flips; ++f) s[rng() % s.size()] = static_cast<char>(rng());
        try {
            load_bytes(d, s);
        } catch (const cmf::Error&) {
            ++errors;
        } catch (const std::exception& e) {
            FAIL() << "iteration " << it << ": non-cmf exception " << e.what();
        }
    }
    EXPECT_GT(errors, 0);
}

// ---------------------------------------------------------------------------------------
// KVs

TEST(ImatrixKvs, SameKeysTypesAndOrderAsLlamaQuantize) {
    ImatrixData m;
    m.values["a"] = {1};
    m.values["b"] = {2};
    m.values["c"] = {3};
    m.datasets = {"one", "two"};
    m.chunks = 12;
    m.file = "data/imatrix.gguf";
    cmf::GgufKvList kv;
    kv.set("general.file_type", GgufValue::u32(15));
    cmf::add_imatrix_kvs(kv, m);
    ASSERT_EQ(kv.size(), 5u);
    const auto& it = kv.items();
    EXPECT_EQ(it[1].first, "quantize.imatrix.file");
    EXPECT_EQ(it[1].second, GgufValue::string("data/imatrix.gguf"));
    EXPECT_EQ(it[2].first, "quantize.imatrix.dataset");
    EXPECT_EQ(it[2].second, GgufValue::string("one"));  // only the first dataset
    EXPECT_EQ(it[3].first, "quantize.imatrix.entries_count");
    EXPECT_EQ(it[3].second, GgufValue::u32(3));
    EXPECT_EQ(it[4].first, "quantize.imatrix.chunks_count");
    EXPECT_EQ(it[4].second, GgufValue::u32(12));

    // no dataset and a chunk count <= 0: those two keys are absent; strings keep 127 bytes
    m.datasets.clear();
    m.chunks = 0;
    m.file = std::string(200, 'p');
    cmf::GgufKvList kv2;
    cmf::add_imatrix_kvs(kv2, m);
    ASSERT_EQ(kv2.size(), 2u);
    EXPECT_EQ(kv2.items()[0].second, GgufValue::string(std::string(127, 'p')));
    EXPECT_EQ(kv2.items()[1].first, "quantize.imatrix.entries_count");

    // an empty imatrix is no imatrix
    cmf::GgufKvList kv3;
    cmf::add_imatrix_kvs(kv3, ImatrixData{});
    EXPECT_EQ(kv3.size(), 0u);
}

// ---------------------------------------------------------------------------------------
// (c) cmf quantize --imatrix == llama_model_quantize from libllama v0.5.0

using namespace cmf::test::llama_ref;

// What quantize.cpp main() does with a loaded imatrix: the entry array and the four overrides.
uint32_t llama_quantize_with(const fs::path& in, const fs::path& out, int32_t ftype, const ImatrixData* m) {
    QuantizeCall c;
    c.ftype = ftype;
    c.imatrix = m;
    return llama_quantize(in, out, c);
}

void expect_same_gguf(const fs::path& ours, const fs::path& ref) { expect_same_as_llama(ours, ref); }

std::string sha256_of(const fs::path& f, const cmf::GgufContents& g, const cmf::GgufTensorInfo& t) {
    const std::string data = tensor_bytes(f, g, t);
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
    static const char* hx = "0123456789abcdef";
    std::string s;
    for (unsigned i = 0; i < n; ++i) s += {hx[md[i] >> 4], hx[md[i] & 15]};
    return s;
}

class ImatrixGolden : public ::testing::Test {
protected:
    void SetUp() override {
        CMF_REQUIRE_SHARED();
        REQUIRE_LLAMA();
        src_ = cmf::test::golden_dir() / "tiny-text";
        auto r = cmf::test::run_cmf("quantize " + cmf::test::shell_quote(src_.string()) + " --quant bf16 --quiet --name tiny --out " +
                                    cmf::test::shell_quote((dir_ / "bf16").string()));
        ASSERT_EQ(r.exit_code, 0) << r.output;
        bf16_ = dir_ / "bf16" / "tiny-BF16.gguf";
        // values for every blk.* weight matrix, positive and random, with per-entry counts
        const cmf::GgufContents g = cmf::read_gguf(bf16_);
        std::mt19937 rng(1234);
        for (const auto& t : g.tensors) {
            if (t.name.rfind("blk.", 0) != 0 || t.ne.size() < 2) continue;
            const std::vector<float> v = random_positive(rng, t.ne[0]);
            const float count = static_cast<float>(1 + rng() % 200);
            std::vector<float> sums(v.size());
            for (size_t i = 0; i < v.size(); ++i) sums[i] = v[i] * count;
            spec_.entries.push_back({t.name, sums, {count}});
        }
        ASSERT_GT(spec_.entries.size(), 4u);
        // llama-imatrix never sees token_embd at full size: a wrong-size entry is ignored for it ...
        spec_.entries.push_back({"token_embd.weight", random_positive(rng, 7), {1.0f}});
        // ... and entries for tensors the model lacks only count in entries_count
        spec_.entries.push_back({"blk.99.ffn_up.weight", random_positive(rng, 16), {1.0f}});
        imatrix_ = dir_ / "calib.imatrix.gguf";
        cmf::test::write_file(imatrix_, gguf_imatrix_bytes(spec_));
    }

    cmf::test::RunResult cmf_quantize(const std::string& quant, const std::string& out, const std::string& extra) {
        return cmf::test::run_cmf("quantize " + cmf::test::shell_quote(src_.string()) + " --quant " + quant + " --quiet --name tiny --out " +
                                  cmf::test::shell_quote((dir_ / out).string()) + " " + extra);
    }

    cmf::test::TempDir dir_;
    fs::path src_, bf16_, imatrix_;
    GgufImatrixSpec spec_;
};

TEST_F(ImatrixGolden, QuantizeWithImatrixMatchesLlamaQuantize) {
    auto r = cmf_quantize("q4_k_m,q4_0", "cmf", "--imatrix " + cmf::test::shell_quote(imatrix_.string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const ImatrixData m = cmf::load_imatrix(imatrix_);
    EXPECT_EQ(m.values.size(), spec_.entries.size());
    for (auto [label, ftype] : {std::pair<const char*, int32_t>{"Q4_K_M", 15}, {"Q4_0", 2}}) {
        SCOPED_TRACE(label);
        const fs::path ref = dir_ / (std::string("ref-") + label + ".gguf");
        ASSERT_EQ(llama_quantize_with(bf16_, ref, ftype, &m), 0u) << "llama_model_quantize failed";
        expect_same_gguf(dir_ / "cmf" / ("tiny-" + std::string(label) + ".gguf"), ref);
    }
}

TEST_F(ImatrixGolden, LegacyFileGivesTheSameTensorsAndTheImatrixMatters) {
    // the same values as a legacy .dat (ncall 1: the stored values are the values)
    const ImatrixData m = cmf::load_imatrix(imatrix_);
    std::vector<LegacyEntry> l;
    for (const auto& [name, v] : m.values) l.push_back({name, 1, v});
    const fs::path dat = dir_ / "calib.dat";
    cmf::test::write_file(dat, legacy_imatrix_bytes(l, 17, std::string("calibration.txt")));
    const ImatrixData ml = cmf::load_imatrix(dat);
    EXPECT_EQ(ml.values, m.values);

    ASSERT_EQ(cmf_quantize("q4_0", "gg", "--imatrix " + cmf::test::shell_quote(imatrix_.string())).exit_code, 0);
    auto r = cmf_quantize("q4_0", "dat", "--imatrix " + cmf::test::shell_quote(dat.string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ASSERT_EQ(cmf_quantize("q4_0", "none", "").exit_code, 0);
    const ImatrixData* none = nullptr;
    ASSERT_EQ(llama_quantize_with(bf16_, dir_ / "ref-dat.gguf", 2, &ml), 0u);
    expect_same_gguf(dir_ / "dat" / "tiny-Q4_0.gguf", dir_ / "ref-dat.gguf");
    ASSERT_EQ(llama_quantize_with(bf16_, dir_ / "ref-none.gguf", 2, none), 0u);
    expect_same_gguf(dir_ / "none" / "tiny-Q4_0.gguf", dir_ / "ref-none.gguf");

    const fs::path a = dir_ / "gg" / "tiny-Q4_0.gguf", b = dir_ / "dat" / "tiny-Q4_0.gguf", c = dir_ / "none" / "tiny-Q4_0.gguf";
    const cmf::GgufContents ga = cmf::read_gguf(a), gb = cmf::read_gguf(b), gc = cmf::read_gguf(c);
    int differ_from_plain = 0;
    for (size_t i = 0; i < ga.tensors.size(); ++i) {
        EXPECT_EQ(sha256_of(a, ga, ga.tensors[i]), sha256_of(b, gb, gb.tensors[i])) << ga.tensors[i].name;
        differ_from_plain += sha256_of(a, ga, ga.tensors[i]) != sha256_of(c, gc, gc.tensors[i]);
    }
    EXPECT_GT(differ_from_plain, 0) << "the imatrix changed no tensor";
}

TEST_F(ImatrixGolden, WrongSizeEntryIsAnError) {
    spec_.entries.front().sums.push_back(1.0f);  // one column too many for a blk.* weight
    const fs::path bad = dir_ / "bad.imatrix.gguf";
    cmf::test::write_file(bad, gguf_imatrix_bytes(spec_));
    auto r = cmf_quantize("q4_k_m", "bad", "--imatrix " + cmf::test::shell_quote(bad.string()));
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find("imatrix size"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(spec_.entries.front().name), std::string::npos) << r.output;
    // llama.cpp refuses it too
    const ImatrixData m = cmf::load_imatrix(bad);
    EXPECT_NE(llama_quantize_with(bf16_, dir_ / "ref-bad.gguf", 15, &m), 0u);
}

TEST_F(ImatrixGolden, MissingAndBrokenImatrixFilesAreOneLineErrors) {
    auto r = cmf_quantize("q4_k_m", "x", "--imatrix " + cmf::test::shell_quote((dir_ / "nope.dat").string()));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("nope.dat"), std::string::npos) << r.output;
    cmf::test::write_file(dir_ / "junk.dat", "junk");
    r = cmf_quantize("q4_k_m", "x", "--imatrix " + cmf::test::shell_quote((dir_ / "junk.dat").string()));
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_FALSE(fs::exists(dir_ / "x" / "tiny-Q4_K_M.gguf"));
}

}  // namespace
