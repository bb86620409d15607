// cmf fetch: a Hugging Face model repository into the Hugging Face cache (huggingface_hub's
// layout), optionally through a source cache in a GCS bucket or a directory.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cmf/cloud/auth.h"
#include "cmf/cloud/gcs.h"
#include "cmf/core/temp_file.h"
#include "cmf/hub/gcs_store.h"
#include "cmf/hub/hf.h"
#include "cmf/hub/source_cache.h"
#include "cmf/net/http.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

namespace fs = std::filesystem;

static const char* kFetchHelp = R"(usage: cmf fetch hf://ORG/REPO[@REVISION] [options]

Downloads a model repository from the Hugging Face Hub into the Hugging Face cache
($HF_HUB_CACHE, default ~/.cache/huggingface/hub; the layout huggingface_hub, transformers and
the `hf` CLI use), checks every file (sha256 of LFS files, git blob id of small files), and
prints the snapshot directory.

  --include GLOB      only files matching GLOB ('*' also matches '/'); repeatable or comma-separated
  --cache gs://BUCKET/PREFIX | DIR
                      source cache: the first fetch of a commit copies the files to
                      PREFIX/hf/ORG/REPO/COMMIT/ with a manifest.json (path, size, sha256);
                      later fetches read from there, verify each file against the manifest and
                      refetch a mismatching one from the Hub
  --out DIR           also place the files in DIR (hard links into the cache when possible)
  --connections N     parallel transfers (files, and Range requests per large file; default 8)
  --auth-check        only check that the repository can be downloaded with the current
                      token (gated license accepted, token valid), then exit
  --quiet             no progress lines

A dropped connection is resumed where it broke. A file still coming in is NAME.cmf-partial
(+ NAME.cmf-partial.json) beside its destination: a resumable partial download, kept on
Ctrl-C or a network failure and continued by the next fetch of the same file.

Environment: HF_TOKEN (else $HF_HOME/token), HF_ENDPOINT, HF_HOME, HF_HUB_CACHE;
for gs:// caches Google Application Default Credentials (STORAGE_EMULATOR_HOST for tests).

Examples:
  cmf fetch hf://google/medgemma-1.5-4b-it --auth-check
  cmf fetch hf://google/gemma-3-1b-it@main --include '*.json' --include '*.safetensors'
  cmf fetch hf://google/gemma-3-1b-it --cache gs://my-bucket/cmf
)";

// Hard links into the cache where possible; the files that must be copied are checked against
// the free space first and renamed into place together (core/temp_file.h), so an interrupted or
// failed copy leaves no partial file in DIR.
static void place_in_out(const hub::FetchResult& r, const fs::path& out) {
    std::vector<std::pair<fs::path, fs::path>> copies;  // src, dst
    uint64_t copy_bytes = 0;
    for (const auto& f : r.files) {
        const fs::path src = fs::canonical(r.snapshot / f.path);
        const fs::path dst = out / f.path;
        std::error_code ec;
        fs::create_directories(dst.parent_path(), ec);
        if (ec) fail_io("cannot create " + dst.parent_path().string() + ": " + ec.message());
        fs::remove(dst, ec);
        fs::create_hard_link(src, dst, ec);  // a link is whole or absent: no temporary needed
        if (!ec) continue;
        copies.emplace_back(src, dst);
        copy_bytes += fs::file_size(src, ec);
    }
    if (copies.empty()) return;
    const SweptTemporaries swept = sweep_stale_temporaries(out);
    if (!swept.files.empty()) std::fprintf(stderr, "cmf: %s\n", describe_sweep(swept, out).c_str());
    require_free_space(out, copy_bytes, "copying " + std::to_string(copies.size()) + " file(s) out of the cache");
    std::vector<std::unique_ptr<TempFile>> temps;
    std::vector<TempFile*> ptrs;
    for (const auto& [src, dst] : copies) {
        temps.push_back(std::make_unique<TempFile>(dst));
        temps.back()->copy_from(src);
        ptrs.push_back(temps.back().get());
    }
    commit_all(ptrs);
}

int cmd_fetch(const std::vector<std::string>& argv) {
    Args a = parse_args(argv, {"include", "cache", "out", "connections"}, {"auth-check", "quiet", "help"}, "fetch");
    if (a.has("help")) {
        std::fputs(kFetchHelp, stdout);
        return 0;
    }
    if (a.positional.size() != 1) fail(ErrorKind::usage, "fetch: expected one source hf://ORG/REPO[@REVISION] (see cmf fetch --help)");
    const hub::HfSource src = hub::HfSource::parse(a.positional[0]);
    int connections = 8;
    if (auto c = a.get("connections")) {
        try {
            connections = std::stoi(*c);
        } catch (...) {
            connections = 0;
        }
        if (connections < 1 || connections > 256) fail(ErrorKind::usage, "fetch: --connections must be 1..256");
    }
    const bool quiet = a.has("quiet");

    auto http = net::make_http_client();
    hub::HfClient hf(http, hub::HfEnv::from_environment());
    hf.connections = connections;

    if (a.has("auth-check")) {
        hf.auth_check(src);
        const std::string commit = hf.resolve_commit(src);
        std::printf("ok: %s@%s (commit %s) can be downloaded%s\n", src.repo_id().c_str(), src.revision.c_str(), commit.c_str(),
                    hf.env().token.empty() ? " anonymously" : "");
        return 0;
    }

    hub::FetchOptions opt;
    for (const auto& g : a.all("include"))
        for (const auto& p : split_list(g)) opt.include.push_back(p);
    opt.connections = connections;
    opt.on_event = [quiet](const hub::FetchEvent& e) {
        if (quiet) return;
        using K = hub::FetchEvent::Kind;
        const char* what = "";
        switch (e.kind) {
            case K::reused: what = "cached"; break;
            case K::downloading: what = "downloading"; break;
            case K::downloaded: what = "downloaded"; break;
            case K::refetching: what = "checksum mismatch, downloading again"; break;
            case K::from_store: what = "from source cache"; break;
            case K::to_store: what = "copied to source cache"; break;
            case K::store_mismatch: what = "source cache copy is bad, fetching from the Hub"; break;
        }
        std::fprintf(stderr, "  %-40s %12llu bytes  %s%s%s\n", e.path.c_str(), static_cast<unsigned long long>(e.size), what,
                     e.detail.empty() ? "" : ": ", e.detail.c_str());
    };

    const hub::HfCache cache(hf.env().hub_cache);
    hub::FetchResult result;
    if (auto c = a.get("cache")) {
        std::unique_ptr<hub::ObjectStore> store;
        std::unique_ptr<cloud::GcsClient> gcs;
        std::string prefix;
        if (c->rfind("gs://", 0) == 0) {
            const auto path = cloud::GcsPath::parse(*c);
            auto gopt = cloud::gcs_options_from_env();
            std::shared_ptr<cloud::TokenSource> tokens;
            if (!gopt.anonymous) tokens = cloud::default_credentials(http).tokens;
            gcs = std::make_unique<cloud::GcsClient>(http, tokens, gopt);
            store = std::make_unique<hub::GcsObjectStore>(*gcs, path.bucket);
            prefix = path.object;
        } else {
            store = std::make_unique<hub::LocalDirStore>(*c);
        }
        hub::SourceCache sc(*store, prefix);
        auto r = sc.fetch(hf, cache, src, opt);
        if (!quiet)
            std::fprintf(stderr, "%s@%s: commit %s; %zu from the source cache, %zu copied to it, %zu bad copies replaced\n",
                         src.repo_id().c_str(), src.revision.c_str(), r.fetch.commit.c_str(), r.from_store, r.to_store, r.mismatched);
        result = std::move(r.fetch);
    } else {
        result = hub::fetch_snapshot(hf, cache, src, opt);
    }
    if (!quiet)
        std::fprintf(stderr, "%s@%s: commit %s; %zu files, %llu bytes downloaded, %zu already cached\n", src.repo_id().c_str(),
                     src.revision.c_str(), result.commit.c_str(), result.files.size(),
                     static_cast<unsigned long long>(result.bytes_downloaded), result.reused);
    if (auto out = a.get("out")) {
        place_in_out(result, *out);
        std::printf("%s\n", fs::absolute(*out).lexically_normal().c_str());
    } else {
        std::printf("%s\n", result.snapshot.c_str());
    }
    return 0;
}

}  // namespace cmf::cli
