// Emulated Hugging Face Hub: the parts of the Hub's HTTP API that cmf (and @huggingface/hub,
// huggingface_hub) use to download a model, with the Hub's access rules and error headers.
//
//   GET  /api/models/R  and  /api/models/R/revision/REV   {id, sha, private, gated, disabled,
//                                                          siblings[{rfilename, size, blobId, lfs?}]}
//   GET  /api/models/R/tree/REV[/DIR]?recursive=true       [{type, path, size, oid, lfs?{oid,size,pointerSize}}]
//                                                          paged: Link: <...&cursor=N>; rel="next"
//   POST /api/models/R/paths-info/REV                      tree entries for the given paths (JSON or form body;
//                                                          expand=true adds lastCommit{id,title,date})
//   GET  /api/models/R/auth-check                           200 {} or the access error
//   GET  /api/whoami-v2                                     {name, type} for a known token
//   HEAD/GET /R/resolve/REV/PATH   small file: 200 + body (Range -> 206), ETag "<git blob id>", X-Repo-Commit
//                                  LFS file:   302 Location: <scheme>://<other host>:<port>/cdn/<sha256>?X-Amz-Expires=3600,
//                                              X-Repo-Commit, X-Linked-Etag "<sha256>", X-Linked-Size, ETag
//   GET/HEAD /cdn/<sha256>         the "CDN": Range support; 400 when an Authorization header is
//                                  present (presigned URLs reject a second auth mechanism)
// The CDN host is the other loopback name: 127.0.0.1 <-> localhost, same port and scheme, so a
// client that forwards the token across hosts is caught.
//
// Access (the real Hub's behaviour, huggingface_hub errors.py / utils/_http.py):
//   unknown Bearer token                 401, X-Error-Message: Invalid credentials in Authorization header
//   missing repo, or private w/o access  401, X-Error-Code: RepoNotFound
//   gated, no token                      401, X-Error-Code: GatedRepo
//   gated, token not granted             403, X-Error-Code: GatedRepo ("... Visit <endpoint>/R to ask for access.")
//   unknown revision / file              404, RevisionNotFound / EntryNotFound
// Gated repos' metadata (info, tree) is public, as on the Hub; files and auth-check are not.
//
// Config (`"hf"` key of the emulator --config):
//   {"tokens": {"hf_xxx": "alice"}, "tree_page_size": 1000,
//    "repos": [{"id": "org/name", "gated": false|"auto"|"manual", "private": false,
//               "granted": ["alice"], "revision": "main", "commit": "<40 hex, optional>",
//               "files": {"config.json": {"text": "..."},
//                         "model.safetensors": {"size": 123456, "seed": 7, "lfs": true},
//                         "tokenizer.model": {"local_path": "/abs/file"}}}]}
// A file is LFS when "lfs" says so, else when its name ends in .safetensors/.bin/.gguf/.model/.pt.
// Repos "gen/NAME-<N>k" (N KiB) are generated on first use: public, config.json +
// model.safetensors of N KiB.
#pragma once

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "context.h"
#include "handler.h"
#include "hf_write.h"

namespace cmf::emu {

namespace hfemu {

inline std::string hex_digest(const EVP_MD* md, const std::string& prefix, const std::string& data) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_MD_CTX* c = EVP_MD_CTX_new();
    EVP_DigestInit_ex(c, md, nullptr);
    EVP_DigestUpdate(c, prefix.data(), prefix.size());
    EVP_DigestUpdate(c, data.data(), data.size());
    EVP_DigestFinal_ex(c, out, &n);
    EVP_MD_CTX_free(c);
    static const char* k = "0123456789abcdef";
    std::string s;
    for (unsigned i = 0; i < n; ++i) {
        s += k[out[i] >> 4];
        s += k[out[i] & 15];
    }
    return s;
}
inline std::string sha256(const std::string& d) { return hex_digest(EVP_sha256(), "", d); }
inline std::string git_blob(const std::string& d) {
    std::string p = "blob " + std::to_string(d.size());
    p.push_back('\0');
    return hex_digest(EVP_sha1(), p, d);
}

// Deterministic bytes (xorshift) so generated files are reproducible across runs.
inline std::string generate(std::uint64_t size, std::uint64_t seed) {
    std::string s(size, '\0');
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x1234567;
    for (std::uint64_t i = 0; i < size; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s[i] = static_cast<char>(x & 0xff);
    }
    return s;
}

inline std::string url_decode(const std::string& s) {
    std::string o;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
            o += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
            i += 2;
        } else {
            o += s[i];
        }
    }
    return o;
}

inline bool default_lfs(const std::string& path) {
    for (const char* ext : {".safetensors", ".bin", ".gguf", ".model", ".pt"}) {
        const std::string e(ext);
        if (path.size() >= e.size() && path.compare(path.size() - e.size(), e.size(), e) == 0) return true;
    }
    return false;
}

}  // namespace hfemu

struct HfEmuFile {
    std::string content;
    bool lfs = false;
    std::string sha256;
    std::string blob_id;
};

struct HfEmuRepo {
    std::string id;
    std::string gated;  // "", "auto", "manual"
    bool is_private = false;
    std::set<std::string> granted;            // user names with access (gated / private)
    std::map<std::string, std::string> refs;  // revision -> commit
    std::map<std::string, std::map<std::string, HfEmuFile>> commits;  // commit -> path -> file
};

struct HfEmuState {
    std::mutex mu;
    std::map<std::string, HfEmuRepo> repos;
    std::map<std::string, std::string> tokens;  // token -> user
    HfEmuWrite write;                           // repo creation, uploads, commits (hf_write.h)
    std::size_t tree_page_size = 1000;
    // Test hooks: the next N CDN bodies of a sha256 get one byte flipped.
    std::map<std::string, int> corrupt_cdn;
    // Request log (method, host, target, had Authorization) for assertions.
    struct Seen {
        std::string method, host, target;
        bool auth = false;
    };
    std::vector<Seen> seen;
    static constexpr std::size_t kMaxSeen = 100000;

    // Adds a commit with these files to repo `id` (created if new) and points `revision` at it.
    std::string add_commit(const std::string& id, const std::map<std::string, HfEmuFile>& files, const std::string& revision = "main",
                           std::string commit = "") {
        std::lock_guard<std::mutex> g(mu);
        return add_commit_locked(id, files, revision, std::move(commit));
    }
    // The same with `mu` held; `title` is what the commit log shows.
    std::string add_commit_locked(const std::string& id, const std::map<std::string, HfEmuFile>& files, const std::string& revision = "main",
                                  std::string commit = "", const std::string& title = "Upload", const std::string& message = "",
                                  const std::string& author = "") {
        auto& r = repos[id];
        const std::string parent = r.refs.count(revision) ? r.refs[revision] : "";
        r.id = id;
        std::map<std::string, HfEmuFile> done;
        std::string ident = id;
        for (auto [path, f] : files) {
            f.sha256 = hfemu::sha256(f.content);
            f.blob_id = hfemu::git_blob(f.lfs ? pointer_text(f) : f.content);
            ident += "\n" + path + " " + f.sha256;
            done[path] = std::move(f);
        }
        if (commit.empty()) commit = hfemu::git_blob(ident + std::to_string(r.commits.size()));
        r.commits[commit] = std::move(done);
        r.refs[revision] = commit;
        write.commit_meta[commit] = {title, message, parent, hfemu::now_iso(), author};
        return commit;
    }

    static HfEmuFile file(std::string content, std::optional<bool> lfs = std::nullopt, const std::string& path = "") {
        HfEmuFile f;
        f.content = std::move(content);
        f.lfs = lfs ? *lfs : hfemu::default_lfs(path);
        return f;
    }

    // The git LFS pointer the repo stores in place of an LFS file (its blob id is the tree `oid`).
    static std::string pointer_text(const HfEmuFile& f) {
        return "version https://git-lfs.github.com/spec/v1\noid sha256:" + f.sha256 + "\nsize " + std::to_string(f.content.size()) + "\n";
    }

    void load_config(const nlohmann::json& hf) {
        if (!hf.is_object()) return;
        if (auto t = hf.find("tokens"); t != hf.end() && t->is_object())
            for (auto& [tok, user] : t->items()) tokens[tok] = user.is_string() ? user.get<std::string>() : user.value("user", std::string());
        write.load(hf);
        if (auto p = hf.find("tree_page_size"); p != hf.end() && p->is_number_unsigned()) tree_page_size = std::max<std::size_t>(1, p->get<std::size_t>());
        if (auto rs = hf.find("repos"); rs != hf.end() && rs->is_array())
            for (const auto& r : *rs) {
                const std::string id = r.at("id").get<std::string>();
                std::map<std::string, HfEmuFile> files;
                std::uint64_t n = 0;
                const nlohmann::json fspecs = r.value("files", nlohmann::json::object());  // keep alive: items() refers to it
                for (auto& [path, spec] : fspecs.items()) {
                    std::optional<bool> lfs;
                    if (spec.contains("lfs")) lfs = spec["lfs"].get<bool>();
                    std::string content;
                    if (spec.contains("text")) content = spec["text"].get<std::string>();
                    else if (spec.contains("local_path")) {  // a real (binary) file, e.g. a synthetic checkpoint
                        std::ifstream in(spec["local_path"].get<std::string>(), std::ios::binary);
                        if (!in) throw std::runtime_error("hf: cannot read " + spec["local_path"].get<std::string>());
                        content.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
                    } else content = hfemu::generate(spec.value("size", 0ull), spec.value("seed", ++n));
                    files[path] = file(std::move(content), lfs, path);
                }
                add_commit(id, files, r.value("revision", std::string("main")), r.value("commit", std::string()));
                std::lock_guard<std::mutex> g(mu);
                auto& repo = repos[id];
                if (auto gt = r.find("gated"); gt != r.end()) repo.gated = gt->is_string() ? gt->get<std::string>() : (gt->get<bool>() ? "auto" : "");
                repo.is_private = r.value("private", false);
                const nlohmann::json granted = r.value("granted", nlohmann::json::array());
                for (const auto& u : granted) repo.granted.insert(u.get<std::string>());
            }
    }
};

namespace hfemu {

inline Response error(int status, const std::string& code, const std::string& message) {
    Response r;
    r.status = status;
    if (!code.empty()) r.headers.set("X-Error-Code", code);
    r.headers.set("X-Error-Message", message);
    r.headers.set("Content-Type", "application/json");
    r.body = nlohmann::json{{"error", message}}.dump();
    return r;
}

inline Response json(const nlohmann::json& j) {
    Response r;
    r.headers.set("Content-Type", "application/json");
    r.body = j.dump();
    return r;
}

inline std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i <= s.size()) {
        auto j = s.find('/', i);
        if (j == std::string::npos) j = s.size();
        out.push_back(s.substr(i, j - i));
        i = j + 1;
    }
    return out;
}

inline std::string join(const std::vector<std::string>& v, std::size_t from, std::size_t to = std::string::npos) {
    std::string s;
    for (std::size_t i = from; i < v.size() && i < to; ++i) s += (s.empty() ? "" : "/") + v[i];
    return s;
}

inline std::string query_param(const std::string& q, const std::string& key) {
    std::size_t i = 0;
    while (i < q.size()) {
        auto amp = q.find('&', i);
        if (amp == std::string::npos) amp = q.size();
        const std::string kv = q.substr(i, amp - i);
        const auto eq = kv.find('=');
        if (kv.substr(0, eq) == key) return eq == std::string::npos ? "" : url_decode(kv.substr(eq + 1));
        i = amp + 1;
    }
    return "";
}

// scheme://Host-header of the request, or with the other loopback name for the CDN.
inline std::string base_url(const Request& req, bool other_host) {
    std::string authority = req.headers.get("Host").value_or(req.host);
    std::string port;
    if (auto c = authority.rfind(':'); c != std::string::npos && authority.find(']') == std::string::npos) {
        port = authority.substr(c);
        authority = authority.substr(0, c);
    }
    if (other_host) authority = (authority == "localhost") ? "127.0.0.1" : "localhost";
    return std::string(req.tls ? "https" : "http") + "://" + authority + port;
}

inline std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_range(const std::string& h, std::uint64_t size) {
    if (h.rfind("bytes=", 0) != 0 || size == 0) return std::nullopt;
    const std::string spec = h.substr(6);
    const auto dash = spec.find('-');
    if (dash == std::string::npos || spec.find(',') != std::string::npos) return std::nullopt;
    try {
        if (dash == 0) {
            const std::uint64_t n = std::stoull(spec.substr(1));
            if (n == 0) return std::nullopt;
            return std::pair{size - std::min(n, size), size - 1};
        }
        const std::uint64_t a = std::stoull(spec.substr(0, dash));
        std::uint64_t b = dash + 1 < spec.size() ? std::stoull(spec.substr(dash + 1)) : size - 1;
        if (a >= size || b < a) return std::pair{size, size};  // unsatisfiable
        return std::pair{a, std::min(b, size - 1)};
    } catch (...) {
        return std::nullopt;
    }
}

// A file body with Range support (bytes=a-b, a-, -n -> 206 + Content-Range; 416 when
// unsatisfiable), as the Hub does for resolve/ of small files and the CDN for LFS files
// (@huggingface/hub asks GET Range: bytes=0-0 to learn a file's size).
// The file's bytes (or the requested range of them), copied once: files are big (a checkpoint's
// shards) and every ranged request must not copy the whole file under the state lock.
// `flip_at`: a byte to invert (a corrupted CDN response), or npos.
inline Response serve_body(const Request& req, const std::string& content, Response r, std::size_t flip_at = std::string::npos) {
    r.headers.set("Accept-Ranges", "bytes");
    r.headers.set("Content-Type", "application/octet-stream");
    std::size_t first = 0, last = content.empty() ? 0 : content.size() - 1;
    bool whole = true;
    if (auto rh = req.headers.get("Range")) {
        if (auto rg = parse_range(*rh, content.size())) {
            if (rg->first >= content.size()) {
                Response e = error(416, "", "Requested Range Not Satisfiable");
                e.headers.set("Content-Range", "bytes */" + std::to_string(content.size()));
                return e;
            }
            r.status = 206;
            r.headers.set("Content-Range", "bytes " + std::to_string(rg->first) + "-" + std::to_string(rg->second) + "/" +
                                               std::to_string(content.size()));
            first = rg->first;
            last = rg->second;
            whole = false;
        }
    }
    const std::size_t n = content.empty() && whole ? 0 : last - first + 1;
    if (req.method == "HEAD") {
        r.headers.set("Content-Length", std::to_string(n));
        return r;
    }
    r.body = content.substr(first, n);
    if (flip_at != std::string::npos && flip_at >= first && flip_at - first < r.body.size())
        r.body[flip_at - first] = static_cast<char>(r.body[flip_at - first] ^ 0xff);
    return r;
}

}  // namespace hfemu

// The write API (hf_write.h's table). Returns nullopt for requests it does not own.
inline std::optional<Response> hf_write_route(HfEmuState& st, const Request& req, const std::string& path, const std::string& query) {
    using namespace hfemu;
    const bool s3 = path.rfind("/lfs-s3/", 0) == 0;
    const bool complete = path == "/api/complete_multipart";
    const bool create = path == "/api/repos/create";
    const bool lfs_api = path.find(".git/info/lfs/objects/") != std::string::npos && path.rfind("/api/", 0) != 0;
    const bool counters = path == "/_emu/hf/uploads";
    std::string op;
    std::vector<std::string> seg;
    if (path.rfind("/api/models/", 0) == 0) {
        seg = split(path.substr(1));
        if (seg.size() >= 6) op = seg[4];
        if (op != "preupload" && op != "commit" && op != "commits" && op != "branch") op.clear();
    }
    if (!s3 && !complete && !create && !lfs_api && !counters && op.empty()) return std::nullopt;

    std::unique_lock<std::mutex> lock(st.mu);
    HfEmuWrite& w = st.write;
    const auto auth = req.headers.get("Authorization");
    if (st.seen.size() < HfEmuState::kMaxSeen) st.seen.push_back({req.method, req.host, req.target, auth.has_value()});
    if (counters) return json(nlohmann::json(w.counters));

    // The "S3" side: presigned URLs on the other host, which refuse a second auth mechanism.
    if (s3) {
        if (auth) return error(400, "", "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter should be specified");
        if (req.method != "PUT") return error(405, "", "MethodNotAllowed");
        const auto parts = split(path.substr(8));  // obj/<oid> | mpu/<id>/<n>
        Response ok;
        ok.headers.set("ETag", "\"" + md5_hex(req.body) + "\"");
        if (parts.size() == 2 && parts[0] == "obj") {
            const std::string repo = query_param(query, "repo");
            if (!st.repos.count(repo) || !is_hex64(parts[1])) return error(403, "", "SignatureDoesNotMatch");
            if (sha256(req.body) != parts[1]) return error(400, "", "BadDigest: the content does not hash to " + parts[1]);
            w.lfs[repo][parts[1]] = req.body;
            ++w.counters["basic_puts"];
            ++w.counters["lfs_objects_stored"];
            return ok;
        }
        if (parts.size() == 3 && parts[0] == "mpu") {
            auto it = w.multiparts.find(parts[1]);
            if (it == w.multiparts.end()) return error(404, "", "NoSuchUpload");
            auto& m = it->second;
            int n = 0;
            try {
                n = std::stoi(parts[2]);
            } catch (...) {
                return error(400, "", "InvalidPart");
            }
            const std::uint64_t count = (m.size + m.chunk - 1) / m.chunk;
            if (n < 1 || static_cast<std::uint64_t>(n) > count) return error(400, "", "InvalidPart");
            m.parts[n] = req.body;
            ++w.counters["part_puts"];
            return ok;
        }
        return error(404, "", "NoSuchKey");
    }
    if (complete) {
        if (req.method != "POST") return error(405, "", "Method Not Allowed");
        auto it = w.multiparts.find(query_param(query, "uploadId"));
        if (it == w.multiparts.end()) return error(404, "", "NoSuchUpload");
        const auto body = nlohmann::json::parse(req.body, nullptr, false);
        if (!body.is_object() || !body.contains("parts") || !body["parts"].is_array()) return error(400, "", "Malformed completion body");
        auto& m = it->second;
        if (body.value("oid", std::string()) != m.oid) return error(400, "", "oid does not match the upload");
        const std::uint64_t count = (m.size + m.chunk - 1) / m.chunk;
        if (body["parts"].size() != count) return error(400, "", "InvalidPart: expected " + std::to_string(count) + " parts");
        std::string all;
        for (std::uint64_t i = 0; i < count; ++i) {
            const auto& p = body["parts"][i];
            const int n = p.value("partNumber", 0);
            if (n != static_cast<int>(i + 1)) return error(400, "", "InvalidPartOrder");
            auto pit = m.parts.find(n);
            if (pit == m.parts.end()) return error(400, "", "InvalidPart: part " + std::to_string(n) + " was not uploaded");
            if (p.value("etag", std::string()) != "\"" + md5_hex(pit->second) + "\"") return error(400, "", "InvalidPart: ETag of part " + std::to_string(n));
            const std::uint64_t want = i + 1 < count ? m.chunk : m.size - m.chunk * (count - 1);
            if (pit->second.size() != want) return error(400, "", "EntityTooSmall: part " + std::to_string(n));
            all += pit->second;
        }
        if (sha256(all) != m.oid) return error(400, "", "the parts do not hash to " + m.oid);
        w.lfs[m.repo][m.oid] = std::move(all);
        w.multiparts.erase(it);
        ++w.counters["completions"];
        ++w.counters["lfs_objects_stored"];
        return json(nlohmann::json::object());
    }

    // Everything below needs a known token.
    std::string token, user;
    if (auth && auth->rfind("Bearer ", 0) == 0) token = auth->substr(7);
    if (auto t = w.token_info.find(token); t != w.token_info.end()) user = t->second.user;
    if (auth && user.empty()) return error(401, "", "Invalid credentials in Authorization header");
    if (user.empty() && op != "commits") return error(401, "", "Invalid credentials in Authorization header");
    const std::string endpoint = base_url(req, false);

    if (create) {
        if (req.method != "POST") return error(405, "", "Method Not Allowed");
        const auto body = nlohmann::json::parse(req.body, nullptr, false);
        if (!body.is_object() || !body.contains("name") || !body["name"].is_string()) return error(400, "", "\"name\" is required");
        const std::string ns = body.contains("organization") && body["organization"].is_string() ? body["organization"].get<std::string>() : user;
        const std::string name = body["name"].get<std::string>();
        if (body.value("type", std::string("model")) != "model") return error(400, "", "only model repos are emulated");
        if (name.empty() || name.find('/') != std::string::npos || name.find("..") != std::string::npos)
            return error(400, "", "Invalid repo name");
        if (auto why = w.write_refusal(token, ns); !why.empty()) return error(403, "", why);
        const std::string id = ns + "/" + name;
        if (st.repos.count(id)) {
            Response r = error(409, "", "You already created this model repo");
            r.body = nlohmann::json{{"error", "You already created this model repo"}, {"url", endpoint + "/" + id}}.dump();
            return r;
        }
        HfEmuFile ga = HfEmuState::file(kInitialGitattributes, false);
        st.add_commit_locked(id, {{".gitattributes", ga}}, "main", "", "initial commit", "", user);
        auto& repo = st.repos[id];
        repo.is_private = body.value("private", false) || body.value("visibility", std::string()) == "private";
        repo.granted.insert(user);
        if (auto o = w.orgs.find(ns); o != w.orgs.end())
            for (const auto& [u, role] : o->second) repo.granted.insert(u);
        ++w.counters["repos_created"];
        return json({{"url", endpoint + "/" + id}, {"name", id}, {"id", id}});
    }

    // Repo-scoped: /api/models/NS/NAME/op/... or /NS/NAME.git/info/lfs/objects/...
    std::string repo_id;
    if (lfs_api) {
        repo_id = path.substr(1, path.find(".git/info/lfs/objects/") - 1);
    } else {
        repo_id = seg[2] + "/" + seg[3];
    }
    auto rit = st.repos.find(repo_id);
    const std::string ns = repo_id.substr(0, repo_id.find('/'));
    if (rit == st.repos.end() || (rit->second.is_private && !rit->second.granted.count(user)))
        return error(rit == st.repos.end() ? 404 : 401, "RepoNotFound", "Repository not found");
    HfEmuRepo& repo = rit->second;
    if (op == "commits") {
        if (req.method != "GET") return error(405, "", "Method Not Allowed");
        const std::string rev = url_decode(join(seg, 5));
        auto ref = repo.refs.find(rev);
        std::string c = ref != repo.refs.end() ? ref->second : (repo.commits.count(rev) ? rev : "");
        if (c.empty()) return error(404, "RevisionNotFound", "Invalid rev id: " + rev);
        nlohmann::json out = nlohmann::json::array();
        while (!c.empty()) {
            const auto& m = w.commit_meta[c];
            out.push_back({{"id", c}, {"title", m.title}, {"message", m.message},
                           {"authors", nlohmann::json::array({{{"user", m.author.empty() ? "system" : m.author}, {"avatar", ""}}})},
                           {"date", m.date}});
            c = m.parent;
        }
        return json(out);
    }
    if (auto why = w.write_refusal(token, ns); !why.empty()) return error(403, "", why);

    if (lfs_api) {
        const std::string what = path.substr(path.find(".git/info/lfs/objects/") + 22);
        const auto body = nlohmann::json::parse(req.body, nullptr, false);
        if (req.method != "POST" || !body.is_object()) return error(400, "", "Malformed LFS request");
        if (what == "verify") {
            const std::string oid = body.value("oid", std::string());
            auto obj = w.lfs[repo_id].find(oid);
            if (obj == w.lfs[repo_id].end() || obj->second.size() != body.value("size", std::uint64_t(0)))
                return error(404, "", "Object " + oid + " not found");
            return json(nlohmann::json::object());
        }
        if (what != "batch") return error(404, "", "Not Found");
        ++w.counters["batches"];
        if (body.value("operation", std::string()) != "upload") return error(422, "", "only upload is emulated");
        bool multipart_ok = false;
        for (const auto& t : body.value("transfers", nlohmann::json::array())) multipart_ok |= t == "multipart";
        nlohmann::json objs = nlohmann::json::array();
        bool any_multipart = false;
        for (const auto& o : body.value("objects", nlohmann::json::array())) {
            const std::string oid = o.value("oid", std::string());
            const std::uint64_t size = o.value("size", std::uint64_t(0));
            nlohmann::json r{{"oid", oid}, {"size", size}};
            if (!is_hex64(oid)) {
                r["error"] = {{"code", 422}, {"message", "Invalid oid"}};
            } else if (size > w.max_file_size) {
                r["error"] = {{"code", 422}, {"message", "Your file exceeds the maximum size of " + std::to_string(w.max_file_size) + " bytes"}};
            } else if (w.lfs[repo_id].count(oid)) {
                r["authenticated"] = true;  // already stored: no actions, nothing to send
            } else if (multipart_ok && size >= w.multipart_threshold) {
                const std::string id = "u" + std::to_string(w.next_upload++);
                w.multiparts[id] = {repo_id, oid, size, w.chunk_size, {}};
                nlohmann::json header{{"chunk_size", std::to_string(w.chunk_size)}};
                const std::uint64_t count = (size + w.chunk_size - 1) / w.chunk_size;
                char key[16];
                for (std::uint64_t i = 1; i <= count; ++i) {
                    std::snprintf(key, sizeof key, "%05llu", static_cast<unsigned long long>(i));
                    header[key] = base_url(req, true) + "/lfs-s3/mpu/" + id + "/" + std::to_string(i) + "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=emu";
                }
                r["authenticated"] = true;
                r["actions"] = {{"upload", {{"href", endpoint + "/api/complete_multipart?uploadId=" + id + "&signature=emu"}, {"header", header}, {"expires_in", 86400}}}};
                any_multipart = true;
            } else {
                r["authenticated"] = true;
                r["actions"] = {{"upload", {{"href", base_url(req, true) + "/lfs-s3/obj/" + oid + "?repo=" + repo_id + "&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=emu"}, {"expires_in", 86400}}},
                                {"verify", {{"href", endpoint + "/" + repo_id + ".git/info/lfs/objects/verify"}, {"header", {{"Authorization", "Bearer " + token}}}}}};
            }
            objs.push_back(r);
        }
        Response r = json({{"transfer", any_multipart ? "multipart" : "basic"}, {"objects", objs}});
        r.headers.set("Content-Type", "application/vnd.git-lfs+json");
        return r;
    }

    const std::string rev = url_decode(join(seg, 5));
    if (op == "branch") {
        if (req.method != "POST") return error(405, "", "Method Not Allowed");
        if (repo.refs.count(rev)) return error(409, "", "Reference already exists");
        const auto body = nlohmann::json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
        const std::string from = body.is_object() ? body.value("startingPoint", std::string("main")) : "main";
        auto ref = repo.refs.find(from);
        const std::string c = ref != repo.refs.end() ? ref->second : (repo.commits.count(from) ? from : "");
        if (c.empty()) return error(404, "RevisionNotFound", "Invalid rev id: " + from);
        repo.refs[rev] = c;
        return json(nlohmann::json::object());
    }
    auto ref = repo.refs.find(rev);
    const std::string head = ref != repo.refs.end() ? ref->second : "";
    if (head.empty()) return error(404, "RevisionNotFound", "Invalid rev id: " + rev);
    const auto& cur = repo.commits[head];
    if (op == "preupload") {
        ++w.counters["preuploads"];
        const auto body = nlohmann::json::parse(req.body, nullptr, false);
        if (req.method != "POST" || !body.is_object() || !body.contains("files") || !body["files"].is_array())
            return error(400, "", "Malformed preupload body");
        std::string attrs;
        if (auto g = cur.find(".gitattributes"); g != cur.end()) attrs = g->second.content;
        if (body.contains("gitAttributes") && body["gitAttributes"].is_string()) attrs = body["gitAttributes"].get<std::string>();
        nlohmann::json out = nlohmann::json::array();
        for (const auto& f : body["files"]) {
            const std::string p = f.value("path", std::string());
            bool ok = true;
            const std::string sample = base64_decode(f.value("sample", std::string()), ok);
            if (!ok) return error(400, "", "sample is not base64");
            const bool lfs = gitattributes_lfs(attrs, p) || f.value("size", std::uint64_t(0)) > kRegularFileMax ||
                             sample.find('\0') != std::string::npos;
            nlohmann::json e{{"path", p}, {"uploadMode", lfs ? "lfs" : "regular"}, {"shouldIgnore", false}};
            if (auto it = cur.find(p); it != cur.end()) e["oid"] = it->second.lfs ? it->second.sha256 : it->second.blob_id;
            else e["oid"] = nullptr;
            out.push_back(e);
        }
        return json({{"files", out}, {"commitOid", head}});
    }
    // op == "commit"
    if (req.method != "POST") return error(405, "", "Method Not Allowed");
    std::map<std::string, HfEmuFile> files = cur;
    std::string title = "Upload", message;
    std::size_t i = 0, line_no = 0, changes = 0;
    while (i < req.body.size()) {
        auto e = req.body.find('\n', i);
        if (e == std::string::npos) e = req.body.size();
        const std::string line = req.body.substr(i, e - i);
        i = e + 1;
        ++line_no;
        if (line.empty()) continue;
        const auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_object() || !j.contains("key") || !j.contains("value") || !j["value"].is_object())
            return error(400, "", "Malformed ndjson line " + std::to_string(line_no));
        const std::string key = j["key"].get<std::string>();
        const auto& v = j["value"];
        if (key == "header") {
            title = v.value("summary", title);
            message = v.value("description", std::string());
            if (v.contains("parentCommit") && v["parentCommit"].is_string() && v["parentCommit"].get<std::string>() != head)
                return error(412, "", "A commit has happened since. Please refresh and try again.");
            continue;
        }
        const std::string p = v.value("path", std::string());
        if (p.empty() || p.front() == '/' || p.find("..") != std::string::npos || p.rfind(".git/", 0) == 0)
            return error(400, "", "Invalid path: " + p);
        ++changes;
        if (key == "file") {
            bool ok = true;
            std::string content = v.value("encoding", std::string()) == "base64" ? base64_decode(v.value("content", std::string()), ok)
                                                                                  : v.value("content", std::string());
            if (!ok) return error(400, "", "content of " + p + " is not base64");
            files[p] = HfEmuState::file(std::move(content), false);
        } else if (key == "lfsFile") {
            const std::string oid = v.value("oid", std::string());
            auto obj = w.lfs[repo_id].find(oid);
            if (v.value("algo", std::string("sha256")) != "sha256" || obj == w.lfs[repo_id].end())
                return error(400, "", "Your push was rejected because an LFS pointer pointed to a file that does not exist. Offending file: - " + p);
            if (v.contains("size") && v["size"].get<std::uint64_t>() != obj->second.size())
                return error(400, "", "The size of " + p + " does not match its LFS object");
            files[p] = HfEmuState::file(obj->second, true);
        } else if (key == "deletedFile") {
            files.erase(p);
        } else {
            return error(400, "", "Unknown operation " + key);
        }
    }
    const std::string c = st.add_commit_locked(repo_id, files, rev, "", title, message, user);
    ++w.counters["commits"];
    return json({{"success", true}, {"commitOid", c}, {"commitUrl", endpoint + "/" + repo_id + "/commit/" + c}, {"hookOutput", ""}});
}

inline Handler make_hf_service(HfEmuState& st) {
    using namespace hfemu;
    return [&st](const Request& req) -> std::optional<Response> {
        std::string path = req.target, query;
        if (auto q = path.find('?'); q != std::string::npos) {
            query = path.substr(q + 1);
            path = path.substr(0, q);
        }
        if (auto w = hf_write_route(st, req, path, query)) return w;
        const bool is_api = path.rfind("/api/models/", 0) == 0 || path == "/api/whoami-v2";
        const bool is_cdn = path.rfind("/cdn/", 0) == 0;
        const bool is_resolve = path.find("/resolve/") != std::string::npos && path.rfind("/api/", 0) != 0 && path.rfind("/_emu/", 0) != 0;
        if (!is_api && !is_cdn && !is_resolve) return std::nullopt;

        std::unique_lock<std::mutex> lock(st.mu);
        const auto auth = req.headers.get("Authorization");
        if (st.seen.size() < HfEmuState::kMaxSeen) st.seen.push_back({req.method, req.host, req.target, auth.has_value()});

        if (is_cdn) {
            const std::string sha = path.substr(5);
            const HfEmuFile* f = nullptr;
            for (auto& [id, repo] : st.repos)
                for (auto& [c, files] : repo.commits)
                    for (auto& [p, file] : files)
                        if (file.lfs && file.sha256 == sha) f = &file;
            if (auth) return error(400, "", "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter should be specified");
            if (!f) return error(404, "", "NoSuchKey");
            std::size_t flip_at = std::string::npos;
            if (auto it = st.corrupt_cdn.find(sha); it != st.corrupt_cdn.end() && it->second > 0 && req.method == "GET") {
                --it->second;
                if (!f->content.empty()) flip_at = f->content.size() / 2;
            }
            Response r;
            r.headers.set("ETag", "\"" + sha + "\"");
            return serve_body(req, f->content, std::move(r), flip_at);
        }

        // Who is calling.
        std::string user;
        if (auth) {
            const std::string prefix = "Bearer ";
            const std::string tok = auth->rfind(prefix, 0) == 0 ? auth->substr(prefix.size()) : "";
            auto it = st.tokens.find(tok);
            if (it == st.tokens.end()) return error(401, "", "Invalid credentials in Authorization header");
            user = it->second;
        }
        if (path == "/api/whoami-v2") {
            if (user.empty()) return error(401, "", "Invalid credentials in Authorization header");
            return json(st.write.whoami(auth->substr(7)));
        }

        const std::vector<std::string> seg = split(path.substr(1));
        // seg for API: api, models, org, name, [op, ...]; for resolve: org, name, resolve, rev, path...
        const bool api = seg[0] == "api";
        if (seg.size() < (api ? 4u : 5u)) return error(404, "", "Not Found");
        const std::string repo_id = api ? seg[2] + "/" + seg[3] : seg[0] + "/" + seg[1];
        if (!api && seg[2] != "resolve") return std::nullopt;

        auto rit = st.repos.find(repo_id);
        if (rit == st.repos.end() && seg[api ? 2 : 0] == "gen") {
            // generated on first use: gen/NAME-<N>k
            const std::string name = seg[api ? 3 : 1];
            std::uint64_t kib = 16;
            if (auto d = name.rfind('-'); d != std::string::npos && name.size() > d + 2 && name.back() == 'k')
                try {
                    kib = std::stoull(name.substr(d + 1, name.size() - d - 2));
                } catch (...) {
                }
            lock.unlock();
            st.add_commit(repo_id, {{"config.json", HfEmuState::file(R"({"model_type":"gemma3_text"})", false)},
                                    {"model.safetensors", HfEmuState::file(generate(kib * 1024, kib), true)}});
            lock.lock();
            rit = st.repos.find(repo_id);
        }
        const std::string endpoint = base_url(req, false);
        const bool has_access = rit != st.repos.end() && !user.empty() && rit->second.granted.count(user);
        if (rit == st.repos.end() || (rit->second.is_private && !has_access))
            return error(401, "RepoNotFound", "Repository not found");
        HfEmuRepo& repo = rit->second;
        auto gate = [&]() -> std::optional<Response> {
            if (repo.gated.empty() || has_access) return std::nullopt;
            if (user.empty())
                return error(401, "GatedRepo", "Access to model " + repo_id + " is restricted. You must have access to it and be authenticated to access it. Please log in.");
            return error(403, "GatedRepo", "Access to model " + repo_id + " is restricted and you are not in the authorized list. Visit " + endpoint + "/" + repo_id + " to ask for access.");
        };
        auto find_commit = [&](const std::string& rev) -> const std::string* {
            if (auto it = repo.refs.find(rev); it != repo.refs.end()) return &it->second;
            if (auto it = repo.commits.find(rev); it != repo.commits.end()) return &it->first;
            return nullptr;
        };
        auto lfs_json = [](const HfEmuFile& f, const char* key) {
            return nlohmann::json{{key, f.sha256}, {"size", f.content.size()}, {"pointerSize", HfEmuState::pointer_text(f).size()}};
        };

        if (api) {
            const std::string op = seg.size() > 4 ? seg[4] : "";
            if (op == "auth-check") {
                if (auto e = gate()) return e;
                return json(nlohmann::json::object());
            }
            if (op.empty() || op == "revision") {
                const std::string rev = op.empty() ? "main" : url_decode(join(seg, 5));
                const std::string* commit = find_commit(rev);
                if (!commit) return error(404, "RevisionNotFound", "Invalid rev id: " + rev);
                nlohmann::json sib = nlohmann::json::array();
                const bool blobs = query_param(query, "blobs") == "true";
                for (const auto& [p, f] : repo.commits[*commit]) {
                    nlohmann::json s{{"rfilename", p}};
                    if (blobs) {
                        s["size"] = f.content.size();
                        s["blobId"] = f.blob_id;
                        if (f.lfs) s["lfs"] = lfs_json(f, "sha256");
                    }
                    sib.push_back(s);
                }
                return json({{"_id", repo_id}, {"id", repo_id}, {"modelId", repo_id}, {"sha", *commit}, {"private", repo.is_private},
                             {"gated", repo.gated.empty() ? nlohmann::json(false) : nlohmann::json(repo.gated)}, {"disabled", false},
                             {"siblings", sib}});
            }
            if (op == "tree") {
                if (seg.size() < 6) return error(404, "", "Not Found");
                const std::string rev = url_decode(seg[5]);
                const std::string dir = url_decode(join(seg, 6));
                const std::string* commit = find_commit(rev);
                if (!commit) return error(404, "RevisionNotFound", "Invalid rev id: " + rev);
                const bool recursive = query_param(query, "recursive") == "true";
                // entries: directories then files, as the Hub lists them (sorted by path)
                std::map<std::string, const HfEmuFile*> entries;
                std::set<std::string> dirs;
                for (const auto& [p, f] : repo.commits[*commit]) {
                    if (!dir.empty() && p.rfind(dir + "/", 0) != 0) continue;
                    const std::string rel = dir.empty() ? p : p.substr(dir.size() + 1);
                    std::string acc = dir;
                    const auto parts = split(rel);
                    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
                        acc += (acc.empty() ? "" : "/") + parts[i];
                        dirs.insert(acc);
                        if (!recursive) break;
                    }
                    if (recursive || parts.size() == 1) entries[p] = &f;
                }
                nlohmann::json all = nlohmann::json::array();
                for (const auto& d : dirs) all.push_back({{"type", "directory"}, {"oid", git_blob(d)}, {"size", 0}, {"path", d}});
                for (const auto& [p, f] : entries) {
                    nlohmann::json e{{"type", "file"}, {"oid", f->blob_id}, {"size", f->content.size()}, {"path", p}};
                    if (f->lfs) e["lfs"] = lfs_json(*f, "oid");
                    all.push_back(e);
                }
                std::size_t cursor = 0;
                if (auto c = query_param(query, "cursor"); !c.empty()) try {
                        cursor = std::stoull(c);
                    } catch (...) {
                        return error(400, "", "bad cursor");
                    }
                nlohmann::json page = nlohmann::json::array();
                for (std::size_t i = cursor; i < all.size() && i < cursor + st.tree_page_size; ++i) page.push_back(all[i]);
                Response r = json(page);
                if (cursor + st.tree_page_size < all.size())
                    r.headers.set("Link", "<" + endpoint + path + "?recursive=" + (recursive ? "true" : "false") +
                                              "&expand=false&cursor=" + std::to_string(cursor + st.tree_page_size) + ">; rel=\"next\"");
                return r;
            }
            if (op == "paths-info" && req.method == "POST" && seg.size() >= 6) {
                // body: JSON {"paths": [...], "expand": bool} (@huggingface/hub) or form-encoded
                // paths=a&paths=b&expand=true (huggingface_hub)
                const std::string rev = url_decode(seg[5]);
                const std::string* commit = find_commit(rev);
                if (!commit) return error(404, "RevisionNotFound", "Invalid rev id: " + rev);
                std::vector<std::string> paths;
                bool expand = false;
                auto j = nlohmann::json::parse(req.body, nullptr, false);
                if (j.is_object()) {
                    for (const auto& p : j.value("paths", nlohmann::json::array()))
                        if (p.is_string()) paths.push_back(p.get<std::string>());
                    expand = j.value("expand", false);
                } else {
                    std::size_t i = 0;
                    while (i < req.body.size()) {
                        auto amp = req.body.find('&', i);
                        if (amp == std::string::npos) amp = req.body.size();
                        const std::string kv = req.body.substr(i, amp - i);
                        const auto eq = kv.find('=');
                        std::string v = eq == std::string::npos ? "" : kv.substr(eq + 1);
                        for (auto& c : v)
                            if (c == '+') c = ' ';
                        if (kv.substr(0, eq) == "paths") paths.push_back(url_decode(v));
                        if (kv.substr(0, eq) == "expand") expand = url_decode(v) == "true";
                        i = amp + 1;
                    }
                }
                nlohmann::json out = nlohmann::json::array();
                const auto& cf = repo.commits[*commit];
                for (const auto& p : paths) {
                    auto it = cf.find(p);
                    if (it == cf.end()) continue;
                    const HfEmuFile& f = it->second;
                    nlohmann::json e{{"type", "file"}, {"oid", f.blob_id}, {"size", f.content.size()}, {"path", p}};
                    if (f.lfs) e["lfs"] = lfs_json(f, "oid");
                    if (expand) e["lastCommit"] = {{"id", *commit}, {"title", "Upload"}, {"date", "2026-01-01T00:00:00.000Z"}};
                    out.push_back(e);
                }
                return json(out);
            }
            return error(404, "", "Not Found");
        }

        // /ORG/NAME/resolve/REV/PATH
        if (auto e = gate()) return e;
        const std::string rev = url_decode(seg[3]);
        const std::string fpath = url_decode(join(seg, 4));
        const std::string* commit = find_commit(rev);
        if (!commit) return error(404, "RevisionNotFound", "Invalid rev id: " + rev);
        auto& files = repo.commits[*commit];
        auto fit = files.find(fpath);
        if (fit == files.end()) {
            Response e = error(404, "EntryNotFound", "Entry not found");
            e.headers.set("X-Repo-Commit", *commit);
            return e;
        }
        const HfEmuFile& f = fit->second;
        Response r;
        r.headers.set("X-Repo-Commit", *commit);
        r.headers.set("Accept-Ranges", "bytes");
        if (f.lfs) {
            r.status = 302;
            r.headers.set("ETag", "\"" + f.sha256 + "\"");
            r.headers.set("X-Linked-Etag", "\"" + f.sha256 + "\"");
            r.headers.set("X-Linked-Size", std::to_string(f.content.size()));
            r.headers.set("Location", base_url(req, true) + "/cdn/" + f.sha256 + "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600");
            return r;
        }
        r.headers.set("ETag", "\"" + f.blob_id + "\"");
        return serve_body(req, f.content, std::move(r));
    };
}

// The emulator process: state seeded from the `"hf"` key of --config, alive as long as the
// handler (handlers are copied around, so the state is shared).
inline Handler make_hf_service(Context& ctx) {
    auto st = std::make_shared<HfEmuState>();
    if (ctx.config.is_object() && ctx.config.contains("hf")) st->load_config(ctx.config["hf"]);
    Handler h = make_hf_service(*st);
    return [st, h](const Request& req) { return h(req); };
}

}  // namespace cmf::emu
