// Ollama model assembly and the local store: names, the exact bytes of params / config /
// template / manifest (research/ollama.md 3, 4, 5, 8), and `cmf import` parsed back.
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "cmf/format/gguf.h"
#include "cmf/registry/local_store.h"
#include "cmf/registry/model_name.h"
#include "cmf/registry/ollama_model.h"
#include "test_support.h"

namespace {

using namespace cmf;
using namespace cmf::ollama;
using cmf::test::read_file;
using cmf::test::run;
using cmf::test::run_cmf;
using cmf::test::shell_quote;

TEST(OllamaName, DefaultsAndParts) {
    ModelName n = parse_model_name("coheara-medgemma-4b-q8");
    EXPECT_EQ(n.host, "registry.ollama.ai");
    EXPECT_EQ(n.ns, "library");
    EXPECT_EQ(n.tag, "latest");
    EXPECT_EQ(n.manifest_rel_path(), "registry.ollama.ai/library/coheara-medgemma-4b-q8/latest");
    n = parse_model_name("http://127.0.0.1:5000/alice/m.v1:4b-q8_0");
    EXPECT_EQ(n.scheme, "http");
    EXPECT_EQ(n.host, "127.0.0.1:5000");
    EXPECT_EQ(n.ns, "alice");
    EXPECT_EQ(n.model, "m.v1");
    EXPECT_EQ(n.tag, "4b-q8_0");
    EXPECT_EQ(n.repository(), "alice/m.v1");
}

TEST(OllamaName, RulesGiveClearErrors) {
    auto err = [](const std::string& s) {
        try {
            parse_model_name(s);
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::usage);
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    EXPECT_NE(err("al.ice/model").find("namespace 'al.ice' may not contain '.'"), std::string::npos) << err("al.ice/model");
    EXPECT_NE(err("-model").find("must start with a letter, digit or '_'"), std::string::npos);
    EXPECT_NE(err("alice/").find("model is empty"), std::string::npos);
    EXPECT_NE(err("model:").find("tag"), std::string::npos);
    EXPECT_NE(err(std::string(81, 'a')).find("longer than 80"), std::string::npos);
    EXPECT_NE(err("a/b/c/d").find("host"), std::string::npos);
    EXPECT_NE(err("m\xC3\xA9").find("non-ASCII"), std::string::npos);
    EXPECT_NE(err("ftp://h/a/b").find("scheme"), std::string::npos);
    EXPECT_EQ(err("h.example:8080/ns_1/m-2.x:t_3.4"), "accepted");
}

TEST(OllamaName, FactoryScheme) {
    EXPECT_EQ(compose_model_name("coheara", "medgemma", "4b", "q8"), "coheara-medgemma-4b-q8");
    EXPECT_EQ(compose_model_name("Coheara", "MedGemma", "4B", short_variant_name("Q4_K_M")), "coheara-medgemma-4b-q4");
    EXPECT_EQ(short_variant_name("Q4_K_S"), "q4s");
    try {
        compose_model_name("co/heara", "medgemma", "4b", "q8");
        FAIL() << "accepted a '/'";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("may not contain '/'"), std::string::npos) << e.what();
    }
}

TEST(OllamaBytes, ParamsExactForm) {
    // json.Encoder: sorted keys, compact, HTML-escaped, newline
    EXPECT_EQ(params_bytes(family_defaults("gemma3").params), "{\"num_ctx\":8192,\"stop\":[\"\\u003cend_of_turn\\u003e\"]}\n");
    nlohmann::json p = family_defaults("gemma3").params;
    bool fresh = true;
    set_param(p, "temperature", "0.1", &fresh);
    set_param(p, "stop", "<eos>", &fresh);
    set_param(p, "stop", "x&y", &fresh);
    set_param(p, "num_ctx", "4096", &fresh);
    EXPECT_EQ(params_bytes(p), "{\"num_ctx\":4096,\"stop\":[\"\\u003ceos\\u003e\",\"x\\u0026y\"],\"temperature\":0.1}\n");
    EXPECT_THROW(set_param(p, "num_ctx", "4k"), Error);
    EXPECT_THROW(set_param(p, "bogus", "1"), Error);
}

TEST(OllamaBytes, HumanNumberAndFileType) {
    EXPECT_EQ(human_number(4'300'079'472ull), "4.3B");
    EXPECT_EQ(human_number(4'000'000'000ull), "4B");
    EXPECT_EQ(human_number(3'880'263'168ull), "3.9B");
    EXPECT_EQ(human_number(5'018'624ull), "5.02M");
    EXPECT_EQ(human_number(2'000'000ull), "2M");
    EXPECT_EQ(human_number(999ull), "999");
    EXPECT_EQ(file_type_string(7), "Q8_0");
    EXPECT_EQ(file_type_string(15), "Q4_K_M");
    EXPECT_EQ(file_type_string(32), "BF16");
    EXPECT_EQ(file_type_string(0), "unknown");  // Ollama's quirk: F32 reads "unknown"
    EXPECT_EQ(file_type_string(std::nullopt), "unknown");
}

TEST(OllamaBytes, TemplateIsOllamasGemma3Instruct) {
    // template/gemma3-instruct.gotmpl is 388 bytes
    EXPECT_EQ(arch::gemma3::kOllamaTemplate.size(), 388u);
    EXPECT_NE(arch::gemma3::kOllamaTemplate.find("<start_of_turn>user\n"), std::string::npos);
    EXPECT_NE(arch::gemma3::kOllamaTemplate.find("<start_of_turn>model\n{{ .Content }}<end_of_turn>\n"), std::string::npos);
    EXPECT_EQ(arch::gemma3::kOllamaTemplate.substr(arch::gemma3::kOllamaTemplate.size() - 12), "\n{{- end }}\n");
}

// ---------------------------------------------------------------------------------------------
// cmf import, parsed back

struct Build {
    cmf::test::TempDir dir;
    fs::path out;
};

Build& build() {
    static Build* b = [] {
        auto* x = new Build;
        const fs::path ck = x->dir / "tiny-mm";
        x->out = x->dir / "build";
        auto r = run_cmf("synth " + shell_quote(ck.string()) + " --preset tiny-mm");
        EXPECT_EQ(r.exit_code, 0) << r.output;
        r = run_cmf("quantize " + shell_quote(ck.string()) + " --quant q8_0 --layout ollama --quiet --name medgemma --out " +
                    shell_quote(x->out.string()));
        EXPECT_EQ(r.exit_code, 0) << r.output;
        cmf::test::write_file(x->out / "LICENSE", "Gemma Terms of Use (test copy)\n");
        return x;
    }();
    return *b;
}

std::string import_into(const fs::path& store, const std::string& args) {
    auto r = run("OLLAMA_MODELS=" + shell_quote(store.string()) + " " + shell_quote(CMF_BINARY) + " import " + args);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.output;
}

TEST(OllamaImport, StoreLayoutDigestsAndBytes) {
    const Build& b = build();
    cmf::test::TempDir store;
    import_into(store.path(), shell_quote(b.out.string()) + " alice/coheara-medgemma-tiny-q8:v1");
    const fs::path mp = store / "manifests/registry.ollama.ai/alice/coheara-medgemma-tiny-q8/v1";
    ASSERT_TRUE(fs::is_regular_file(mp));
    const std::string mbytes = read_file(mp);
    // json.Encoder form: field order, compact, one trailing newline
    EXPECT_EQ(mbytes.rfind("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
                           "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"digest\":\"sha256:",
                           0),
              0u)
        << mbytes;
    EXPECT_EQ(mbytes.back(), '\n');
    EXPECT_EQ(mbytes.find('\n'), mbytes.size() - 1);
    const nlohmann::json m = nlohmann::json::parse(mbytes);

    auto blob = [&](const nlohmann::json& d) {
        const std::string digest = d["digest"];
        EXPECT_EQ(digest.size(), 71u);
        const fs::path p = store / "blobs" / ("sha256-" + digest.substr(7));
        EXPECT_TRUE(fs::is_regular_file(p)) << p;
        const std::string bytes = read_file(p);
        EXPECT_EQ(bytes.size(), d["size"].get<uint64_t>()) << digest;
        EXPECT_EQ(sha256_digest(bytes), digest);
        struct stat st {};
        ::stat(p.c_str(), &st);
        EXPECT_EQ(st.st_mode & 0777, 0644u) << p;
        return bytes;
    };
    const std::vector<std::string> want_types = {kMediaModel, kMediaTemplate, kMediaLicense, kMediaLicense, kMediaParams};
    ASSERT_EQ(m["layers"].size(), want_types.size()) << mbytes;
    for (size_t i = 0; i < want_types.size(); ++i) EXPECT_EQ(m["layers"][i]["mediaType"], want_types[i]) << i;
    // layer fields in Go struct order
    EXPECT_NE(mbytes.find("{\"mediaType\":\"application/vnd.ollama.image.model\",\"digest\":\"sha256:"), std::string::npos);

    const fs::path gguf = b.out / "ollama-medgemma-Q8_0.gguf";
    EXPECT_TRUE(blob(m["layers"][0]) == read_file(gguf)) << "model layer is not the single-file GGUF";
    EXPECT_EQ(blob(m["layers"][1]), std::string(arch::gemma3::kOllamaTemplate));
    EXPECT_EQ(blob(m["layers"][2]), "Gemma Terms of Use (test copy)\n");
    const std::string notice = blob(m["layers"][3]);
    EXPECT_NE(notice.find("modified, quantized derivative"), std::string::npos) << notice;
    EXPECT_EQ(blob(m["layers"][4]), "{\"num_ctx\":8192,\"stop\":[\"\\u003cend_of_turn\\u003e\"]}\n");

    // config: model_type from the element count of every tensor of the model layer (vision included)
    uint64_t params = 0;
    for (const auto& t : read_gguf(gguf).tensors) params += t.n_elements();
    EXPECT_EQ(m["config"]["mediaType"], kMediaConfig);
    EXPECT_EQ(blob(m["config"]), "{\"model_format\":\"gguf\",\"model_family\":\"gemma3\",\"model_families\":[\"gemma3\"],\"model_type\":\"" +
                                     human_number(params) + "\",\"file_type\":\"Q8_0\",\"architecture\":\"amd64\",\"os\":\"linux\"}\n");
    EXPECT_EQ(human_number(params).back(), 'M');

    // nothing but final blobs in blobs/, nothing but the manifest beside it
    size_t n = 0;
    for (const auto& e : fs::directory_iterator(store / "blobs")) {
        EXPECT_EQ(e.path().filename().string().size(), 7u + 64u) << e.path();
        ++n;
    }
    EXPECT_EQ(n, 6u);
    EXPECT_EQ(std::distance(fs::directory_iterator(mp.parent_path()), fs::directory_iterator{}), 1);

    // same input, same digests: a second store gets the same manifest bytes
    cmf::test::TempDir store2;
    import_into(store2.path(), shell_quote(b.out.string()) + " alice/coheara-medgemma-tiny-q8:v1");
    EXPECT_EQ(read_file(store2 / "manifests/registry.ollama.ai/alice/coheara-medgemma-tiny-q8/v1"), mbytes);
}

TEST(OllamaImport, OptionsSystemParamsPrefixAndProjector) {
    const Build& b = build();
    cmf::test::TempDir store;
    // --prefix names the model {prefix}-{family}-{size}-{variant}
    const std::string out = import_into(store.path(), shell_quote(b.out.string()) +
                                                          " --prefix coheara --system 'You are careful.' --param num_ctx=4096 --param stop='<eos>'");
    const GgufContents g = read_gguf(b.out / "ollama-medgemma-Q8_0.gguf");
    const std::string size = g.kv.get("general.size_label")->str;
    // family: general.basename, else the architecture
    const GgufValue* base = g.kv.get("general.basename");
    std::string want = "coheara-" + (base ? base->str : std::string("gemma3")) + "-" + size + "-q8";
    for (auto& c : want) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const fs::path mp = store / ("manifests/registry.ollama.ai/library/" + want + "/latest");
    ASSERT_TRUE(fs::is_regular_file(mp)) << out;
    const nlohmann::json m = nlohmann::json::parse(read_file(mp));
    std::vector<std::string> types;
    for (const auto& l : m["layers"]) types.push_back(l["mediaType"]);
    EXPECT_EQ(types, (std::vector<std::string>{kMediaModel, kMediaTemplate, kMediaSystem, kMediaLicense, kMediaLicense, kMediaParams}));
    EXPECT_EQ(read_file(store / "blobs" / ("sha256-" + m["layers"][2]["digest"].get<std::string>().substr(7))), "You are careful.");
    EXPECT_EQ(read_file(store / "blobs" / ("sha256-" + m["layers"][5]["digest"].get<std::string>().substr(7))),
              "{\"num_ctx\":4096,\"stop\":[\"\\u003ceos\\u003e\"]}\n");

    // the llama.cpp layout: text GGUF + mmproj as the projector layer
    cmf::test::TempDir split;
    auto r = run_cmf("quantize " + shell_quote((b.dir / "tiny-mm").string()) + " --quant q8_0 --mmproj --quiet --out " + shell_quote(split.path().string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    cmf::test::write_file(split / "LICENSE", "terms\n");
    import_into(store.path(), shell_quote(split.path().string()) + " split:q8");
    const nlohmann::json s = nlohmann::json::parse(read_file(store / "manifests/registry.ollama.ai/library/split/q8"));
    EXPECT_EQ(s["layers"][0]["mediaType"], kMediaModel);
    EXPECT_EQ(s["layers"][1]["mediaType"], kMediaProjector);
    EXPECT_EQ(read_file(store / "blobs" / ("sha256-" + s["layers"][1]["digest"].get<std::string>().substr(7))),
              read_file(split / "mmproj-tiny-mm-F16.gguf"));
}

// --adapter: a GGUF LoRA adapter as Ollama's ADAPTER layer, after the base's layers and before
// the params (ollama create FROM base + ADAPTER); the config is the base's. An adapter file in
// the build directory is never taken for the model.
TEST(OllamaImport, AdapterLayer) {
    const Build& b = build();
    cmf::test::TempDir d, store;
    auto r = run_cmf("synth " + shell_quote((d / "ad").string()) + " --adapter-for " + shell_quote((b.dir / "tiny-mm").string()) + " --r 8");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const fs::path build2 = d / "build";
    fs::create_directories(build2);
    fs::copy_file(b.out / "ollama-medgemma-Q8_0.gguf", build2 / "ollama-medgemma-Q8_0.gguf");
    cmf::test::write_file(build2 / "LICENSE", "terms\n");
    r = run_cmf("quantize " + shell_quote((d / "ad").string()) + " --base " + shell_quote((b.dir / "tiny-mm").string()) +
                " --quant f16 --name med-lora --quiet --out " + shell_quote(build2.string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const fs::path adapter = build2 / "med-lora-F16-LoRA.gguf";
    import_into(store.path(), shell_quote(build2.string()) + " plain:q8");
    import_into(store.path(), shell_quote(build2.string()) + " --adapter " + shell_quote(adapter.string()) + " tuned:q8");
    const nlohmann::json plain = nlohmann::json::parse(read_file(store / "manifests/registry.ollama.ai/library/plain/q8"));
    const nlohmann::json m = nlohmann::json::parse(read_file(store / "manifests/registry.ollama.ai/library/tuned/q8"));
    std::vector<std::string> types;
    for (const auto& l : m["layers"]) types.push_back(l["mediaType"]);
    EXPECT_EQ(types, (std::vector<std::string>{kMediaModel, kMediaTemplate, kMediaLicense, kMediaLicense, kMediaAdapter, kMediaParams}));
    EXPECT_EQ(kMediaAdapter, std::string("application/vnd.ollama.image.adapter"));
    EXPECT_TRUE(read_file(store / "blobs" / ("sha256-" + m["layers"][4]["digest"].get<std::string>().substr(7))) == read_file(adapter));
    // the base's layers and config are shared with the plain model
    EXPECT_EQ(m["layers"][0], plain["layers"][0]);
    EXPECT_EQ(m["config"], plain["config"]);

    // refused: a model file as the adapter, an adapter for another architecture
    cmf::test::TempDir s2;
    r = run("OLLAMA_MODELS=" + shell_quote(s2.path().string()) + " " + shell_quote(CMF_BINARY) + " import " + shell_quote(build2.string()) +
            " --adapter " + shell_quote((build2 / "ollama-medgemma-Q8_0.gguf").string()) + " x:q8");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("not a GGUF LoRA adapter (general.type is 'model')"), std::string::npos) << r.output;
    r = run_cmf("synth " + shell_quote((d / "g3n").string()) + " --preset gemma3n-tiny --layers 3 --kv-shared 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cmf("synth " + shell_quote((d / "g3n-ad").string()) + " --adapter-for " + shell_quote((d / "g3n").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cmf("quantize " + shell_quote((d / "g3n-ad").string()) + " --base " + shell_quote((d / "g3n").string()) + " --quant f16 --name other --quiet --out " +
                shell_quote((d / "o").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run("OLLAMA_MODELS=" + shell_quote(s2.path().string()) + " " + shell_quote(CMF_BINARY) + " import " + shell_quote(build2.string()) +
            " --adapter " + shell_quote((d / "o" / "other-F16-LoRA.gguf").string()) + " x:q8");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("adapter for gemma3n, but the model is gemma3"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(s2 / "manifests"));
}

TEST(OllamaImport, ClearErrors) {
    const Build& b = build();
    cmf::test::TempDir store, nolicense;
    auto r = run("OLLAMA_MODELS=" + shell_quote(store.path().string()) + " " + shell_quote(CMF_BINARY) + " import " +
                 shell_quote(b.out.string()) + " al.ice/model");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.output.find("namespace 'al.ice' may not contain '.'"), std::string::npos) << r.output;
    fs::copy_file(b.out / "ollama-medgemma-Q8_0.gguf", nolicense / "m.gguf");
    r = run_cmf("import --store " + shell_quote(store.path().string()) + " " + shell_quote((nolicense / "m.gguf").string()) + " m");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.output.find("--license FILE"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(store / "manifests"));
}

}  // namespace
