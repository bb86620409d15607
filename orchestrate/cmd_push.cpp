// cmf push: an Ollama model from the local store, or assembled from a build directory, to an
// Ollama registry (registry.ollama.ai or any OCI distribution registry).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cmf/factory/variant.h"
#include "cmf/net/http.h"
#include "cmf/registry/local_store.h"
#include "cmf/registry/registry_client.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

extern const std::set<std::string> kModelValueOpts;
extern const char* kModelOptionsHelp;
ollama::OllamaModel assemble_publish_model(const fs::path& src, const Args& a, std::string* derived_name);

static const char* kPushHelp = R"(usage: cmf push NAME[:TAG] [options]
       cmf push BUILD_DIR_OR_GGUF NAME[:TAG] [options]
       cmf push VARIANTS [factory options]   (the factory's push: same as `cmf build+push VARIANTS`;
                                              variants already built are only pushed)

Uploads an Ollama model: from the local store (first form), or assembled from a cmf build
directory exactly as `cmf import` would (second form; the single-file Ollama layout is
preferred). Blobs the registry already has are skipped; parts of large blobs go to storage
in parallel when the registry redirects them. The key signs Ollama's token challenge.

  NAME                  [http(s)://][host/]namespace/model[:tag]; the namespace must belong to
                        the account the key is registered with (ollama.com Settings -> Keys)
  --key FILE            Ollama key (default ~/.ollama/id_ed25519; for the Linux service
                        install: /usr/share/ollama/.ollama/id_ed25519). Must be mode 0600.
  --store DIR           the store root for the first form (default: $OLLAMA_MODELS or
                        ~/.ollama/models)
  --insecure            allow an http:// registry
  --part-size BYTES     upload part size (default: size/16, clamped to 100 MB .. 1000 MB)
  --quiet               no progress lines
)";

fs::path default_ollama_key() {
    const char* home = std::getenv("HOME");
    return fs::path(home && *home ? home : "/") / ".ollama" / "id_ed25519";
}

ollama::RegistryOptions registry_options(const Args& a, const std::string& command) {
    ollama::RegistryOptions o;
    const fs::path key = a.get("key") ? fs::path(*a.get("key")) : default_ollama_key();
    o.key = [key] { return ollama::Ed25519Key::load(key); };
    if (auto ps = a.get("part-size")) {
        uint64_t v = 0;
        try {
            v = std::stoull(*ps);
        } catch (...) {
        }
        if (v < 1024) fail(ErrorKind::usage, command + ": --part-size must be a number of bytes >= 1024");
        o.min_part = o.max_part = v;
    }
    if (!a.has("quiet")) o.log = [](const std::string& s) { std::fprintf(stderr, "  %s\n", s.c_str()); };
    return o;
}

ollama::ModelName registry_name(const std::string& text, const Args& a, const std::string& command) {
    ollama::ModelName n = ollama::parse_model_name(text);
    if (n.scheme == "http" && !a.has("insecure")) fail(ErrorKind::usage, command + ": " + text + " is plain http; add --insecure to allow it");
    return n;
}

// `cmf push q4,q8`: the old scripts' push step. A first argument that is a list of factory
// variants (q4s, q4, q8, f16 or type names) and not a path or a [host/]namespace/model name
// runs the factory job with its push step; the worker skips what is already built.
static bool is_factory_variant_list(const std::string& s) {
    if (s.empty() || s[0] == '-' || s.find('/') != std::string::npos || s.find(':') != std::string::npos) return false;
    std::error_code ec;
    if (fs::exists(s, ec)) return false;
    try {
        return !factory::parse_factory_variants(s).empty();
    } catch (const Error&) {
        return false;
    }
}

int cmd_push(const std::vector<std::string>& argv) {
    if (!argv.empty() && is_factory_variant_list(argv[0])) return cmd_build_push(argv);
    std::set<std::string> value_opts = kModelValueOpts;
    for (const char* o : {"key", "store", "part-size"}) value_opts.insert(o);
    Args a = parse_args(argv, value_opts, {"help", "quiet", "insecure"}, "push");
    if (a.has("help")) {
        std::fputs(kPushHelp, stdout);
        std::fputs(kModelOptionsHelp, stdout);
        return 0;
    }
    if (a.positional.empty() || a.positional.size() > 2) fail(ErrorKind::usage, "push: expected NAME or BUILD_DIR NAME (see cmf push --help)");
    const ollama::ModelName name = registry_name(a.positional.back(), a, "push");
    ollama::OllamaModel m;
    if (a.positional.size() == 2) {
        m = assemble_publish_model(a.positional[0], a, nullptr);
    } else {
        const ollama::OllamaStore store(a.get("store") ? fs::path(*a.get("store")) : ollama::OllamaStore::default_root());
        auto bytes = store.read_manifest(name);
        if (!bytes) fail(ErrorKind::usage, "push: no model " + name.display() + " in " + store.root().string() + " (cmf import it first)");
        const ollama::ParsedManifest pm = ollama::parse_manifest(*bytes, store.manifest_path(name).string());
        auto blob = [&](const ollama::ManifestDesc& d) {
            ollama::OllamaBlob b;
            b.media_type = d.media_type;
            b.digest = d.digest;
            b.size = d.size;
            b.file = store.blob_path(d.digest);
            if (!store.has_blob(d.digest, d.size)) fail_io("push: blob " + d.digest + " of " + name.display() + " is missing from the store");
            return b;
        };
        for (const auto& l : pm.layers) m.layers.push_back(blob(l));
        m.config = blob(pm.config);
    }
    ollama::RegistryClient client(net::make_http_client(), name, registry_options(a, "push"));
    const ollama::PushResult r = client.push(m);
    std::printf("pushed %s: %d blob(s) uploaded (%llu bytes), %d already present; manifest %s\n", name.display().c_str(), r.uploaded,
                static_cast<unsigned long long>(r.bytes_uploaded), r.skipped, r.manifest_digest.c_str());
    return 0;
}

}  // namespace cmf::cli
