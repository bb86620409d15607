// What a Hugging Face GGUF repo of one build holds, and its model card: the GGUFs (text
// variants, the vision projector, LoRA adapters, the importance matrix), their quality reports,
// and a README.md written to the Hub's conventions (hub-docs model-cards.md: base_model,
// base_model_relation, library_name, license pass-through; the gguf-my-repo Space's usage
// sections), from the files' own metadata: the source card's license, base model and tags are
// already in general.* (read by the converter from the checkpoint's README.md, as llama.cpp's is).
//
// Files keep the names llama.cpp and the Hub expect: NAME-TYPE.gguf (the quant tag that
// `llama-cli -hf ORG/REPO:TYPE` and `ollama run hf.co/ORG/REPO:TYPE` match in the file name),
// mmproj-NAME-TYPE.gguf (picked up as the projector), and NAME-TYPE-0000N-of-0000M.gguf when a
// file had to be split under the Hub's per-file limit.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cmf/core/digest.h"
#include "cmf/core/error.h"
#include "cmf/format/gguf.h"
#include "cmf/format/gguf_split.h"
#include "cmf/hub/hf_publish.h"
#include "cmf/quant/recipe.h"

namespace cmf::factory {

namespace fs = std::filesystem;

// One GGUF, as its metadata describes it.
struct GgufFacts {
    std::string kind;          // model | mmproj | adapter | imatrix
    std::string type;          // F16, BF16, Q8_0, Q4_K_M ... ("" for an imatrix)
    std::string architecture;  // general.architecture: the family's GGUF name, or the projector's
    std::string name, basename, size_label;
    std::string license, license_name, license_link;
    std::vector<std::string> base_models;  // "org/name" (from general.base_model.N.*)
    std::vector<std::string> tags, languages;
    std::uint64_t n_elements = 0, tensor_bytes = 0;
    double bits_per_weight() const { return n_elements ? 8.0 * static_cast<double>(tensor_bytes) / static_cast<double>(n_elements) : 0.0; }
};

// llama_ftype -> the name llama-quantize and file names use (llama.h enum llama_ftype).
inline std::string ftype_name(std::uint32_t ft) {
    if (ft == 0) return "F32";
    if (ft == 1) return "F16";
    if (ft == 32) return "BF16";
    for (const auto& r : kQuantRecipes)
        if (r.ftype == ft) return r.name;
    return "";
}

inline GgufFacts gguf_facts(const fs::path& p) {
    const GgufContents g = read_gguf(p);
    GgufFacts f;
    auto str = [&](const char* k) {
        const GgufValue* v = g.kv.get(k);
        return v && v->type == GgufType::STRING ? v->str : std::string();
    };
    auto strs = [&](const char* k) {
        const GgufValue* v = g.kv.get(k);
        return v && v->type == GgufType::ARRAY ? v->strs : std::vector<std::string>{};
    };
    f.kind = str("general.type");
    if (f.kind.empty()) f.kind = g.kv.get("imatrix.datasets") ? "imatrix" : "model";
    f.architecture = str("general.architecture");
    f.name = str("general.name");
    f.basename = str("general.basename");
    f.size_label = str("general.size_label");
    f.license = str("general.license");
    f.license_name = str("general.license.name");
    f.license_link = str("general.license.link");
    f.tags = strs("general.tags");
    f.languages = strs("general.languages");
    if (const GgufValue* n = g.kv.get("general.base_model.count"); n && n->as_int())
        for (std::int64_t i = 0; i < *n->as_int() && i < 64; ++i) {
            const std::string k = "general.base_model." + std::to_string(i) + ".";
            std::string id;
            const std::string url = str((k + "repo_url").c_str());
            const std::string hub = "https://huggingface.co/";
            if (url.rfind(hub, 0) == 0) id = url.substr(hub.size());
            else if (!str((k + "organization").c_str()).empty() && !str((k + "name").c_str()).empty())
                id = str((k + "organization").c_str()) + "/" + str((k + "name").c_str());
            if (!id.empty()) f.base_models.push_back(id);
        }
    if (const GgufValue* ft = g.kv.get("general.file_type"); ft && ft->as_int()) f.type = ftype_name(static_cast<std::uint32_t>(*ft->as_int()));
    if (f.kind != "imatrix" && f.type.empty()) {
        // no general.file_type (a projector, an adapter): the type its file name ends with
        std::string stem = p.stem().string();
        const auto dash = stem.rfind('-');
        std::string t = dash == std::string::npos ? "" : stem.substr(dash + 1);
        for (auto& c : t) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        if (t == "F16" || t == "BF16" || t == "F32" || find_recipe(t)) f.type = t;
    }
    for (const auto& t : g.tensors) {
        f.n_elements += t.n_elements();
        f.tensor_bytes += t.nbytes;
    }
    return f;
}

// One file of the publication.
struct PublishedFile {
    fs::path local;           // on disk ("" for the card)
    std::string repo_path;    // name in the repo
    GgufFacts facts;          // for GGUFs
    std::uint64_t size = 0;
    std::string sha256;
    nlohmann::json quality;   // the file's quality report (*.quality.json), or null
    std::string split_of;     // a part of this (unsplit) file name, or ""
};

struct SourceFile {
    std::string name;
    std::uint64_t size = 0;
    std::string sha256;
};

struct HubCardInput {
    std::string repo;                 // ORG/NAME
    std::string base_model;           // google/medgemma-1.5-4b-it ("" = unknown)
    std::string base_revision;        // the source commit, when known
    std::string license, license_name, license_link;
    std::string pipeline_tag;         // from the source card, when known
    std::vector<std::string> tags;    // the source's tags (kept), ours are added
    std::vector<std::string> languages;
    std::string family;               // general.architecture of the text model (a tag)
    std::vector<PublishedFile> files; // GGUFs and reports, as published
    std::vector<SourceFile> inputs;   // the checkpoint's files, when known
    std::string cmf_version, built_at, command;
    std::string imatrix_note;         // how the importance matrix was made, or ""
    std::vector<std::string> held_back;  // variants the gate failed (not published), "TYPE: reason"
};

// Health AI Developer Foundations terms (MedGemma) §3.1: a redistribution must pass on the use
// restrictions (§3.2) and a copy of the terms, "cause any modified files to carry prominent
// notices stating that you modified the files" (item 4), and be "accompanied by a "Notice" text
// file" with the sentence below (item 5). The Gemma Terms of Use §3.1 ask the same (items 3, 4).
inline bool is_hai_def(const HubCardInput& in) {
    return in.license_name.find("health-ai-developer-foundations") != std::string::npos ||
           in.license_link.find("health-ai-developer-foundations") != std::string::npos;
}
inline bool is_gemma_terms(const HubCardInput& in) { return in.license == "gemma" || in.license_link.find("ai.google.dev/gemma/terms") != std::string::npos; }

// The NOTICE file those terms require, or "" when the license asks for none.
inline std::string notice_text(const HubCardInput& in) {
    if (is_hai_def(in))
        return "HAI-DEF is provided under and subject to the Health AI Developer Foundations Terms of Use found at "
               "https://developers.google.com/health-ai-developer-foundations/terms\n";
    if (is_gemma_terms(in)) return "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms\n";
    return "";
}

inline std::string yaml_scalar(const std::string& s) {
    // plain when YAML reads it back as the same string, else double-quoted
    bool plain = !s.empty() && s.find_first_of(":#{}[],&*!|>'\"%@`\n\t") == std::string::npos && s.front() != ' ' && s.back() != ' ' &&
                 s.front() != '-' && s.front() != '?';
    static const char* kTyped[] = {"true", "false", "yes", "no", "on", "off", "null", "~", "True", "False", "Yes", "No", "NULL", "Null"};
    for (const char* t : kTyped) plain = plain && s != t;
    plain = plain && s.find_first_not_of("0123456789.+-eE_") != std::string::npos;
    if (plain) return s;
    std::string o = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        if (c == '\n') {
            o += "\\n";
            continue;
        }
        o += c;
    }
    return o + "\"";
}

inline std::string human_size(std::uint64_t b) {
    char buf[32];
    if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GB", static_cast<double>(b) / 1e9);
    else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(b) / 1e6);
    else std::snprintf(buf, sizeof buf, "%.1f kB", static_cast<double>(b) / 1e3);
    return buf;
}

inline std::string render_hub_card(const HubCardInput& in) {
    std::ostringstream o;
    auto fmt = [](double v, const char* f) {
        char b[64];
        std::snprintf(b, sizeof b, f, v);
        return std::string(b);
    };
    o << "---\n";
    if (!in.base_model.empty()) o << "base_model: " << yaml_scalar(in.base_model) << "\nbase_model_relation: quantized\n";
    // No library_name: GGUF is a file format, not a library (huggingface.js model-libraries.ts);
    // the Hub recognises the files themselves, and a passed-through "transformers" would be wrong.
    if (!in.license.empty()) o << "license: " << yaml_scalar(in.license) << "\n";
    if (!in.license_name.empty()) o << "license_name: " << yaml_scalar(in.license_name) << "\n";
    if (!in.license_link.empty()) o << "license_link: " << yaml_scalar(in.license_link) << "\n";
    if (!in.pipeline_tag.empty()) o << "pipeline_tag: " << yaml_scalar(in.pipeline_tag) << "\n";
    if (!in.languages.empty()) {
        o << "language:\n";
        for (const auto& l : in.languages) o << "- " << yaml_scalar(l) << "\n";
    }
    std::vector<std::string> tags = in.tags;
    for (const std::string& t : {std::string("gguf"), std::string("llama-cpp"), in.family, std::string("cmf")})
        if (!t.empty() && std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
    o << "tags:\n";
    for (const auto& t : tags) o << "- " << yaml_scalar(t) << "\n";
    o << "---\n\n";

    o << "# " << in.repo << "\n\n";
    if (!in.base_model.empty())
        o << "GGUF files of [`" << in.base_model << "`](https://huggingface.co/" << in.base_model << ")"
          << (in.base_revision.empty() ? "" : " (revision `" + in.base_revision + "`)") << ", converted and quantized by cmf "
          << in.cmf_version << ". The tensors are what llama.cpp's `convert_hf_to_gguf.py` and `llama-quantize` write. "
          << "Refer to the [original model card](https://huggingface.co/" << in.base_model << ") for what the model is for and its limits.\n\n";
    else
        o << "GGUF files converted and quantized by cmf " << in.cmf_version << ". The tensors are what llama.cpp's `convert_hf_to_gguf.py` and `llama-quantize` write.\n\n";

    // The quantization table.
    const PublishedFile* first_model = nullptr;
    bool gated = false, has_mmproj = false;
    for (const auto& f : in.files) {
        if (f.facts.kind == "model" && !first_model) first_model = &f;
        if (f.facts.kind == "mmproj") has_mmproj = true;
        if (f.quality.is_object() && f.quality.contains("gate")) gated = true;
    }
    o << "## Files\n\n| file | type | size | bits per weight |" << (gated ? " mean KLD | same top token | quality gate |" : "") << "\n";
    o << "|---|---|---:|---:|" << (gated ? "---:|---:|---|" : "") << "\n";
    std::map<std::string, std::uint64_t> whole;  // split files: total size
    for (const auto& f : in.files)
        if (!f.split_of.empty()) whole[f.split_of] += f.size;
    std::set<std::string> listed;
    for (const auto& f : in.files) {
        if (f.facts.kind.empty()) continue;  // not a GGUF
        const std::string shown = f.split_of.empty() ? f.repo_path : f.split_of;
        if (!listed.insert(shown).second) continue;
        const std::string what = f.facts.kind == "mmproj" ? "vision projector " + f.facts.type
                                 : f.facts.kind == "adapter" ? "LoRA adapter " + f.facts.type
                                 : f.facts.kind == "imatrix" ? "importance matrix"
                                                             : f.facts.type;
        o << "| [" << shown << "](" << (f.split_of.empty() ? "./" + f.repo_path : "./") << ")"
          << (f.split_of.empty() ? "" : " (split in parts)") << " | " << what << " | " << human_size(f.split_of.empty() ? f.size : whole[f.split_of])
          << " | " << (f.facts.kind == "imatrix" ? std::string("") : fmt(f.facts.bits_per_weight(), "%.2f")) << " |";
        if (gated) {
            const auto g = f.quality.is_object() ? f.quality.value("gate", nlohmann::json()) : nlohmann::json();
            if (g.is_object() && g.contains("mean_kld"))
                o << " " << fmt(g.value("mean_kld", 0.0), "%.6f") << " | " << fmt(g.value("same_top_p", 0.0), "%.2f") << " % | "
                  << (g.value("pass", true) ? "passed" : "failed") << " |";
            else if (f.facts.kind == "model" && f.facts.type == "F16")
                o << " reference | | |";
            else
                o << " | | |";
        }
        o << "\n";
    }
    o << "\n";
    if (!in.held_back.empty()) {
        o << "Not published, failed the quality gate:\n\n";
        for (const auto& h : in.held_back) o << "- " << h << "\n";
        o << "\n";
    }
    if (gated)
        o << "The quality figures are llama.cpp's `llama-perplexity --kl-divergence` statistics of each file against the lossless "
             "F16 of the same build, on cmf's built-in chat-formatted evaluation text, measured before publishing; the gate also "
             "runs a degeneration smoke (greedy and sampled answers, repetition loops)"
          << (has_mmproj ? " and an image question through the projector" : "") << ".\n\n";
    if (!in.imatrix_note.empty()) o << "Quantized with an importance matrix: " << in.imatrix_note << "\n\n";

    // Usage, for the three ways people run GGUFs.
    const std::string tag = first_model ? first_model->facts.type : std::string("Q4_K_M");
    o << "## Use\n\n";
    o << "### llama.cpp\n\n```sh\n";
    o << "llama-cli -hf " << in.repo << ":" << tag << "\n";
    o << "llama-server -hf " << in.repo << ":" << tag << "\n```\n\n";
    if (has_mmproj) o << "The vision projector (`mmproj-…`) is downloaded with the model, so images work in `llama-mtmd-cli` and `llama-server`.\n\n";
    o << "### Ollama\n\n```sh\nollama run hf.co/" << in.repo << ":" << tag << "\n```\n\n";
    o << "### LM Studio\n\n```sh\nlms get https://huggingface.co/" << in.repo << "@" << tag << "\n```\n\n";
    o << "or open `lmstudio://open_from_hf?model=" << in.repo << "`.\n\n";
    bool split = false;
    for (const auto& f : in.files) split |= !f.split_of.empty();
    if (split)
        o << "Some files are split in llama.cpp's `-0000N-of-0000M.gguf` parts (the Hub's per-file limit): llama.cpp loads them from "
             "the first part; Ollama's `hf.co/` pull does not take split files, download the parts and merge them with "
             "`llama-gguf-split --merge` first.\n\n";

    // Provenance.
    o << "## Provenance\n\n";
    o << "- made by cmf " << in.cmf_version << (in.built_at.empty() ? "" : " at " + in.built_at) << "\n";
    if (!in.command.empty()) o << "- command: `" << in.command << "`\n";
    o << "\n| file | size (bytes) | sha256 |\n|---|---:|---|\n";
    for (const auto& f : in.files) o << "| " << f.repo_path << " | " << f.size << " | `" << f.sha256 << "` |\n";
    if (!in.inputs.empty()) {
        o << "\nMade from:\n\n| input | size (bytes) | sha256 |\n|---|---:|---|\n";
        for (const auto& f : in.inputs) o << "| " << f.name << " | " << f.size << " | `" << f.sha256 << "` |\n";
    }
    o << "\n## License\n\n";
    if (!in.base_model.empty()) o << "These files are derived from `" << in.base_model << "`; their use is governed by its license";
    else o << "Their use is governed by the source model's license";
    if (!in.license.empty()) o << " (`" << in.license << "`" << (in.license_name.empty() ? "" : ", " + in.license_name) << ")";
    o << ".";
    if (!in.license_link.empty()) o << " Read it at " << in.license_link << " before use.";
    o << "\n\n";
    if (is_hai_def(in) || is_gemma_terms(in))
        o << "**Notice of modification.** These files are modified versions of the model files of `"
          << (in.base_model.empty() ? std::string("the source model") : in.base_model)
          << "`: they were converted to the GGUF format and their weights were quantized (reduced in precision) by cmf, as "
             "listed above. Their use is subject to the "
          << (is_hai_def(in) ? "Health AI Developer Foundations Terms of Use (https://developers.google.com/health-ai-developer-foundations/terms)"
                             : "Gemma Terms of Use (https://ai.google.dev/gemma/terms)")
          << ", including the use restrictions of their section 3.2, which bind every recipient; see the NOTICE file.\n";
    else
        o << "Modified from the original: converted to GGUF and quantized by cmf.\n";
    return o.str();
}

struct PublicationOptions {
    std::string repo;                   // ORG/NAME
    std::string base_model;             // overrides general.base_model.0 of the files
    std::string base_revision;
    std::string pipeline_tag;
    std::vector<SourceFile> inputs;
    std::string command;                // the command that made (or publishes) the files
    std::string built_at;
    std::string imatrix_note;
    std::vector<std::string> held_back;
    std::uint64_t max_file_size = hub::kHubMaxFileSize;
    fs::path split_dir;                 // where parts of over-limit files are written
};

struct Publication {
    std::vector<PublishedFile> files;   // what goes into the commit, README.md last
    HubCardInput card;
};

// Splits `f` (a model GGUF over the limit) into parts under `dir`, llama-gguf-split's format;
// returns their paths in order. gguf-split's --split-max-size counts tensor data only and the
// first part also carries every KV: so the data budget is the limit less the input's whole
// metadata section, which bounds every part's header.
inline std::vector<fs::path> split_for_hub(const fs::path& f, const fs::path& dir, std::uint64_t max_bytes) {
    const GgufContents g = read_gguf(f);
    if (dir.empty()) fail(ErrorKind::internal, "no directory for the parts of " + f.string());
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) fail_io("cannot create " + dir.string() + ": " + ec.message());
    if (g.data_start + kGgufDefaultAlignment >= max_bytes)
        fail_input(f.string() + ": its metadata alone is larger than the per-file limit of " + std::to_string(max_bytes) + " bytes");
    GgufSplitLimit limit;
    limit.max_bytes = max_bytes - g.data_start - kGgufDefaultAlignment;
    std::vector<fs::path> out;
    for (const auto& p : split_gguf(f, (dir / f.stem()).string(), limit)) out.push_back(p.path);
    return out;
}

// The files of a build: each argument a GGUF or a directory of them (not recursive; hidden and
// temporary names skipped), with the quality report next to each (NAME.quality.json).
inline Publication plan_publication(const std::vector<fs::path>& args, const PublicationOptions& opt) {
    std::vector<fs::path> ggufs;
    for (const auto& a : args) {
        std::error_code ec;
        if (fs::is_directory(a, ec)) {
            std::vector<fs::path> here;
            for (const auto& e : fs::directory_iterator(a)) {
                const std::string n = e.path().filename().string();
                if (e.is_regular_file() && n.size() > 5 && n.compare(n.size() - 5, 5, ".gguf") == 0 && n[0] != '.') here.push_back(e.path());
            }
            if (here.empty()) fail_input(a.string() + ": no .gguf files in this directory");
            std::sort(here.begin(), here.end());
            ggufs.insert(ggufs.end(), here.begin(), here.end());
        } else if (fs::is_regular_file(a, ec)) {
            ggufs.push_back(a);
        } else {
            fail_input(a.string() + ": no such file or directory");
        }
    }
    Publication pub;
    std::set<std::string> names;
    for (const auto& g : ggufs) {
        PublishedFile f;
        f.local = g;
        f.repo_path = g.filename().string();
        if (!names.insert(f.repo_path).second) fail(ErrorKind::usage, "two files are named " + f.repo_path);
        f.facts = gguf_facts(g);
        fs::path q = g;
        q.replace_extension(".quality.json");
        if (std::ifstream in(q); in) {
            f.quality = nlohmann::json::parse(in, nullptr, false);
            if (f.quality.is_discarded()) fail_input(q.string() + ": not JSON");
        }
        f.size = fs::file_size(g);
        if (f.size > opt.max_file_size) {
            if (f.facts.kind != "model")
                fail_input(g.string() + " is over the Hub's per-file limit (" + std::to_string(opt.max_file_size) +
                           " bytes), and llama.cpp loads split files only for models, not for a " + f.facts.kind);
            bool first = true;
            for (const auto& part : split_for_hub(g, opt.split_dir, opt.max_file_size)) {
                PublishedFile p = f;
                p.local = part;
                p.repo_path = part.filename().string();
                p.size = fs::file_size(part);
                p.split_of = f.repo_path;
                if (!first) p.quality = nullptr;  // the card's table row is the first part's
                first = false;
                pub.files.push_back(p);
            }
        } else {
            pub.files.push_back(f);
        }
        if (f.quality.is_object()) {  // the report goes along, under its own name
            PublishedFile r;
            r.local = q;
            r.repo_path = q.filename().string();
            r.size = fs::file_size(q);
            pub.files.push_back(r);
        }
    }
    HubCardInput& c = pub.card;
    c.repo = opt.repo;
    for (const auto& f : pub.files)
        if (f.facts.kind == "model") {
            if (c.family.empty()) c.family = f.facts.architecture;
            if (c.license.empty()) {
                c.license = f.facts.license;
                c.license_name = f.facts.license_name;
                c.license_link = f.facts.license_link;
            }
            if (c.base_model.empty() && !f.facts.base_models.empty()) c.base_model = f.facts.base_models.front();
            if (c.tags.empty()) c.tags = f.facts.tags;
            if (c.languages.empty()) c.languages = f.facts.languages;
        }
    if (!opt.base_model.empty()) c.base_model = opt.base_model;
    c.base_revision = opt.base_revision;
    c.pipeline_tag = opt.pipeline_tag;
    c.inputs = opt.inputs;
    c.command = opt.command;
    c.built_at = opt.built_at;
    c.imatrix_note = opt.imatrix_note;
    c.held_back = opt.held_back;
#ifdef CMF_VERSION
    c.cmf_version = CMF_VERSION;
#endif
    return pub;
}

// Hashes every file (the card lists the digests), renders the card, and returns the commit's
// files: the build's, then README.md.
inline std::vector<hub::HubFile> finish_publication(Publication& pub) {
    std::vector<hub::HubFile> out;
    for (auto& f : pub.files) {
        hub::HubFile h = hub::HubFile::from_disk(f.repo_path, f.local);
        h.hash();
        f.sha256 = h.sha256;
        f.size = h.size;
        out.push_back(std::move(h));
    }
    pub.card.files = pub.files;
    if (const std::string n = notice_text(pub.card); !n.empty()) {
        hub::HubFile notice = hub::HubFile::from_memory("NOTICE", n);
        notice.hash();
        out.push_back(std::move(notice));
    }
    hub::HubFile card = hub::HubFile::from_memory("README.md", render_hub_card(pub.card));
    card.hash();
    out.push_back(std::move(card));
    return out;
}

}  // namespace cmf::factory
