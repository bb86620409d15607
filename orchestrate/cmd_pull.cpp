// cmf pull: an Ollama model from a registry into the local store.
#include <cstdio>
#include <string>
#include <vector>

#include "cmf/net/http.h"
#include "cmf/registry/local_store.h"
#include "cmf/registry/registry_client.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

ollama::RegistryOptions registry_options(const Args& a, const std::string& command);
ollama::ModelName registry_name(const std::string& text, const Args& a, const std::string& command);

static const char* kPullHelp = R"(usage: cmf pull NAME[:TAG] [options]

Downloads an Ollama model into the local store ($OLLAMA_MODELS, default ~/.ollama/models):
blobs it lacks in parallel ranged parts, each verified by SHA-256 before it gets its final
name, then the manifest exactly as the registry serves it.

  --key FILE            Ollama key for registries that ask for one (default ~/.ollama/id_ed25519)
  --store DIR           the store root
  --insecure            allow an http:// registry
  --part-size BYTES     download part size (default: size/16, clamped to 100 MB .. 1000 MB)
  --quiet               no progress lines
)";

int cmd_pull(const std::vector<std::string>& argv) {
    Args a = parse_args(argv, {"key", "store", "part-size"}, {"help", "quiet", "insecure"}, "pull");
    if (a.has("help")) {
        std::fputs(kPullHelp, stdout);
        return 0;
    }
    if (a.positional.size() != 1) fail(ErrorKind::usage, "pull: expected NAME[:TAG] (see cmf pull --help)");
    const ollama::ModelName name = registry_name(a.positional[0], a, "pull");
    const ollama::OllamaStore store(a.get("store") ? fs::path(*a.get("store")) : ollama::OllamaStore::default_root());
    ollama::RegistryClient client(net::make_http_client(), name, registry_options(a, "pull"));
    const SweptTemporaries swept = sweep_stale_temporaries(store.root() / "blobs");
    if (!swept.files.empty()) std::fprintf(stderr, "cmf: %s\n", describe_sweep(swept, store.root() / "blobs").c_str());
    set_interrupt_context("pulling " + name.display());
    const ollama::PullResult r = client.pull(store);
    std::printf("pulled %s: %d blob(s) downloaded (%llu bytes), %d already present; manifest %s\n", name.display().c_str(), r.downloaded,
                static_cast<unsigned long long>(r.bytes_downloaded), r.present, r.manifest_digest.c_str());
    std::printf("%s\n", store.manifest_path(name).string().c_str());
    return 0;
}

}  // namespace cmf::cli
