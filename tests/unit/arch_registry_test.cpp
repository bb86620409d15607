// The architecture registry: lookups, the unknown-architecture line, and the rule that family
// knowledge lives in include/cmf/arch/ only (no gemma3 / gemma3n / gemma4 token in the
// pipeline, tokenizer, synth, registry, factory, CLI or worker code).
#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "cmf/arch/registry.h"
#include "test_support.h"

namespace cmf::test {
namespace {

TEST(ArchRegistry, EveryFamilyIsFoundByItsArchitecturesAndItsGgufName) {
    const std::pair<const char*, const char*> rows[] = {
        {"Gemma3ForCausalLM", "gemma3"},          {"Gemma3ForConditionalGeneration", "gemma3"},
        {"Gemma3nForConditionalGeneration", "gemma3n"}, {"Gemma3nForCausalLM", "gemma3n"},
        {"Gemma4ForConditionalGeneration", "gemma4"}, {"Gemma4ForCausalLM", "gemma4"},
    };
    for (const auto& [hf, gguf] : rows) {
        const arch::ArchSpec* s = arch::find_spec(hf);
        ASSERT_TRUE(s) << hf;
        EXPECT_EQ(s->text.gguf_arch, gguf) << hf;
        EXPECT_EQ(arch::find_spec_by_gguf(gguf), s) << gguf;
        EXPECT_TRUE(s->tokenizer.load) << hf << ": no tokenizer route";
        EXPECT_FALSE(s->text.kv.empty()) << hf;
        EXPECT_TRUE(s->mmproj || !s->mmproj_refusal.empty()) << hf << ": --mmproj needs a part or a refusal";
    }
    EXPECT_EQ(arch::find_spec("LlamaForCausalLM"), nullptr);
    EXPECT_EQ(arch::find_spec_by_gguf("clip"), nullptr);
    EXPECT_EQ(arch::all_specs().size(), 3u);
}

TEST(ArchRegistry, UnknownArchitectureIsOneLineListingTheFamilies) {
    TempDir d;
    write_file(d / "config.json", R"({"architectures": ["MistralForCausalLM"], "hidden_size": 8})");
    auto r = run_cmf("quantize " + shell_quote(d.path().string()) + " --quant f16 --out " + shell_quote((d / "o").string()));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("unsupported architecture 'MistralForCausalLM'"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("Gemma3nForConditionalGeneration"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("Gemma4ForConditionalGeneration"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "o" / "config-F16.gguf"));
}

// Adding a family touches include/cmf/arch/ (docs/ARCHITECTURE.md); everything else reads the spec.
TEST(ArchRegistry, NoFamilyNameOutsideArch) {
    const fs::path root = CMF_SOURCE_DIR;
    const std::regex family("gemma[34]", std::regex::icase);
    std::vector<std::string> offenders;
    size_t files = 0;
    for (const char* top : {"include", "orchestrate", "agent", "cloud-init"}) {
        if (!fs::is_directory(root / top)) continue;
        for (const auto& e : fs::recursive_directory_iterator(root / top)) {
            if (!e.is_regular_file()) continue;
            const fs::path rel = fs::relative(e.path(), root);
            if (rel.string().rfind("include/cmf/arch/", 0) == 0) continue;
            const std::string ext = rel.extension().string();
            if (ext != ".h" && ext != ".cpp" && ext != ".sh" && ext != ".yaml" && ext != ".txt") continue;
            ++files;
            std::ifstream in(e.path());
            std::string line;
            for (int n = 1; std::getline(in, line); ++n)
                if (std::regex_search(line, family)) offenders.push_back(rel.string() + ":" + std::to_string(n) + ": " + line.substr(0, 120));
        }
    }
    EXPECT_GT(files, 50u) << "the scan found too few files; is CMF_SOURCE_DIR right?";
    std::string list;
    for (const auto& o : offenders) list += "  " + o + "\n";
    EXPECT_TRUE(offenders.empty()) << offenders.size() << " line(s) name a family outside include/cmf/arch/:\n" << list;
}

}  // namespace
}  // namespace cmf::test
