// cmf import: a build directory (or one GGUF) -> an Ollama model in the local store.
// Also home of the model assembly that `cmf push BUILD_DIR NAME` shares.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "cmf/registry/local_store.h"
#include "cmf/registry/model_name.h"
#include "cmf/registry/ollama_model.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

// Options shared by import and push-from-a-build (see kModelOptionsHelp).
extern const std::set<std::string> kModelValueOpts;
const std::set<std::string> kModelValueOpts = {"quant", "license", "system", "system-file", "param", "template-file", "projector", "prefix", "adapter"};

const char* kModelOptionsHelp = R"(model options (import, and push from a build):
  --quant TYPE          which variant of the build directory (e.g. q8_0) when it holds several
  --projector FILE      a llama.cpp mmproj GGUF to add as the projector layer (found by itself
                        in a build directory when the model file has no vision tower)
  --adapter FILE        a GGUF LoRA adapter (cmf quantize ADAPTER_DIR --base BASE_DIR) as
                        Ollama's ADAPTER layer on top of the model (Modelfile ADAPTER); Ollama
                        runs adapters on Gemma models from 0.30 on (llama-server)
  --license FILE        the base model's license terms (repeatable); default: LICENSE,
                        LICENSE.txt, LICENSE.md or gemma-terms*.txt in the build directory.
                        A notice that this is a modified, quantized derivative is always added.
  --system TEXT, --system-file FILE   a system prompt layer
  --param KEY=VALUE     Ollama parameter (repeatable; a repeated stop adds a stop string);
                        default num_ctx=8192, stop=<end_of_turn>
  --template-file FILE  replace the family's turn template
  --prefix P            name the model P-FAMILY-SIZE-VARIANT (e.g. coheara-medgemma-4b-q8)
                        when NAME is not given
)";

static std::string slurp(const fs::path& p, const char* what) {
    std::ifstream f(p, std::ios::binary);
    if (!f) fail(ErrorKind::usage, std::string("cannot read ") + what + " " + p.string());
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

static std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

struct PublishSource {
    fs::path model;
    std::optional<fs::path> projector;
    std::vector<fs::path> licenses;
};

// Picks the model file of a build directory: Ollama's single-file layout when present (the
// default for publishing), else the llama.cpp text file plus its mmproj as the projector.
static PublishSource select_source(const fs::path& src, const Args& a) {
    PublishSource s;
    if (auto p = a.get("projector")) s.projector = fs::path(*p);
    if (fs::is_regular_file(src)) {
        s.model = src;
    } else if (fs::is_directory(src)) {
        const std::string want = lower(a.get("quant").value_or(""));
        std::vector<fs::path> single, text, mmproj;
        std::vector<fs::directory_entry> entries(fs::directory_iterator(src), fs::directory_iterator{});
        std::sort(entries.begin(), entries.end(), [](const auto& x, const auto& y) { return x.path() < y.path(); });
        for (const auto& e : entries) {
            const std::string fn = e.path().filename().string();
            if (!e.is_regular_file() || fn.size() < 5 || lower(fn.substr(fn.size() - 5)) != ".gguf" || fn[0] == '.') continue;
            const ollama::GgufSummary g = ollama::summarize_gguf(e.path());
            if (g.type == "adapter") continue;  // a LoRA adapter goes in with --adapter only
            if (g.type == "mmproj" || g.architecture == "clip") {
                mmproj.push_back(e.path());
                continue;
            }
            if (!want.empty() && lower(fn).find("-" + want + ".gguf") == std::string::npos) continue;
            (g.has_vision ? single : text).push_back(e.path());
        }
        const std::vector<fs::path>& pick = single.empty() ? text : single;
        if (pick.empty())
            fail(ErrorKind::usage, src.string() + " holds no model GGUF" + (want.empty() ? "" : " of type " + want) +
                                       " (run cmf quantize first, or name the .gguf file)");
        if (pick.size() > 1) {
            std::string names;
            for (const auto& p : pick) names += " " + p.filename().string();
            fail(ErrorKind::usage, src.string() + " holds several models (" + names.substr(1) + "); choose one with --quant TYPE");
        }
        s.model = pick[0];
        if (single.empty() && !s.projector && !mmproj.empty()) s.projector = mmproj[0];
        for (const auto& e : entries) {
            const std::string fn = lower(e.path().filename().string());
            if (e.is_regular_file() && (fn == "license" || fn == "license.txt" || fn == "license.md" || fn.rfind("gemma-terms", 0) == 0))
                s.licenses.push_back(e.path());
        }
    } else {
        fail(ErrorKind::usage, src.string() + " is neither a build directory nor a GGUF file");
    }
    if (a.has("license")) {
        s.licenses.clear();
        for (const auto& l : a.all("license")) s.licenses.emplace_back(l);
    }
    if (s.licenses.empty())
        fail(ErrorKind::usage, "no license terms for the base model next to " + s.model.filename().string() +
                                   "; pass --license FILE (e.g. the Gemma Terms of Use the checkpoint ships with)");
    return s;
}

ollama::OllamaModel assemble_publish_model(const fs::path& src, const Args& a, std::string* derived_name) {
    const PublishSource s = select_source(src, a);
    ollama::AssembleOptions o;
    o.model_gguf = s.model;
    o.projector_gguf = s.projector;
    if (auto ad = a.get("adapter")) o.adapter_gguf = fs::path(*ad);
    for (const auto& l : s.licenses) o.licenses.push_back(slurp(l, "license file"));
    if (auto t = a.get("template-file")) o.template_text = slurp(*t, "template file");
    if (auto t = a.get("system")) o.system = *t;
    if (auto t = a.get("system-file")) o.system = slurp(*t, "system prompt file");
    bool fresh_stop = true;
    // --param starts from the family's params (the first --param stop replaces its stop list)
    if (!a.all("param").empty()) o.params = ollama::family_defaults(ollama::summarize_gguf(s.model).architecture).params;
    for (const auto& p : a.all("param")) {
        const auto eq = p.find('=');
        if (eq == std::string::npos || eq == 0) fail(ErrorKind::usage, "--param wants KEY=VALUE, e.g. num_ctx=4096");
        ollama::set_param(*o.params, p.substr(0, eq), p.substr(eq + 1), &fresh_stop);
    }
    if (derived_name) {
        derived_name->clear();
        if (auto prefix = a.get("prefix")) {
            const GgufContents g = read_gguf(s.model);
            auto str = [&](const char* k) {
                const GgufValue* v = g.kv.get(k);
                return v && v->type == GgufType::STRING ? v->str : std::string();
            };
            const ollama::GgufSummary sum = ollama::summarize_gguf(s.model);
            std::string family = str("general.basename");
            if (family.empty()) family = sum.architecture;
            std::string size = str("general.size_label");
            *derived_name = ollama::compose_model_name(*prefix, family, size, ollama::short_variant_name(ollama::file_type_string(sum.file_type)));
        }
    }
    return ollama::assemble_model(o);
}

static const char* kImportHelp = R"(usage: cmf import BUILD_DIR_OR_GGUF [NAME[:TAG]] [options]

Writes an Ollama model into the local store ($OLLAMA_MODELS, default ~/.ollama/models):
the GGUF as the model layer (Ollama's single-file layout preferred; a llama.cpp text GGUF
gets its mmproj as a projector layer), the turn template and params of its family (by the
GGUF's architecture), the license layers, the config blob, then the manifest. Blobs are written first and the manifest last,
each atomically, so a running Ollama never sees a half-imported model. The same inputs
always give the same digests. `ollama run NAME` works right after (no restart).

  NAME                  [host/][namespace/]model[:tag]; defaults registry.ollama.ai, library,
                        latest (Ollama's rules; e.g. alice/coheara-medgemma-4b-q8)
  --store DIR           the store root (default: $OLLAMA_MODELS, else ~/.ollama/models)
  --quiet               print only the manifest path
)";

int cmd_import(const std::vector<std::string>& argv) {
    std::set<std::string> value_opts = kModelValueOpts;
    value_opts.insert("store");
    Args a = parse_args(argv, value_opts, {"help", "quiet"}, "import");
    if (a.has("help")) {
        std::fputs(kImportHelp, stdout);
        std::fputs(kModelOptionsHelp, stdout);
        return 0;
    }
    if (a.positional.empty() || a.positional.size() > 2) fail(ErrorKind::usage, "import: expected BUILD_DIR_OR_GGUF [NAME[:TAG]] (see cmf import --help)");
    if (a.positional.size() == 1 && !a.has("prefix")) fail(ErrorKind::usage, "import: give NAME[:TAG] or --prefix P");
    std::string derived;
    const ollama::OllamaModel m = assemble_publish_model(a.positional[0], a, &derived);
    const ollama::ModelName name = ollama::parse_model_name(a.positional.size() == 2 ? a.positional[1] : derived);
    const ollama::OllamaStore store(a.get("store") ? fs::path(*a.get("store")) : ollama::OllamaStore::default_root());
    const SweptTemporaries swept = sweep_stale_temporaries(store.root() / "blobs");
    if (!swept.files.empty()) std::fprintf(stderr, "cmf: %s\n", describe_sweep(swept, store.root() / "blobs").c_str());
    set_interrupt_context("importing " + name.display());
    store.import_model(name, m);
    const std::string manifest = m.manifest_bytes(true);
    if (!a.has("quiet")) {
        for (const auto* b : m.blobs()) std::printf("%-44s %s %12llu\n", b->media_type.c_str(), b->digest.c_str(), static_cast<unsigned long long>(b->size));
        std::printf("imported %s (id %s)\n", name.display().c_str(), ollama::sha256_digest(manifest).substr(7, 12).c_str());
    }
    std::printf("%s\n", store.manifest_path(name).string().c_str());
    return 0;
}

}  // namespace cmf::cli
