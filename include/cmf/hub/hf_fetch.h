// Downloading a repository snapshot into the HF cache (what huggingface_hub's
// snapshot_download does): resolve the revision to a commit, list the files at that commit,
// and for each selected file reuse blobs/<etag> when present or download it (net/transfer.h:
// blobs/<etag>.cmf-partial, checked, renamed to blobs/<etag>), and link snapshots/<commit>/<path>.
#pragma once

#include <fnmatch.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cmf/hub/hf_cache.h"
#include "cmf/hub/hf_client.h"

namespace cmf::hub {

// --include patterns use fnmatch without FNM_PATHNAME ('*' also matches '/'), like
// huggingface_hub's allow_patterns. No pattern selects everything.
inline bool selected(const std::string& path, const std::vector<std::string>& include) {
    if (include.empty()) return true;
    for (const auto& g : include)
        if (::fnmatch(g.c_str(), path.c_str(), 0) == 0) return true;
    return false;
}

struct FetchEvent {
    enum class Kind { reused, downloading, downloaded, refetching, from_store, to_store, store_mismatch } kind;
    std::string path;
    std::uint64_t size = 0;
    std::string detail;
};

struct FetchOptions {
    std::vector<std::string> include;
    int connections = 8;  // files transferred at once
    std::function<void(const FetchEvent&)> on_event;  // called under a lock, from worker threads
};

struct FetchResult {
    std::string repo_id;
    std::string revision;
    std::string commit;
    fs::path snapshot;
    std::vector<RepoFile> files;  // the selected files
    std::uint64_t bytes_downloaded = 0;
    std::size_t reused = 0;
};

// Runs fn(i) for i in [0, n) on up to `workers` threads; the first exception is rethrown
// after all threads stopped (remaining items are skipped once one failed).
inline void parallel_for(std::size_t n, int workers, const std::function<void(std::size_t)>& fn) {
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr first;
    std::mutex m;
    auto run = [&] {
        for (;;) {
            const std::size_t i = next++;
            if (i >= n || failed) return;
            try {
                fn(i);
            } catch (...) {
                std::lock_guard<std::mutex> g(m);
                if (!first) first = std::current_exception();
                failed = true;
            }
        }
    };
    const int t = static_cast<int>(std::min<std::size_t>(n, static_cast<std::size_t>(std::max(1, workers))));
    std::vector<std::thread> pool;
    for (int i = 1; i < t; ++i) pool.emplace_back(run);
    run();
    for (auto& th : pool) th.join();
    if (first) std::rethrow_exception(first);
}

// Makes sure one file is in the cache and linked into the snapshot; returns bytes downloaded.
// The caller holds the blob's lock (HfCache::lock_blob). The transfer engine writes
// blobs/<etag>.cmf-partial (resumable: a later fetch continues it) and renames it to
// blobs/<etag> only once its size and etag are right; a mismatch is refetched there.
inline std::uint64_t fetch_file_locked(HfClient& hf, const HfCache& cache, const std::string& repo_id, const std::string& commit,
                                       const RepoFile& f, const std::function<void(const FetchEvent&)>& emit) {
    const std::string etag = f.etag();
    if (cache.has_blob(repo_id, etag, f.size)) {
        cache.link_snapshot(repo_id, commit, f.path, etag);
        emit({FetchEvent::Kind::reused, f.path, f.size, ""});
        return 0;
    }
    const fs::path blob = cache.begin_blob(repo_id, etag);
    emit({FetchEvent::Kind::downloading, f.path, f.size, ""});
    const net::TransferResult r = hf.download_to(repo_id, commit, f, blob);
    if (r.refetches) emit({FetchEvent::Kind::refetching, f.path, f.size, std::to_string(r.refetches) + " refetch(es) after a checksum mismatch"});
    cache.link_snapshot(repo_id, commit, f.path, etag);
    emit({FetchEvent::Kind::downloaded, f.path, f.size, ""});
    return f.size;
}

inline std::uint64_t fetch_file(HfClient& hf, const HfCache& cache, const std::string& repo_id, const std::string& commit,
                                const RepoFile& f, const std::function<void(const FetchEvent&)>& emit) {
    auto lock = cache.lock_blob(repo_id, f.etag());
    return fetch_file_locked(hf, cache, repo_id, commit, f, emit);
}

// Resolves src.revision (no request when it is already a commit), lists the files there.
inline std::pair<std::string, std::vector<RepoFile>> resolve_and_list(HfClient& hf, const HfSource& src) {
    const std::string commit = src.revision_is_commit() ? src.revision : hf.resolve_commit(src);
    return {commit, hf.list_files(src.repo_id(), commit)};
}

inline FetchResult fetch_files(HfClient& hf, const HfCache& cache, const HfSource& src, const std::string& commit,
                               const std::vector<RepoFile>& all, const FetchOptions& opt) {
    FetchResult res;
    res.repo_id = src.repo_id();
    res.revision = src.revision;
    res.commit = commit;
    res.snapshot = cache.snapshot_dir(res.repo_id, commit);
    for (const auto& f : all)
        if (selected(f.path, opt.include)) res.files.push_back(f);
    if (res.files.empty() && !opt.include.empty())
        fail(ErrorKind::usage, "no file of " + src.repo_id() + " at " + commit.substr(0, 12) + " matches --include");
    std::mutex m;
    auto emit = [&](const FetchEvent& e) {
        std::lock_guard<std::mutex> g(m);
        if (e.kind == FetchEvent::Kind::reused) ++res.reused;
        if (opt.on_event) opt.on_event(e);
    };
    std::atomic<std::uint64_t> bytes{0};
    parallel_for(res.files.size(), opt.connections,
                 [&](std::size_t i) { bytes += fetch_file(hf, cache, res.repo_id, commit, res.files[i], emit); });
    res.bytes_downloaded = bytes;
    fs::create_directories(res.snapshot);
    cache.write_ref(res.repo_id, src.revision, commit);
    return res;
}

inline FetchResult fetch_snapshot(HfClient& hf, const HfCache& cache, const HfSource& src, const FetchOptions& opt = {}) {
    auto [commit, files] = resolve_and_list(hf, src);
    return fetch_files(hf, cache, src, commit, files, opt);
}

}  // namespace cmf::hub
