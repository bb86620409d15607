// `cmf quantize --layout ollama` on tiny-mm: Ollama's single-file Gemma 3 layout
// (research/ollama.md 6.1-6.3). The vision/projector tensor names, types and keys are listed
// here in full; the text part must equal the llama.cpp layout's text GGUF byte for byte.
#include <fcntl.h>
#include <unistd.h>

#include <map>
#include <set>

#include "cmf/format/gguf.h"
#include "test_support.h"

namespace {

using namespace cmf;
using cmf::test::run_cmf;
using cmf::test::shell_quote;

std::string tensor_bytes(const fs::path& p, const GgufContents& g, const GgufTensorInfo& t) {
    std::string s(t.nbytes, '\0');
    int fd = ::open(p.c_str(), O_RDONLY);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::pread(fd, s.data(), s.size(), static_cast<off_t>(g.data_start + t.offset)), static_cast<ssize_t>(s.size()));
    ::close(fd);
    return s;
}

struct Built {
    cmf::test::TempDir dir;
    fs::path llama_text, llama_mmproj, ollama;
};

Built& built() {
    static Built* b = [] {
        auto* x = new Built;
        const fs::path ck = x->dir / "tiny-mm", out = x->dir / "out";
        auto r = run_cmf("synth " + shell_quote(ck.string()) + " --preset tiny-mm");
        EXPECT_EQ(r.exit_code, 0) << r.output;
        r = run_cmf("quantize " + shell_quote(ck.string()) + " --quant q8_0 --mmproj --quiet --out " + shell_quote(out.string()));
        EXPECT_EQ(r.exit_code, 0) << r.output;
        r = run_cmf("quantize " + shell_quote(ck.string()) + " --quant q8_0 --layout ollama --quiet --out " + shell_quote(out.string()));
        EXPECT_EQ(r.exit_code, 0) << r.output;
        x->llama_text = out / "tiny-mm-Q8_0.gguf";
        x->llama_mmproj = out / "mmproj-tiny-mm-F16.gguf";
        x->ollama = out / "ollama-tiny-mm-Q8_0.gguf";
        return x;
    }();
    return *b;
}

// Every v.* / mm.* tensor of Ollama's file for tiny-mm (2 SigLIP blocks, vision hidden 128,
// FFN 512, 896/14 = 64x64 patches, text hidden 256), with Ollama's converter types.
std::map<std::string, std::pair<std::vector<uint64_t>, GgmlType>> expected_vision() {
    std::map<std::string, std::pair<std::vector<uint64_t>, GgmlType>> m = {
        {"mm.mm_input_projection.weight", {{256, 128}, GgmlType::F16}},
        {"mm.mm_soft_emb_norm.weight", {{128}, GgmlType::F32}},
        {"v.patch_embedding.weight", {{14, 14, 3, 128}, GgmlType::F16}},
        {"v.patch_embedding.bias", {{128}, GgmlType::F32}},
        {"v.position_embedding.weight", {{128, 4096}, GgmlType::F16}},
        {"v.post_layernorm.weight", {{128}, GgmlType::F32}},
        {"v.post_layernorm.bias", {{128}, GgmlType::F32}},
    };
    for (int i = 0; i < 2; ++i) {
        const std::string p = "v.blk." + std::to_string(i) + ".";
        for (const char* n : {"layer_norm1", "layer_norm2"}) {
            m[p + n + ".weight"] = {{128}, GgmlType::F32};
            m[p + n + ".bias"] = {{128}, GgmlType::F32};
        }
        for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output"}) {
            m[p + n + ".weight"] = {{128, 128}, GgmlType::F16};
            m[p + n + ".bias"] = {{128}, GgmlType::F32};
        }
        m[p + "mlp.fc1.weight"] = {{128, 512}, GgmlType::F16};
        m[p + "mlp.fc1.bias"] = {{512}, GgmlType::F32};
        m[p + "mlp.fc2.weight"] = {{512, 128}, GgmlType::F16};
        m[p + "mlp.fc2.bias"] = {{128}, GgmlType::F32};
    }
    return m;
}

TEST(OllamaLayout, VisionTensorsNamesTypesShapes) {
    const Built& b = built();
    ASSERT_TRUE(fs::exists(b.ollama));
    const GgufContents g = read_gguf(b.ollama);
    std::map<std::string, std::pair<std::vector<uint64_t>, GgmlType>> got;
    for (const auto& t : g.tensors)
        if (t.name.rfind("v.", 0) == 0 || t.name.rfind("mm.", 0) == 0) got[t.name] = {t.ne, t.type};
    const auto want = expected_vision();
    EXPECT_EQ(got.size(), want.size());
    for (const auto& [name, v] : want) {
        auto it = got.find(name);
        ASSERT_NE(it, got.end()) << "missing " << name;
        EXPECT_EQ(it->second.first, v.first) << name;
        EXPECT_EQ(it->second.second, v.second) << name << " is " << type_display_name(it->second.second);
    }
}

TEST(OllamaLayout, VisionKeys) {
    const GgufContents g = read_gguf(built().ollama);
    const GgufContents t = read_gguf(built().llama_text);
    std::map<std::string, GgufValue> want = {
        {"gemma3.mm.tokens_per_image", GgufValue::u32(256)},
        {"gemma3.vision.attention.head_count", GgufValue::u32(2)},
        {"gemma3.vision.attention.layer_norm_epsilon", GgufValue::f32(1e-6f)},
        {"gemma3.vision.block_count", GgufValue::u32(2)},
        {"gemma3.vision.embedding_length", GgufValue::u32(128)},
        {"gemma3.vision.feed_forward_length", GgufValue::u32(512)},
        {"gemma3.vision.image_size", GgufValue::u32(896)},
        {"gemma3.vision.num_channels", GgufValue::u32(3)},
        {"gemma3.vision.patch_size", GgufValue::u32(14)},
    };
    // the file = the llama.cpp text file's KVs (same values) + exactly these keys
    std::set<std::string> extra;
    for (const auto& [k, v] : g.kv.items()) {
        if (const GgufValue* tv = t.kv.get(k)) {
            EXPECT_TRUE(*tv == v) << k;
        } else {
            extra.insert(k);
        }
    }
    for (const auto& [k, v] : t.kv.items()) EXPECT_NE(g.kv.get(k), nullptr) << "lost " << k;
    std::set<std::string> want_keys;
    for (const auto& [k, v] : want) {
        want_keys.insert(k);
        const GgufValue* got = g.kv.get(k);
        ASSERT_NE(got, nullptr) << k;
        EXPECT_TRUE(*got == v) << k;
    }
    EXPECT_EQ(extra, want_keys);
    // Ollama's vision capability comes from this key; the file type is the text variant's
    EXPECT_EQ(g.kv.get("general.file_type")->as_int(), 7);
    EXPECT_EQ(g.kv.get("general.architecture")->str, "gemma3");
}

TEST(OllamaLayout, TextTensorsIdenticalToLlamaCppLayout) {
    const Built& b = built();
    const GgufContents g = read_gguf(b.ollama), t = read_gguf(b.llama_text);
    ASSERT_EQ(g.tensors.size(), t.tensors.size() + expected_vision().size());
    for (size_t i = 0; i < t.tensors.size(); ++i) {
        // same order, names, shapes, types and bytes
        const auto& a = t.tensors[i];
        const auto& o = g.tensors[i];
        ASSERT_EQ(o.name, a.name);
        EXPECT_EQ(o.ne, a.ne) << a.name;
        EXPECT_EQ(o.type, a.type) << a.name;
        EXPECT_TRUE(tensor_bytes(b.ollama, g, o) == tensor_bytes(b.llama_text, t, a)) << a.name << " data differs";
    }
}

TEST(OllamaLayout, VisionDataMatchesMmprojWhereTypesAgree) {
    // llama.cpp mmproj name -> Ollama name; when both files store the same type the bytes are
    // the same values (shows the renaming pairs the right tensors, fc1/fc2 included)
    const Built& b = built();
    const GgufContents g = read_gguf(b.ollama), m = read_gguf(b.llama_mmproj);
    const std::map<std::string, std::string> pairs = {
        {"v.blk.0.ffn_up.weight", "v.blk.0.mlp.fc1.weight"},     {"v.blk.0.ffn_down.weight", "v.blk.0.mlp.fc2.weight"},
        {"v.blk.1.ffn_up.bias", "v.blk.1.mlp.fc1.bias"},         {"v.blk.1.attn_out.weight", "v.blk.1.attn_output.weight"},
        {"v.blk.0.ln1.weight", "v.blk.0.layer_norm1.weight"},    {"v.blk.1.ln2.bias", "v.blk.1.layer_norm2.bias"},
        {"v.post_ln.weight", "v.post_layernorm.weight"},         {"mm.input_projection.weight", "mm.mm_input_projection.weight"},
        {"mm.soft_emb_norm.weight", "mm.mm_soft_emb_norm.weight"}, {"v.patch_embd.bias", "v.patch_embedding.bias"},
    };
    for (const auto& [mn, on] : pairs) {
        const GgufTensorInfo* a = m.find(mn);
        const GgufTensorInfo* o = g.find(on);
        ASSERT_NE(a, nullptr) << mn;
        ASSERT_NE(o, nullptr) << on;
        ASSERT_EQ(a->type, o->type) << on;
        EXPECT_EQ(a->ne, o->ne) << on;
        EXPECT_TRUE(tensor_bytes(b.llama_mmproj, m, *a) == tensor_bytes(b.ollama, g, *o)) << on;
    }
    // position and patch embeddings: F32 in the mmproj, F16 in Ollama's file
    EXPECT_EQ(m.find("v.position_embd.weight")->type, GgmlType::F32);
    EXPECT_EQ(g.find("v.position_embedding.weight")->type, GgmlType::F16);
}

TEST(OllamaLayout, RefusesMmprojAndTextOnly) {
    const Built& b = built();
    auto r = run_cmf("quantize " + shell_quote((b.dir / "tiny-mm").string()) + " --layout ollama --mmproj --dry-run");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("drop --mmproj"), std::string::npos) << r.output;
    cmf::test::TempDir d;
    r = run_cmf("synth " + shell_quote((d / "t").string()) + " --preset tiny");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cmf("quantize " + shell_quote((d / "t").string()) + " --layout ollama --dry-run");
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find("multimodal"), std::string::npos) << r.output;
}

}  // namespace
