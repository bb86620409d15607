// The Hub's JSON answers, parsed and checked before use (every field is untrusted input).
//
//   GET /api/models/R/revision/REV -> {id, sha, private, gated: false|"auto"|"manual",
//        disabled, siblings: [{rfilename, size?, blobId?, lfs?{sha256, size, pointerSize}}]}
//   GET /api/models/R/tree/REV?recursive=true -> [{type: "file"|"directory", path, size, oid,
//        lfs?{oid (= sha256), size, pointerSize}, xetHash?}], paged with a GitHub-style
//        `Link: <URL>; rel="next"` header (huggingface_hub utils/_pagination.py).
// Note the key names differ: siblings carry lfs.sha256, tree entries lfs.oid.
#pragma once

#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/hub/digest.h"

namespace cmf::hub {

struct RepoFile {
    std::string path;
    std::uint64_t size = 0;
    std::string blob_id;               // git blob id (40 hex) if known
    std::optional<std::string> sha256;  // LFS/Xet files only
    bool lfs() const { return sha256.has_value(); }
    // The Hub's etag for this file, i.e. the name of its blob in the HF cache.
    std::string etag() const { return sha256 ? *sha256 : blob_id; }
};

struct ModelInfo {
    std::string id;
    std::string sha;            // the commit the revision resolved to
    bool is_private = false;
    std::string gated;          // "" (not gated), "auto" or "manual"
    bool disabled = false;
    std::vector<RepoFile> siblings;  // sizes / hashes only when asked with ?blobs=true
};

namespace detail {
[[noreturn]] inline void bad_json(std::string_view what, std::string_view why) {
    fail(ErrorKind::remote, "the Hugging Face Hub sent an unexpected " + std::string(what) + " response: " + std::string(why));
}

inline nlohmann::json parse_json(std::string_view body, std::string_view what) {
    auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
    if (j.is_discarded()) bad_json(what, "not JSON");
    return j;
}

inline std::uint64_t get_size(const nlohmann::json& j, std::string_view what) {
    if (!j.is_number_unsigned() && !(j.is_number_integer() && j.get<std::int64_t>() >= 0)) bad_json(what, "size is not a non-negative integer");
    return j.get<std::uint64_t>();
}

inline std::string safe_path(const nlohmann::json& j, std::string_view what) {
    if (!j.is_string()) bad_json(what, "file path is not a string");
    std::string p = j.get<std::string>();
    // A path becomes a file under the snapshot directory: refuse anything that could escape it.
    if (p.empty() || p.size() > 4096 || p.front() == '/' || p.back() == '/') bad_json(what, "invalid file path");
    std::size_t i = 0;
    while (i <= p.size()) {
        std::size_t j2 = p.find('/', i);
        if (j2 == std::string::npos) j2 = p.size();
        std::string_view part(p.data() + i, j2 - i);
        if (part.empty() || part == "." || part == "..") bad_json(what, "invalid file path");
        i = j2 + 1;
    }
    for (char c : p)
        if (c == '\0' || c == '\\' || static_cast<unsigned char>(c) < 0x20) bad_json(what, "invalid file path");
    return p;
}

inline std::optional<std::string> sha_field(const nlohmann::json& lfs, const char* key, std::string_view what) {
    auto it = lfs.find(key);
    if (it == lfs.end()) bad_json(what, std::string("lfs entry without ") + key);
    if (!it->is_string() || !is_hex(it->get<std::string>(), 64)) bad_json(what, "lfs sha256 is not 64 hex digits");
    return it->get<std::string>();
}
}  // namespace detail

inline ModelInfo parse_model_info(std::string_view body) {
    constexpr std::string_view what = "model info";
    const auto j = detail::parse_json(body, what);
    if (!j.is_object()) detail::bad_json(what, "not an object");
    ModelInfo m;
    if (auto it = j.find("id"); it != j.end() && it->is_string()) m.id = it->get<std::string>();
    auto sha = j.find("sha");
    if (sha == j.end() || !sha->is_string() || !is_hex(sha->get<std::string>(), 40)) detail::bad_json(what, "no commit sha");
    m.sha = sha->get<std::string>();
    if (auto it = j.find("private"); it != j.end() && it->is_boolean()) m.is_private = it->get<bool>();
    if (auto it = j.find("disabled"); it != j.end() && it->is_boolean()) m.disabled = it->get<bool>();
    if (auto it = j.find("gated"); it != j.end()) {
        if (it->is_string()) m.gated = it->get<std::string>();
        else if (it->is_boolean()) m.gated = it->get<bool>() ? "auto" : "";
        else if (!it->is_null()) detail::bad_json(what, "gated is neither false nor a string");
    }
    if (auto it = j.find("siblings"); it != j.end()) {
        if (!it->is_array()) detail::bad_json(what, "siblings is not an array");
        for (const auto& s : *it) {
            if (!s.is_object()) detail::bad_json(what, "sibling is not an object");
            RepoFile f;
            auto rf = s.find("rfilename");
            if (rf == s.end()) detail::bad_json(what, "sibling without rfilename");
            f.path = detail::safe_path(*rf, what);
            if (auto sz = s.find("size"); sz != s.end()) f.size = detail::get_size(*sz, what);
            if (auto b = s.find("blobId"); b != s.end() && b->is_string()) f.blob_id = b->get<std::string>();
            if (auto l = s.find("lfs"); l != s.end() && !l->is_null()) {
                if (!l->is_object()) detail::bad_json(what, "lfs is not an object");
                f.sha256 = detail::sha_field(*l, "sha256", what);
                if (auto sz = l->find("size"); sz != l->end()) f.size = detail::get_size(*sz, what);
            }
            m.siblings.push_back(std::move(f));
        }
    }
    return m;
}

// One page of the recursive tree listing; directories are skipped.
inline std::vector<RepoFile> parse_tree_page(std::string_view body) {
    constexpr std::string_view what = "tree listing";
    const auto j = detail::parse_json(body, what);
    if (!j.is_array()) detail::bad_json(what, "not an array");
    std::vector<RepoFile> out;
    for (const auto& e : j) {
        if (!e.is_object()) detail::bad_json(what, "entry is not an object");
        auto type = e.find("type");
        if (type == e.end() || !type->is_string()) detail::bad_json(what, "entry without type");
        if (*type == "directory") continue;
        if (*type != "file") detail::bad_json(what, "unknown entry type");
        RepoFile f;
        auto p = e.find("path");
        if (p == e.end()) detail::bad_json(what, "entry without path");
        f.path = detail::safe_path(*p, what);
        auto sz = e.find("size");
        if (sz == e.end()) detail::bad_json(what, "file without size");
        f.size = detail::get_size(*sz, what);
        if (auto o = e.find("oid"); o != e.end()) {
            if (!o->is_string() || !is_hex(o->get<std::string>(), 40)) detail::bad_json(what, "oid is not a git object id");
            f.blob_id = o->get<std::string>();
        }
        if (auto l = e.find("lfs"); l != e.end() && !l->is_null()) {
            if (!l->is_object()) detail::bad_json(what, "lfs is not an object");
            f.sha256 = detail::sha_field(*l, "oid", what);
            if (auto lsz = l->find("size"); lsz != l->end() && detail::get_size(*lsz, what) != f.size)
                detail::bad_json(what, "lfs size differs from file size");
        }
        if (!f.sha256 && f.blob_id.empty()) detail::bad_json(what, "file without oid");
        out.push_back(std::move(f));
    }
    return out;
}

// The URL of rel="next" in a Link header (RFC 8288 list: <url>; rel="next", <url>; rel="prev").
inline std::optional<std::string> link_next(std::string_view header) {
    std::size_t i = 0;
    while (i < header.size()) {
        const auto lt = header.find('<', i);
        if (lt == std::string_view::npos) return std::nullopt;
        const auto gt = header.find('>', lt + 1);
        if (gt == std::string_view::npos) return std::nullopt;
        const std::string_view url = header.substr(lt + 1, gt - lt - 1);
        auto end = header.find(',', gt);
        // a comma may also appear inside a later <...>; params end at the next '<' at the latest
        const auto next_lt = header.find('<', gt);
        if (end == std::string_view::npos || (next_lt != std::string_view::npos && next_lt < end)) end = next_lt;
        const std::string_view params = header.substr(gt + 1, end == std::string_view::npos ? std::string_view::npos : end - gt - 1);
        std::string p;
        for (char c : params)
            if (c != ' ' && c != '"') p += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (p.find(";rel=next") != std::string::npos) return std::string(url);
        if (end == std::string_view::npos) return std::nullopt;
        i = end;
        if (i < header.size() && header[i] == ',') ++i;
    }
    return std::nullopt;
}

// Hub etags arrive quoted and sometimes weak (W/"..."); huggingface_hub strips both.
inline std::string normalize_etag(std::string_view e) {
    if (e.rfind("W/", 0) == 0) e.remove_prefix(2);
    while (!e.empty() && e.front() == '"') e.remove_prefix(1);
    while (!e.empty() && e.back() == '"') e.remove_suffix(1);
    return std::string(e);
}

}  // namespace cmf::hub
