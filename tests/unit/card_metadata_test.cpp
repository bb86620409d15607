// format/yaml_front_matter.h (the model card's YAML as gguf-py + PyYAML read it) and
// arch/card_metadata.h + arch/general_kv.h (the general.* KVs llama.cpp's converter takes from
// it). Expected values are PyYAML 6.0's and gguf-py's (metadata.py, llama.cpp v0.5.0) outputs
// for the same text; rig_card_test compares whole files with the converter itself.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "cmf/arch/card_metadata.h"
#include "cmf/arch/general_kv.h"
#include "cmf/format/yaml_front_matter.h"
#include "test_support.h"

namespace cmf::test {
namespace {

using nlohmann::json;

json card(const std::string& yaml) {
    auto fm = yaml::parse_front_matter("---\n" + yaml + "\n---\n# Model\n", "README.md");
    EXPECT_TRUE(fm.present) << yaml;
    return fm.data;
}

std::string error_of(const std::string& text) {
    try {
        yaml::parse_front_matter(text, "README.md");
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::input);
        return e.what();
    }
    return "(no error)";
}

// --- front matter --------------------------------------------------------------------------

TEST(FrontMatter, OnlyALeadingDashLineOpensIt) {
    EXPECT_FALSE(yaml::parse_front_matter("", "README.md").present);
    EXPECT_FALSE(yaml::parse_front_matter("# Model\n---\nlicense: mit\n---\n", "README.md").present);
    EXPECT_FALSE(yaml::parse_front_matter("--- \nlicense: mit\n---\n", "README.md").present);   // not exactly "---"
    EXPECT_FALSE(yaml::parse_front_matter("\xEF\xBB\xBF---\nlicense: mit\n---\n", "README.md").present);  // BOM: str keeps it
    EXPECT_FALSE(yaml::parse_front_matter("---\n---\n", "README.md").present);                  // empty: None
    EXPECT_FALSE(yaml::parse_front_matter("---\n- a\n- b\n---\n", "README.md").present);          // not a mapping
    EXPECT_FALSE(yaml::parse_front_matter("---\njust text\n---\n", "README.md").present);
}

TEST(FrontMatter, EndsAtTheNextDashLineOrTheEndOfTheFile) {
    auto fm = yaml::parse_front_matter("---\r\nlicense: mit\r\n---\r\nlicense: apache-2.0\n---\n", "README.md");
    ASSERT_TRUE(fm.present);
    EXPECT_EQ(fm.data, json({{"license", "mit"}}));
    fm = yaml::parse_front_matter("---\nlicense: mit\ntags: [a]", "README.md");  // never closed
    EXPECT_EQ(fm.data, json({{"license", "mit"}, {"tags", {"a"}}}));
    // str.splitlines() breaks: \r, \v, U+2028 end lines too
    fm = yaml::parse_front_matter("---\ra: 1\x0b" "b: 2\xE2\x80\xA8" "c: 3\r---\r", "README.md");
    EXPECT_EQ(fm.data, json({{"a", 1}, {"b", 2}, {"c", 3}}));
}

TEST(FrontMatter, NorwayAndTabFixesComeBeforeParsing) {
    // metadata.py replaces "- no\n" by "- \"no\"\n" and tabs by two spaces; a flow "no" stays false
    EXPECT_EQ(card("language:\n- en\n- no\nflow: [en, no]"), json({{"language", {"en", "no"}}, {"flow", {"en", false}}}));
    EXPECT_EQ(card("tags:\n\t- a\n\t- b"), json({{"tags", {"a", "b"}}}));
}

TEST(FrontMatter, KeyLinesAreReadmeLines) {
    auto fm = yaml::parse_front_matter("---\nlicense: mit\n# c\n\ntags:\n  - a\nname: x\n---\n", "README.md");
    EXPECT_EQ(fm.key_lines.at("license"), 2u);
    EXPECT_EQ(fm.key_lines.at("tags"), 5u);
    EXPECT_EQ(fm.key_lines.at("name"), 7u);
}

// --- YAML 1.1 scalars, as PyYAML's resolver types them ----------------------------------------

TEST(Yaml, PlainScalarsResolveLikePyYaml) {
    const json c = card(
        "s: apache-2.0\nb1: yes\nb2: Off\nb3: TRUE\nnot_bool: tRue\nn1: ~\nn2: null\nn3:\n"
        "i1: 42\ni2: -0\ni3: 0x1F\ni4: 017\ni5: 0b101\ni6: 1_000\ni7: 1:30\nnot_int: 09\n"
        "f1: 1.0\nf2: 1.0e+5\nnot_float: 1e5\nnot_float2: 1.0e5\nf3: .5\nf4: 1.\nf5: 1:30.5\nnot_float3: -.5\n"
        "v: v1.2\nid: google/gemma-3-4b-pt");
    EXPECT_EQ(c["s"], "apache-2.0");
    EXPECT_EQ(c["b1"], true);
    EXPECT_EQ(c["b2"], false);
    EXPECT_EQ(c["b3"], true);
    EXPECT_EQ(c["not_bool"], "tRue");
    EXPECT_TRUE(c["n1"].is_null() && c["n2"].is_null() && c["n3"].is_null());
    EXPECT_EQ(c["i1"], 42);
    EXPECT_EQ(c["i2"], 0);
    EXPECT_EQ(c["i3"], 31);
    EXPECT_EQ(c["i4"], 15);
    EXPECT_EQ(c["i5"], 5);
    EXPECT_EQ(c["i6"], 1000);
    EXPECT_EQ(c["i7"], 90);
    EXPECT_EQ(c["not_int"], "09");
    EXPECT_EQ(c["f1"], 1.0);
    EXPECT_EQ(c["f2"], 100000.0);
    EXPECT_EQ(c["not_float"], "1e5");
    EXPECT_EQ(c["not_float2"], "1.0e5");
    EXPECT_EQ(c["f3"], 0.5);
    EXPECT_EQ(c["f4"], 1.0);
    EXPECT_EQ(c["f5"], 90.5);
    EXPECT_EQ(c["not_float3"], "-.5");
    EXPECT_EQ(c["v"], "v1.2");
    EXPECT_EQ(c["id"], "google/gemma-3-4b-pt");
    const json special = card("a: .inf\nb: -.Inf\nc: .NaN");
    EXPECT_TRUE(std::isinf(special["a"].get<double>()) && special["a"].get<double>() > 0);
    EXPECT_TRUE(std::isinf(special["b"].get<double>()) && special["b"].get<double>() < 0);
    EXPECT_TRUE(std::isnan(special["c"].get<double>()));
}

TEST(Yaml, DatesAndHugeIntegersAreNeitherTextNorNumbers) {
    const json c = card("d: 2024-05-01\nt: 2024-1-2 10:00:00 +01:00\nbig: 123456789012345678901\nmin: -9223372036854775808");
    EXPECT_TRUE(c["d"].is_binary());
    EXPECT_TRUE(c["t"].is_binary());
    EXPECT_TRUE(c["big"].is_binary());
    EXPECT_EQ(c["min"], INT64_MIN);
    // PyYAML builds a datetime.date: an impossible one fails the load
    EXPECT_NE(error_of("---\nd: 2023-02-29\n---\n").find("README.md:2: invalid YAML"), std::string::npos);
    EXPECT_TRUE(card("d: 2024-02-29")["d"].is_binary());
}

TEST(Yaml, QuotedScalars) {
    const json c = card(
        "a: 'it''s: \\n'\nb: \"tab\\there \\\"q\\\" \\x41\\u00e9\\U0001F600 \\/\"\n"
        "c: 'folded\n  over\n\n  lines'\nd: \"joined \\\n   here\"\ne: '1.0'\nf: \"\"");
    EXPECT_EQ(c["a"], "it's: \\n");
    EXPECT_EQ(c["b"], "tab\there \"q\" A\xC3\xA9\xF0\x9F\x98\x80 /");
    EXPECT_EQ(c["c"], "folded over\nlines");
    EXPECT_EQ(c["d"], "joined here");
    EXPECT_EQ(c["e"], "1.0");
    EXPECT_EQ(c["f"], "");
}

TEST(Yaml, PlainScalarsFoldOverDeeperLines) {
    const json c = card("a: one\n  two\n\n  three # comment\nb: x#y\nurl: https://x.org/a#b:c");
    EXPECT_EQ(c["a"], "one two\nthree");
    EXPECT_EQ(c["b"], "x#y");
    EXPECT_EQ(c["url"], "https://x.org/a#b:c");
}

TEST(Yaml, BlockScalars) {
    const json c = card(
        "lit: |\n  line 1\n    indented\n\n  line 3\n\n"
        "fold: >\n  one\n  two\n\n   more\n  end\n"
        "strip: |-\n  x\n\n"
        "keep: |+\n  x\n\n"
        "explicit: |2\n   three spaces\n"
        "next: 1");
    EXPECT_EQ(c["lit"], "line 1\n  indented\n\nline 3\n");
    EXPECT_EQ(c["fold"], "one two\n\n more\nend\n");
    EXPECT_EQ(c["strip"], "x");
    EXPECT_EQ(c["keep"], "x\n\n");
    EXPECT_EQ(c["explicit"], " three spaces\n");
    EXPECT_EQ(c["next"], 1);
}

TEST(Yaml, BlockAndFlowCollections) {
    const json c = card(
        "indentless:\n- a\n- b\n"
        "nested:\n  - name: x\n    url: https://x\n  - - 1\n    - 2\n  -\n  - c\n"
        "flow: [a, 'b c', [1, 2.5], {k: v, e}]\n"
        "multi: [one,\n  two, # comment\n  three,\n]\n"
        "pairs: [a: 1, b]\n"
        "map:\n  inner:\n    deep: true\n");
    EXPECT_EQ(c["indentless"], json({"a", "b"}));
    EXPECT_EQ(c["nested"], json::parse(R"([{"name":"x","url":"https://x"},[1,2],null,"c"])"));
    EXPECT_EQ(c["flow"], json::parse(R"(["a","b c",[1,2.5],{"k":"v","e":null}])"));
    EXPECT_EQ(c["multi"], json({"one", "two", "three"}));
    EXPECT_EQ(c["pairs"], json::parse(R"([{"a":1},"b"])"));
    EXPECT_EQ(c["map"], json::parse(R"({"inner":{"deep":true}})"));
    EXPECT_EQ(card("a: 1\na: 2")["a"], 2);  // PyYAML: the last duplicate wins
}

// Errors: one line, README.md and the line, kind input; "invalid" where PyYAML (and so the
// converter) fails too, "does not read" for the YAML cmf leaves out.
TEST(Yaml, ErrorsNameTheFileAndLine) {
    EXPECT_EQ(error_of("---\nlicense: mit\n  bad: indent\n---\n"),
              "README.md:3: invalid YAML front matter (llama.cpp's converter fails on it too): mapping values are not allowed here (a ': ' inside a value: quote it)");
    EXPECT_NE(error_of("---\na: 1\nb: 'open\n---\n").find("README.md:3: invalid YAML"), std::string::npos);  // where it opens
    EXPECT_NE(error_of("---\na: [1, 2\n---\n").find("README.md:2: invalid YAML"), std::string::npos);
    EXPECT_NE(error_of("---\na: b: c\n---\n").find("README.md:2: invalid YAML"), std::string::npos);
    EXPECT_NE(error_of("---\na: \"\\q\"\n---\n").find("README.md:2: invalid YAML"), std::string::npos);
    EXPECT_NE(error_of("---\na: x\x01y\n---\n").find("README.md:2: invalid YAML"), std::string::npos);
    EXPECT_NE(error_of("---\na: 1\n\n\nb: \xFF\n---\n").find("README.md:5: not valid UTF-8"), std::string::npos);
    EXPECT_NE(error_of("---\nbody: ok\n---\n\ntext \xC0\x80\n").find("README.md:5: not valid UTF-8"), std::string::npos);
    EXPECT_EQ(error_of("---\na: &x 1\nb: *x\n---\n"),
              "README.md:2: YAML front matter uses anchors and aliases, which cmf does not read; simplify the card");
    EXPECT_NE(error_of("---\n? a\n: b\n---\n").find("does not read"), std::string::npos);
    EXPECT_NE(error_of("---\na: !!int 1\n---\n").find("does not read"), std::string::npos);
    std::string deep = "a: ";
    for (int i = 0; i < 200; ++i) deep += "[";
    EXPECT_NE(error_of("---\n" + deep + "\n---\n").find("nested deeper"), std::string::npos);
    for (const std::string& e : {error_of("---\na: \"\\q\"\n---\n"), error_of("---\na: &x 1\n---\n")})
        EXPECT_EQ(e.find('\n'), std::string::npos) << e;
}

// --- the card -> general.* mapping -----------------------------------------------------------

struct Kv {
    std::string key, value;
    bool operator==(const Kv&) const = default;
};
void PrintTo(const Kv& k, std::ostream* os) { *os << k.key << " = " << k.value; }

std::string show(const GgufValue& v) {
    if (v.type == GgufType::STRING) return v.str;
    if (v.type == GgufType::UINT32) return "u32:" + std::to_string(v.as<uint32_t>());
    if (v.type == GgufType::ARRAY && v.elem == GgufType::STRING) {
        std::string s = "[";
        for (const auto& x : v.strs) s += (s.size() > 1 ? "," : "") + x;
        return s + "]";
    }
    if (v.type == GgufType::ARRAY && v.elem == GgufType::INT32) {
        std::string s = "i32[";
        for (uint64_t i = 0; i < v.count; ++i) {
            int32_t x;
            std::memcpy(&x, v.bytes.data() + 4 * i, 4);
            s += (i ? "," : "") + std::to_string(x);
        }
        return s + "]";
    }
    return "(type " + std::to_string(static_cast<int>(v.type)) + ")";
}

// add_general_kvs for a checkpoint directory named `dir_name` holding README.md = `readme`
// (none when empty), as convert.h calls it for a text model of n_params parameters.
std::vector<Kv> general_kvs(const std::string& readme, const std::string& dir_name = "medgemma-4b-it",
                            uint64_t n_params = 5000000, const std::string& name_or_path = "") {
    TempDir t;
    const fs::path dir = t / dir_name;
    fs::create_directories(dir);
    if (!readme.empty()) write_file(dir / "README.md", readme);
    GgufKvList kv;
    GeneralInfo g;
    g.architecture = "gemma3";
    g.type = "model";
    g.n_params = n_params;
    g.name = derive_model_name(name_or_path, dir_name, static_cast<int64_t>(n_params));
    add_general_kvs(kv, g, dir, true);
    std::vector<Kv> out;
    for (const auto& [k, v] : kv.items()) out.push_back({k, show(v)});
    return out;
}

std::string general_error(const std::string& readme) {
    try {
        general_kvs(readme);
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::input);
        return e.what();
    }
    return "(no error)";
}

const char kMedGemmaCard[] = R"(---
license: other
license_name: health-ai-developer-foundations
license_link: https://developers.google.com/health-ai-developer-foundations/terms
library_name: transformers
pipeline_tag: image-text-to-text
extra_gated_heading: Access MedGemma on Hugging Face
extra_gated_prompt: >-
  To access MedGemma on Hugging Face, you're required to review and
  agree to the Health AI Developer Foundation's terms of use.
base_model:
- google/gemma-3-4b-pt
- https://huggingface.co/google/medgemma-4b-pt-v2
tags:
- medical
- radiology
language:
- en
- no
datasets:
- name: Private Set
  url: https://example.org/data
- bigbio/med_qa
---
# MedGemma
)";

TEST(CardMetadata, MedGemmaStyleCard) {
    // gguf-py's Metadata.load + set_gguf_meta_model on the same directory give these, in order
    const std::vector<Kv> want = {
        {"general.architecture", "gemma3"},
        {"general.type", "model"},
        {"general.name", "Medgemma 4b It"},
        {"general.finetune", "4b-it"},
        {"general.basename", "medgemma"},
        {"general.size_label", "5.0M"},
        {"general.license", "other"},
        {"general.license.name", "health-ai-developer-foundations"},
        {"general.license.link", "https://developers.google.com/health-ai-developer-foundations/terms"},
        {"general.base_model.count", "u32:2"},
        {"general.base_model.0.name", "Gemma 3 4b Pt"},
        {"general.base_model.0.organization", "Google"},
        {"general.base_model.0.repo_url", "https://huggingface.co/google/gemma-3-4b-pt"},
        {"general.base_model.1.name", "Medgemma 4b Pt v2"},
        {"general.base_model.1.version", "v2"},
        {"general.base_model.1.organization", "Google"},
        {"general.base_model.1.repo_url", "https://huggingface.co/google/medgemma-4b-pt-v2"},
        {"general.dataset.count", "u32:2"},
        {"general.dataset.0.name", "Private Set"},
        {"general.dataset.0.url", "https://example.org/data"},
        {"general.dataset.1.name", "Med_Qa"},
        {"general.dataset.1.organization", "Bigbio"},
        {"general.dataset.1.repo_url", "https://huggingface.co/bigbio/med_qa"},
        {"general.tags", "[medical,radiology,image-text-to-text]"},
        {"general.languages", "[en,no]"},
    };
    EXPECT_EQ(general_kvs(kMedGemmaCard), want);
}

TEST(CardMetadata, ScalarBaseModelAndLanguage) {
    const std::vector<Kv> want = {
        {"general.architecture", "gemma3"},
        {"general.type", "model"},
        {"general.name", "Medgemma 4b It"},
        {"general.finetune", "4b-it"},
        {"general.basename", "medgemma"},
        {"general.size_label", "5.0M"},
        {"general.license", "apache-2.0"},
        {"general.base_model.count", "u32:1"},
        {"general.base_model.0.name", "Gemma 3 1b It"},
        {"general.base_model.0.organization", "Google"},
        {"general.base_model.0.repo_url", "https://huggingface.co/google/gemma-3-1b-it"},
        {"general.tags", "[text-generation]"},
        {"general.languages", "[en]"},
    };
    EXPECT_EQ(general_kvs("---\nlicense: apache-2.0\nbase_model: google/gemma-3-1b-it\nlanguage: en\npipeline_tag: text-generation\n---\n"),
              want);
}

TEST(CardMetadata, WithoutACardTheKvsAreTheDerivedOnes) {
    const std::vector<Kv> want = {
        {"general.architecture", "gemma3"}, {"general.type", "model"},       {"general.name", "Medgemma 4b It"},
        {"general.finetune", "4b-it"},      {"general.basename", "medgemma"}, {"general.size_label", "5.0M"},
    };
    EXPECT_EQ(general_kvs(""), want);
    EXPECT_EQ(general_kvs("# Model card without front matter\n"), want);
    EXPECT_EQ(general_kvs("---\nlibrary_name: transformers\n---\n"), want);  // nothing metadata.py reads
}

TEST(CardMetadata, CardNamesWinOverTheDerivedOnes) {
    const auto kv = general_kvs(
        "---\nmodel_name: My Model\nmodel_creator: Someone\nversion: '2.0'\norganization: ~\nmodel_organization: Org\n"
        "model_type: custom\nsize_label: 4B\ndescription: A model\nurl: https://x.org\nmodel_repo_url: https://git/x\n---\n");
    const std::vector<Kv> want = {
        {"general.architecture", "gemma3"},
        {"general.type", "model"},
        {"general.name", "My Model"},
        {"general.author", "Someone"},
        {"general.version", "2.0"},
        {"general.organization", "Org"},  // organization: null falls through to model_organization
        {"general.finetune", "4b-it"},
        {"general.basename", "custom"},   // model_type is a basename source
        {"general.description", "A model"},
        {"general.size_label", "4B"},
        {"general.source.url", "https://x.org"},
        {"general.source.repo_url", "https://git/x"},
    };
    EXPECT_EQ(kv, want);
}

TEST(CardMetadata, EmptyCardValuesSuppressTheDerivedOnes) {
    // name: '' is not None, so neither _name_or_path nor the directory fills it, and add_string
    // skips it: no general.name at all
    const auto kv = general_kvs("---\nname: ''\nbasename: 0\nsize_label: ''\n---\n");
    const std::vector<Kv> want = {
        {"general.architecture", "gemma3"}, {"general.type", "model"}, {"general.finetune", "4b-it"}};
    EXPECT_EQ(kv, want);
}

TEST(CardMetadata, BaseModelForms) {
    auto find = [](const std::vector<Kv>& kv, const std::string& key) -> std::string {
        for (const auto& k : kv)
            if (k.key == key) return k.value;
        return "(absent)";
    };
    auto kv = general_kvs(
        "---\nbase_model:\n- https://huggingface.co/Org/Model-7b-v1.5\n- https://github.com/x/y\n- ssh://huggingface.co/a/b\n"
        "- just a name\n- name: Custom\n  author: Me\n  doi: 10.1/x\n- 42\n---\n");
    EXPECT_EQ(find(kv, "general.base_model.count"), "u32:6");
    EXPECT_EQ(find(kv, "general.base_model.0.name"), "Model 7b v1.5");
    EXPECT_EQ(find(kv, "general.base_model.0.version"), "v1.5");
    EXPECT_EQ(find(kv, "general.base_model.0.organization"), "Org");
    EXPECT_EQ(find(kv, "general.base_model.0.repo_url"), "https://huggingface.co/Org/Model-7b-v1.5");
    EXPECT_EQ(find(kv, "general.base_model.1.name"), "(absent)");
    EXPECT_EQ(find(kv, "general.base_model.1.repo_url"), "https://github.com/x/y");
    EXPECT_EQ(find(kv, "general.base_model.2.name"), "(absent)");  // the huggingface pattern wants http(s)
    EXPECT_EQ(find(kv, "general.base_model.2.repo_url"), "ssh://huggingface.co/a/b");
    EXPECT_EQ(find(kv, "general.base_model.3.name"), "Just A Name");
    EXPECT_EQ(find(kv, "general.base_model.3.repo_url"), "(absent)");
    EXPECT_EQ(find(kv, "general.base_model.4.name"), "Custom");
    EXPECT_EQ(find(kv, "general.base_model.4.author"), "Me");
    EXPECT_EQ(find(kv, "general.base_model.4.doi"), "10.1/x");
    EXPECT_EQ(find(kv, "general.base_model.5.name"), "(absent)");  // not a known format: counted, empty
    // a present but null base_model still writes a count of 0; base_models is read only without it
    kv = general_kvs("---\nbase_model:\nbase_models: [a/b]\ndataset: x/y\n---\n");
    EXPECT_EQ(find(kv, "general.base_model.count"), "u32:0");
    EXPECT_EQ(find(kv, "general.dataset.count"), "u32:1");
    EXPECT_EQ(find(kv, "general.dataset.0.name"), "Y");
}

TEST(CardMetadata, LicenseListsAndTypedTags) {
    auto kv = general_kvs("---\nlicense: [mit, apache-2.0]\ntags: [1, 2]\n---\n");
    EXPECT_EQ(kv[kv.size() - 2], (Kv{"general.license", "mit,apache-2.0"}));
    EXPECT_EQ(kv.back(), (Kv{"general.tags", "i32[1,2]"}));
    kv = general_kvs("---\ntags: []\nlanguage: 7\n---\n");  // nothing to write
    EXPECT_EQ(kv.back().key, "general.size_label");
}

TEST(CardMetadata, ValuesTheConverterCannotWriteAreErrorsNamingTheLine) {
    const std::string e = general_error("---\nlicense: mit\nversion: 1.0\n---\n");
    EXPECT_NE(e.find("README.md:3: model card 'version' is a number"), std::string::npos) << e;
    EXPECT_NE(e.find("general.version"), std::string::npos) << e;
    EXPECT_NE(general_error("---\ntags: [a, 1]\n---\n").find("README.md:2: model card 'tags' is a list mixing text and an integer"),
              std::string::npos);
    EXPECT_NE(general_error("---\nlicense: [mit, 3]\n---\n").find("'license' is a list holding an integer"), std::string::npos);
    EXPECT_NE(general_error("---\nbase_model:\n- name: [x]\n---\n").find("README.md:2: model card 'base_model' is a list"),
              std::string::npos);
    EXPECT_NE(general_error("---\nname: 2024-01-01\n---\n").find("is a date or a large integer"), std::string::npos);
    EXPECT_NE(general_error("---\ntags: [3000000000]\n---\n").find("outside int32"), std::string::npos);
    EXPECT_NE(general_error("---\nauthor: \"\\ud800\"\n---\n").find("lone surrogate"), std::string::npos);
    // falsy values are skipped, as add_string does
    EXPECT_EQ(general_error("---\nversion: 0\nauthor: false\ndescription: []\n---\n"), "(no error)");
}

TEST(CardMetadata, AdapterCountsAreNegative) {
    // convert_lora_to_gguf.py: total_params < 0, so a "lora" part is a type, not a finetune
    const ModelCard c = parse_model_card("---\nbase_model: org/base-lora-v2\n---\n", "README.md");
    const CardMetadata m = card_metadata(c, -1000);
    ASSERT_TRUE(m.base_models);
    EXPECT_EQ((*m.base_models)[0]["version"], "v2");
    EXPECT_EQ((*m.base_models)[0]["name"], "Base Lora v2");
}

}  // namespace
}  // namespace cmf::test
