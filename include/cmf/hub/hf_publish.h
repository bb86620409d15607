// Publishing to a Hugging Face model repo: every file in one commit through the Hub's commit
// API, large files through its LFS endpoints (facts: huggingface_hub hf_api.py create_repo /
// create_commit, _commit_api.py, lfs.py; @huggingface/hub commit.ts; research cloud.md §5):
//
//   1. GET  /api/whoami-v2                        the token may write into the namespace: checked
//                                                 before any byte of a file leaves (a read token, a
//                                                 fine-grained token without repo.write, a read
//                                                 role in the org: one line, nothing sent)
//   2. GET  /api/models/R/revision/B               head of the branch (the commit's parent);
//      POST /api/repos/create                      when the repo is missing (409: it appeared meanwhile)
//      POST /api/models/R/branch/B                 when the branch is missing (from main)
//   3. POST /api/models/R/preupload/B              per file: uploadMode lfs|regular and the oid the
//                                                 branch already holds there (sha256 for LFS, git
//                                                 blob id else); an equal oid drops the file from
//                                                 the commit (huggingface_hub's no-op rule)
//   4. POST /R.git/info/lfs/objects/batch          LFS files: no actions = the Hub already stores
//                                                 the object (an earlier, interrupted publish);
//                                                 else one PUT to a presigned URL (+ verify), or
//                                                 multipart: header.chunk_size and part URLs
//                                                 "00001".., each PUT answering an ETag, then a
//                                                 POST of {oid, parts[{partNumber, etag}]} to href
//   5. POST /api/models/R/commit/B                 application/x-ndjson: header {summary,
//                                                 description, parentCommit}, lfsFile {path, algo,
//                                                 oid, size}, file {path, content base64, encoding}
//
// Uploads run in parallel (files and parts alike, `connections` at a time). Every PUT is a
// rewindable slice of the file read with pread, so a connection dropped mid-part is retried by
// the HttpClient's policy from the part's first byte; a publish killed outright is resumed by
// running it again: stored objects are not sent twice (step 4) and unchanged files are not
// committed twice (step 3). Presigned URLs carry their own signature: the token never goes there,
// and no URL is ever put into a message.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cmf/core/encoding.h"
#include "cmf/core/error.h"
#include "cmf/core/redact.h"
#include "cmf/hub/digest.h"
#include "cmf/hub/hf_client.h"
#include "cmf/hub/hf_source.h"

namespace cmf::hub {

namespace fs = std::filesystem;

// The preupload endpoint takes up to this many files per call (huggingface_hub's
// _fetch_upload_modes and @huggingface/hub chunk by 100), and a 512-byte sample of each.
constexpr std::size_t kPreuploadBatch = 100;
constexpr std::size_t kPreuploadSample = 512;
// The LFS batch API takes objects in batches of this size (@huggingface/hub: 100).
constexpr std::size_t kLfsBatch = 100;
// The Hub refuses single files above 50 GB (hub-docs storage limits; the LFS batch answers an
// error per object). Larger GGUFs are split in llama.cpp's format before the upload.
constexpr std::uint64_t kHubMaxFileSize = 50ull * 1000 * 1000 * 1000;
constexpr int kDefaultUploadConnections = 8;

// One file of the commit: on disk, or in memory (the card, the quality JSON).
struct HubFile {
    std::string path;            // in the repo
    fs::path local;              // on disk, or empty
    std::string content;         // when `local` is empty
    std::uint64_t size = 0;      // filled by hash()
    std::string sha256;          // hex, filled by hash()
    std::string git_blob;        // hex, filled by hash()

    static HubFile from_disk(std::string path, fs::path local) {
        HubFile f;
        f.path = std::move(path);
        f.local = std::move(local);
        return f;
    }
    static HubFile from_memory(std::string path, std::string content) {
        HubFile f;
        f.path = std::move(path);
        f.content = std::move(content);
        return f;
    }
    void hash() {
        if (!local.empty()) {
            const FileDigests d = digest_file(local);
            size = d.size;
            sha256 = d.sha256;
            git_blob = d.git_blob;
        } else {
            size = content.size();
            sha256 = sha256_hex(content);
            git_blob = git_blob_id(content);
        }
    }
    // `len` bytes from `offset`.
    std::string read(std::uint64_t offset, std::size_t len) const;
};

struct PublishRequest {
    HfSource target;               // hf://ORG/NAME[@BRANCH]
    bool private_repo = false;     // for a repo this publish creates
    std::string message;           // commit title
    std::string description;       // commit body
    std::vector<HubFile> files;
    int connections = kDefaultUploadConnections;
};

struct PublishResult {
    std::string commit;            // the new commit, or the head when nothing changed
    std::string commit_url;
    bool created_repo = false;
    bool created_branch = false;
    std::vector<std::string> committed;   // paths in the commit
    std::vector<std::string> unchanged;   // already there with the same content: not committed
    std::vector<std::string> lfs_sent;    // LFS objects whose bytes went up in this run
    std::vector<std::string> lfs_stored;  // LFS objects the Hub already held (not sent)
    std::uint64_t bytes_sent = 0;
};

using PublishLog = std::function<void(const std::string&)>;

class HfPublisher {
public:
    explicit HfPublisher(HfClient& hub, PublishLog log = {}) : hub_(hub), log_(std::move(log)) {}

    // Step 1 alone: throws Error(auth) with one line when the token cannot write into the
    // namespace of `repo_id`.
    void check_write_access(const std::string& repo_id) {
        const HfEnv& env = hub_.env();
        const std::string ns = repo_id.substr(0, repo_id.find('/'));
        if (env.token.empty())
            fail(ErrorKind::auth, "publishing to " + env.endpoint + "/" + repo_id +
                                      " needs a Hugging Face token with write access: set HF_TOKEN (create one at " + env.endpoint +
                                      "/settings/tokens)");
        auto r = hub_.send(hub_.api_request("GET", "/api/whoami-v2"));
        if (r.status == 401)
            fail(ErrorKind::auth, "the Hugging Face token (" + env.token_origin + ") was rejected: create a write token at " + env.endpoint +
                                      "/settings/tokens");
        if (r.status / 100 != 2) throw_hub_error(r, env, {repo_id, "", ""});
        const auto j = nlohmann::json::parse(r.body, nullptr, false);
        if (!j.is_object()) fail(ErrorKind::remote, "the Hugging Face Hub's whoami answer is not JSON");
        const std::string user = j.value("name", std::string());
        const auto at = j.value("auth", nlohmann::json::object()).value("accessToken", nlohmann::json::object());
        const std::string role = at.value("role", std::string());
        if (ns != user) {
            std::string org_role;
            for (const auto& o : j.value("orgs", nlohmann::json::array()))
                if (o.is_object() && o.value("name", std::string()) == ns) org_role = o.value("roleInOrg", std::string("member"));
            if (org_role.empty())
                fail(ErrorKind::auth, "the Hugging Face token (" + env.token_origin + ") belongs to '" + user +
                                          "', who is not a member of the organization '" + ns + "': cannot publish to " + repo_id);
            if (org_role == "read")
                fail(ErrorKind::auth, "'" + user + "' has the read role in the organization '" + ns + "': cannot publish to " + repo_id +
                                          " (ask an admin of " + ns + " for the write role)");
        }
        if (role == "read")
            fail(ErrorKind::auth, "the Hugging Face token (" + env.token_origin + ") is read-only: create a token with write access at " +
                                      env.endpoint + "/settings/tokens");
        if (role == "fineGrained") {
            bool can = false;
            const auto fg = at.value("fineGrained", nlohmann::json::object());
            for (const auto& s : fg.value("scoped", nlohmann::json::array())) {
                if (!s.is_object() || s.value("entity", nlohmann::json::object()).value("name", std::string()) != ns) continue;
                // "repo.write" in the Hub's answers; hub-docs' list names it "repo.content.write"
                for (const auto& p : s.value("permissions", nlohmann::json::array())) can |= p == "repo.write" || p == "repo.content.write";
            }
            if (!can)
                fail(ErrorKind::auth, "the fine-grained Hugging Face token (" + env.token_origin + ") has no \"Write access to contents\" (repo.write) on '" +
                                          ns + "': edit it at " + env.endpoint + "/settings/tokens");
        }
    }

    PublishResult publish(PublishRequest req) {
        try {
            return run(req);
        } catch (const Error& e) {
            throw Error(e.kind(), redact(e.what(), {hub_.env().token}));
        }
    }

private:
    PublishResult run(PublishRequest& req) {
        const std::string repo = req.target.repo_id();
        const std::string branch = req.target.revision;
        PublishResult out;
        check_write_access(repo);
        for (auto& f : req.files) check_path(f.path);
        {
            std::set<std::string> seen;
            for (const auto& f : req.files)
                if (!seen.insert(f.path).second) fail(ErrorKind::usage, "two files would be published as " + f.path);
        }
        for (auto& f : req.files) {
            if (f.sha256.empty()) f.hash();
            if (f.size > kHubMaxFileSize)
                fail(ErrorKind::input, f.path + " is " + std::to_string(f.size) + " bytes, over the Hub's per-file limit: split it first");
        }

        // The repo and the branch, created when missing.
        std::string head = branch_head(repo, branch);
        if (head == kNoRepo) {
            out.created_repo = create_repo(repo, req.private_repo);
            head = branch_head(repo, branch);
            if (head == kNoRepo)
                fail(ErrorKind::auth, "hf://" + repo + " exists but the token (" + hub_.env().token_origin +
                                          ") cannot see it: a private repo of another account?");
        }
        if (head == kNoBranch) {
            create_branch(repo, branch);
            out.created_branch = true;
            head = branch_head(repo, branch);
        }
        if (head == kNoRepo || head == kNoBranch) fail(ErrorKind::remote, "hf://" + repo + "@" + branch + " is still missing after creating it");

        // What the branch already holds, and how the Hub wants each file.
        std::map<std::string, std::string> mode;  // path -> lfs | regular
        std::vector<HubFile*> todo;
        for (std::size_t i = 0; i < req.files.size(); i += kPreuploadBatch) {
            nlohmann::json files = nlohmann::json::array();
            for (std::size_t k = i; k < std::min(req.files.size(), i + kPreuploadBatch); ++k) {
                const HubFile& f = req.files[k];
                files.push_back({{"path", f.path}, {"size", f.size}, {"sample", base64_encode(f.read(0, kPreuploadSample))}});
            }
            auto q = hub_.api_request("POST", "/api/models/" + repo + "/preupload/" + url_quote(branch));
            q.headers.set("Content-Type", "application/json");
            q.body = nlohmann::json{{"files", files}}.dump();
            q.idempotent = true;  // it changes nothing on the Hub
            auto r = hub_.send(q);
            if (r.status / 100 != 2) throw_hub_error(r, hub_.env(), {repo, branch, ""});
            const auto j = nlohmann::json::parse(r.body, nullptr, false);
            if (!j.is_object() || !j.contains("files") || !j["files"].is_array()) fail(ErrorKind::remote, "the Hub's preupload answer is malformed");
            for (const auto& e : j["files"]) {
                const std::string p = e.value("path", std::string());
                HubFile* f = find(req, p);
                if (!f) fail(ErrorKind::remote, "the Hub's preupload answer names a file that was not asked about");
                const std::string m = e.value("uploadMode", std::string());
                if (m != "lfs" && m != "regular") fail(ErrorKind::remote, "the Hub's preupload answer has no upload mode for " + p);
                mode[p] = m;
                const std::string remote = e.contains("oid") && e["oid"].is_string() ? e["oid"].get<std::string>() : "";
                if (!remote.empty() && remote == (m == "lfs" ? f->sha256 : f->git_blob)) out.unchanged.push_back(p);
                else if (!e.value("shouldIgnore", false)) todo.push_back(f);
            }
        }
        for (const auto& f : req.files)
            if (!mode.count(f.path)) fail(ErrorKind::remote, "the Hub's preupload answer leaves out " + f.path);
        if (todo.empty()) {
            say("nothing to publish: hf://" + repo + "@" + branch + " already holds these " + std::to_string(req.files.size()) + " files");
            out.commit = head;
            out.commit_url = hub_.env().endpoint + "/" + repo + "/commit/" + head;
            return out;
        }

        // LFS objects up, in parallel.
        std::vector<HubFile*> lfs;
        for (HubFile* f : todo)
            if (mode[f->path] == "lfs") lfs.push_back(f);
        std::vector<UploadTask> tasks;
        std::vector<std::shared_ptr<Multipart>> multiparts;
        std::map<std::string, nlohmann::json> verify;  // path -> verify action
        for (std::size_t i = 0; i < lfs.size(); i += kLfsBatch) {
            std::vector<HubFile*> batch(lfs.begin() + i, lfs.begin() + std::min(lfs.size(), i + kLfsBatch));
            nlohmann::json objects = nlohmann::json::array();
            for (HubFile* f : batch) objects.push_back({{"oid", f->sha256}, {"size", f->size}});
            net::Request q = hub_.api_request("POST", "/" + repo + ".git/info/lfs/objects/batch");
            q.timeout = std::chrono::milliseconds(0);
            q.headers.set("Accept", "application/vnd.git-lfs+json");
            q.headers.set("Content-Type", "application/vnd.git-lfs+json");
            q.body = nlohmann::json{{"operation", "upload"}, {"transfers", {"basic", "multipart"}}, {"hash_algo", "sha256"},
                                    {"ref", {{"name", branch}}}, {"objects", objects}}
                         .dump();
            q.idempotent = true;  // asking for upload URLs stores nothing
            auto r = hub_.send(q);
            if (r.status / 100 != 2) throw_hub_error(r, hub_.env(), {repo, branch, ""});
            const auto j = nlohmann::json::parse(r.body, nullptr, false);
            if (!j.is_object() || !j.contains("objects") || !j["objects"].is_array()) fail(ErrorKind::remote, "the Hub's LFS batch answer is malformed");
            for (const auto& o : j["objects"]) {
                HubFile* f = nullptr;
                for (HubFile* c : batch)
                    if (c->sha256 == o.value("oid", std::string())) f = c;
                if (!f) fail(ErrorKind::remote, "the Hub's LFS batch answer names an object that was not asked for");
                if (o.contains("error"))
                    fail(ErrorKind::remote, "the Hub refused " + f->path + ": " + o["error"].value("message", std::string("LFS error")) + " (code " +
                                                std::to_string(o["error"].value("code", 0)) + ")");
                const auto actions = o.value("actions", nlohmann::json::object());
                if (!actions.contains("upload")) {
                    out.lfs_stored.push_back(f->path);
                    continue;
                }
                const auto up = actions["upload"];
                const auto header = up.value("header", nlohmann::json::object());
                if (actions.contains("verify")) verify[f->path] = actions["verify"];
                if (header.contains("chunk_size")) {
                    auto m = std::make_shared<Multipart>();
                    m->file = f;
                    m->complete_url = up.value("href", std::string());
                    std::uint64_t chunk = 0;
                    try {
                        chunk = std::stoull(header["chunk_size"].get<std::string>());
                    } catch (...) {
                    }
                    std::vector<std::pair<int, std::string>> urls;
                    for (auto& [k, v] : header.items())
                        if (!k.empty() && k.find_first_not_of("0123456789") == std::string::npos && v.is_string())
                            urls.push_back({std::stoi(k), v.get<std::string>()});
                    std::sort(urls.begin(), urls.end());
                    if (chunk == 0 || urls.size() != (f->size + chunk - 1) / chunk)
                        fail(ErrorKind::remote, "the Hub's multipart answer for " + f->path + " has the wrong number of parts");
                    m->etags.resize(urls.size());
                    for (std::size_t p = 0; p < urls.size(); ++p) {
                        if (urls[p].first != static_cast<int>(p + 1)) fail(ErrorKind::remote, "the Hub's multipart answer skips a part number");
                        const std::uint64_t off = p * chunk;
                        tasks.push_back({f, urls[p].second, off, std::min<std::uint64_t>(chunk, f->size - off), static_cast<int>(p + 1), m});
                    }
                    multiparts.push_back(m);
                } else {
                    tasks.push_back({f, up.value("href", std::string()), 0, f->size, 0, nullptr, header});
                }
                out.lfs_sent.push_back(f->path);
            }
        }
        if (!tasks.empty()) {
            std::uint64_t total = 0;
            for (const auto& t : tasks) total += t.len;
            say("uploading " + std::to_string(out.lfs_sent.size()) + " LFS file(s), " + std::to_string(total >> 20) + " MiB in " +
                std::to_string(tasks.size()) + " request(s), " + std::to_string(std::max(1, req.connections)) + " at a time");
            run_parallel(tasks, std::max(1, req.connections));
            for (const auto& t : tasks) out.bytes_sent += t.len;
        }
        for (const auto& m : multiparts) complete(*m);
        for (const auto& [path, v] : verify) verify_object(*find(req, path), v);

        // The commit: one for everything.
        std::string body = nlohmann::json{{"key", "header"},
                                          {"value", {{"summary", req.message}, {"description", req.description}, {"parentCommit", head}}}}
                               .dump();
        for (HubFile* f : todo) {
            body += "\n";
            if (mode[f->path] == "lfs")
                body += nlohmann::json{{"key", "lfsFile"}, {"value", {{"path", f->path}, {"algo", "sha256"}, {"oid", f->sha256}, {"size", f->size}}}}.dump();
            else
                body += nlohmann::json{{"key", "file"},
                                       {"value", {{"path", f->path}, {"content", base64_encode(f->read(0, f->size))}, {"encoding", "base64"}}}}
                            .dump();
            out.committed.push_back(f->path);
        }
        auto q = hub_.api_request("POST", "/api/models/" + repo + "/commit/" + url_quote(branch));
        q.timeout = std::chrono::milliseconds(0);
        q.headers.set("Content-Type", "application/x-ndjson");
        q.body = std::move(body);
        auto r = hub_.send(q);
        if (r.status == 412)
            fail(ErrorKind::remote, "hf://" + repo + "@" + branch + " moved while publishing (another commit landed): run the publish again");
        if (r.status / 100 != 2) throw_hub_error(r, hub_.env(), {repo, branch, ""});
        const auto j = nlohmann::json::parse(r.body, nullptr, false);
        if (!j.is_object() || !j.contains("commitOid")) fail(ErrorKind::remote, "the Hub's commit answer has no commitOid");
        out.commit = j["commitOid"].get<std::string>();
        out.commit_url = j.value("commitUrl", hub_.env().endpoint + "/" + repo + "/commit/" + out.commit);
        return out;
    }

    static constexpr const char* kNoRepo = "<no repo>";
    static constexpr const char* kNoBranch = "<no branch>";

    struct Multipart {
        HubFile* file = nullptr;
        std::string complete_url;
        std::vector<std::string> etags;
        std::mutex mu;
    };
    struct UploadTask {
        HubFile* file;
        std::string url;
        std::uint64_t offset, len;
        int part;  // 0 = a whole-file PUT
        std::shared_ptr<Multipart> multipart;
        nlohmann::json header = nlohmann::json::object();  // extra headers of a basic upload action
    };

    static void check_path(const std::string& p) {
        if (p.empty() || p.front() == '/' || p.back() == '/' || p.find("..") != std::string::npos || p.find('\\') != std::string::npos ||
            p.rfind(".git/", 0) == 0 || p.find("//") != std::string::npos)
            fail(ErrorKind::usage, "not a valid path in a Hugging Face repo: " + p);
    }

    static HubFile* find(PublishRequest& req, const std::string& path) {
        for (auto& f : req.files)
            if (f.path == path) return &f;
        return nullptr;
    }

    void say(const std::string& line) {
        if (log_) log_(redact(line, {hub_.env().token}));
    }

    // The branch's head commit, or kNoRepo / kNoBranch.
    std::string branch_head(const std::string& repo, const std::string& branch) {
        auto r = hub_.send(hub_.api_request("GET", "/api/models/" + repo + "/revision/" + url_quote(branch)));
        if (r.status / 100 == 2) {
            const auto j = nlohmann::json::parse(r.body, nullptr, false);
            if (!j.is_object() || !j.contains("sha") || !j["sha"].is_string()) fail(ErrorKind::remote, "the Hub's answer for " + repo + " has no commit");
            return j["sha"].get<std::string>();
        }
        const std::string code = r.headers.get("X-Error-Code").value_or("");
        if (code == "RepoNotFound" || (r.status == 404 && code.empty())) return kNoRepo;
        if (code == "RevisionNotFound") return kNoBranch;
        throw_hub_error(r, hub_.env(), {repo, branch, ""});
    }

    // False when it appeared meanwhile (409).
    bool create_repo(const std::string& repo, bool is_private) {
        const auto slash = repo.find('/');
        auto q = hub_.api_request("POST", "/api/repos/create");
        q.headers.set("Content-Type", "application/json");
        q.body = nlohmann::json{{"name", repo.substr(slash + 1)}, {"organization", repo.substr(0, slash)}, {"type", "model"}, {"private", is_private}}.dump();
        auto r = hub_.send(q);
        if (r.status == 409) return false;
        if (r.status / 100 != 2) throw_hub_error(r, hub_.env(), {repo, "", ""});
        say("created " + hub_.env().endpoint + "/" + repo + (is_private ? " (private)" : ""));
        return true;
    }

    void create_branch(const std::string& repo, const std::string& branch) {
        auto q = hub_.api_request("POST", "/api/models/" + repo + "/branch/" + url_quote(branch));
        q.headers.set("Content-Type", "application/json");
        q.body = "{}";
        auto r = hub_.send(q);
        if (r.status == 409) return;
        if (r.status / 100 != 2) throw_hub_error(r, hub_.env(), {repo, branch, ""});
        say("created branch " + branch + " of " + repo);
    }

    // A PUT of [offset, offset+len) of the file, rewindable (the HttpClient retries it whole).
    net::Request put_request(const UploadTask& t) {
        net::Request q;
        q.method = "PUT";
        q.url = net::Url::parse(t.url);
        q.timeout = std::chrono::milliseconds(0);
        q.headers.set("User-Agent", kHfUserAgent);
        // A presigned URL on the Hub's own host still wants the token (lfs.py sends hf headers
        // only to the Hub); on another host it must not get it.
        if (hub_.same_host(t.url) && !hub_.env().token.empty()) q.headers.set("Authorization", "Bearer " + hub_.env().token);
        for (auto& [k, v] : t.header.items())
            if (v.is_string() && k != "chunk_size") q.headers.set(k, v.get<std::string>());
        q.headers.set("Content-Type", "application/octet-stream");
        auto pos = std::make_shared<std::uint64_t>(0);
        const HubFile* f = t.file;
        const std::uint64_t off = t.offset, len = t.len;
        auto fd = std::make_shared<FileHandle>(f->local);
        net::BodySource src;
        src.size = len;
        src.read = [f, fd, pos, off, len](char* buf, std::size_t cap) -> std::size_t {
            const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(cap, len - *pos));
            if (n == 0) return 0;
            if (f->local.empty()) {
                std::memcpy(buf, f->content.data() + off + *pos, n);
            } else {
                std::size_t got = 0;
                while (got < n) {
                    const ssize_t k = ::pread(fd->fd, buf + got, n - got, static_cast<off_t>(off + *pos + got));
                    if (k < 0 && errno == EINTR) continue;
                    if (k <= 0) fail_io("cannot read " + f->local.string() + " while uploading it");
                    got += static_cast<std::size_t>(k);
                }
            }
            *pos += n;
            return n;
        };
        src.rewind = [pos] {
            *pos = 0;
            return true;
        };
        q.source = std::move(src);
        q.idempotent = true;  // a PUT of the same bytes to the same URL
        return q;
    }

    struct FileHandle {
        int fd = -1;
        explicit FileHandle(const fs::path& p) {
            if (p.empty()) return;
            fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0) fail_io("cannot open " + p.string() + ": " + std::strerror(errno));
        }
        ~FileHandle() {
            if (fd >= 0) ::close(fd);
        }
        FileHandle(const FileHandle&) = delete;
        FileHandle& operator=(const FileHandle&) = delete;
    };

    void upload(UploadTask& t) {
        const std::string what = t.file->path + (t.part ? " (part " + std::to_string(t.part) + ")" : "");
        auto r = hub_.send(put_request(t));
        if (r.status / 100 != 2)
            fail(ErrorKind::remote, "the Hub's upload server answered HTTP " + std::to_string(r.status) + " for " + what);
        if (t.multipart) {
            auto etag = r.headers.get("ETag");
            if (!etag || etag->empty()) fail(ErrorKind::remote, "the Hub's upload server gave no ETag for " + what);
            std::lock_guard<std::mutex> g(t.multipart->mu);
            t.multipart->etags[t.part - 1] = *etag;
        }
    }

    // `tasks` on `n` threads; the first failure stops the others from starting new work and is
    // rethrown.
    void run_parallel(std::vector<UploadTask>& tasks, int n) {
        std::atomic<std::size_t> next{0};
        std::atomic<bool> failed{false};
        std::exception_ptr first;
        std::mutex mu;
        auto worker = [&] {
            for (;;) {
                const std::size_t i = next++;
                if (i >= tasks.size() || failed) return;
                try {
                    upload(tasks[i]);
                } catch (...) {
                    std::lock_guard<std::mutex> g(mu);
                    if (!first) first = std::current_exception();
                    failed = true;
                    return;
                }
            }
        };
        std::vector<std::thread> pool;
        const std::size_t count = std::min<std::size_t>(static_cast<std::size_t>(n), tasks.size());
        for (std::size_t i = 1; i < count; ++i) pool.emplace_back(worker);
        worker();
        for (auto& t : pool) t.join();
        if (first) std::rethrow_exception(first);
    }

    void complete(Multipart& m) {
        nlohmann::json parts = nlohmann::json::array();
        for (std::size_t i = 0; i < m.etags.size(); ++i) parts.push_back({{"partNumber", i + 1}, {"etag", m.etags[i]}});
        net::Request q;
        q.method = "POST";
        q.url = net::Url::parse(m.complete_url);
        q.headers.set("User-Agent", kHfUserAgent);
        q.headers.set("Accept", "application/vnd.git-lfs+json");
        q.headers.set("Content-Type", "application/vnd.git-lfs+json");
        q.body = nlohmann::json{{"oid", m.file->sha256}, {"parts", parts}}.dump();
        q.idempotent = true;  // completing the same parts twice assembles the same object
        auto r = hub_.send(q);
        if (r.status / 100 != 2)
            fail(ErrorKind::remote, "the Hub refused to assemble " + m.file->path + " from its parts (HTTP " + std::to_string(r.status) + ")");
    }

    void verify_object(const HubFile& f, const nlohmann::json& action) {
        const std::string href = action.value("href", std::string());
        if (href.empty()) return;
        net::Request q;
        q.method = "POST";
        q.url = net::Url::parse(href);
        q.headers.set("User-Agent", kHfUserAgent);
        if (hub_.same_host(href) && !hub_.env().token.empty()) q.headers.set("Authorization", "Bearer " + hub_.env().token);
        const nlohmann::json header = action.value("header", nlohmann::json::object());
        for (auto& [k, v] : header.items())
            if (v.is_string()) q.headers.set(k, v.get<std::string>());
        q.headers.set("Accept", "application/vnd.git-lfs+json");
        q.headers.set("Content-Type", "application/vnd.git-lfs+json");
        q.body = nlohmann::json{{"oid", f.sha256}, {"size", f.size}}.dump();
        q.idempotent = true;
        auto r = hub_.send(q);
        if (r.status / 100 != 2)
            fail(ErrorKind::remote, "the Hub could not verify the upload of " + f.path + " (HTTP " + std::to_string(r.status) + ")");
    }

    HfClient& hub_;
    PublishLog log_;
};

inline std::string HubFile::read(std::uint64_t offset, std::size_t len) const {
    if (local.empty()) return offset >= content.size() ? std::string() : content.substr(offset, len);
    std::string out(len, '\0');
    const int fd = ::open(local.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail_io("cannot open " + local.string() + ": " + std::strerror(errno));
    std::size_t got = 0;
    while (got < len) {
        const ssize_t k = ::pread(fd, out.data() + got, len - got, static_cast<off_t>(offset + got));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += static_cast<std::size_t>(k);
    }
    ::close(fd);
    out.resize(got);
    return out;
}

}  // namespace cmf::hub
