// The write side of the emulated Hugging Face Hub: what `huggingface_hub.create_commit` and
// @huggingface/hub's `commit` / `uploadFiles` speak (huggingface_hub hf_api.py, _commit_api.py,
// lfs.py; @huggingface/hub src/lib/commit.ts, create-repo.ts, who-am-i.ts, list-commits.ts).
//
//   POST /api/repos/create                    {name, organization, type, private|visibility}
//                                             -> 200 {url, name, id}; 409 when it exists; the new repo
//                                             has one commit "initial commit" with .gitattributes
//   POST /api/models/R/branch/BRANCH          {startingPoint?} -> 200 {}; 409 when it exists
//   POST /api/models/R/preupload/REV          {files:[{path,size,sample}]}
//                                             -> {files:[{path, uploadMode: lfs|regular, shouldIgnore, oid?}]}
//                                             (oid: what REV already holds there: sha256 for LFS, git blob id else)
//   POST /R.git/info/lfs/objects/batch        git-lfs batch API, operation "upload", transfers basic|multipart:
//                                             an object the repo's LFS store holds gets no actions; a small one
//                                             {upload: {href: S3 PUT URL}, verify: {href}}; one of at least
//                                             lfs.multipart_threshold bytes {upload: {href: completion URL,
//                                             header: {chunk_size, "00001": part URL, ...}}}; over
//                                             lfs.max_file_size a per-object error 422
//   PUT  /lfs-s3/...  (the other loopback host) the "S3" presigned URLs: 400 with an Authorization
//                                             header; a basic PUT must hash to its oid; a part answers its
//                                             ETag (the part's MD5, quoted, as S3 does)
//   POST /api/complete_multipart?uploadId=..  {oid, parts:[{partNumber, etag}]}: every part, in order, with
//                                             its ETag, the concatenation hashing to oid
//   POST /R.git/info/lfs/objects/verify       {oid, size}: 200 when stored, 404 else
//   POST /api/models/R/commit/REV             application/x-ndjson: header {summary, description, parentCommit?},
//                                             file {path, content, encoding: base64}, lfsFile {path, algo, oid, size},
//                                             deletedFile {path} -> {commitOid, commitUrl, success, hookOutput};
//                                             an lfsFile whose object is not stored: 400; a stale parentCommit: 412
//   GET  /api/models/R/commits/REV            [{id, title, message, authors, date}] newest first
//
// Access: every write needs a token whose role is "write" (or "fineGrained" with repo.write on
// the namespace) and a user who owns the namespace or is a member of that org with a role
// other than "read"; else 403 with X-Error-Message, as the Hub answers.
//
// Config (`"hf"` key): "tokens": {"hf_x": "alice" | {"user": "alice", "role": "read"|"write"|
// "fineGrained", "scoped": [{"entity": {"type": "org", "name": "acme"}, "permissions": ["repo.write"]}]}},
// "orgs": {"acme": {"alice": "write", "bob": "read"}},
// "lfs": {"multipart_threshold": 20971520, "chunk_size": 10485760, "max_file_size": 53687091200}.
// Counters for tests: GET /_emu/hf/uploads -> {lfs_objects_stored, basic_puts, part_puts, completions,
// commits, repos_created, preuploads, batches}.
#pragma once

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "handler.h"

namespace cmf::emu {

namespace hfemu {

// The .gitattributes the Hub puts in the initial commit of a new model repo (abridged; like the
// Hub's default it has no *.gguf line: GGUFs go through LFS by their binary sample).
inline const char* kInitialGitattributes =
    "*.7z filter=lfs diff=lfs merge=lfs -text\n"
    "*.bin filter=lfs diff=lfs merge=lfs -text\n"
    "*.h5 filter=lfs diff=lfs merge=lfs -text\n"
    "*.model filter=lfs diff=lfs merge=lfs -text\n"
    "*.onnx filter=lfs diff=lfs merge=lfs -text\n"
    "*.pt filter=lfs diff=lfs merge=lfs -text\n"
    "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    "*.tar.* filter=lfs diff=lfs merge=lfs -text\n"
    "*.zip filter=lfs diff=lfs merge=lfs -text\n"
    "*.zst filter=lfs diff=lfs merge=lfs -text\n"
    "*tfevents* filter=lfs diff=lfs merge=lfs -text\n";

// The Hub stores a file through LFS when .gitattributes says so, when it is larger than 10 MB,
// or when its first bytes are binary (huggingface_hub _commit_api.py: the server decides from
// path, size and a 512-byte sample).
constexpr std::uint64_t kRegularFileMax = 10ull * 1000 * 1000;

inline bool glob_match(const std::string& pat, const std::string& s) {
    // '*' matches any run (also '/', as git's gitattributes patterns without a slash match the basename)
    std::size_t p = 0, i = 0, star = std::string::npos, mark = 0;
    while (i < s.size()) {
        if (p < pat.size() && (pat[p] == s[i] || pat[p] == '?')) {
            ++p;
            ++i;
        } else if (p < pat.size() && pat[p] == '*') {
            star = p++;
            mark = i;
        } else if (star != std::string::npos) {
            p = star + 1;
            i = ++mark;
        } else {
            return false;
        }
    }
    while (p < pat.size() && pat[p] == '*') ++p;
    return p == pat.size();
}

inline bool gitattributes_lfs(const std::string& attrs, const std::string& path) {
    const std::string base = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
    std::size_t i = 0;
    bool lfs = false;
    while (i < attrs.size()) {
        auto e = attrs.find('\n', i);
        if (e == std::string::npos) e = attrs.size();
        const std::string line = attrs.substr(i, e - i);
        i = e + 1;
        const auto sp = line.find(' ');
        if (line.empty() || line[0] == '#' || sp == std::string::npos) continue;
        const std::string pat = line.substr(0, sp);
        const bool hit = pat.find('/') == std::string::npos ? glob_match(pat, base) : glob_match(pat, path);
        if (hit) lfs = line.find("filter=lfs") != std::string::npos;
    }
    return lfs;
}

inline std::string md5_hex(const std::string& d) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_Digest(d.data(), d.size(), out, &n, EVP_md5(), nullptr);
    static const char* k = "0123456789abcdef";
    std::string s;
    for (unsigned i = 0; i < n; ++i) {
        s += k[out[i] >> 4];
        s += k[out[i] & 15];
    }
    return s;
}

inline std::string base64_decode(const std::string& in, bool& ok) {
    static const std::string k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    unsigned v = 0;
    int bits = 0;
    ok = true;
    for (char c : in) {
        if (c == '=') break;
        const auto p = k.find(c);
        if (p == std::string::npos) {
            ok = false;
            return {};
        }
        v = (v << 6) | static_cast<unsigned>(p);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((v >> bits) & 0xff));
        }
    }
    return out;
}

inline bool is_hex64(const std::string& s) {
    return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

inline std::string now_iso() {
    char buf[32];
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    return buf;
}

}  // namespace hfemu

// State of the write API, kept inside HfEmuState (see hf_service.h).
struct HfEmuWrite {
    struct Token {
        std::string user;
        std::string role = "write";      // read | write | fineGrained
        nlohmann::json scoped = nlohmann::json::array();
    };
    struct Multipart {
        std::string repo, oid;
        std::uint64_t size = 0, chunk = 0;
        std::map<int, std::string> parts;  // part number -> bytes (a retried PUT replaces)
    };
    struct CommitMeta {
        std::string title, message, parent, date, author;
    };
    std::map<std::string, Token> token_info;
    std::map<std::string, std::map<std::string, std::string>> orgs;  // org -> user -> roleInOrg
    std::map<std::string, std::map<std::string, std::string>> lfs;   // repo -> oid -> bytes
    std::map<std::string, Multipart> multiparts;                     // upload id -> upload
    std::map<std::string, CommitMeta> commit_meta;                   // commit id -> what the log shows
    std::uint64_t multipart_threshold = 20ull << 20;
    std::uint64_t chunk_size = 10ull << 20;
    std::uint64_t max_file_size = 50ull << 30;
    std::uint64_t next_upload = 1;
    std::map<std::string, std::uint64_t> counters;

    void load(const nlohmann::json& hf) {
        if (auto t = hf.find("tokens"); t != hf.end() && t->is_object())
            for (auto& [tok, v] : t->items()) {
                Token k;
                if (v.is_string()) k.user = v.get<std::string>();
                else {
                    k.user = v.value("user", std::string());
                    k.role = v.value("role", std::string("write"));
                    k.scoped = v.value("scoped", nlohmann::json::array());
                }
                token_info[tok] = k;
            }
        if (auto o = hf.find("orgs"); o != hf.end() && o->is_object())
            for (auto& [org, members] : o->items())
                for (auto& [u, role] : members.items()) orgs[org][u] = role.get<std::string>();
        if (auto l = hf.find("lfs"); l != hf.end() && l->is_object()) {
            multipart_threshold = l->value("multipart_threshold", multipart_threshold);
            chunk_size = std::max<std::uint64_t>(1, l->value("chunk_size", chunk_size));
            max_file_size = l->value("max_file_size", max_file_size);
        }
    }

    // Why this token may not write into `ns`, or "" when it may.
    std::string write_refusal(const std::string& token, const std::string& ns) const {
        auto it = token_info.find(token);
        if (it == token_info.end()) return "Invalid credentials in Authorization header";
        const Token& t = it->second;
        if (t.user != ns) {
            auto org = orgs.find(ns);
            if (org == orgs.end() || !org->second.count(t.user))
                return "You don't have the rights to create a model under the namespace \"" + ns + "\"";
            if (org->second.at(t.user) == "read")
                return "You don't have the rights to write to the namespace \"" + ns + "\" (your role in the organization is read)";
        }
        if (t.role == "write") return "";
        if (t.role == "fineGrained") {
            for (const auto& s : t.scoped) {
                const auto e = s.value("entity", nlohmann::json::object());
                if (e.value("name", std::string()) != ns) continue;
                for (const auto& p : s.value("permissions", nlohmann::json::array()))
                    if (p == "repo.write" || p == "repo.content.write") return "";
            }
            return "This fine-grained token has no repo.write permission on \"" + ns + "\"";
        }
        return "You have read access but not the required permissions for this operation (your token is read-only)";
    }

    nlohmann::json whoami(const std::string& token) const {
        const Token& t = token_info.at(token);
        nlohmann::json orgs_j = nlohmann::json::array();
        for (const auto& [org, members] : orgs)
            if (auto m = members.find(t.user); m != members.end()) orgs_j.push_back({{"type", "org"}, {"name", org}, {"roleInOrg", m->second}});
        nlohmann::json at{{"displayName", "emulated"}, {"role", t.role}};
        if (t.role == "fineGrained") at["fineGrained"] = {{"global", nlohmann::json::array()}, {"scoped", t.scoped}, {"canReadGatedRepos", true}};
        return {{"type", "user"}, {"id", hfemu::md5_hex(t.user).substr(0, 24)}, {"name", t.user}, {"fullname", t.user},
                {"orgs", orgs_j}, {"auth", {{"type", "access_token"}, {"accessToken", at}}}};
    }
};

}  // namespace cmf::emu
