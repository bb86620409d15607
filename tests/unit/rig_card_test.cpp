// Model cards (README.md front matter) against llama.cpp v0.5.0's own converters in the reference
// rig (rig_ref.h): a synthetic checkpoint (or adapter) gets a card we write, is converted by cmf
// and by convert_hf_to_gguf.py / convert_lora_to_gguf.py, and every general.* KV must be the
// same key, in the same place, with the same value; then the whole file must be the same bytes.
// Two card shapes for models (MedGemma's terms with lists everywhere; scalars and no
// license_name) so the rules are not tuned to one card, the mmproj beside them, a Q4_K_M variant
// (llama-quantize of the converter's file) and a PEFT-style adapter card. Skips with a message
// without the rig.
#include <gtest/gtest.h>

#include <algorithm>

#include "cmf/format/gguf.h"
#include "llama_quantize_ref.h"
#include "rig_ref.h"
#include "test_support.h"

namespace cmf::test {
namespace {

// MedGemma-like: license "other" with Health AI Developer Foundations terms, a folded gated
// prompt, base models as ids and a URL, datasets as an id and a mapping, "- no" in languages.
const char kListsCard[] = R"(---
license: other
license_name: health-ai-developer-foundations
license_link: https://developers.google.com/health-ai-developer-foundations/terms
library_name: transformers
pipeline_tag: image-text-to-text
extra_gated_heading: Access MedGemma on Hugging Face
extra_gated_prompt: >-
  To access MedGemma on Hugging Face, you're required to review and
  agree to [Health AI Developer Foundation's terms of use](https://developers.google.com/health-ai-developer-foundations/terms).
extra_gated_button_content: Acknowledge license
base_model:
- google/gemma-3-4b-pt
- https://huggingface.co/google/medgemma-4b-pt-v1.5
tags:
- medical
- radiology
- "clinical-reasoning" # quoted
language:
  - en
  - no
datasets:
- bigbio/med_qa
- name: Private Radiology Set
  url: https://example.org/data
  version: '2'
---
# MedGemma card body

Text that is not YAML: key: value, - item, [brackets.
)";

// Scalars: one base model, `language: en`, no license_name, name and author from the card.
const char kScalarsCard[] = "---\n"
                            "license: apache-2.0\n"
                            "base_model: google/gemma-3-1b-it\n"
                            "language: en\n"
                            "pipeline_tag: text-generation\n"
                            "model_name: Tiny Card Model\n"
                            "model_creator: cmf tests\n"
                            "description: 'A synthetic checkpoint: for tests only'\n"
                            "---\n"
                            "Body.\n";

// What PEFT writes beside an adapter (adapter_model.safetensors + adapter_config.json).
const char kAdapterCard[] = "---\n"
                            "base_model: google/gemma-3-4b-it\n"
                            "library_name: peft\n"
                            "tags:\n"
                            "- base_model:adapter:google/gemma-3-4b-it\n"
                            "- lora\n"
                            "- transformers\n"
                            "license: gemma\n"
                            "---\n"
                            "# Model Card for Model ID\n";

std::vector<std::pair<std::string, GgufValue>> general_of(const fs::path& p) {
    std::vector<std::pair<std::string, GgufValue>> out;
    const GgufContents g = read_gguf(p);
    for (const auto& [k, v] : g.kv.items())
        if (std::string_view(k).starts_with("general.")) out.emplace_back(k, v);
    return out;
}

// Every general.* KV of ours is llama.cpp's, in order; `expect` must be among them (the card was
// read by both sides, not ignored by both).
void expect_same_general(const fs::path& ours, const fs::path& ref, const std::vector<std::string>& expect) {
    const auto a = general_of(ours), b = general_of(ref);
    for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
        const std::string ka = i < a.size() ? a[i].first : "(none)", kb = i < b.size() ? b[i].first : "(none)";
        EXPECT_EQ(ka, kb) << "general KV #" << i;
        if (ka == kb && i < a.size()) {
            EXPECT_TRUE(a[i].second == b[i].second)
                << ka << ": cmf " << llama_ref::describe(a[i].second) << ", llama.cpp " << llama_ref::describe(b[i].second);
        }
    }
    for (const auto& k : expect)
        EXPECT_TRUE(std::any_of(b.begin(), b.end(), [&](const auto& kv) { return kv.first == k; })) << k << " not in llama.cpp's file";
}

struct CardCase {
    const char* name;
    const char* card;
    std::vector<std::string> expect;
};

const CardCase kCards[] = {
    {"lists_medgemma_terms", kListsCard,
     {"general.license", "general.license.name", "general.license.link", "general.base_model.count", "general.base_model.1.version",
      "general.dataset.count", "general.dataset.1.url", "general.tags", "general.languages"}},
    {"scalars_no_license_name", kScalarsCard,
     {"general.name", "general.author", "general.description", "general.license", "general.base_model.0.repo_url", "general.tags",
      "general.languages"}},
};

void PrintTo(const CardCase& c, std::ostream* os) { *os << c.name; }

class RigCard : public ::testing::TestWithParam<CardCase> {
protected:
    void SetUp() override { REQUIRE_RIG(); }
    TempDir dir_;
};

TEST_P(RigCard, GeneralKvsAreTheConvertersForModelAndMmproj) {
    const CardCase& c = GetParam();
    // a directory name with parts, so name/basename/finetune come from it on both sides
    const fs::path ck = dir_ / "medgemma-4b-it";
    auto r = run_cmf("synth " + shell_quote(ck.string()) + " --preset tiny-mm");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    write_file(ck / "README.md", c.card);
    r = run_cmf("quantize " + shell_quote(ck.string()) + " --quant bf16 --mmproj --quiet --name m --out " + shell_quote((dir_ / "cmf").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;

    const fs::path ref = dir_ / "ref.gguf", mref = dir_ / "mmproj-ref.gguf";
    r = rig::convert(ck, "bf16", ref, false);
    ASSERT_EQ(r.exit_code, 0) << rig::tail(r.output);
    r = rig::convert(ck, "f16", mref, false, true);
    ASSERT_EQ(r.exit_code, 0) << rig::tail(r.output);
    {
        SCOPED_TRACE("text model");
        expect_same_general(dir_ / "cmf" / "m-BF16.gguf", ref, c.expect);
        llama_ref::expect_same_as_llama(dir_ / "cmf" / "m-BF16.gguf", ref);
    }
    {
        // MmprojModel reads the same card (ModelBase.prepare_metadata)
        SCOPED_TRACE("mmproj");
        expect_same_general(dir_ / "cmf" / "mmproj-m-F16.gguf", mref, c.expect);
        llama_ref::expect_same_as_llama(dir_ / "cmf" / "mmproj-m-F16.gguf", mref);
    }
}

INSTANTIATE_TEST_SUITE_P(Cards, RigCard, ::testing::ValuesIn(kCards),
                         [](const ::testing::TestParamInfo<CardCase>& i) { return std::string(i.param.name); });

// A recipe is llama-quantize on the lossless conversion: it carries the card's KVs where the
// converter put them (and moves only the two version KVs to the end).
TEST(RigCardQuantized, Q4KMCarriesTheCardKvs) {
    REQUIRE_RIG();
    REQUIRE_LLAMA();
    TempDir dir;
    const fs::path ck = dir / "medgemma-4b-it";
    auto r = run_cmf("synth " + shell_quote(ck.string()) + " --preset tiny --layers 3");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    write_file(ck / "README.md", kListsCard);
    r = run_cmf("quantize " + shell_quote(ck.string()) + " --quant q4_k_m --quiet --name m --out " + shell_quote((dir / "cmf").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const fs::path ref = dir / "ref.gguf", q = dir / "ref-Q4_K_M.gguf";
    r = rig::convert(ck, "bf16", ref, false);
    ASSERT_EQ(r.exit_code, 0) << rig::tail(r.output);
    constexpr int32_t kFtypeQ4_K_M = 15;  // llama.h LLAMA_FTYPE_MOSTLY_Q4_K_M
    ASSERT_EQ(llama_ref::llama_quantize_plain(ref, q, kFtypeQ4_K_M), 0u);
    expect_same_general(dir / "cmf" / "m-Q4_K_M.gguf", q, {"general.license.link", "general.dataset.1.url", "general.languages"});
    llama_ref::expect_same_as_llama(dir / "cmf" / "m-Q4_K_M.gguf", q);
}

// convert_lora_to_gguf.py reads the card of the adapter directory (LoraModel.dir_model_card),
// with a negative parameter count.
TEST(RigCardAdapter, AdapterCardIsConvertLoraToGgufs) {
    REQUIRE_RIG();
    TempDir dir;
    const fs::path base = dir / "base", ad = dir / "adapter";
    auto r = run_cmf("synth " + shell_quote(base.string()) + " --preset tiny --layers 3");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cmf("synth " + shell_quote(ad.string()) + " --adapter-for " + shell_quote(base.string()) + " --targets q_proj,v_proj --r 16 --alpha 32");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    write_file(ad / "README.md", kAdapterCard);
    r = run_cmf("quantize " + shell_quote(ad.string()) + " --base " + shell_quote(base.string()) + " --quant f16 --quiet --out " +
                shell_quote((dir / "cmf").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const fs::path ref = dir / "ref.gguf";
    r = rig::convert_lora(ad, base, "f16", ref);
    ASSERT_EQ(r.exit_code, 0) << rig::tail(r.output);
    expect_same_general(dir / "cmf" / "Adapter-F16-LoRA.gguf", ref,
                        {"general.license", "general.base_model.count", "general.base_model.0.repo_url", "general.tags"});
    llama_ref::expect_same_as_llama(dir / "cmf" / "Adapter-F16-LoRA.gguf", ref);
}

}  // namespace
}  // namespace cmf::test
