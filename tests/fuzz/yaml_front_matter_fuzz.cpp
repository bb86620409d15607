// libFuzzer target for the model card reader (README.md YAML front matter, which a Hugging Face
// repository's author writes) and the general.* KVs taken from it.
//
// Any input must either parse or raise cmf::Error of kind input whose message starts with
// "README.md:" and is one line; a crash, a sanitizer report, a hang or another exception is a
// bug. A card that parses must keep the reader's promises: the front matter is a mapping, every
// top-level key has a README line >= 2, and mapping it to KVs either works or fails the same way.
//
// CMF_FUZZ_SEED_DIR=DIR writes a few model cards into DIR at start-up.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "cmf/arch/card_metadata.h"

namespace {

void check_error(const cmf::Error& e) {
    const std::string m = e.what();
    if (e.kind() != cmf::ErrorKind::input || m.rfind("README.md", 0) != 0 || m.find('\n') != std::string::npos) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* dir = std::getenv("CMF_FUZZ_SEED_DIR");
    if (!dir || !*dir) return 0;
    std::ofstream(std::string(dir) + "/card-medgemma")
        << "---\nlicense: other\nlicense_name: health-ai-developer-foundations\n"
           "license_link: https://developers.google.com/health-ai-developer-foundations/terms\nlibrary_name: transformers\n"
           "pipeline_tag: image-text-to-text\nextra_gated_prompt: >-\n  To access MedGemma, review and\n  agree.\n"
           "base_model:\n- google/gemma-3-4b-pt\n- https://huggingface.co/google/x-v2\ntags:\n  - medical\n  - \"q\\u00e9\"\n"
           "language: [en, 'fr']\ndatasets:\n- name: D\n  url: https://x\n- org/d\n---\n# body\n";
    std::ofstream(std::string(dir) + "/card-scalars")
        << "---\r\nlicense: apache-2.0\r\nbase_model: google/gemma-3-1b-it\r\nlanguage: en\r\nversion: 1.0\r\n"
           "date: 2024-05-01\r\nn: 0x1F\r\nlit: |+\r\n  a\r\n\r\n---\r\n";
    std::ofstream(std::string(dir) + "/card-flow") << "---\nmodel-index: [{name: m, results: [{task: {type: t}, metrics: [1, 2.5, .inf]}]}]\n"
                                                      "widget:\n  - text: 'multi\n    line'\n    other: \"esc \\\n   aped\"\n---\n";
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    cmf::ModelCard card;
    try {
        card = cmf::parse_model_card(text, "README.md");
    } catch (const cmf::Error& e) {
        check_error(e);
        return 0;
    }
    if (card.front.present) {
        if (!card.front.data.is_object()) std::abort();
        for (const auto& [k, line] : card.front.key_lines)
            if (line < 2 || !card.front.data.contains(k)) std::abort();
    } else if (!card.front.data.empty() || !card.front.key_lines.empty()) {
        std::abort();
    }
    for (int64_t total : {int64_t{5000000}, int64_t{-5000000}}) {
        try {
            const cmf::CardMetadata m = cmf::card_metadata(card, total);
            cmf::GgufKvList kv;
            cmf::add_card_kvs(kv, m, card);
            for (const auto& [k, v] : kv.items())
                if (k.rfind("general.", 0) != 0) std::abort();
        } catch (const cmf::Error& e) {
            check_error(e);
        }
    }
    return 0;
}
