// A source cache: the files of one Hugging Face commit copied once into an object store (a GCS
// bucket, or a local directory) so later fetches never go back to the Hub.
//
//   PREFIX/hf/ORG/REPO/COMMIT/<path>          file bytes, exactly as on the Hub
//   PREFIX/hf/ORG/REPO/COMMIT/manifest.json   written LAST: {"repo","commit","revision","created",
//                                             "files":[{"path","size","sha256","etag","stored"}]}
//   PREFIX/hf/ORG/REPO/refs/REVISION          the commit REVISION last resolved to (lets a fetch
//                                             of a branch work while the Hub is unreachable)
//
// A copy without its manifest does not exist (an interrupted upload is simply redone). A copy
// is never trusted by name alone: every object read back is checked against the manifest's
// size and sha256 (GCS keeps md5/crc32c, not sha256), and a mismatching object is fetched
// again from the Hub and replaced. The manifest lists every file of the commit; "stored" says
// which ones are in the store (a fetch with --include copies only what it selected).
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmf/core/error.h"
#include "cmf/core/temp_file.h"
#include "cmf/hub/digest.h"
#include "cmf/hub/hf_fetch.h"

namespace cmf::hub {

struct ObjectInfo {
    std::string name;
    std::uint64_t size = 0;
};

// The few object-store operations the source cache needs. Names are '/'-separated keys
// relative to the store's root (a bucket, a directory). Implementations: LocalDirStore below,
// and a GCS-backed one over cmf::cloud (orchestrate side).
class ObjectStore {
public:
    virtual ~ObjectStore() = default;
    virtual std::optional<ObjectInfo> stat(const std::string& name) = 0;
    // Writes the object into `dest` (replaced); throws cmf::Error when it does not exist.
    virtual void get_to_file(const std::string& name, const fs::path& dest) = 0;
    virtual void put_file(const std::string& name, const fs::path& src) = 0;
    // Creates the object only if no object of that name exists; false when one did.
    virtual bool put_if_absent(const std::string& name, const fs::path& src) = 0;
    virtual std::vector<ObjectInfo> list(const std::string& prefix) = 0;
    // "gs://bucket/name" or a path: for messages.
    virtual std::string describe(const std::string& name) const = 0;
};

// A directory as an object store: object "a/b" is the file DIR/a/b. Writes go through a
// temporary file and rename(2); put_if_absent uses link(2), which fails when the name exists.
class LocalDirStore : public ObjectStore {
public:
    explicit LocalDirStore(fs::path root) : root_(std::move(root)) {}

    std::optional<ObjectInfo> stat(const std::string& name) override {
        std::error_code ec;
        const auto p = path_of(name);
        if (!fs::is_regular_file(p, ec)) return std::nullopt;
        return ObjectInfo{name, fs::file_size(p, ec)};
    }
    void get_to_file(const std::string& name, const fs::path& dest) override {
        TempFile t(dest);
        t.copy_from(path_of(name));
        t.commit();
    }
    void put_file(const std::string& name, const fs::path& src) override { stage(name, src)->commit(); }
    bool put_if_absent(const std::string& name, const fs::path& src) override {
        const auto tmp = stage(name, src);
        tmp->sync();
        const int rc = ::link(tmp->path().c_str(), path_of(name).c_str());
        const int err = errno;
        if (rc == 0) return true;
        if (err == EEXIST) return false;
        fail_io("cannot write " + describe(name) + ": " + std::strerror(err));
    }
    std::vector<ObjectInfo> list(const std::string& prefix) override {
        std::vector<ObjectInfo> out;
        std::error_code ec;
        if (!fs::is_directory(root_, ec)) return out;
        for (auto it = fs::recursive_directory_iterator(root_, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
            if (!it->is_regular_file()) continue;
            const std::string name = it->path().lexically_relative(root_).generic_string();
            if (name.find(".cmf-tmp-") != std::string::npos) continue;
            if (name.rfind(prefix, 0) == 0) out.push_back({name, it->file_size()});
        }
        std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
        return out;
    }
    std::string describe(const std::string& name) const override { return (root_ / name).string(); }

private:
    fs::path path_of(const std::string& name) const {
        if (name.empty() || name.front() == '/' || name.find("..") != std::string::npos)
            fail(ErrorKind::internal, "bad object name '" + name + "'");
        return root_ / name;
    }
    // A copy of src under a temporary name beside the object (core/temp_file.h: removed on
    // error, interrupt, or when dropped after the link of put_if_absent).
    std::unique_ptr<TempFile> stage(const std::string& name, const fs::path& src) {
        const auto p = path_of(name);
        std::error_code ec;
        fs::create_directories(p.parent_path(), ec);
        if (ec) fail_io("cannot create " + p.parent_path().string() + ": " + ec.message());
        auto t = std::make_unique<TempFile>(p);
        t->copy_from(src);
        return t;
    }
    fs::path root_;
};

struct ManifestEntry {
    std::string path;
    std::uint64_t size = 0;
    std::string sha256;
    std::string etag;
    bool stored = false;
};

struct SourceManifest {
    std::string repo;
    std::string commit;
    std::string revision;
    std::string created;  // UTC, RFC 3339
    std::vector<ManifestEntry> files;

    const ManifestEntry* find(const std::string& path) const {
        for (const auto& f : files)
            if (f.path == path) return &f;
        return nullptr;
    }

    std::string to_json() const {
        nlohmann::json j;
        j["repo"] = repo;
        j["commit"] = commit;
        j["revision"] = revision;
        j["created"] = created;
        j["files"] = nlohmann::json::array();
        for (const auto& f : files)
            j["files"].push_back({{"path", f.path}, {"size", f.size}, {"sha256", f.sha256}, {"etag", f.etag}, {"stored", f.stored}});
        return j.dump(1);
    }

    // Untrusted input (anyone with write access to the bucket): checked like a Hub answer.
    static SourceManifest parse(std::string_view body, const std::string& where) {
        auto bad = [&](const std::string& why) -> SourceManifest {
            fail(ErrorKind::remote, "bad source-cache manifest " + where + ": " + why);
        };
        auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
        if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
        SourceManifest m;
        auto str = [&](const nlohmann::json& o, const char* k) -> std::string {
            auto it = o.find(k);
            if (it == o.end() || !it->is_string()) bad(std::string("missing ") + k);
            return it->get<std::string>();
        };
        m.repo = str(j, "repo");
        m.commit = str(j, "commit");
        if (!is_hex(m.commit, 40)) return bad("commit is not 40 hex digits");
        if (auto it = j.find("revision"); it != j.end() && it->is_string()) m.revision = it->get<std::string>();
        if (auto it = j.find("created"); it != j.end() && it->is_string()) m.created = it->get<std::string>();
        auto files = j.find("files");
        if (files == j.end() || !files->is_array()) return bad("missing files");
        for (const auto& e : *files) {
            if (!e.is_object()) return bad("file entry is not an object");
            ManifestEntry f;
            auto p = e.find("path");
            if (p == e.end()) return bad("file entry without path");
            f.path = detail::safe_path(*p, "manifest");
            auto sz = e.find("size");
            if (sz == e.end() || !sz->is_number_unsigned()) return bad("file entry without size");
            f.size = sz->get<std::uint64_t>();
            f.sha256 = str(e, "sha256");
            f.etag = str(e, "etag");
            if (auto s = e.find("stored"); s != e.end() && s->is_boolean()) f.stored = s->get<bool>();
            // small files not yet copied have no sha256 (the Hub's listing only has it for LFS)
            if (!is_hex(f.sha256, 64) && !(f.sha256.empty() && !f.stored)) return bad("sha256 is not 64 hex digits");
            if (!is_hex(f.etag, 64) && !is_hex(f.etag, 40)) return bad("etag is not a Hub etag");
            m.files.push_back(std::move(f));
        }
        return m;
    }
};

inline std::string utc_now_rfc3339() {
    const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char b[32];
    std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return b;
}

struct SourceCacheResult {
    FetchResult fetch;
    bool manifest_existed = false;  // the commit was already in the store
    std::size_t from_store = 0;     // files copied from the store into the HF cache
    std::size_t to_store = 0;       // files uploaded to the store
    std::size_t mismatched = 0;     // store objects that failed verification (refetched from the Hub)
};

class SourceCache {
public:
    // `prefix` may be empty; objects go under PREFIX/hf/ORG/REPO/...
    SourceCache(ObjectStore& store, std::string prefix) : store_(store), prefix_(std::move(prefix)) {
        while (!prefix_.empty() && prefix_.back() == '/') prefix_.pop_back();
    }

    std::string repo_base(const std::string& repo_id) const { return (prefix_.empty() ? "" : prefix_ + "/") + "hf/" + repo_id + "/"; }
    std::string commit_base(const std::string& repo_id, const std::string& commit) const { return repo_base(repo_id) + commit + "/"; }
    std::string manifest_name(const std::string& repo_id, const std::string& commit) const {
        return commit_base(repo_id, commit) + "manifest.json";
    }
    std::string ref_name(const std::string& repo_id, const std::string& revision) const {
        return repo_base(repo_id) + "refs/" + revision;
    }

    std::optional<SourceManifest> read_manifest(const std::string& repo_id, const std::string& commit, const fs::path& scratch) {
        const std::string name = manifest_name(repo_id, commit);
        if (!store_.stat(name)) return std::nullopt;
        const fs::path tmp = scratch / ("manifest-" + commit + ".json");
        store_.get_to_file(name, tmp);
        const std::string body = slurp(tmp);
        std::error_code ec;
        fs::remove(tmp, ec);
        auto m = SourceManifest::parse(body, store_.describe(name));
        if (m.commit != commit || m.repo != repo_id) fail(ErrorKind::remote, "source-cache manifest " + store_.describe(name) + " names another repo or commit");
        return m;
    }

    // The commit of src.revision: from the Hub; if the Hub cannot be reached, from the store's
    // refs/REVISION or the local HF cache's refs/REVISION. Auth and not-found answers from the
    // Hub are never papered over.
    std::string resolve_commit(HfClient& hf, const HfCache& cache, const HfSource& src, const fs::path& scratch) {
        if (src.revision_is_commit()) return src.revision;
        try {
            return hf.resolve_commit(src);
        } catch (const Error& e) {
            if (e.kind() != ErrorKind::network) throw;
            const std::string name = ref_name(src.repo_id(), src.revision);
            if (store_.stat(name)) {
                const fs::path tmp = scratch / "ref";
                store_.get_to_file(name, tmp);
                std::string c = slurp(tmp);
                std::error_code ec;
                fs::remove(tmp, ec);
                while (!c.empty() && (c.back() == '\n' || c.back() == ' ')) c.pop_back();
                if (is_hex(c, 40)) return c;
            }
            if (auto c = cache.read_ref(src.repo_id(), src.revision)) return *c;
            throw;
        }
    }

    SourceCacheResult fetch(HfClient& hf, const HfCache& cache, const HfSource& src, const FetchOptions& opt) {
        SourceCacheResult out;
        const std::string repo = src.repo_id();
        std::error_code ec;
        fs::create_directories(cache.repo_dir(repo) / "blobs", ec);
        const fs::path scratch = cache.repo_dir(repo) / "blobs";
        const std::string commit = resolve_commit(hf, cache, src, scratch);
        std::optional<SourceManifest> manifest = read_manifest(repo, commit, scratch);
        out.manifest_existed = manifest.has_value();
        if (!manifest) {
            // First fetch of this commit: from the Hub into the HF cache, then into the store.
            auto files = hf.list_files(repo, commit);
            out.fetch = fetch_files(hf, cache, src, commit, files, opt);
            SourceManifest m;
            m.repo = repo;
            m.commit = commit;
            m.revision = src.revision;
            for (const auto& f : files) m.files.push_back({f.path, f.size, f.sha256.value_or(""), f.etag(), false});
            upload_selected(cache, m, out, opt);
            write_manifest(m, scratch, /*replace=*/false);
            write_ref(src, commit, scratch);
            return out;
        }
        // Later fetches: from the store, each object checked against the manifest.
        FetchResult& res = out.fetch;
        res.repo_id = repo;
        res.revision = src.revision;
        res.commit = commit;
        res.snapshot = cache.snapshot_dir(repo, commit);
        std::vector<RepoFile> wanted;
        for (const auto& e : manifest->files)
            if (selected(e.path, opt.include)) {
                RepoFile f;
                f.path = e.path;
                f.size = e.size;
                if (e.etag.size() == 64) f.sha256 = e.etag;
                else f.blob_id = e.etag;
                wanted.push_back(std::move(f));
            }
        if (wanted.empty() && !opt.include.empty())
            fail(ErrorKind::usage, "no file of " + repo + " at " + commit.substr(0, 12) + " matches --include");
        res.files = wanted;
        bool manifest_changed = false;
        std::mutex m;
        auto emit = [&](const FetchEvent& e) {
            std::lock_guard<std::mutex> g(m);
            if (opt.on_event) opt.on_event(e);
        };
        std::atomic<std::uint64_t> bytes{0};
        parallel_for(wanted.size(), opt.connections, [&](std::size_t i) {
            const RepoFile& f = wanted[i];
            ManifestEntry* entry = const_cast<ManifestEntry*>(manifest->find(f.path));
            const std::string etag = f.etag();
            auto lock = cache.lock_blob(repo, etag);
            if (cache.has_blob(repo, etag, f.size)) {
                cache.link_snapshot(repo, commit, f.path, etag);
                {
                    std::lock_guard<std::mutex> g(m);
                    ++res.reused;
                }
                emit({FetchEvent::Kind::reused, f.path, f.size, ""});
                if (entry->stored) return;
            } else if (entry->stored) {
                // the bucket copy arrives whole under a name of its own, is checked against the
                // manifest, then renamed into place
                const fs::path tmp = cache.begin_blob(repo, etag).string() + ".cmf-verify";
                const std::string name = commit_base(repo, commit) + f.path;
                std::string why;
                try {
                    store_.get_to_file(name, tmp);
                    const FileDigests d = digest_file(tmp);
                    if (d.size != entry->size) why = "size " + std::to_string(d.size) + " != " + std::to_string(entry->size);
                    else if (d.sha256 != entry->sha256) why = "sha256 " + d.sha256 + " != " + entry->sha256;
                    else if (etag.size() == 40 && d.git_blob != etag) why = "git blob id differs";
                } catch (const Error& e) {
                    why = e.what();
                }
                if (why.empty()) {
                    std::error_code ec;
                    fs::rename(tmp, cache.blob_path(repo, etag), ec);
                    if (ec) fail_io("cannot move " + tmp.string() + " into the Hugging Face cache: " + ec.message());
                    cache.link_snapshot(repo, commit, f.path, etag);
                    {
                        std::lock_guard<std::mutex> g(m);
                        ++out.from_store;
                    }
                    emit({FetchEvent::Kind::from_store, f.path, f.size, ""});
                    return;
                }
                std::error_code ec2;
                fs::remove(tmp, ec2);
                {
                    std::lock_guard<std::mutex> g(m);
                    ++out.mismatched;
                }
                emit({FetchEvent::Kind::store_mismatch, f.path, f.size, store_.describe(name) + ": " + why});
                bytes += fetch_file_locked(hf, cache, repo, commit, f, emit);
            } else {
                bytes += fetch_file_locked(hf, cache, repo, commit, f, emit);
            }
            // The store lacks this file or holds a bad copy: (re)upload what is now verified.
            put_blob(cache, repo, commit, f.path, etag);
            const std::string sha = entry->sha256.empty() ? digest_file(cache.blob_path(repo, etag)).sha256 : entry->sha256;
            std::lock_guard<std::mutex> g(m);
            entry->sha256 = sha;
            entry->stored = true;
            manifest_changed = true;
            ++out.to_store;
        });
        res.bytes_downloaded = bytes;
        fs::create_directories(res.snapshot, ec);
        cache.write_ref(repo, src.revision, commit);
        if (manifest_changed) write_manifest(*manifest, scratch, /*replace=*/true);
        return out;
    }

private:
    void put_blob(const HfCache& cache, const std::string& repo, const std::string& commit, const std::string& path,
                  const std::string& etag) {
        store_.put_file(commit_base(repo, commit) + path, cache.blob_path(repo, etag));
    }

    void upload_selected(const HfCache& cache, SourceManifest& m, SourceCacheResult& out, const FetchOptions& opt) {
        std::mutex mu;
        parallel_for(m.files.size(), opt.connections, [&](std::size_t i) {
            ManifestEntry& e = m.files[i];
            if (!selected(e.path, opt.include)) return;
            // sha256 of small (git) files is not in the listing: compute it from the verified blob.
            if (e.sha256.empty()) e.sha256 = digest_file(cache.blob_path(m.repo, e.etag)).sha256;
            put_blob(cache, m.repo, m.commit, e.path, e.etag);
            e.stored = true;
            std::lock_guard<std::mutex> g(mu);
            ++out.to_store;
            if (opt.on_event) opt.on_event({FetchEvent::Kind::to_store, e.path, e.size, store_.describe(commit_base(m.repo, m.commit) + e.path)});
        });
    }

    void write_manifest(SourceManifest& m, const fs::path& scratch, bool replace) {
        m.created = utc_now_rfc3339();
        TempFile tmp(scratch / ("manifest-" + m.commit + ".json"));  // removed when done, or on Ctrl-C
        tmp.write(m.to_json());
        const std::string name = manifest_name(m.repo, m.commit);
        if (replace) store_.put_file(name, tmp.path());
        else store_.put_if_absent(name, tmp.path());  // a concurrent first fetch wrote an equivalent one
    }

    void write_ref(const HfSource& src, const std::string& commit, const fs::path& scratch) {
        if (src.revision_is_commit()) return;
        TempFile tmp(scratch / "ref");
        tmp.write(commit);
        store_.put_file(ref_name(src.repo_id(), src.revision), tmp.path());
    }

    static std::string slurp(const fs::path& p) {
        std::ifstream in(p, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }

    ObjectStore& store_;
    std::string prefix_;
};

}  // namespace cmf::hub
