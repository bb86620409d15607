// cmf synth: generated checkpoints convert with cmf quantize, have the expected GGUF tensor
// tables, and are deterministic. No reference data needed: these run everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <string>

#include "cmf/format/gguf.h"
#include "cmf/format/safetensors.h"
#include "cmf/format/sentencepiece.h"
#include "cmf/quant/half.h"
#include "cmf/arch/gemma3_synth.h"
#include "cmf/arch/synth_checkpoint.h"
#include "test_support.h"

namespace cmf::test {
namespace {

// The text GGUF tensor names of a Gemma 3 model with `layers` layers (tied embeddings).
std::set<std::string> text_names(int layers) {
    std::set<std::string> s = {"token_embd.weight", "output_norm.weight"};
    for (int i = 0; i < layers; ++i)
        for (const char* n : {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm",
                              "post_attention_norm", "ffn_norm", "post_ffw_norm", "ffn_gate", "ffn_up", "ffn_down"})
            s.insert("blk." + std::to_string(i) + "." + n + ".weight");
    return s;
}

std::set<std::string> vision_names(int layers) {
    std::set<std::string> s = {"mm.input_projection.weight", "mm.soft_emb_norm.weight", "v.patch_embd.weight",
                               "v.patch_embd.bias", "v.position_embd.weight", "v.post_ln.weight", "v.post_ln.bias"};
    for (int i = 0; i < layers; ++i)
        for (const char* n : {"ln1", "ln2", "ffn_up", "ffn_down", "attn_q", "attn_k", "attn_v", "attn_out"})
            for (const char* k : {"weight", "bias"}) s.insert("v.blk." + std::to_string(i) + "." + n + "." + k);
    return s;
}

std::set<std::string> names_of(const GgufContents& g) {
    std::set<std::string> s;
    for (const auto& t : g.tensors) s.insert(t.name);
    return s;
}

int64_t kv_int(const GgufContents& g, const std::string& key) {
    const GgufValue* v = g.kv.get(key);
    if (!v) return -1;
    return v->as_int().value_or(-1);
}

// Raw bytes of one tensor.
std::string tensor_data(const fs::path& file, const GgufContents& g, const std::string& name) {
    const GgufTensorInfo* t = g.find(name);
    if (!t) return {};
    FileHandle fh(file);
    std::string b(t->nbytes, '\0');
    fh.read_at(b.data(), b.size(), g.data_start + t->offset);
    return b;
}

void synth(const fs::path& dir, const std::string& opts) {
    RunResult r = run_cmf("synth " + shell_quote(dir.string()) + " " + opts);
    ASSERT_EQ(r.exit_code, 0) << r.output;
}

void quantize(const fs::path& src, const fs::path& out, const std::string& opts) {
    RunResult r = run_cmf("quantize " + shell_quote(src.string()) + " --out " + shell_quote(out.string()) + " --quiet " + opts);
    ASSERT_EQ(r.exit_code, 0) << r.output;
}

// Every file of a directory, by name.
std::map<std::string, std::string> dir_contents(const fs::path& dir) {
    std::map<std::string, std::string> m;
    for (const auto& e : fs::directory_iterator(dir)) m[e.path().filename().string()] = read_file(e.path());
    return m;
}

TEST(Synth, TinyConvertsToF16AndQ8_0) {
    TempDir tmp;
    const fs::path ck = tmp / "tiny", out = tmp / "out";
    synth(ck, "--preset tiny");
    for (const char* f : {"config.json", "generation_config.json", "model.safetensors", "tokenizer.model", "tokenizer.json",
                          "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"})
        EXPECT_TRUE(fs::is_regular_file(ck / f)) << f;
    quantize(ck, out, "--quant f16,q8_0");

    const GgufContents f16 = read_gguf(out / "tiny-F16.gguf");
    const GgufContents q8 = read_gguf(out / "tiny-Q8_0.gguf");
    EXPECT_EQ(f16.tensors.size(), 28u);
    EXPECT_EQ(names_of(f16), text_names(2));
    EXPECT_EQ(names_of(q8), text_names(2));
    for (const auto& t : f16.tensors) {
        const bool vec = t.ne.size() == 1;
        EXPECT_EQ(t.type, vec ? GgmlType::F32 : GgmlType::F16) << t.name;
    }
    for (const auto& t : q8.tensors) {
        const bool vec = t.ne.size() == 1;
        EXPECT_EQ(t.type, vec ? GgmlType::F32 : GgmlType::Q8_0) << t.name;
    }
    const GgufTensorInfo* emb = f16.find("token_embd.weight");
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(emb->ne, (std::vector<uint64_t>{512, 1088}));
    EXPECT_EQ(f16.find("blk.1.attn_q.weight")->ne, (std::vector<uint64_t>{512, 512}));
    EXPECT_EQ(f16.find("blk.0.attn_k.weight")->ne, (std::vector<uint64_t>{512, 128}));
    EXPECT_EQ(kv_int(f16, "gemma3.block_count"), 2);
    EXPECT_EQ(kv_int(f16, "gemma3.embedding_length"), 512);
    EXPECT_EQ(kv_int(f16, "general.file_type"), 1);
    EXPECT_EQ(kv_int(q8, "general.file_type"), 7);
    EXPECT_EQ(kv_int(f16, "tokenizer.ggml.eos_token_id"), 11);  // <end_of_turn>, from tokenizer_config.json
    const GgufValue* toks = f16.kv.get("tokenizer.ggml.tokens");
    ASSERT_NE(toks, nullptr);
    ASSERT_EQ(toks->strs.size(), 1088u);  // 1024 pieces + <image_soft_token> + [PADn] up to vocab_size
    EXPECT_EQ(toks->strs[0], "<pad>");
    EXPECT_EQ(toks->strs[10], "<start_of_turn>");
    EXPECT_EQ(toks->strs[1024], "<image_soft_token>");
    EXPECT_EQ(toks->strs[1087], "[PAD1087]");
    const GgufValue* tmpl = f16.kv.get("tokenizer.chat_template");
    ASSERT_NE(tmpl, nullptr);
    EXPECT_EQ(tmpl->str, arch::gemma3::kChatTemplate);
}

TEST(Synth, TinyMmConvertsWithMmproj) {
    TempDir tmp;
    const fs::path ck = tmp / "tiny-mm", out = tmp / "out";
    synth(ck, "--preset tiny-mm");
    EXPECT_TRUE(fs::is_regular_file(ck / "preprocessor_config.json"));
    quantize(ck, out, "--quant f16,q8_0 --mmproj");

    for (const char* f : {"tiny-mm-F16.gguf", "tiny-mm-Q8_0.gguf"}) {
        const GgufContents g = read_gguf(out / f);
        EXPECT_EQ(g.tensors.size(), 28u) << f;
        EXPECT_EQ(names_of(g), text_names(2)) << f;
        // n_head * head_dim (512) != hidden (256), as in the real 4B
        EXPECT_EQ(g.find("blk.0.attn_q.weight")->ne, (std::vector<uint64_t>{256, 512}));
        EXPECT_EQ(g.find("blk.0.attn_output.weight")->ne, (std::vector<uint64_t>{512, 256}));
        EXPECT_EQ(g.kv.get("gemma3.rope.scaling.type")->str, "linear");
    }
    const GgufContents mm = read_gguf(out / "mmproj-tiny-mm-F16.gguf");
    EXPECT_EQ(mm.tensors.size(), 39u);
    EXPECT_EQ(names_of(mm), vision_names(2));
    EXPECT_EQ(mm.kv.get("general.architecture")->str, "clip");
    EXPECT_EQ(kv_int(mm, "clip.vision.image_size"), 896);
    EXPECT_EQ(kv_int(mm, "clip.vision.patch_size"), 14);
    EXPECT_EQ(kv_int(mm, "clip.vision.embedding_length"), 128);
    EXPECT_EQ(kv_int(mm, "clip.vision.projection_dim"), 256);
    for (const auto& t : mm.tensors) {
        GgmlType want = GgmlType::F16;
        if (t.ne.size() == 1 || t.name == "v.patch_embd.weight" || t.name == "v.position_embd.weight") want = GgmlType::F32;
        EXPECT_EQ(t.type, want) << t.name;
    }
    EXPECT_EQ(mm.find("v.position_embd.weight")->ne, (std::vector<uint64_t>{128, 4096}));
    EXPECT_EQ(mm.find("v.patch_embd.weight")->ne, (std::vector<uint64_t>{14, 14, 3, 128}));
    EXPECT_EQ(mm.find("mm.input_projection.weight")->ne, (std::vector<uint64_t>{256, 128}));
}

TEST(Synth, SameSeedGivesIdenticalFiles) {
    TempDir tmp;
    synth(tmp / "a", "--preset tiny-mm --seed 7");
    synth(tmp / "b", "--preset tiny-mm --seed 7");
    const auto a = dir_contents(tmp / "a"), b = dir_contents(tmp / "b");
    ASSERT_EQ(a.size(), b.size());
    for (const auto& [name, data] : a) {
        ASSERT_TRUE(b.count(name)) << name;
        EXPECT_TRUE(data == b.at(name)) << name << " differs between two runs with the same seed";
    }
    synth(tmp / "c", "--preset tiny-mm --seed 8");
    const auto c = dir_contents(tmp / "c");
    EXPECT_FALSE(a.at("model.safetensors") == c.at("model.safetensors")) << "a different seed must change the weights";
    EXPECT_EQ(a.at("tokenizer.model"), c.at("tokenizer.model"));
    EXPECT_EQ(a.at("config.json"), c.at("config.json"));
}

TEST(Synth, HeaderApiMatchesCli) {
    TempDir tmp;
    synth::SynthSpec spec;
    spec.preset = "tiny";
    spec.layers = 1;
    spec.seed = 99;
    synth::write_synthetic_checkpoint(tmp / "api", spec);
    synth(tmp / "cli", "--layers 1 --seed 99");
    EXPECT_EQ(dir_contents(tmp / "api"), dir_contents(tmp / "cli"));
}

TEST(Synth, ShardsAndV5KeepTensorData) {
    TempDir tmp;
    synth(tmp / "one", "--preset tiny-mm");
    synth(tmp / "three", "--preset tiny-mm --shards 3");
    synth(tmp / "v5", "--preset tiny-mm --v5");
    EXPECT_FALSE(fs::exists(tmp / "one" / "model.safetensors.index.json"));
    EXPECT_TRUE(fs::is_regular_file(tmp / "three" / "model.safetensors.index.json"));
    for (int i = 1; i <= 3; ++i) EXPECT_TRUE(fs::is_regular_file(tmp / "three" / synth::shard_file_name(i, 3)));
    EXPECT_FALSE(fs::exists(tmp / "three" / "model.safetensors"));

    // the v5 layout renames tensors and rewrites config.json
    const SafetensorsCheckpoint v5 = open_safetensors_checkpoint(tmp / "v5");
    EXPECT_NE(v5.find("model.language_model.layers.0.self_attn.q_proj.weight"), nullptr);
    EXPECT_NE(v5.find("model.vision_tower.vision_model.post_layernorm.weight"), nullptr);
    EXPECT_NE(v5.find("model.multi_modal_projector.mm_input_projection_weight"), nullptr);
    const std::string cfg = read_file(tmp / "v5" / "config.json");
    EXPECT_NE(cfg.find("rope_parameters"), std::string::npos);
    EXPECT_NE(cfg.find("layer_types"), std::string::npos);

    for (const char* d : {"one", "three", "v5"}) quantize(tmp / d, tmp / (std::string("out-") + d), "--quant q8_0 --mmproj --name m");
    for (const char* f : {"m-Q8_0.gguf", "mmproj-m-F16.gguf"}) {
        const fs::path p1 = tmp / "out-one" / f;
        const GgufContents g1 = read_gguf(p1);
        for (const char* d : {"three", "v5"}) {
            const fs::path p2 = tmp / (std::string("out-") + d) / f;
            const GgufContents g2 = read_gguf(p2);
            ASSERT_EQ(g1.tensors.size(), g2.tensors.size()) << d << " " << f;
            for (size_t i = 0; i < g1.tensors.size(); ++i) {
                EXPECT_EQ(g1.tensors[i].name, g2.tensors[i].name) << d << " " << f << ": tensor order differs";
                EXPECT_TRUE(tensor_data(p1, g1, g1.tensors[i].name) == tensor_data(p2, g2, g1.tensors[i].name))
                    << d << " " << f << ": " << g1.tensors[i].name;
            }
        }
    }
}

TEST(Synth, LayersOption) {
    TempDir tmp;
    synth(tmp / "t3", "--layers 3");
    quantize(tmp / "t3", tmp / "out", "--quant f16");
    const GgufContents g = read_gguf(tmp / "out" / "t3-F16.gguf");
    EXPECT_EQ(g.tensors.size(), 2u + 13u * 3u);
    EXPECT_EQ(names_of(g), text_names(3));
    EXPECT_EQ(kv_int(g, "gemma3.block_count"), 3);
}

TEST(Synth, TokenizerIsLoadableAndGemmaLike) {
    const auto pieces = arch::gemma3::synth_pieces();
    sentencepiece::Model m;
    m.pieces = pieces;
    m.trainer = synth::synth_trainer_spec();
    m.normalizer = synth::synth_normalizer_spec();
    EXPECT_NO_THROW(sentencepiece::check_loadable(m));
    ASSERT_EQ(pieces.size(), static_cast<size_t>(synth::kSynthPieces));
    EXPECT_EQ(pieces[0].piece, "<pad>");
    EXPECT_EQ(pieces[1].piece, "<eos>");
    EXPECT_EQ(pieces[2].piece, "<bos>");
    EXPECT_EQ(pieces[3].piece, "<unk>");
    EXPECT_EQ(pieces[3].type, sentencepiece::PieceType::unknown);
    EXPECT_EQ(pieces[5].piece, "[multimodal]");
    EXPECT_EQ(pieces[22].piece, "<0x00>");
    EXPECT_EQ(pieces[277].piece, "<0xFF>");
    std::set<std::string> all;
    for (const auto& p : pieces) all.insert(p.piece);
    // the default llama.cpp test prompt's words are single pieces, reachable by merges
    for (const char* w : {"Hello", "\xe2\x96\x81Hello", "user", "model", "He", "Hel", "Hell"}) EXPECT_TRUE(all.count(w)) << w;
}

TEST(Synth, MedgemmaTextShapes) {
    synth::SynthSpec spec;
    spec.preset = "medgemma-text";
    const synth::SynthModel m = synth::synth_model(spec);
    // manifest.json: "medium" has 954,402,816 parameters in 2 shards
    EXPECT_EQ(m.n_params(), 954402816u);
    EXPECT_EQ(m.tensors.size(), 41u);
    EXPECT_EQ(m.shards, 2);
    const auto split = synth::synth_shard_split(m);
    ASSERT_EQ(split.size(), 2u);
    EXPECT_FALSE(split[0].empty());
    EXPECT_FALSE(split[1].empty());
}

// The raw bytes of one safetensors tensor.
std::string st_data(const SafetensorsCheckpoint& ck, const std::string& name) {
    const StTensor* t = ck.find(name);
    if (!t) return {};
    FileHandle fh(t->file);
    std::string b(t->n_elements() * st_dtype_info(t->dtype).size, '\0');
    fh.read_at(b.data(), b.size(), t->offset);
    return b;
}

TEST(Synth, DtypeOptionWritesTheSameValuesInEachType) {
    TempDir tmp;
    synth(tmp / "default", "--layers 1");
    synth(tmp / "bf16", "--layers 1 --dtype bf16");
    synth(tmp / "f16", "--layers 1 --dtype F16");
    synth(tmp / "f32", "--layers 1 --dtype f32");
    // the default is BF16 and unchanged by the option
    EXPECT_EQ(dir_contents(tmp / "default"), dir_contents(tmp / "bf16"));
    const std::map<std::string, std::pair<StDtype, const char*>> want = {
        {"bf16", {StDtype::BF16, "bfloat16"}}, {"f16", {StDtype::F16, "float16"}}, {"f32", {StDtype::F32, "float32"}}};
    std::map<std::string, SafetensorsCheckpoint> ck;
    for (const auto& [d, w] : want) {
        ck[d] = open_safetensors_checkpoint(tmp / d);
        ASSERT_FALSE(ck[d].tensors.empty()) << d;
        for (const auto& t : ck[d].tensors) EXPECT_EQ(t.dtype, w.first) << d << " " << t.name;
        const std::string cfg = read_file(tmp / d / "config.json");
        EXPECT_NE(cfg.find(std::string("\"torch_dtype\": \"") + w.second + "\""), std::string::npos) << d << ": " << cfg;
    }
    // one value stream, rounded per type: the F32 values round to exactly the BF16 and F16 files
    for (const char* name : {"model.layers.0.mlp.down_proj.weight", "model.norm.weight"}) {
        const std::string b = st_data(ck["bf16"], name), h = st_data(ck["f16"], name), f = st_data(ck["f32"], name);
        ASSERT_EQ(f.size(), 2 * b.size()) << name;
        ASSERT_EQ(h.size(), b.size()) << name;
        size_t not_bf16 = 0;
        for (size_t i = 0; i < b.size() / 2; ++i) {
            float x;
            uint16_t hb, hh;
            std::memcpy(&x, f.data() + 4 * i, 4);
            std::memcpy(&hb, b.data() + 2 * i, 2);
            std::memcpy(&hh, h.data() + 2 * i, 2);
            ASSERT_EQ(f32_to_bf16(x), hb) << name << " element " << i;
            ASSERT_EQ(f32_to_f16(x), hh) << name << " element " << i;
            not_bf16 += bf16_to_f32(hb) != x;
        }
        // F32 is not BF16 in disguise
        EXPECT_GT(not_bf16, b.size() / 4) << name;
    }
    // the converter takes them: an F16 checkpoint to F16 is the source bits
    quantize(tmp / "f16", tmp / "out", "--quant f16 --name h");
    const fs::path g16 = tmp / "out" / "h-F16.gguf";
    const GgufContents g = read_gguf(g16);
    EXPECT_TRUE(tensor_data(g16, g, "blk.0.ffn_down.weight") == st_data(ck["f16"], "model.layers.0.mlp.down_proj.weight"));
}

TEST(Synth, RecipesPresetShapes) {
    synth::SynthSpec spec;
    spec.preset = "recipes";
    const synth::SynthModel m = synth::synth_model(spec);
    EXPECT_EQ(m.text.layers, 12);
    EXPECT_EQ(m.text.hidden, 320);
    EXPECT_NE(m.text.hidden % 256, 0);
    EXPECT_EQ(m.text.ffn, 3328);
    EXPECT_EQ(m.text.vocab, 4096);
    EXPECT_EQ(m.architecture, "Gemma3ForCausalLM");
    EXPECT_EQ(m.tensors.size(), 2u + 13u * 12u);
    size_t over_1mi = 0;
    for (const auto& t : m.tensors) over_1mi += t.n_elements() > (1u << 20);
    EXPECT_EQ(over_1mi, 1u + 3u * 12u);  // token_embd and every ffn matrix
    EXPECT_EQ(m.n_params(), 4096u * 320 + 320 + 12u * (4 * 320 + 2 * 256 + 2 * 1024 * 320 + 2 * 256 * 320 + 3 * 3328 * 320));

    // it converts, with the tokenizer padded to the vocabulary
    TempDir tmp;
    synth(tmp / "r", "--preset recipes --layers 1 --dtype f32");
    quantize(tmp / "r", tmp / "out", "--quant f32 --name r");
    const GgufContents g = read_gguf(tmp / "out" / "r-F32.gguf");
    EXPECT_EQ(names_of(g), text_names(1));
    EXPECT_EQ(g.find("token_embd.weight")->ne, (std::vector<uint64_t>{320, 4096}));
    EXPECT_EQ(g.find("blk.0.ffn_down.weight")->ne, (std::vector<uint64_t>{3328, 320}));
    EXPECT_EQ(g.find("blk.0.attn_q.weight")->ne, (std::vector<uint64_t>{320, 1024}));
    EXPECT_EQ(g.kv.get("tokenizer.ggml.tokens")->strs.size(), 4096u);
    EXPECT_EQ(kv_int(g, "general.file_type"), 0);
}

TEST(Synth, BadOptionsAreOneLineUsageErrors) {
    TempDir tmp;
    for (const std::string opts : {"--preset nope", "--layers 0", "--shards x", "--shards 500", "--bogus", "--dtype f64", "--dtype q8_0"}) {
        RunResult r = run_cmf("synth " + shell_quote((tmp / "x").string()) + " " + opts);
        EXPECT_EQ(r.exit_code, 2) << opts << ": " << r.output;
        EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << opts << ": " << r.output;
    }
    RunResult h = run_cmf("synth --help");
    EXPECT_EQ(h.exit_code, 0);
    EXPECT_NE(h.output.find("--preset"), std::string::npos);
}

}  // namespace
}  // namespace cmf::test
