// cmf synth for the Gemma 3n and Gemma 4 presets (include/cmf/arch/gemma3n_synth.h,
// gemma4_synth.h): shapes and config keys as documented there, what --layers / --kv-shared /
// --ffn change, determinism, the tokenizer files, and one-line usage errors. No reference data
// needed. (llama.cpp's own converter and runtime were run on these presets by hand; see the
// family headers.)
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "cmf/arch/synth_presets.h"
#include "cmf/format/safetensors.h"
#include "cmf/arch/synth_checkpoint.h"
#include "test_support.h"

namespace cmf::test {
namespace {

using nlohmann::json;

synth::SynthModel model(const std::string& preset, int layers = 0, int kv_shared = -1, int64_t ffn = 0) {
    synth::SynthSpec s;
    s.preset = preset;
    s.layers = layers;
    s.kv_shared = kv_shared;
    s.ffn = ffn;
    return synth::synth_model(s);
}

const synth::SynthTensor* find(const synth::SynthModel& m, const std::string& name) {
    for (const auto& t : m.tensors)
        if (t.name == name) return &t;
    return nullptr;
}

std::vector<int64_t> shape(const synth::SynthModel& m, const std::string& name) {
    const synth::SynthTensor* t = find(m, name);
    return t ? t->shape : std::vector<int64_t>{-1};
}

std::string types_of(const synth::SynthModel& m) {
    std::string s;
    for (const auto& t : m.text.layer_types) s += t == "full_attention" ? 'f' : 's';
    return s;
}

void synth(const fs::path& dir, const std::string& opts) {
    RunResult r = run_cmf("synth " + shell_quote(dir.string()) + " " + opts);
    ASSERT_EQ(r.exit_code, 0) << r.output;
}

std::map<std::string, std::string> dir_contents(const fs::path& dir) {
    std::map<std::string, std::string> m;
    for (const auto& e : fs::directory_iterator(dir)) m[e.path().filename().string()] = read_file(e.path());
    return m;
}

json read_json(const fs::path& p) { return json::parse(read_file(p)); }

const std::string L = "model.language_model.";

TEST(SynthFamilies, Gemma3nTinyShapes) {
    const auto m = model("gemma3n-tiny");
    EXPECT_EQ(m.architecture, "Gemma3nForConditionalGeneration");
    EXPECT_TRUE(m.v5);
    EXPECT_EQ(m.tensors.size(), 251u);  // the golden-next tiny-gemma3n tensor count
    EXPECT_EQ(m.n_params(), 13537568u);
    EXPECT_EQ(m.shards, 1);
    EXPECT_EQ(types_of(m), "ssssfssssf");
    EXPECT_EQ(m.text.kv_shared, 5);
    EXPECT_EQ(m.text.sparse_layers, 3);
    EXPECT_EQ(shape(m, L + "embed_tokens.weight"), (std::vector<int64_t>{1280, 256}));
    EXPECT_EQ(shape(m, L + "embed_tokens_per_layer.weight"), (std::vector<int64_t>{1024, 2560}));
    EXPECT_EQ(shape(m, L + "per_layer_model_projection.weight"), (std::vector<int64_t>{2560, 256}));
    for (int k = 0; k < 3; ++k) {
        EXPECT_EQ(shape(m, L + "altup_projections." + std::to_string(k) + ".weight"), (std::vector<int64_t>{256, 256}));
        EXPECT_EQ(shape(m, L + "altup_unembed_projections." + std::to_string(k) + ".weight"), (std::vector<int64_t>{256, 256}));
    }
    EXPECT_EQ(find(m, L + "altup_projections.3.weight"), nullptr);
    // the bare Parameter has no ".weight"
    EXPECT_EQ(shape(m, L + "layers.0.altup.correct_output_scale"), (std::vector<int64_t>{256}));
    EXPECT_EQ(find(m, L + "layers.0.altup.correct_output_scale.weight"), nullptr);
    EXPECT_EQ(shape(m, L + "layers.3.altup.prediction_coefs.weight"), (std::vector<int64_t>{16, 4}));
    EXPECT_EQ(shape(m, L + "layers.3.laurel.linear_right.weight"), (std::vector<int64_t>{256, 64}));
    // K/V also on the kv-shared layers
    for (int i = 0; i < 10; ++i) EXPECT_EQ(shape(m, L + "layers." + std::to_string(i) + ".self_attn.v_proj.weight"), (std::vector<int64_t>{256, 256}));
}

TEST(SynthFamilies, Gemma3nE2bWidths) {
    const auto m = model("gemma3n-e2b-1b");
    EXPECT_EQ(m.n_params(), 1341282016u);
    EXPECT_EQ(m.shards, 2);
    EXPECT_EQ(types_of(m), "sssfsf");
    EXPECT_EQ(m.text.kv_shared, 2);
    EXPECT_EQ(m.text.sparse_layers, 2);
    EXPECT_EQ(shape(m, L + "embed_tokens.weight"), (std::vector<int64_t>{262400, 2048}));
    EXPECT_EQ(shape(m, L + "embed_tokens_per_layer.weight"), (std::vector<int64_t>{262144, 6 * 256}));
    EXPECT_EQ(shape(m, L + "layers.5.mlp.down_proj.weight"), (std::vector<int64_t>{2048, 8192}));
    EXPECT_EQ(shape(m, L + "layers.5.self_attn.q_proj.weight"), (std::vector<int64_t>{8 * 256, 2048}));
    EXPECT_EQ(shape(m, L + "layers.5.self_attn.k_proj.weight"), (std::vector<int64_t>{2 * 256, 2048}));
    const auto split = synth::synth_shard_split(m);
    ASSERT_EQ(split.size(), 2u);
    EXPECT_FALSE(split[1].empty());
}

TEST(SynthFamilies, Gemma4TinyShapes) {
    const auto m = model("gemma4-tiny");
    EXPECT_EQ(m.architecture, "Gemma4ForConditionalGeneration");
    EXPECT_EQ(m.tensors.size(), 260u);  // the golden-next tiny-gemma4 tensor count
    EXPECT_EQ(m.n_params(), 18764098u);
    EXPECT_EQ(types_of(m), "ssssfssssf");
    EXPECT_TRUE(m.multimodal);
    // sliding layers: head_dim 256; full-attention layers: global_head_dim 512
    EXPECT_EQ(shape(m, L + "layers.0.self_attn.q_proj.weight"), (std::vector<int64_t>{512, 256}));
    EXPECT_EQ(shape(m, L + "layers.4.self_attn.q_proj.weight"), (std::vector<int64_t>{1024, 256}));
    EXPECT_EQ(shape(m, L + "layers.4.self_attn.k_proj.weight"), (std::vector<int64_t>{512, 256}));
    EXPECT_EQ(shape(m, L + "layers.9.self_attn.k_norm.weight"), (std::vector<int64_t>{512}));
    // double-wide MLP on the kv-shared layers 5..9
    EXPECT_EQ(shape(m, L + "layers.4.mlp.up_proj.weight"), (std::vector<int64_t>{512, 256}));
    EXPECT_EQ(shape(m, L + "layers.5.mlp.up_proj.weight"), (std::vector<int64_t>{1024, 256}));
    EXPECT_EQ(shape(m, L + "layers.7.layer_scalar"), (std::vector<int64_t>{1}));
    EXPECT_EQ(shape(m, "model.vision_tower.patch_embedder.input_proj.weight"), (std::vector<int64_t>{128, 768}));
    EXPECT_EQ(shape(m, "model.vision_tower.patch_embedder.position_embedding_table"), (std::vector<int64_t>{2, 10240, 128}));
    EXPECT_EQ(shape(m, "model.embed_vision.embedding_projection.weight"), (std::vector<int64_t>{256, 128}));
    const std::string q = "model.vision_tower.encoder.layers.1.self_attn.q_proj.";
    EXPECT_EQ(shape(m, q + "linear.weight"), (std::vector<int64_t>{128, 128}));
    for (const char* b : {"input_min", "input_max", "output_min", "output_max"}) EXPECT_EQ(shape(m, q + b), std::vector<int64_t>{}) << b;
}

TEST(SynthFamilies, Gemma4E2bWidths) {
    const auto m = model("gemma4-e2b-1b");
    EXPECT_EQ(m.n_params(), 1331235592u);
    EXPECT_EQ(m.shards, 2);
    EXPECT_FALSE(m.multimodal);
    EXPECT_EQ(types_of(m), "ssssfssf");  // full attention at 4 and 7
    EXPECT_EQ(m.text.kv_shared, 3);
    EXPECT_EQ(shape(m, L + "embed_tokens.weight"), (std::vector<int64_t>{262144, 1536}));
    EXPECT_EQ(shape(m, L + "embed_tokens_per_layer.weight"), (std::vector<int64_t>{262144, 8 * 256}));
    EXPECT_EQ(shape(m, L + "layers.4.mlp.gate_proj.weight"), (std::vector<int64_t>{6144, 1536}));
    EXPECT_EQ(shape(m, L + "layers.5.mlp.gate_proj.weight"), (std::vector<int64_t>{12288, 1536}));
    EXPECT_EQ(shape(m, L + "layers.7.self_attn.q_proj.weight"), (std::vector<int64_t>{8 * 512, 1536}));
    for (const auto& t : m.tensors) EXPECT_EQ(t.name.find("vision"), std::string::npos) << t.name;
}

TEST(SynthFamilies, LayersKvSharedAndFfnOptions) {
    // --layers scales the kv-shared and sparse counts (floor), and recounts layer_types back from
    // the last layer with its own K/V
    auto m = model("gemma3n-tiny", 14);
    EXPECT_EQ(m.text.kv_shared, 7);
    EXPECT_EQ(m.text.sparse_layers, 4);
    EXPECT_EQ(types_of(m), "sfssssfssssfsf");
    EXPECT_EQ(shape(m, L + "embed_tokens_per_layer.weight"), (std::vector<int64_t>{1024, 14 * 256}));
    EXPECT_NE(find(m, L + "layers.13.self_attn.k_proj.weight"), nullptr);
    // at most layers - 2 shared by default, none for one or two layers
    EXPECT_EQ(model("gemma4-tiny", 3).text.kv_shared, 1);
    EXPECT_EQ(model("gemma4-tiny", 2).text.kv_shared, 0);
    EXPECT_EQ(types_of(model("gemma4-tiny", 1)), "f");
    EXPECT_EQ(types_of(model("gemma4-tiny", 2)), "sf");

    // --kv-shared: the explicit count, and the double-wide MLP follows it
    m = model("gemma4-tiny", 0, 4);
    EXPECT_EQ(m.text.kv_shared, 4);
    EXPECT_EQ(types_of(m), "fssssfsssf");  // full at 10 - 4 - 1 = 5, 0, and the last
    EXPECT_EQ(shape(m, L + "layers.5.mlp.up_proj.weight"), (std::vector<int64_t>{512, 256}));
    EXPECT_EQ(shape(m, L + "layers.6.mlp.up_proj.weight"), (std::vector<int64_t>{1024, 256}));
    m = model("gemma4-tiny", 0, 0);
    EXPECT_EQ(types_of(m), "ssssfssssf");
    EXPECT_EQ(shape(m, L + "layers.9.mlp.up_proj.weight"), (std::vector<int64_t>{512, 256}));
    EXPECT_EQ(model("gemma3n-tiny", 0, 0).text.kv_shared, 0);

    // --ffn, not a multiple of 256
    m = model("gemma3n-tiny", 0, -1, 640);
    EXPECT_EQ(shape(m, L + "layers.0.mlp.gate_proj.weight"), (std::vector<int64_t>{640, 256}));
    EXPECT_EQ(shape(m, L + "layers.9.mlp.down_proj.weight"), (std::vector<int64_t>{256, 640}));
    m = model("gemma4-tiny", 0, -1, 1152);
    EXPECT_EQ(shape(m, L + "layers.0.mlp.gate_proj.weight"), (std::vector<int64_t>{1152, 256}));
    EXPECT_EQ(shape(m, L + "layers.9.mlp.gate_proj.weight"), (std::vector<int64_t>{2304, 256}));
    // the Gemma 3 presets take --ffn too, but have no KV sharing
    EXPECT_EQ(model("tiny", 0, -1, 640).text.ffn, 640);
    EXPECT_THROW(model("tiny", 0, 1), Error);
    EXPECT_THROW(model("gemma4-tiny", 0, 10), Error);  // at most layers - 1
}

TEST(SynthFamilies, Gemma3nFiles) {
    TempDir tmp;
    synth(tmp / "a", "--preset gemma3n-tiny --layers 14 --kv-shared 4 --ffn 640");
    const std::set<std::string> want = {"LICENSE", "config.json", "generation_config.json", "model.safetensors", "preprocessor_config.json",
                                        "special_tokens_map.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json"};
    std::set<std::string> have;
    for (const auto& [n, _] : dir_contents(tmp / "a")) have.insert(n);
    EXPECT_EQ(have, want);
    const json c = read_json(tmp / "a" / "config.json");
    EXPECT_EQ(c["architectures"][0], "Gemma3nForConditionalGeneration");
    const json& t = c["text_config"];
    EXPECT_EQ(t["num_hidden_layers"], 14);
    EXPECT_EQ(t["num_kv_shared_layers"], 4);
    EXPECT_EQ(t["intermediate_size"], json(std::vector<int>(14, 640)));
    EXPECT_EQ(t["layer_types"].size(), 14u);
    EXPECT_EQ(t["layer_types"][9], "full_attention");  // 14 - 4 - 1
    EXPECT_EQ(t["activation_sparsity_pattern"][3], 0.95);
    EXPECT_EQ(t["activation_sparsity_pattern"][4], 0.0);
    EXPECT_EQ(t["vocab_size"], 1280);
    EXPECT_EQ(t["vocab_size_per_layer_input"], 1024);
    EXPECT_EQ(c["image_token_id"], 1025);
    EXPECT_EQ(c["audio_token_id"], 1153);
    EXPECT_TRUE(c["vision_config"].is_object());
    EXPECT_TRUE(c["audio_config"].is_object());
    const json tc = read_json(tmp / "a" / "tokenizer_config.json");
    EXPECT_EQ(tc["added_tokens_decoder"]["1152"]["content"], "<end_of_audio>");
    EXPECT_EQ(tc["eos_token"], "<end_of_turn>");
    EXPECT_EQ(read_json(tmp / "a" / "tokenizer.json")["model"]["vocab"].size(), 1024u);
    const SafetensorsCheckpoint ck = open_safetensors_checkpoint(tmp / "a");
    EXPECT_EQ(ck.tensors.size(), 5u + 6u + 24u * 14u);  // as golden-next tiny-gemma3n: 5 + 6 + 24 x 10 = 251
}

TEST(SynthFamilies, Gemma4FilesAndTokenizer) {
    TempDir tmp;
    synth(tmp / "a", "--preset gemma4-tiny --layers 3");
    const std::set<std::string> want = {"LICENSE", "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
                                        "processor_config.json", "tokenizer.json", "tokenizer_config.json"};
    std::set<std::string> have;
    for (const auto& [n, _] : dir_contents(tmp / "a")) have.insert(n);
    EXPECT_EQ(have, want);
    const json c = read_json(tmp / "a" / "config.json");
    const json& t = c["text_config"];
    for (const char* k : {"moe_intermediate_size", "num_global_key_value_heads", "num_experts"}) {
        ASSERT_TRUE(t.contains(k)) << k;
        EXPECT_TRUE(t[k].is_null()) << k;
    }
    EXPECT_EQ(t["enable_moe_block"], false);
    EXPECT_EQ(t["attention_k_eq_v"], false);
    EXPECT_EQ(t["use_double_wide_mlp"], true);
    EXPECT_EQ(t["rope_parameters"]["full_attention"]["rope_type"], "proportional");
    EXPECT_EQ(t["rope_parameters"]["full_attention"]["partial_rotary_factor"], 0.25);
    EXPECT_EQ(t["rope_parameters"]["sliding_attention"]["rope_theta"], 10000.0);
    EXPECT_TRUE(c["audio_config"].is_null());
    EXPECT_EQ(c["vision_config"]["use_clipped_linears"], true);

    // 0-dim tensors in the file
    const SafetensorsCheckpoint ck = open_safetensors_checkpoint(tmp / "a");
    const StTensor* b = ck.find("model.vision_tower.encoder.layers.0.mlp.down_proj.output_max");
    ASSERT_NE(b, nullptr);
    EXPECT_TRUE(b->shape.empty());
    EXPECT_EQ(b->nbytes, 2u);

    // tokenizer.json: BPE with byte fallback and a Sequence decoder (llama.cpp's LlamaHfVocab
    // refuses anything else); every merge joins two vocabulary entries into a third
    const json tj = read_json(tmp / "a" / "tokenizer.json");
    EXPECT_EQ(tj["model"]["type"], "BPE");
    EXPECT_EQ(tj["model"]["byte_fallback"], true);
    EXPECT_EQ(tj["decoder"]["type"], "Sequence");
    const json& vocab = tj["model"]["vocab"];
    EXPECT_EQ(vocab.size(), 1024u);
    ASSERT_GT(tj["model"]["merges"].size(), 500u);
    for (const auto& mg : tj["model"]["merges"]) {
        const std::string a = mg[0], z = mg[1];
        EXPECT_TRUE(vocab.contains(a) && vocab.contains(z) && vocab.contains(a + z)) << a << " " << z;
    }
    for (const char* w : {"\xe2\x96\x81Hello", "Hello", "user", "model"}) EXPECT_TRUE(vocab.contains(w)) << w;
    std::map<std::string, int> added;
    for (const auto& a : tj["added_tokens"]) added[a["content"]] = a["id"];
    EXPECT_EQ(added.size(), 35u);
    EXPECT_EQ(added["<|turn>"], 18);
    EXPECT_EQ(added["<turn|>"], 19);
    EXPECT_EQ(added["<|tool_call>"], 10);
    EXPECT_EQ(added["<|channel>"], 15);
    EXPECT_EQ(added["<|image|>"], c["image_token_id"]);
    const json tc = read_json(tmp / "a" / "tokenizer_config.json");
    EXPECT_EQ(tc["sot_token"], "<|turn>");
    EXPECT_EQ(tc["eot_token"], "<turn|>");
    EXPECT_FALSE(tc.contains("added_tokens_decoder"));
    const std::string tpl = read_file(tmp / "a" / "chat_template.jinja");
    for (const char* s : {"<|turn>", "<turn|>", "add_generation_prompt", "'model'"}) EXPECT_NE(tpl.find(s), std::string::npos) << s;
}

TEST(SynthFamilies, Gemma4E2bVocabularyHasEveryId) {
    // the tokenizer files only (the weights are 2.6 GB)
    TempDir tmp;
    const auto m = model("gemma4-e2b-1b");
    synth::find_synth_preset("gemma4-e2b-1b")->write_files(tmp.path(), m);
    const json tj = read_json(tmp / "tokenizer.json");
    const json& vocab = tj["model"]["vocab"];
    ASSERT_EQ(vocab.size(), 262144u);
    std::vector<bool> seen(262144, false);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        const int64_t id = it.value();
        ASSERT_TRUE(id >= 0 && id < 262144) << it.key();
        EXPECT_FALSE(seen[static_cast<size_t>(id)]) << id;
        seen[static_cast<size_t>(id)] = true;
    }
    EXPECT_EQ(vocab.at("<unused2>"), 1024);
    EXPECT_EQ(vocab.at("<unused261121>"), 262143);
    EXPECT_FALSE(fs::exists(tmp / "processor_config.json"));
    EXPECT_TRUE(read_json(tmp / "config.json")["vision_config"].is_null());
}

TEST(SynthFamilies, DeterministicAndSeeded) {
    TempDir tmp;
    for (const char* p : {"gemma3n-tiny", "gemma4-tiny"}) {
        const std::string o = std::string("--preset ") + p + " --layers 2";
        synth(tmp / (std::string(p) + "a"), o);
        synth(tmp / (std::string(p) + "b"), o + " --v5");  // implied: the same files
        synth(tmp / (std::string(p) + "c"), o + " --seed 5");
        const auto a = dir_contents(tmp / (std::string(p) + "a"));
        EXPECT_EQ(a, dir_contents(tmp / (std::string(p) + "b"))) << p;
        const auto c = dir_contents(tmp / (std::string(p) + "c"));
        EXPECT_FALSE(a.at("model.safetensors") == c.at("model.safetensors")) << p;
        EXPECT_EQ(a.at("config.json"), c.at("config.json")) << p;
        EXPECT_EQ(a.at("tokenizer.json"), c.at("tokenizer.json")) << p;
    }
    // sharding and dtype keep the values: F32 rounds to the BF16 file
    synth(tmp / "s3", "--preset gemma4-tiny --layers 2 --shards 3");
    EXPECT_TRUE(fs::is_regular_file(tmp / "s3" / synth::shard_file_name(3, 3)));
    const SafetensorsCheckpoint one = open_safetensors_checkpoint(tmp / "gemma4-tinya");
    const SafetensorsCheckpoint three = open_safetensors_checkpoint(tmp / "s3");
    ASSERT_EQ(one.tensors.size(), three.tensors.size());
}

TEST(SynthFamilies, HelpListsEveryPreset) {
    RunResult h = run_cmf("synth --help");
    ASSERT_EQ(h.exit_code, 0);
    for (const auto& r : arch::synth_presets()) {
        EXPECT_NE(h.output.find(std::string(r.name) + " "), std::string::npos) << r.name;
        EXPECT_NE(h.output.find(std::string(r.help)), std::string::npos) << r.name;
    }
    for (const char* o : {"--kv-shared", "--ffn", "--layers"}) EXPECT_NE(h.output.find(o), std::string::npos) << o;
}

TEST(SynthFamilies, BadValuesAreOneLineUsageErrors) {
    TempDir tmp;
    for (const std::string opts : {"--preset gemma4-tiny --kv-shared 10", "--preset gemma3n-tiny --layers 2 --kv-shared 2",
                                   "--preset gemma4-tiny --kv-shared x", "--preset gemma4-tiny --kv-shared -1",
                                   "--preset gemma3n-tiny --ffn 0", "--preset gemma3n-tiny --ffn 99999999", "--preset tiny --kv-shared 1",
                                   "--preset gemma5-tiny"}) {
        RunResult r = run_cmf("synth " + shell_quote((tmp / "x").string()) + " " + opts);
        EXPECT_EQ(r.exit_code, 2) << opts << ": " << r.output;
        EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << opts << ": " << r.output;
    }
    EXPECT_FALSE(fs::exists(tmp / "x" / "model.safetensors"));
}

}  // namespace
}  // namespace cmf::test
