// Emulated GCS JSON API (in memory), faithful to the public facts in shared/research/cloud.md
// section 4:
//   POST   /storage/v1/b?project=P                        buckets.insert {"name": B} (409 if taken)
//   GET    /storage/v1/b/B                                buckets.get
//   GET    /storage/v1/b/B/o?prefix&delimiter&maxResults&pageToken   objects.list
//   GET    /storage/v1/b/B/o/O[?alt=media][&generation=G]  metadata, or bytes (Range -> 206)
//   DELETE /storage/v1/b/B/o/O[?ifGenerationMatch=G]       204
//   POST   /upload/storage/v1/b/B/o?uploadType=media|multipart|resumable&name=O[&ifGenerationMatch=G]
//   PUT    /upload/storage/v1/b/B/o?uploadType=resumable&upload_id=ID   chunks / status query
//   DELETE the session URI                                 499 (cancelled)
//   GET    /B/O                                            XML-API style download (existing buckets only)
// int64 fields are JSON strings; crc32c/md5Hash are base64; errors use Google's
// {"error":{"code","message","errors":[{"domain","reason","message"}]}} body.
// Resumable: non-final chunks persist only whole 256 KiB units (the rest must be resent, as the
// real service may persist less than was sent); 308 carries `Range: bytes=0-N`, none when
// nothing is persisted.
//
// Config ("gcs" key of --config):
//   {"buckets": ["b1", ...],          buckets that exist at start
//    "auto_create_buckets": false,    any bucket name exists on first use
//    "require_auth": false}           demand a Bearer token issued by google_auth_service.h
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmf/core/crc32c.h"
#include "cmf/core/encoding.h"
#include "cmf/core/digest.h"
#include "blob_service.h"
#include "context.h"
#include "control_service.h"
#include "google_auth_service.h"
#include "handler.h"

namespace cmf::emu {

struct GcsObject {
    std::string bucket, name;
    std::shared_ptr<const std::string> data;
    std::int64_t generation = 0;
    std::int64_t metageneration = 1;
    std::string content_type = "application/octet-stream";
    std::map<std::string, std::string> metadata;
    std::string crc32c, md5;
    std::string created;  // RFC 3339
};

struct GcsSession {
    std::string bucket, name;
    std::string content_type = "application/octet-stream";
    std::map<std::string, std::string> metadata;
    std::optional<std::string> expect_crc32c, expect_md5;
    std::optional<std::int64_t> if_generation_match;
    std::optional<std::uint64_t> total;
    std::string data;  // persisted bytes
    bool done = false;
    bool cancelled = false;
    nlohmann::json result;
};

struct GcsState {
    std::mutex mu;
    std::set<std::string> buckets;
    bool auto_create = false;
    bool require_auth = false;
    std::map<std::string, std::map<std::string, GcsObject>> objects;  // bucket -> name -> object
    std::map<std::string, std::shared_ptr<GcsSession>> sessions;
    std::int64_t last_generation = 0;
    std::uint64_t uploads_completed = 0;

    std::int64_t next_generation() {
        // Real generations are microsecond timestamps; strictly increasing here.
        std::int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
        last_generation = std::max(last_generation + 1, now);
        return last_generation;
    }
    bool has_bucket(const std::string& b) {
        if (buckets.count(b)) return true;
        if (auto_create && !b.empty()) {
            buckets.insert(b);
            return true;
        }
        return false;
    }
};

namespace gcs_detail {

inline constexpr std::uint64_t kChunkUnit = 262144;

inline Response gcs_error(int code, const std::string& reason, const std::string& message) {
    nlohmann::json e = {{"error",
                         {{"code", code},
                          {"message", message},
                          {"errors", nlohmann::json::array({{{"domain", "global"}, {"reason", reason}, {"message", message}}})}}}};
    Response r = json_response(code, e);
    r.headers.set("Content-Type", "application/json; charset=UTF-8");
    return r;
}

inline std::string rfc3339_now() {
    auto now = std::chrono::system_clock::now();
    std::time_t t = std::chrono::system_clock::to_time_t(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
    return buf;
}

inline nlohmann::json resource(const GcsObject& o, const std::string& base) {
    std::string enc = cmf::percent_encode(o.name);
    nlohmann::json j = {{"kind", "storage#object"},
                        {"id", o.bucket + "/" + o.name + "/" + std::to_string(o.generation)},
                        {"selfLink", base + "/storage/v1/b/" + o.bucket + "/o/" + enc},
                        {"mediaLink", base + "/download/storage/v1/b/" + o.bucket + "/o/" + enc +
                                          "?generation=" + std::to_string(o.generation) + "&alt=media"},
                        {"name", o.name},
                        {"bucket", o.bucket},
                        {"generation", std::to_string(o.generation)},
                        {"metageneration", std::to_string(o.metageneration)},
                        {"contentType", o.content_type},
                        {"storageClass", "STANDARD"},
                        {"size", std::to_string(o.data->size())},
                        {"md5Hash", o.md5},
                        {"crc32c", o.crc32c},
                        {"etag", "CP" + std::to_string(o.generation % 1000000) + "E="},
                        {"timeCreated", o.created},
                        {"updated", o.created},
                        {"timeStorageClassUpdated", o.created}};
    if (!o.metadata.empty()) j["metadata"] = o.metadata;
    return j;
}

inline std::optional<std::int64_t> int_param(const std::string& target, const char* name, bool& bad) {
    auto v = query_param(target, name);
    if (!v) return std::nullopt;
    if (v->empty() || v->size() > 18 || v->find_first_not_of("0123456789") != std::string::npos) {
        bad = true;
        return std::nullopt;
    }
    return std::stoll(*v);
}

// ifGenerationMatch / ifGenerationNotMatch / ifMetagenerationMatch / ifMetagenerationNotMatch
// against the live object (nullptr = absent). Returns an error response or nullopt.
inline std::optional<Response> check_preconditions(const std::string& target, const GcsObject* live) {
    bool bad = false;
    auto gm = int_param(target, "ifGenerationMatch", bad);
    auto gnm = int_param(target, "ifGenerationNotMatch", bad);
    auto mm = int_param(target, "ifMetagenerationMatch", bad);
    auto mnm = int_param(target, "ifMetagenerationNotMatch", bad);
    if (bad) return gcs_error(400, "invalid", "Invalid precondition value.");
    std::int64_t g = live ? live->generation : 0;
    bool ok = true;
    if (gm && *gm != g) ok = false;
    if (gnm && *gnm == g) ok = false;
    if (mm && (!live || *mm != live->metageneration)) ok = false;
    if (mnm && live && *mnm == live->metageneration) ok = false;
    if (!ok) return gcs_error(412, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.");
    return std::nullopt;
}

inline std::string header_param(const std::string& value, const std::string& name) {
    // `multipart/related; boundary="x"` -> x
    auto p = value.find(name + "=");
    if (p == std::string::npos) return "";
    std::string v = value.substr(p + name.size() + 1);
    if (!v.empty() && v[0] == '"') {
        auto e = v.find('"', 1);
        return v.substr(1, e == std::string::npos ? std::string::npos : e - 1);
    }
    return v.substr(0, v.find(';'));
}

struct Part {
    net::Headers headers;
    std::string body;
};

// multipart/related body -> parts; nullopt when malformed.
inline std::optional<std::vector<Part>> parse_multipart(const std::string& body, const std::string& boundary) {
    if (boundary.empty()) return std::nullopt;
    const std::string delim = "--" + boundary;
    std::vector<Part> parts;
    std::size_t pos = body.find(delim);
    if (pos == std::string::npos) return std::nullopt;
    pos += delim.size();
    for (;;) {
        if (body.compare(pos, 2, "--") == 0) return parts;
        if (body.compare(pos, 2, "\r\n") != 0) return std::nullopt;
        pos += 2;
        std::size_t hend = body.find("\r\n\r\n", pos);
        std::size_t next;
        Part part;
        if (hend == std::string::npos) return std::nullopt;
        std::string hdrs = body.substr(pos, hend - pos);
        for (std::size_t l = 0; l < hdrs.size();) {
            std::size_t e = hdrs.find("\r\n", l);
            std::string line = hdrs.substr(l, e == std::string::npos ? std::string::npos : e - l);
            l = e == std::string::npos ? hdrs.size() : e + 2;
            auto colon = line.find(':');
            if (colon == std::string::npos) continue;
            std::string v = line.substr(colon + 1);
            while (!v.empty() && v.front() == ' ') v.erase(0, 1);
            part.headers.add(line.substr(0, colon), v);
        }
        std::size_t content = hend + 4;
        next = body.find("\r\n" + delim, content);
        if (next == std::string::npos) return std::nullopt;
        part.body = body.substr(content, next - content);
        parts.push_back(std::move(part));
        pos = next + 2 + delim.size();
    }
}

inline std::string list_token_encode(const std::string& after, bool is_prefix) {
    return cmf::base64url_encode(nlohmann::json{{"a", after}, {"p", is_prefix}}.dump());
}

}  // namespace gcs_detail

// The state behind make_gcs_service(ctx), for tests that run the service in-process.
inline std::shared_ptr<GcsState> gcs_state(Context& ctx) {
    return ctx.service_state<GcsState>([&](GcsState& st) {
        GcsState* s = &st;
        const nlohmann::json g = ctx.config.is_object() && ctx.config.contains("gcs") ? ctx.config["gcs"] : nlohmann::json::object();
        if (g.is_object()) {
            if (auto b = g.find("buckets"); b != g.end() && b->is_array())
                for (const auto& n : *b)
                    if (n.is_string()) s->buckets.insert(n.get<std::string>());
            s->auto_create = g.value("auto_create_buckets", false);
            s->require_auth = g.value("require_auth", false);
        }
    });
}

inline Handler make_gcs_service(Context& ctx) {
    using namespace gcs_detail;
    auto st = gcs_state(ctx);
    Context* cp = &ctx;

    // Stores a finished object; the caller holds st->mu and has checked preconditions.
    auto commit = [st](const std::string& bucket, const std::string& name, std::string data, const std::string& ctype,
                       const std::map<std::string, std::string>& meta) -> GcsObject& {
        GcsObject o;
        o.bucket = bucket;
        o.name = name;
        o.crc32c = cmf::crc32c_base64(cmf::crc32c(data));
        o.md5 = cmf::md5_base64(data);
        o.data = std::make_shared<const std::string>(std::move(data));
        o.generation = st->next_generation();
        o.content_type = ctype.empty() ? "application/octet-stream" : ctype;
        o.metadata = meta;
        o.created = rfc3339_now();
        auto& slot = st->objects[bucket][name];
        slot = std::move(o);
        ++st->uploads_completed;
        return slot;
    };

    auto metadata_of = [](const nlohmann::json& j) {
        std::map<std::string, std::string> m;
        if (auto it = j.find("metadata"); it != j.end() && it->is_object())
            for (const auto& [k, v] : it->items()) m[k] = v.is_string() ? v.get<std::string>() : v.dump();
        return m;
    };

    return [st, cp, commit, metadata_of](const Request& req) -> std::optional<Response> {
        const std::string path = path_of(req.target);
        const std::string base = req.tls ? cp->https_base : cp->http_base;
        const bool json_api = path.rfind("/storage/v1/", 0) == 0;
        const bool upload_api = path.rfind("/upload/storage/v1/", 0) == 0;

        // XML-style GET /BUCKET/OBJECT for buckets that exist (other services answer first).
        if (!json_api && !upload_api) {
            if (req.method != "GET" && req.method != "HEAD") return std::nullopt;
            auto slash = path.find('/', 1);
            if (slash == std::string::npos) return std::nullopt;
            auto bucket = cmf::percent_decode(path.substr(1, slash - 1));
            auto name = cmf::percent_decode(path.substr(slash + 1));
            if (!bucket || !name || name->empty()) return std::nullopt;
            std::lock_guard lock(st->mu);
            if (!st->buckets.count(*bucket)) return std::nullopt;
            (void)name;
        }

        if (st->require_auth) {
            auto h = req.headers.get("Authorization");
            bool session_put = upload_api && query_param(req.target, "upload_id").has_value();
            if (!session_put && (!h || h->rfind("Bearer ", 0) != 0 || !token_registry(*cp).valid(h->substr(7))))
                return gcs_error(401, "required", "Anonymous caller does not have storage access, or the token is invalid.");
        }

        // Split "/storage/v1/b/B/o/O" (or with the /upload prefix).
        std::string rest = upload_api ? path.substr(std::string("/upload/storage/v1/").size())
                                      : json_api ? path.substr(std::string("/storage/v1/").size())
                                                 : "b" + path.substr(0, path.find('/', 1)) + "/o" + path.substr(path.find('/', 1));
        auto seg = [&rest]() {
            std::vector<std::string> v;
            std::size_t p = 0;
            while (p <= rest.size()) {
                auto e = rest.find('/', p);
                if (e == std::string::npos) e = rest.size();
                v.push_back(rest.substr(p, e - p));
                p = e + 1;
            }
            return v;
        }();
        if (seg.empty() || seg[0] != "b") return gcs_error(404, "notFound", "Not Found");

        // buckets.insert
        if (seg.size() == 1 || (seg.size() == 2 && seg[1].empty())) {
            if (req.method != "POST") return gcs_error(405, "methodNotAllowed", "Method not allowed");
            auto j = nlohmann::json::parse(req.body, nullptr, false);
            if (!j.is_object() || !j.contains("name") || !j["name"].is_string())
                return gcs_error(400, "invalid", "Bucket name is required.");
            std::string name = j["name"];
            std::lock_guard lock(st->mu);
            if (st->buckets.count(name))
                return gcs_error(409, "conflict", "Your previous request to create the named bucket succeeded and you already own it.");
            st->buckets.insert(name);
            return json_response(200, {{"kind", "storage#bucket"}, {"name", name}, {"id", name}, {"location", "US"},
                                       {"storageClass", "STANDARD"}, {"timeCreated", rfc3339_now()}});
        }
        auto bucket_dec = cmf::percent_decode(seg[1]);
        if (!bucket_dec) return gcs_error(400, "invalid", "Invalid bucket name.");
        const std::string bucket = *bucket_dec;

        std::unique_lock lock(st->mu);
        if (!st->has_bucket(bucket)) return gcs_error(404, "notFound", "The specified bucket does not exist.");

        if (seg.size() == 2) {  // buckets.get
            if (req.method != "GET") return gcs_error(405, "methodNotAllowed", "Method not allowed");
            return json_response(200, {{"kind", "storage#bucket"}, {"name", bucket}, {"id", bucket}, {"location", "US"},
                                       {"storageClass", "STANDARD"}});
        }
        if (seg[2] != "o") return gcs_error(404, "notFound", "Not Found");
        auto& objs = st->objects[bucket];

        // ---------------------------------------------------------------- uploads
        if (upload_api) {
            if (seg.size() != 3) return gcs_error(404, "notFound", "Not Found");
            auto upload_id = query_param(req.target, "upload_id");
            if (upload_id) {
                auto it = st->sessions.find(*upload_id);
                if (it == st->sessions.end()) return gcs_error(404, "notFound", "No such upload session.");
                auto s = it->second;
                if (req.method == "DELETE") {
                    s->cancelled = true;
                    Response r;
                    r.status = 499;
                    return r;
                }
                if (s->cancelled) return gcs_error(410, "gone", "The upload session was cancelled.");
                if (req.method != "PUT") return gcs_error(405, "methodNotAllowed", "Method not allowed");
                if (s->done) return json_response(200, s->result);
                auto incomplete = [&s]() {
                    Response r;
                    r.status = 308;
                    if (!s->data.empty()) r.headers.set("Range", "bytes=0-" + std::to_string(s->data.size() - 1));
                    return r;
                };
                std::string cr = req.headers.get("Content-Range").value_or("");
                std::optional<std::uint64_t> first, last, total;
                bool range_star = false;
                if (cr.rfind("bytes ", 0) != 0) {
                    if (!cr.empty() || !req.body.empty()) return gcs_error(400, "invalid", "Invalid Content-Range.");
                    range_star = true;
                } else {
                    std::string v = cr.substr(6);
                    auto slash = v.find('/');
                    if (slash == std::string::npos) return gcs_error(400, "invalid", "Invalid Content-Range.");
                    std::string rng = v.substr(0, slash), tot = v.substr(slash + 1);
                    auto num = [](const std::string& s) -> std::optional<std::uint64_t> {
                        if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
                        return std::stoull(s);
                    };
                    if (tot != "*" && !(total = num(tot))) return gcs_error(400, "invalid", "Invalid Content-Range.");
                    if (rng == "*") {
                        range_star = true;
                    } else {
                        auto dash = rng.find('-');
                        if (dash == std::string::npos) return gcs_error(400, "invalid", "Invalid Content-Range.");
                        first = num(rng.substr(0, dash));
                        // "bytes A-*/TOTAL|*": the Node client streams the rest of the object in
                        // one request whose length it does not know up front; the end of the
                        // request body is the end of the object.
                        if (rng.substr(dash + 1) == "*" && first) {
                            if (!total) total = *first + req.body.size();
                            if (req.body.empty()) range_star = true;
                            else last = *first + req.body.size() - 1;
                        } else {
                            last = num(rng.substr(dash + 1));
                        }
                        if (!range_star && (!first || !last || *last < *first))
                            return gcs_error(400, "invalid", "Invalid Content-Range.");
                        if (!range_star && req.body.size() != *last - *first + 1)
                            return gcs_error(400, "invalid", "Content-Range does not match the body length.");
                    }
                }
                if (total) {
                    if (s->total && *s->total != *total)
                        return gcs_error(400, "invalid", "The total object size does not match the declared size.");
                    if (*total < s->data.size()) return gcs_error(400, "invalid", "Total size is below the persisted size.");
                    s->total = total;
                }
                if (!range_star) {
                    std::uint64_t have = s->data.size();
                    if (*first > have)
                        return gcs_error(400, "invalid", "Chunk starts after the persisted data (" + std::to_string(have) +
                                                             " bytes); query the session status first.");
                    if (*last + 1 > have) s->data.append(req.body, have - *first, std::string::npos);
                    if (s->total && s->data.size() > *s->total)
                        return gcs_error(400, "invalid", "More data than the declared total size.");
                    bool final_chunk = s->total && s->data.size() == *s->total;
                    if (!final_chunk) {
                        // Only whole 256 KiB units of a non-final chunk are persisted.
                        s->data.resize(std::max<std::uint64_t>(have, s->data.size() / kChunkUnit * kChunkUnit));
                    }
                    if (auto xh = req.headers.get("x-goog-hash"); xh && final_chunk) {
                        auto p = xh->find("crc32c=");
                        if (p != std::string::npos) s->expect_crc32c = xh->substr(p + 7, xh->find(',', p) == std::string::npos
                                                                                             ? std::string::npos
                                                                                             : xh->find(',', p) - p - 7);
                    }
                }
                if (!(s->total && s->data.size() == *s->total)) return incomplete();
                // Finalize.
                auto live = objs.find(s->name);
                if (s->if_generation_match) {
                    std::int64_t g = live == objs.end() ? 0 : live->second.generation;
                    if (g != *s->if_generation_match) {
                        s->cancelled = true;
                        return gcs_error(412, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.");
                    }
                }
                std::string crc = cmf::crc32c_base64(cmf::crc32c(s->data));
                if (s->expect_crc32c && *s->expect_crc32c != crc) {
                    s->cancelled = true;
                    return gcs_error(400, "invalid", "Provided CRC32C \"" + *s->expect_crc32c +
                                                         "\" doesn't match calculated CRC32C \"" + crc + "\".");
                }
                if (s->expect_md5 && *s->expect_md5 != cmf::md5_base64(s->data)) {
                    s->cancelled = true;
                    return gcs_error(400, "invalid", "Provided MD5 hash doesn't match calculated MD5 hash.");
                }
                GcsObject& o = commit(bucket, s->name, std::move(s->data), s->content_type, s->metadata);
                s->data.clear();
                s->done = true;
                s->result = resource(o, base);
                return json_response(200, s->result);
            }

            if (req.method != "POST") return gcs_error(405, "methodNotAllowed", "Method not allowed");
            std::string type = query_param(req.target, "uploadType").value_or("");
            std::string name = query_param(req.target, "name").value_or("");
            std::string ctype = req.headers.get("Content-Type").value_or("application/octet-stream");
            std::map<std::string, std::string> meta;
            std::optional<std::string> want_crc, want_md5;
            std::string data;
            auto read_meta = [&](const nlohmann::json& j) -> std::optional<Response> {
                if (!j.is_object()) return gcs_error(400, "parseError", "Parse Error");
                if (auto n = j.find("name"); n != j.end() && n->is_string() && name.empty()) name = n->get<std::string>();
                if (auto c = j.find("contentType"); c != j.end() && c->is_string()) ctype = c->get<std::string>();
                if (auto c = j.find("crc32c"); c != j.end() && c->is_string()) want_crc = c->get<std::string>();
                if (auto c = j.find("md5Hash"); c != j.end() && c->is_string()) want_md5 = c->get<std::string>();
                meta = metadata_of(j);
                return std::nullopt;
            };
            if (type == "media") {
                data = req.body;
            } else if (type == "multipart") {
                auto parts = parse_multipart(req.body, header_param(ctype, "boundary"));
                if (!parts || parts->size() != 2) return gcs_error(400, "invalid", "Invalid multipart request.");
                ctype = (*parts)[1].headers.get("Content-Type").value_or("application/octet-stream");
                if (auto e = read_meta(nlohmann::json::parse((*parts)[0].body, nullptr, false))) return e;
                data = std::move((*parts)[1].body);
            } else if (type == "resumable") {
                ctype = req.headers.get("X-Upload-Content-Type").value_or("application/octet-stream");
                if (!req.body.empty())
                    if (auto e = read_meta(nlohmann::json::parse(req.body, nullptr, false))) return e;
            } else {
                return gcs_error(400, "invalid", "Invalid upload type: '" + type + "'.");
            }
            if (name.empty()) return gcs_error(400, "required", "Required: object name.");
            if (name.size() > 1024 || name.find_first_of("\r\n") != std::string::npos)
                return gcs_error(400, "invalid", "The object name is invalid.");
            auto live = objs.find(name);
            if (auto e = check_preconditions(req.target, live == objs.end() ? nullptr : &live->second)) return e;
            if (type == "resumable") {
                auto s = std::make_shared<GcsSession>();
                s->bucket = bucket;
                s->name = name;
                s->content_type = ctype;
                s->metadata = meta;
                s->expect_crc32c = want_crc;
                s->expect_md5 = want_md5;
                bool bad = false;
                s->if_generation_match = int_param(req.target, "ifGenerationMatch", bad);
                if (auto len = req.headers.get("X-Upload-Content-Length")) {
                    if (len->empty() || len->find_first_not_of("0123456789") != std::string::npos)
                        return gcs_error(400, "invalid", "Invalid X-Upload-Content-Length.");
                    s->total = std::stoull(*len);
                }
                static std::atomic<std::uint64_t> counter{0};
                std::random_device rd;
                std::string id = "emu" + std::to_string(++counter) + "-" + std::to_string(rd()) + std::to_string(rd());
                st->sessions[id] = s;
                Response r;
                r.status = 200;
                r.headers.set("Location", base + "/upload/storage/v1/b/" + cmf::percent_encode(bucket) +
                                              "/o?uploadType=resumable&name=" + cmf::percent_encode(name) +
                                              "&upload_id=" + id);
                r.headers.set("X-GUploader-UploadID", id);
                return r;
            }
            std::string crc = cmf::crc32c_base64(cmf::crc32c(data));
            if (want_crc && *want_crc != crc)
                return gcs_error(400, "invalid", "Provided CRC32C \"" + *want_crc + "\" doesn't match calculated CRC32C \"" + crc + "\".");
            if (want_md5 && *want_md5 != cmf::md5_base64(data))
                return gcs_error(400, "invalid", "Provided MD5 hash doesn't match calculated MD5 hash.");
            GcsObject& o = commit(bucket, name, std::move(data), ctype, meta);
            return json_response(200, resource(o, base));
        }

        // ---------------------------------------------------------------- objects.list
        if (seg.size() == 3) {
            if (req.method != "GET") return gcs_error(405, "methodNotAllowed", "Method not allowed");
            std::string prefix = query_param(req.target, "prefix").value_or("");
            std::string delim = query_param(req.target, "delimiter").value_or("");
            bool bad = false;
            std::int64_t max = int_param(req.target, "maxResults", bad).value_or(1000);
            if (bad || max <= 0) return gcs_error(400, "invalid", "Invalid maxResults.");
            max = std::min<std::int64_t>(max, 1000);
            std::string after;
            bool after_prefix = false;
            if (auto t = query_param(req.target, "pageToken"); t && !t->empty()) {
                auto dec = cmf::base64_decode(*t);
                auto j = dec ? nlohmann::json::parse(*dec, nullptr, false) : nlohmann::json();
                if (!j.is_object() || !j.contains("a") || !j["a"].is_string())
                    return gcs_error(400, "invalid", "Invalid page token.");
                after = j["a"];
                after_prefix = j.value("p", false);
            }
            nlohmann::json items = nlohmann::json::array(), prefixes = nlohmann::json::array();
            std::string last_key;
            bool last_is_prefix = false, more = false;
            std::int64_t n = 0;
            for (auto it = after.empty() ? objs.lower_bound(prefix) : objs.upper_bound(after); it != objs.end(); ++it) {
                const std::string& name = it->first;
                if (name.compare(0, prefix.size(), prefix) != 0) {
                    if (name > prefix) break;
                    continue;
                }
                if (after_prefix && name.compare(0, after.size(), after) == 0) continue;
                std::string key = name;
                bool is_prefix = false;
                if (!delim.empty()) {
                    auto d = name.find(delim, prefix.size());
                    if (d != std::string::npos) {
                        key = name.substr(0, d + delim.size());
                        is_prefix = true;
                    }
                }
                if (is_prefix && last_is_prefix && key == last_key) continue;
                if (n == max) {
                    more = true;
                    break;
                }
                ++n;
                if (is_prefix) prefixes.push_back(key);
                else items.push_back(resource(it->second, base));
                last_key = key;
                last_is_prefix = is_prefix;
            }
            nlohmann::json out = {{"kind", "storage#objects"}};
            if (!items.empty()) out["items"] = items;
            if (!prefixes.empty()) out["prefixes"] = prefixes;
            if (more) out["nextPageToken"] = list_token_encode(last_key, last_is_prefix);
            return json_response(200, out);
        }

        // ---------------------------------------------------------------- one object
        std::string enc_name = rest.substr(rest.find("/o/") + 3);
        auto name_dec = cmf::percent_decode(enc_name);
        if (!name_dec || name_dec->empty()) return gcs_error(400, "invalid", "Invalid object name.");
        const std::string name = *name_dec;
        auto it = objs.find(name);
        bool bad = false;
        auto gen = int_param(req.target, "generation", bad);
        if (bad) return gcs_error(400, "invalid", "Invalid generation.");
        if (it == objs.end() || (gen && *gen != it->second.generation)) {
            if (auto e = check_preconditions(req.target, nullptr); e && req.method == "DELETE") return e;
            return gcs_error(404, "notFound", "No such object: " + bucket + "/" + name);
        }
        if (auto e = check_preconditions(req.target, &it->second)) return e;
        if (req.method == "DELETE") {
            objs.erase(it);
            Response r;
            r.status = 204;
            return r;
        }
        if (req.method != "GET" && req.method != "HEAD") return gcs_error(405, "methodNotAllowed", "Method not allowed");
        GcsObject o = it->second;  // copy: the data is shared, the lock can go
        lock.unlock();
        bool media = !json_api || query_param(req.target, "alt").value_or("json") == "media";
        if (!media) return json_response(200, resource(o, base));
        Response r;
        const std::string& d = *o.data;
        r.headers.set("Content-Type", o.content_type);
        r.headers.set("x-goog-hash", "crc32c=" + o.crc32c + ",md5=" + o.md5);
        r.headers.set("x-goog-generation", std::to_string(o.generation));
        r.headers.set("x-goog-metageneration", std::to_string(o.metageneration));
        r.headers.set("x-goog-stored-content-length", std::to_string(d.size()));
        r.headers.set("x-goog-stored-content-encoding", "identity");
        r.headers.set("Accept-Ranges", "bytes");
        r.headers.set("ETag", "\"" + o.md5 + "\"");
        std::uint64_t first = 0, len = d.size();
        if (auto range = req.headers.get("Range")) {
            bool malformed = false;
            auto br = parse_range(*range, d.size(), malformed);
            if (!br && !malformed) {
                Response e = gcs_error(416, "requestedRangeNotSatisfiable", "Request range not satisfiable");
                e.headers.set("Content-Range", "bytes */" + std::to_string(d.size()));
                return e;
            }
            if (br) {
                first = br->first;
                len = br->last - br->first + 1;
                r.status = 206;
                r.headers.set("Content-Range", "bytes " + std::to_string(br->first) + "-" + std::to_string(br->last) + "/" +
                                                   std::to_string(d.size()));
            }
        }
        if (req.method == "HEAD") r.headers.set("Content-Length", std::to_string(len));
        else r.set_slice(o.data, first, len);
        return r;
    };
}

}  // namespace cmf::emu

namespace cmf::emu {

// A resumable chunk whose connection broke mid-body (drop_request fault): GCS keeps what it
// received, in whole 256 KiB units (cloud.md 4.1: "the server may persist less than was sent"),
// so the client's status query finds the session somewhere inside the chunk it was sending.
inline Handler make_gcs_partial_service(Context& ctx) {
    using namespace gcs_detail;
    auto st = gcs_state(ctx);
    return [st](const Request& req) -> std::optional<Response> {
        if (req.method != "PUT" || path_of(req.target).rfind("/upload/storage/v1/", 0) != 0) return std::nullopt;
        auto upload_id = query_param(req.target, "upload_id");
        const std::string cr = req.headers.get("Content-Range").value_or("");
        if (!upload_id || cr.rfind("bytes ", 0) != 0) return std::nullopt;
        const auto dash = cr.find('-'), slash = cr.find('/');
        if (dash == std::string::npos || slash == std::string::npos || dash > slash) return std::nullopt;
        const std::string first_s = cr.substr(6, dash - 6);
        if (first_s.empty() || first_s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
        const std::uint64_t first = std::stoull(first_s);
        std::lock_guard lock(st->mu);
        auto it = st->sessions.find(*upload_id);
        if (it == st->sessions.end() || it->second->done || it->second->cancelled) return std::nullopt;
        auto& s = *it->second;
        const std::uint64_t have = s.data.size();
        if (first > have || first + req.body.size() <= have) return Response{};
        const std::uint64_t keep = (first + req.body.size()) / kChunkUnit * kChunkUnit;
        if (keep > have) s.data.append(req.body, have - first, keep - have);
        return Response{};
    };
}

}  // namespace cmf::emu
