// The Hugging Face Hub protocol, spoken over the abstract cmf::net::HttpClient
// (facts: huggingface_hub hf_api.py, file_download.py, utils/_pagination.py; research cloud.md §5).
//
//   auth_check     GET  /api/models/R/auth-check           access preflight, fails in seconds
//   model_info     GET  /api/models/R/revision/REV         {sha, gated, siblings} (REV quoted, safe="")
//   list_files     GET  /api/models/R/tree/COMMIT?recursive=true&expand=false, Link rel="next" pages
//   file_metadata  HEAD /R/resolve/COMMIT/PATH, no absolute redirects followed:
//                  X-Repo-Commit, X-Linked-Etag (else ETag), X-Linked-Size (else Content-Length),
//                  Location (CDN / bridge URL, presigned, ~1 h)
//   download_to    GET  Location without Authorization when its host differs from the Hub's
//                  (presigned URLs reject a second auth mechanism), else the resolve URL,
//                  through net/transfer.h (resumes mid-body; size and etag checked).
// 401/403/404 are never retried (the HttpClient retries only 408/429/5xx), so a gated repo
// without a token fails in one round trip.
#pragma once

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/hub/digest.h"
#include "cmf/hub/hf_cache.h"
#include "cmf/hub/hf_env.h"
#include "cmf/hub/hf_errors.h"
#include "cmf/hub/hf_json.h"
#include "cmf/hub/hf_source.h"
#include "cmf/net/http.h"
#include "cmf/net/transfer.h"

namespace cmf::hub {

namespace fs = std::filesystem;

constexpr std::chrono::milliseconds kHfMetadataTimeout{10000};  // HF_HUB_ETAG_TIMEOUT default
constexpr int kMaxRelativeRedirects = 5;                        // repo renames
constexpr int kMaxTreePages = 10000;                            // guards a Link loop
// Files at least this large go over parallel Range GETs (hf_transfer's cut-off was 50 MiB;
// single bridge connections can be capped at ~8.7 MB/s, xet-core#821, cloud.md 5.5).
constexpr std::uint64_t kRangedDownloadThreshold = 50ull << 20;

#ifdef CMF_VERSION
constexpr const char* kHfUserAgent = "cmf/" CMF_VERSION "; hf_hub/compat";
#else
constexpr const char* kHfUserAgent = "cmf; hf_hub/compat";
#endif

struct FileMetadata {
    std::string commit;
    std::string etag;  // sha256 for LFS/Xet files, git blob id for small files
    std::uint64_t size = 0;
    std::optional<std::string> location;  // absolute URL to GET (redirect target), if any
};

class HfClient {
public:
    HfClient(std::shared_ptr<net::HttpClient> http, HfEnv env) : http_(std::move(http)), env_(std::move(env)) {
        hub_ = net::Url::parse(env_.endpoint + "/");
    }

    const HfEnv& env() const { return env_; }

    // Parallel Range GETs per large file (1 = always one streamed GET), of this many bytes each.
    int connections = 8;
    std::uint64_t ranged_threshold = kRangedDownloadThreshold;
    std::uint64_t chunk_size = net::kDefaultChunkSize;
    net::HttpClient& http() { return *http_; }

    void auth_check(const HfSource& src) {
        auto r = send(api_request("GET", "/api/models/" + src.repo_id() + "/auth-check"));
        if (r.status / 100 != 2) throw_hub_error(r, env_, {src.repo_id(), src.revision, ""});
    }

    ModelInfo model_info(const HfSource& src) {
        auto r = send(api_request("GET", "/api/models/" + src.repo_id() + "/revision/" + url_quote(src.revision)));
        if (r.status / 100 != 2) throw_hub_error(r, env_, {src.repo_id(), src.revision, ""});
        ModelInfo m = parse_model_info(r.body);
        if (m.disabled) fail(ErrorKind::remote, "repository " + src.repo_id() + " is disabled on " + env_.endpoint);
        return m;
    }

    std::string resolve_commit(const HfSource& src) { return model_info(src).sha; }

    std::vector<RepoFile> list_files(const std::string& repo_id, const std::string& commit) {
        std::vector<RepoFile> out;
        std::string url = env_.endpoint + "/api/models/" + repo_id + "/tree/" + url_quote(commit) + "?recursive=true&expand=false";
        for (int page = 0;; ++page) {
            if (page >= kMaxTreePages) fail(ErrorKind::remote, "the Hugging Face tree listing of " + repo_id + " does not end");
            net::Request q = base_request("GET", url);
            auto r = send(q);
            if (r.status / 100 != 2) throw_hub_error(r, env_, {repo_id, commit, ""});
            auto files = parse_tree_page(r.body);
            out.insert(out.end(), std::make_move_iterator(files.begin()), std::make_move_iterator(files.end()));
            auto link = r.headers.get("Link");
            auto next = link ? link_next(*link) : std::nullopt;
            if (!next) break;
            // The next URL comes from the server: it must stay on the Hub (the token goes with it).
            const auto u = net::Url::parse(*next);
            if (u.host != hub_.host || u.port != hub_.port || u.scheme != hub_.scheme)
                fail(ErrorKind::remote, "the Hugging Face tree listing points its next page to another host");
            url = *next;
        }
        return out;
    }

    FileMetadata file_metadata(const std::string& repo_id, const std::string& revision, const std::string& path) {
        std::string url = resolve_url(repo_id, revision, path);
        for (int hop = 0;; ++hop) {
            net::Request q = base_request("HEAD", url);
            q.follow_redirects = false;
            q.headers.set("Accept-Encoding", "identity");
            auto r = send(q);
            const auto loc = r.headers.get("Location");
            if (r.status >= 300 && r.status < 400 && loc && !loc->empty() && loc->front() == '/' && hop < kMaxRelativeRedirects &&
                !r.headers.has("X-Repo-Commit")) {
                url = env_.endpoint + *loc;  // relative redirect: a renamed repo, still on the Hub
                continue;
            }
            if (r.status >= 400) throw_hub_error(r, env_, {repo_id, revision, path});
            FileMetadata m;
            m.commit = r.headers.get("X-Repo-Commit").value_or("");
            if (!is_hex(m.commit, 40))
                fail(ErrorKind::remote, "no X-Repo-Commit header for " + repo_id + "/" + path + " from " + env_.endpoint +
                                            " (not a Hugging Face endpoint, or a proxy strips headers)");
            m.etag = normalize_etag(r.headers.get("X-Linked-Etag").value_or(r.headers.get("ETag").value_or("")));
            if (!is_hex(m.etag, 64) && !is_hex(m.etag, 40))
                fail(ErrorKind::remote, "no usable ETag for " + repo_id + "/" + path + " from " + env_.endpoint);
            const bool redirect = r.status >= 300 && r.status < 400;
            auto size = r.headers.get("X-Linked-Size");
            if (!size && !redirect) size = r.headers.get("Content-Length");
            if (!size || size->empty() || size->find_first_not_of("0123456789") != std::string::npos || size->size() > 19)
                fail(ErrorKind::remote, "no file size for " + repo_id + "/" + path + " from " + env_.endpoint);
            m.size = std::stoull(*size);
            if (redirect && loc && !loc->empty()) m.location = loc->front() == '/' ? env_.endpoint + *loc : *loc;
            return m;
        }
    }

    // Downloads one file into `dest` through the transfer engine (net/transfer.h): one stream,
    // or parallel ranges for large LFS files behind a CDN; a broken stream continues where it
    // stopped; size and etag (sha256 or git blob id) are checked before `dest` appears.
    // `expected` is what the listing or a manifest says; the HEAD answer must agree with it.
    net::TransferResult download_to(const std::string& repo_id, const std::string& commit, const RepoFile& expected,
                                    const fs::path& dest) {
        const FileMetadata meta = file_metadata(repo_id, commit, expected.path);
        if (meta.etag != expected.etag() || meta.size != expected.size)
            fail(ErrorKind::remote, "the Hub's answer for " + repo_id + "/" + expected.path + " at " + commit +
                                        " disagrees with its file listing (etag or size)");
        const bool cdn = meta.location && !same_host(*meta.location);
        const std::string url = meta.location ? *meta.location : resolve_url(repo_id, commit, expected.path);
        net::Source src;
        src.what = repo_id + "/" + expected.path;  // never the URL: a CDN's query carries its signature
        src.identity = meta.etag;
        src.request = [this, url, cdn] { return base_request("GET", url, /*auth=*/!cdn); };
        src.send = [this](const net::Request& q, const net::BodySink& sink) { return send(q, sink); };
        src.fail_status = [this, cdn, repo_id, commit, expected](const net::Response& r) {
            if (cdn)
                fail(ErrorKind::remote, "the download server for " + repo_id + "/" + expected.path + " answered HTTP " +
                                            std::to_string(r.status));
            throw_hub_error(r, env_, {repo_id, commit, expected.path});
        };
        net::TransferOptions o;
        o.connections = meta.location && meta.size >= ranged_threshold && expected.lfs() ? std::max(1, connections) : 1;
        o.chunk_size = chunk_size;
        o.expected_size = meta.size;
        o.checksums = {expected.lfs() ? net::Checksum::sha256(meta.etag) : net::Checksum::git_blob(meta.etag)};
        o.retry = retry;
        try {
            return net::download(*http_, src, dest, o);
        } catch (const Error& e) {
            throw Error(e.kind(), redact(e.what(), {env_.token}));
        }
    }

    // Attempts without progress per stream, and the backoff (tests shorten it).
    net::RetryPolicy retry;

    std::string resolve_url(const std::string& repo_id, const std::string& revision, const std::string& path) const {
        return env_.endpoint + "/" + repo_id + "/resolve/" + url_quote(revision) + "/" + url_quote(path, "/");
    }

    bool same_host(const std::string& url) const {
        const auto u = net::Url::parse(url);
        return u.host == hub_.host && u.port == hub_.port;
    }

    // The request every Hub call starts from (User-Agent, the token unless `auth` is false),
    // and the exchange through the client with the token redacted from any error: also used by
    // the write side (hub/hf_publish.h).
    net::Request api_request(const std::string& method, const std::string& path) {
        net::Request q = base_request(method, env_.endpoint + path);
        q.timeout = kHfMetadataTimeout;
        return q;
    }

    net::Request base_request(const std::string& method, const std::string& url, bool auth = true) {
        net::Request q;
        q.method = method;
        q.url = net::Url::parse(url);
        q.headers.set("User-Agent", kHfUserAgent);
        if (auth && !env_.token.empty()) q.headers.set("Authorization", "Bearer " + env_.token);
        if (method == "HEAD") q.timeout = kHfMetadataTimeout;
        return q;
    }

    net::Response send(const net::Request& q, const net::BodySink& sink = {}) {
        try {
            return http_->send(q, sink);
        } catch (const Error& e) {
            throw Error(e.kind(), redact(e.what(), {env_.token}));
        }
    }

private:

    std::shared_ptr<net::HttpClient> http_;
    HfEnv env_;
    net::Url hub_;
};

}  // namespace cmf::hub
