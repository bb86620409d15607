// cmf publish: a build's GGUFs, their quality reports and a model card to a Hugging Face model
// repo, in one commit (hub/hf_publish.h, factory/hf_publication.h).
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "cmf/core/temp_file.h"
#include "cmf/factory/hf_publication.h"
#include "cmf/hub/hf_client.h"
#include "cmf/hub/hf_publish.h"
#include "cmf/hub/hf_source.h"
#include "cmf/net/http.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

namespace {
// A directory removed with everything in it when the command ends (also on an error).
struct ScopedDir {
    fs::path path;
    explicit ScopedDir(fs::path p) : path(std::move(p)) {}  // created by whoever needs it
    ~ScopedDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    ScopedDir(const ScopedDir&) = delete;
    ScopedDir& operator=(const ScopedDir&) = delete;
};
}  // namespace

static const char* kPublishHelp = R"(usage: cmf publish BUILD_DIR|FILE.gguf... hf://ORG/REPO[@BRANCH] [options]

Publishes a build to a Hugging Face model repo in one commit: every GGUF (text variants,
mmproj-*, adapters, the importance matrix), each file's NAME.quality.json, and a README.md
model card (base_model, base_model_relation: quantized, the source's license and tags, a table
of types, sizes, bits per weight and quality figures, usage for llama.cpp -hf, Ollama hf.co/
and LM Studio, sha256 provenance). The repo and the branch are created when missing.

Large files go through the Hub's LFS API, in parallel parts; a second run sends nothing the
repo already has (same sha256), and a run that was cut off resumes. A GGUF over the Hub's
per-file limit is split in llama.cpp's NAME-0000N-of-0000M.gguf format (llama.cpp and Ollama
load the parts). The token comes from HF_TOKEN (or $HF_HOME/token) and must have write access;
that is checked before any byte of a file is sent. HF_ENDPOINT selects another Hub.

  --private             create the repo private (default: public)
  --message TEXT        commit title (default: "Upload GGUF files made by cmf")
  --base-model ORG/NAME the base model the card names (default: general.base_model of the files)
  --revision SHA        the base model's revision the files were made from (for the card)
  --command TEXT        the command that made the files (for the card's provenance)
  --max-file-size BYTES split GGUFs larger than this (default 50000000000, the Hub's limit)
  --connections N       parallel uploads (default 8)
  --dry-run             print the files and the card; contact nothing
  --quiet               no progress lines
)";

int cmd_publish(const std::vector<std::string>& argv) {
    Args a = parse_args(argv, {"message", "base-model", "revision", "command", "max-file-size", "connections"},
                        {"help", "private", "dry-run", "quiet"}, "publish");
    if (a.has("help")) {
        std::fputs(kPublishHelp, stdout);
        return 0;
    }
    if (a.positional.size() < 2 || !hub::HfSource::looks_like(a.positional.back()))
        fail(ErrorKind::usage, "publish: expected BUILD_DIR|FILE.gguf... hf://ORG/REPO[@BRANCH] (see cmf publish --help)");
    const hub::HfSource target = hub::HfSource::parse(a.positional.back());
    std::vector<fs::path> inputs(a.positional.begin(), a.positional.end() - 1);
    auto number = [&](const char* k, std::uint64_t dflt) -> std::uint64_t {
        auto v = a.get(k);
        if (!v) return dflt;
        if (v->empty() || v->find_first_not_of("0123456789") != std::string::npos || v->size() > 19 || std::stoull(*v) == 0)
            fail(ErrorKind::usage, std::string("publish: --") + k + " needs a positive whole number");
        return std::stoull(*v);
    };
    factory::PublicationOptions opt;
    opt.repo = target.repo_id();
    opt.base_model = a.get("base-model").value_or("");
    opt.base_revision = a.get("revision").value_or("");
    opt.command = a.get("command").value_or("");
    opt.max_file_size = number("max-file-size", hub::kHubMaxFileSize);
    const bool quiet = a.has("quiet");

    // Parts of split files live in a hidden directory beside the inputs, removed at exit.
    const fs::path first = fs::absolute(inputs.front());
    const fs::path parts_parent = fs::is_directory(first) ? first : first.parent_path();
    // the parts of a publish that was killed (its pid is gone) are removed first
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(parts_parent, ec)) {
        const std::string n = e.path().filename().string();
        const std::string tag = ".cmf-publish-parts-";
        if (n.rfind(tag, 0) != 0 || n.size() == tag.size() || n.find_first_not_of("0123456789", tag.size()) != std::string::npos) continue;
        if (!detail::pid_alive(std::stol(n.substr(tag.size())))) fs::remove_all(e.path(), ec);
    }
    ScopedDir parts(parts_parent / (".cmf-publish-parts-" + std::to_string(::getpid())));
    opt.split_dir = parts.path;
    factory::Publication pub = factory::plan_publication(inputs, opt);
    std::vector<hub::HubFile> files = factory::finish_publication(pub);
    if (a.has("dry-run")) {
        for (const auto& f : files) std::printf("%-56s %14llu  %s\n", f.path.c_str(), static_cast<unsigned long long>(f.size), f.sha256.c_str());
        std::printf("\n%s", files.back().content.c_str());
        return 0;
    }

    hub::HfClient client(net::make_http_client(), hub::HfEnv::from_environment());
    hub::HfPublisher publisher(client, [quiet](const std::string& line) {
        if (!quiet) std::fprintf(stderr, "cmf: %s\n", line.c_str());
    });
    hub::PublishRequest req;
    req.target = target;
    req.private_repo = a.has("private");
    req.message = a.get("message").value_or("Upload GGUF files made by cmf");
    req.description = "Published by cmf " + pub.card.cmf_version + ": " + std::to_string(files.size()) + " files.";
    req.files = std::move(files);
    req.connections = static_cast<int>(std::min<std::uint64_t>(64, number("connections", hub::kDefaultUploadConnections)));
    set_interrupt_context("publishing to " + target.str());
    const hub::PublishResult r = publisher.publish(std::move(req));
    if (r.committed.empty())
        std::printf("%s: nothing to publish, the repo already holds these files (%s)\n", target.str().c_str(), r.commit.c_str());
    else
        std::printf("%s: committed %zu file(s) (%zu unchanged, %zu LFS object(s) sent, %zu already stored) as %s\n", target.str().c_str(),
                    r.committed.size(), r.unchanged.size(), r.lfs_sent.size(), r.lfs_stored.size(), r.commit.c_str());
    std::printf("%s\n", r.commit_url.c_str());
    return 0;
}

}  // namespace cmf::cli
