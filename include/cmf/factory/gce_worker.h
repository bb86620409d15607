// The worker's cloud seams (WorkerHooks) over the real clients:
//   - the job from instance metadata (`factory-config`, what startup.sh and job.h use)
//   - secrets behind gs://BUCKET/OBJECT (read with the VM's metadata-server token) and
//     metadata:KEY (an instance attribute)
//   - hf:// sources through the hub client, GCS source cache first: PREFIX/hf/ORG/REPO/COMMIT/
//     + manifest.json (hub/source_cache.h); a commit not cached yet is downloaded from the Hub
//     once and copied there for the next build.
// Nothing here prints a secret: errors name the reference, never the value.
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "cmf/cloud/gcs.h"
#include "cmf/cloud/metadata.h"
#include "cmf/factory/digest.h"
#include "cmf/factory/job.h"
#include "cmf/factory/worker.h"
#include "cmf/hub/gcs_store.h"
#include "cmf/hub/hf.h"
#include "cmf/hub/source_cache.h"

namespace cmf::factory {

inline constexpr const char* kJobMetadataKey = "factory-config";

// The job JSON from the instance attribute `factory-config`; a usage error when it is not set.
inline std::string job_text_from_metadata(const cloud::MetadataServer& mds) {
    auto v = mds.attribute(kJobMetadataKey);
    if (!v || v->empty())
        fail(ErrorKind::usage, std::string("worker: no --job FILE and the instance metadata key ") + kJobMetadataKey + " is not set");
    return *v;
}

inline std::string trim_secret(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
    return s;
}

// gs:// and metadata: references. nullopt when the object / key does not exist; other failures
// throw with the reference (never the value) in the message.
// `sm_access` reads a Secret Manager version (projects/P/secrets/ID/versions/N) with the VM's
// own token (cloud/secret_manager.h); unset: this caller cannot.
inline std::optional<std::string> resolve_cloud_secret(const std::string& ref, cloud::GcsClient* gcs, const cloud::MetadataServer* mds,
                                                       const std::function<std::string(const std::string& version)>& sm_access = {}) {
    if (ref.rfind("sm:", 0) == 0) {
        const std::string name = ref.substr(3);
        const auto s = name.find("/secrets/"), v = name.find("/versions/");
        if (name.rfind("projects/", 0) != 0 || s == std::string::npos || v == std::string::npos || v < s || v + 10 >= name.size())
            fail(ErrorKind::auth, "secret " + ref + ": not projects/P/secrets/ID/versions/N");
        if (!sm_access) fail(ErrorKind::auth, "secret " + ref + ": no Secret Manager client");
        try {
            return trim_secret(sm_access(name));
        } catch (const Error& e) {
            fail(ErrorKind::auth, "secret " + ref + ": cannot read it (" + e.what() + ")");
        }
    }
    if (ref.rfind("gs://", 0) == 0) {
        if (!gcs) fail(ErrorKind::auth, "secret " + ref + ": no GCS client");
        const cloud::GcsPath p = cloud::GcsPath::parse(ref);
        if (p.object.empty()) fail(ErrorKind::auth, "secret " + ref + ": names a bucket, not an object");
        std::optional<std::string> v;
        try {
            v = gcs->read_all(p.bucket, p.object);
        } catch (const Error& e) {
            fail(ErrorKind::auth, "secret " + ref + ": cannot read it (" + e.what() + ")");
        }
        if (!v) return std::nullopt;
        return trim_secret(*v);
    }
    if (ref.rfind("metadata:", 0) == 0) {
        if (!mds) fail(ErrorKind::auth, "secret " + ref + ": no metadata server");
        std::optional<std::string> v;
        try {
            v = mds->attribute(ref.substr(9));
        } catch (const Error& e) {
            fail(ErrorKind::auth, "secret " + ref + ": cannot read it (" + e.what() + ")");
        }
        if (!v) return std::nullopt;
        return trim_secret(*v);
    }
    fail(ErrorKind::auth, "secret " + ref + ": unknown reference scheme");
}

// Where the source cache lives: the job's bucket (GCS or a local directory) under its prefix.
struct SourceCacheTarget {
    cloud::GcsClient* gcs = nullptr;  // with bucket: GCS
    std::string bucket;
    fs::path local_root;              // else: a directory (the local backend's bucket)
    std::string prefix;
};

// Downloads job.hf_repo()@job.revision: from the source cache when the commit is there (each
// file checked against the manifest), else from the Hub (then copied into the cache). The HF
// cache for this run is `dir/hub`; the returned snapshot directory is the checkpoint.
inline SourceSnapshot fetch_hf_repo_cached(const std::string& repo, const std::string& revision, const fs::path& dir,
                                           const std::string& hf_token, std::shared_ptr<net::HttpClient> http,
                                           const SourceCacheTarget& target, const std::function<void(const std::string&)>& log) {
    hub::HfEnv env = hub::HfEnv::from_environment();
    env.token = hf_token;  // the job's secret, not whatever the process environment has
    env.token_origin = hf_token.empty() ? "" : "secrets.hf_token_ref";
    env.hub_cache = dir / "hub";
    std::error_code ec;
    fs::create_directories(env.hub_cache, ec);
    if (!fs::is_directory(env.hub_cache)) fail_io("cannot create " + env.hub_cache.string());
    hub::HfClient hf(http, env);
    const hub::HfCache cache(env.hub_cache);
    const hub::HfSource src = hub::HfSource::parse("hf://" + repo + "@" + revision);
    hub::FetchOptions opt;
    opt.connections = 4;
    opt.on_event = [&](const hub::FetchEvent& e) {
        using K = hub::FetchEvent::Kind;
        const char* what = nullptr;
        switch (e.kind) {
            case K::downloaded: what = "downloaded from the Hub"; break;
            case K::from_store: what = "from the source cache"; break;
            case K::store_mismatch: what = "source cache copy is bad, fetching from the Hub"; break;
            case K::refetching: what = "checksum mismatch, downloading again"; break;
            default: break;
        }
        if (what && log) log("source " + e.path + " (" + std::to_string(e.size) + " bytes): " + what);
    };
    std::unique_ptr<hub::ObjectStore> store;
    if (target.gcs) store = std::make_unique<hub::GcsObjectStore>(*target.gcs, target.bucket);
    else if (!target.local_root.empty()) store = std::make_unique<hub::LocalDirStore>(target.local_root);
    hub::FetchResult fr;
    if (store) {
        hub::SourceCache sc(*store, target.prefix);
        hub::SourceCacheResult r = sc.fetch(hf, cache, src, opt);
        if (log)
            log("source " + src.repo_id() + "@" + src.revision + " = commit " + r.fetch.commit + ": " +
                (r.manifest_existed ? "in the source cache" : "first fetch, copied to the source cache") + " (" +
                std::to_string(r.from_store) + " from the cache, " + std::to_string(r.to_store) + " copied to it, " +
                std::to_string(r.mismatched) + " bad copies replaced)");
        fr = std::move(r.fetch);
    } else {
        fr = hub::fetch_snapshot(hf, cache, src, opt);
    }
    // The checkpoint directory is named after the repository (dir/REPO, links to the snapshot's
    // files), not after the commit: the converter names outputs and general.name after it, so
    // the GGUFs are the ones `cmf quantize REPO_DIR` writes.
    const std::string repo_name = repo.substr(repo.find('/') + 1);
    SourceSnapshot s;
    s.dir = dir / repo_name;
    s.revision = fr.commit;
    fs::remove_all(s.dir, ec);
    fs::create_directories(s.dir, ec);
    if (!fs::is_directory(s.dir)) fail_io("cannot create " + s.dir.string());
    for (const auto& f : fr.files) {
        if (f.path.find('/') != std::string::npos) continue;  // the checkpoint is the top level
        const fs::path p = fs::canonical(fr.snapshot / f.path);
        fs::create_symlink(p, s.dir / f.path, ec);
        if (ec) fail_io("cannot link " + (s.dir / f.path).string() + ": " + ec.message());
        s.files.push_back({f.path, f.size, f.sha256 ? *f.sha256 : sha256_file(p)});
    }
    std::sort(s.files.begin(), s.files.end(), [](const CardFile& a, const CardFile& b) { return a.name < b.name; });
    return s;
}

// The job's model (hf://ORG/NAME at its revision), through the source cache.
inline SourceSnapshot fetch_hf_source_cached(const Job& job, const fs::path& dir, const std::string& hf_token,
                                             std::shared_ptr<net::HttpClient> http, const SourceCacheTarget& target,
                                             const std::function<void(const std::string&)>& log) {
    return fetch_hf_repo_cached(job.hf_repo(), job.revision, dir, hf_token, std::move(http), target, log);
}

}  // namespace cmf::factory
