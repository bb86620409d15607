// The model card (README.md) written next to each built variant: what it was made from, how,
// by which cmf, and the base model's license, passed through (a quantization is a derivative
// work: its use is governed by the base model's terms, e.g. the Health AI Developer Foundations
// terms for MedGemma).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cmf/arch/card_metadata.h"

namespace cmf::factory {

struct CardFile {
    std::string name;
    uint64_t size = 0;
    std::string sha256;
};

// The LoRA adapter merged into (or published beside) a variant.
struct CardLora {
    std::string source, revision;  // hf://org/adapter, resolved commit
    uint32_t r = 0;
    double alpha = 0;
    bool rslora = false;
    std::vector<std::string> targets;
    std::vector<CardFile> files;
    std::string form = "merged";  // "merged": in the weights; "adapter": an ADAPTER layer on the base
};

struct ModelCardInput {
    std::string model_name;    // coheara-medgemma-4b-q4s
    std::string base_model;    // google/medgemma-1.5-4b-it (or the local directory)
    std::string revision;      // requested revision; the resolved commit when known
    std::string variant, type; // q4s, Q4_K_S
    std::vector<CardFile> outputs, inputs;
    std::string cmf_version, built_at, job_id;
    std::string license;       // the base model card's `license:` (empty: unknown)
    std::string license_name, license_link;
    std::optional<CardLora> lora;
    nlohmann::json gate;  // the quality gate's record (engine/gate.h gate_json), or null
    std::string imatrix;  // how the importance matrix was made, or "" (none)
};

// Reads `license`, `license_name`, `license_link` from the YAML front matter of the base
// model's README.md (Hugging Face model cards), if there is one: the converter's own reader
// (arch/card_metadata.h), so a card the conversion reads one way is not read another way here.
inline void read_base_license(const std::filesystem::path& readme, ModelCardInput& in) {
    const ModelCard card = read_model_card(readme.parent_path());
    if (!card.front.present) return;
    auto text = [&](const char* k) -> std::string {
        auto it = card.front.data.find(k);
        return it != card.front.data.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    in.license = text("license");
    in.license_name = text("license_name");
    in.license_link = text("license_link");
}

inline std::string render_model_card(const ModelCardInput& in) {
    std::ostringstream o;
    o << "---\n";
    o << "base_model: " << in.base_model << "\n";
    if (!in.license.empty()) o << "license: " << in.license << "\n";
    if (!in.license_name.empty()) o << "license_name: " << in.license_name << "\n";
    if (!in.license_link.empty()) o << "license_link: " << in.license_link << "\n";
    o << "tags:\n- gguf\n- " << in.type << "\n";
    if (in.lora) o << "- lora\n";
    o << "---\n\n";
    o << "# " << in.model_name << "\n\n";
    o << "`" << in.base_model << "` (revision `" << in.revision << "`) converted to GGUF and quantized to **" << in.type
      << "** by cmf. The tensors are what llama.cpp's `convert_hf_to_gguf.py` and `llama-quantize` write.\n\n";
    if (in.lora) {
        const CardLora& l = *in.lora;
        o << "## LoRA adapter\n\n";
        o << (l.form == "merged" ? "Merged into the weights (PEFT `merge_and_unload()` arithmetic, before quantization): "
                                 : "Carried as Ollama's ADAPTER layer on the unmerged base: ")
          << "`" << l.source << "` (revision `" << l.revision << "`), r " << l.r << ", alpha " << l.alpha
          << (l.rslora ? ", rsLoRA (scale alpha/sqrt(r))" : "") << ", targets";
        for (size_t i = 0; i < l.targets.size(); ++i) o << (i ? ", " : " ") << "`" << l.targets[i] << "`";
        o << ".\n\n| adapter file | size (bytes) | sha256 |\n|---|---:|---|\n";
        for (const auto& f : l.files) o << "| " << f.name << " | " << f.size << " | `" << f.sha256 << "` |\n";
        o << "\n";
    }
    if (!in.imatrix.empty()) o << "## Importance matrix\n\nQuantized with the importance matrix " << in.imatrix << ".\n\n";
    if (in.gate.is_object() && in.gate.contains("mean_kld")) {
        const auto& g = in.gate;
        auto num = [](double v, const char* f) {
            char b[64];
            std::snprintf(b, sizeof b, f, v);
            return std::string(b);
        };
        o << "## Quality (measured before publishing)\n\n";
        o << "Evaluated with llama.cpp against the lossless `" << g.value("reference", std::string()) << "` of the same build, the way "
          << "`llama-perplexity --kl-divergence` measures it, on cmf's built-in evaluation text (" << g.value("tokens", 0)
          << " scored tokens, chat-formatted medical document extraction and general instructions).\n\n";
        o << "| metric | " << in.type << " | gate |\n|---|---:|---:|\n";
        o << "| mean KL divergence | " << num(g.value("mean_kld", 0.0), "%.6f") << " | <= " << num(g["limits"].value("max_kld", 0.0), "%.6f") << " |\n";
        o << "| 99th percentile KLD | " << num(g.value("p99_kld", 0.0), "%.6f") << " | |\n";
        o << "| maximum KLD | " << num(g.value("max_kld", 0.0), "%.6f") << " | |\n";
        o << "| same top token | " << num(g.value("same_top_p", 0.0), "%.3f") << " % | >= " << num(g["limits"].value("min_top1", 0.0), "%.2f") << " % |\n";
        o << "| PPL(Q)/PPL(base) | " << num(g.value("ppl_ratio", 0.0), "%.6f") << " | |\n";
        o << "| RMS delta p | " << num(g.value("rms_dp", 0.0), "%.3f") << " % | |\n";
        if (g.contains("smoke")) {
            size_t n = g["smoke"].size(), bad = 0;
            for (const auto& c : g["smoke"]) bad += c.value("looping", false) || c.value("no_end", false);
            if (g.value("smoke_judged", true))
                o << "| degeneration smoke | " << n - bad << " of " << n << " generations clean | no new loops |\n";
            else
                o << "| degeneration smoke | not judged: the lossless model itself degenerates | |\n";
        }
        o << "\n";
    }
    o << "## Files\n\n| file | size (bytes) | sha256 |\n|---|---:|---|\n";
    for (const auto& f : in.outputs) o << "| " << f.name << " | " << f.size << " | `" << f.sha256 << "` |\n";
    o << "\n## Inputs\n\n| file | size (bytes) | sha256 |\n|---|---:|---|\n";
    for (const auto& f : in.inputs) o << "| " << f.name << " | " << f.size << " | `" << f.sha256 << "` |\n";
    o << "\n## Provenance\n\n";
    o << "- built by cmf " << in.cmf_version << " at " << in.built_at << "\n";
    o << "- job `" << in.job_id << "`, variant `" << in.variant << "` (" << in.type << ")\n";
    o << "\n## License\n\n";
    o << "This is a derivative of `" << in.base_model << "`; its use is governed by the base model's license";
    if (!in.license.empty()) o << " (`" << in.license << "`" << (in.license_name.empty() ? "" : ", " + in.license_name) << ")";
    o << ". ";
    if (!in.license_link.empty()) o << "Read it at " << in.license_link << " before use.";
    else o << "Read it on the base model's page before use.";
    o << " cmf does not change those terms.\n";
    return o.str();
}

}  // namespace cmf::factory
