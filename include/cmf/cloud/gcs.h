// cmf::cloud::GcsClient — the GCS JSON API over net::HttpClient + TokenSource.
//
// Facts it relies on (cloud.md section 4):
//   metadata/list/delete  {endpoint}/storage/v1/b/{bucket}/o[/{object}]   object name %-encoded, '/' -> %2F
//   uploads               {endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=media|multipart|resumable&name=
//   download              .../o/{object}?alt=media&generation=G, Range: bytes=a-b -> 206
//   int64 fields (size, generation, metageneration) are JSON strings
//   crc32c = base64 of the big-endian CRC32C; md5Hash = base64 of MD5 (absent on composites)
//   ifGenerationMatch=0 creates only if absent; a violation is 412
//   resumable: POST -> 200 + Location (session URI, a secret: never in messages); PUT chunks
//   of a 256 KiB multiple with Content-Range: bytes a-b/TOTAL; 308 + Range: bytes=0-N means
//   N+1 bytes persisted (no Range = 0); status query = empty PUT, Content-Range: bytes */TOTAL;
//   404/410 = the session is gone; final chunk answers 200/201 with the object resource.
//
// STORAGE_EMULATOR_HOST, as Google's client libraries read it: when set, it replaces the
// endpoint (scheme://host:port; a bare host:port gets "http://") and requests carry no
// credentials.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmf/core/crc32c.h"
#include "cmf/core/encoding.h"
#include "cmf/core/digest.h"
#include "cmf/cloud/token_source.h"
#include "cmf/core/error.h"
#include "cmf/net/http.h"
#include "cmf/net/transfer.h"

namespace cmf::cloud {

inline constexpr const char* kGcsDefaultEndpoint = "https://storage.googleapis.com";
// Non-final resumable chunks must be a multiple of this (cloud.md 4.1, python _CHUNK_SIZE_MULTIPLE).
inline constexpr std::uint64_t kResumableChunkMultiple = 262144;
// Per-page list size; the API maximum is 1000.
inline constexpr int kListPageSize = 1000;

// gs://BUCKET/OBJECT
struct GcsPath {
    std::string bucket;
    std::string object;  // may be empty for "gs://bucket" or "gs://bucket/"

    static GcsPath parse(std::string_view text) {
        constexpr std::string_view scheme = "gs://";
        if (text.substr(0, scheme.size()) != scheme)
            fail(ErrorKind::usage, "not a gs:// URL: " + std::string(text.substr(0, 200)));
        std::string_view rest = text.substr(scheme.size());
        std::size_t slash = rest.find('/');
        GcsPath p;
        p.bucket = std::string(rest.substr(0, slash));
        if (slash != std::string_view::npos) p.object = std::string(rest.substr(slash + 1));
        if (!valid_bucket(p.bucket)) fail(ErrorKind::usage, "invalid GCS bucket name in " + std::string(text.substr(0, 200)));
        if (p.object.size() > 1024 || p.object.find_first_of("\r\n") != std::string::npos)
            fail(ErrorKind::usage, "invalid GCS object name in " + std::string(text.substr(0, 200)));
        return p;
    }
    std::string str() const { return "gs://" + bucket + "/" + object; }

    // 3-63 characters per dot-separated component, 222 total; lower-case letters, digits, - _ .;
    // starts and ends with a letter or digit.
    static bool valid_bucket(std::string_view b) {
        if (b.size() < 3 || b.size() > 222) return false;
        for (char c : b)
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')) return false;
        auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
        return alnum(b.front()) && alnum(b.back());
    }
};

struct ObjectInfo {
    std::string bucket;
    std::string name;
    std::uint64_t size = 0;
    std::int64_t generation = 0;
    std::int64_t metageneration = 0;
    std::string crc32c;    // base64, "" when absent
    std::string md5_hash;  // base64, "" when absent (composite objects)
    std::string content_type;
    std::string etag;
    std::string updated;
    std::map<std::string, std::string> metadata;
};

struct ListResult {
    std::vector<ObjectInfo> items;
    std::vector<std::string> prefixes;
};

struct UploadOptions {
    std::string content_type = "application/octet-stream";
    std::map<std::string, std::string> metadata;
    // 0 = create only if absent (markers); a generation = replace only that generation.
    std::optional<std::int64_t> if_generation_match;
    // Resumable chunk size; rounded down to a multiple of 256 KiB (at least 256 KiB).
    std::uint64_t chunk_size = 16ull << 20;
};

struct UploadResult {
    bool created = false;  // false: the ifGenerationMatch precondition failed (412), nothing written
    std::optional<ObjectInfo> object;
};

struct DownloadOptions {
    int threads = 8;                        // parallel Range GETs
    std::uint64_t part_size = 32ull << 20;  // bytes per Range GET (python transfer_manager: 32 MiB)
    int attempts_per_part = 10;             // failures of one part before giving up
    int whole_attempts = 3;                 // full refetches after a checksum mismatch
};

struct GcsOptions {
    std::string endpoint = kGcsDefaultEndpoint;
    bool anonymous = false;  // send no Authorization (emulator)
    std::chrono::milliseconds initial_backoff{200};
    std::chrono::milliseconds max_backoff{8000};
    // Consecutive resumable-upload failures without progress before giving up.
    int max_upload_stalls = 16;
    // New sessions after 404/410 on the session URI.
    int max_upload_restarts = 3;
};

// STORAGE_EMULATOR_HOST -> endpoint override + anonymous; else the defaults.
inline GcsOptions gcs_options_from_env(const Env& env = process_env()) {
    GcsOptions o;
    if (auto h = env("STORAGE_EMULATOR_HOST"); h && !h->empty()) {
        std::string e = *h;
        if (e.find("://") == std::string::npos) e = "http://" + e;
        while (!e.empty() && e.back() == '/') e.pop_back();
        o.endpoint = e;
        o.anonymous = true;
    }
    return o;
}

namespace detail {
inline std::uint64_t json_u64(const nlohmann::json& v, const char* what) {
    if (v.is_number_unsigned()) return v.get<std::uint64_t>();
    if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(v.get<std::int64_t>());
    if (v.is_string()) {
        const auto& s = v.get_ref<const std::string&>();
        if (!s.empty() && s.size() <= 19 && s.find_first_not_of("0123456789") == std::string::npos)
            return std::stoull(s);
    }
    fail(ErrorKind::remote, std::string("GCS: object resource has a bad ") + what);
}
inline std::string json_str(const nlohmann::json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return "";
    return it->get<std::string>();
}
}  // namespace detail

// Parses an object resource; throws cmf::Error(remote) on a malformed one.
inline ObjectInfo parse_object_json(const nlohmann::json& j) {
    if (!j.is_object()) fail(ErrorKind::remote, "GCS: object resource is not a JSON object");
    ObjectInfo o;
    o.bucket = detail::json_str(j, "bucket");
    o.name = detail::json_str(j, "name");
    if (o.name.empty()) fail(ErrorKind::remote, "GCS: object resource has no name");
    if (auto it = j.find("size"); it != j.end()) o.size = detail::json_u64(*it, "size");
    if (auto it = j.find("generation"); it != j.end()) o.generation = static_cast<std::int64_t>(detail::json_u64(*it, "generation"));
    if (auto it = j.find("metageneration"); it != j.end())
        o.metageneration = static_cast<std::int64_t>(detail::json_u64(*it, "metageneration"));
    o.crc32c = detail::json_str(j, "crc32c");
    o.md5_hash = detail::json_str(j, "md5Hash");
    o.content_type = detail::json_str(j, "contentType");
    o.etag = detail::json_str(j, "etag");
    o.updated = detail::json_str(j, "updated");
    if (auto it = j.find("metadata"); it != j.end() && it->is_object())
        for (const auto& [k, v] : it->items())
            if (v.is_string()) o.metadata[k] = v.get<std::string>();
    return o;
}

inline ObjectInfo parse_object_resource(std::string_view body) {
    nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
    return parse_object_json(j);
}

// One page of objects.list: items, prefixes, nextPageToken ("" on the last page).
inline ListResult parse_list_page(std::string_view body, std::string& next_page_token) {
    nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
    if (!j.is_object()) fail(ErrorKind::remote, "GCS: list reply is not a JSON object");
    ListResult r;
    if (auto it = j.find("items"); it != j.end()) {
        if (!it->is_array()) fail(ErrorKind::remote, "GCS: list reply has a bad items field");
        for (const auto& o : *it) r.items.push_back(parse_object_json(o));
    }
    if (auto it = j.find("prefixes"); it != j.end()) {
        if (!it->is_array()) fail(ErrorKind::remote, "GCS: list reply has a bad prefixes field");
        for (const auto& p : *it)
            if (p.is_string()) r.prefixes.push_back(p.get<std::string>());
    }
    next_page_token = detail::json_str(j, "nextPageToken");
    return r;
}

// Google's error body {"error":{"code":N,"message":"...","errors":[{"reason":...}]}} -> message.
inline std::string gcs_error_message(std::string_view body) {
    nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_object())
        if (auto e = j.find("error"); e != j.end() && e->is_object())
            if (auto m = e->find("message"); m != e->end() && m->is_string()) return one_line(m->get<std::string>());
    return "";
}

// 308 `Range: bytes=0-N` -> N+1; absent -> 0 (cloud.md 4.1 step 3). nullopt when malformed.
inline std::optional<std::uint64_t> persisted_from_range(const std::optional<std::string>& range) {
    if (!range) return 0;
    std::string_view r = *range;
    constexpr std::string_view pre = "bytes=0-";
    if (r.substr(0, pre.size()) != pre) return std::nullopt;
    r.remove_prefix(pre.size());
    if (r.empty() || r.size() > 19 || r.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
    return std::stoull(std::string(r)) + 1;
}

class GcsClient {
public:
    // `tokens` may be null only when options.anonymous.
    GcsClient(std::shared_ptr<net::HttpClient> http, std::shared_ptr<TokenSource> tokens, GcsOptions options = {})
        : http_(std::move(http)), tokens_(std::move(tokens)), opt_(std::move(options)) {
        while (!opt_.endpoint.empty() && opt_.endpoint.back() == '/') opt_.endpoint.pop_back();
        if (!opt_.anonymous && !tokens_) fail(ErrorKind::internal, "GcsClient needs a token source");
    }

    const GcsOptions& options() const { return opt_; }

    // Object metadata; nullopt when the object does not exist.
    std::optional<ObjectInfo> stat(const std::string& bucket, const std::string& object) {
        net::Request req = json_request("GET", object_url(bucket, object));
        net::Response r = send(req);
        if (r.status == 404 && !bucket_missing(r)) return std::nullopt;
        check(r, "stat", bucket, object);
        return parse_object_resource(r.body);
    }

    // All objects under `prefix`, following nextPageToken. With a delimiter ("/"), names below
    // the next delimiter are folded into `prefixes`.
    ListResult list(const std::string& bucket, const std::string& prefix = "", const std::string& delimiter = "",
                    int page_size = kListPageSize) {
        ListResult all;
        std::string token;
        for (int page = 0;; ++page) {
            std::vector<std::pair<std::string, std::string>> q;
            if (!prefix.empty()) q.emplace_back("prefix", prefix);
            if (!delimiter.empty()) q.emplace_back("delimiter", delimiter);
            q.emplace_back("maxResults", std::to_string(page_size));
            if (!token.empty()) q.emplace_back("pageToken", token);
            net::Request req = json_request("GET", bucket_url(bucket) + "/o?" + form_encode(q));
            net::Response r = send(req);
            check(r, "list", bucket, prefix);
            std::string next;
            ListResult part = parse_list_page(r.body, next);
            for (auto& o : part.items) all.items.push_back(std::move(o));
            for (auto& p : part.prefixes) all.prefixes.push_back(std::move(p));
            if (next.empty()) break;
            if (next == token) fail(ErrorKind::remote, "GCS: list of gs://" + bucket + " repeats its page token");
            token = std::move(next);
        }
        return all;
    }

    // Streams the object (or bytes [first, last] of it) into `sink`. Pass `generation` to pin a
    // version. Returns the HTTP response (headers; body empty).
    net::Response read(const std::string& bucket, const std::string& object, const net::BodySink& sink,
                       std::optional<std::pair<std::uint64_t, std::uint64_t>> range = std::nullopt,
                       std::optional<std::int64_t> generation = std::nullopt) {
        std::string url = object_url(bucket, object) + "?alt=media";
        if (generation) url += "&generation=" + std::to_string(*generation);
        net::Request req = json_request("GET", url);
        if (range) req.headers.set("Range", "bytes=" + std::to_string(range->first) + "-" + std::to_string(range->second));
        net::Response r = send(req, sink);
        check(r, "download", bucket, object);
        return r;
    }

    // Whole object into memory (small objects: markers, JSON).
    std::optional<std::string> read_all(const std::string& bucket, const std::string& object) {
        std::string url = object_url(bucket, object) + "?alt=media";
        net::Response r = send(json_request("GET", url));
        if (r.status == 404 && !bucket_missing(r)) return std::nullopt;
        check(r, "download", bucket, object);
        return std::move(r.body);
    }

    // Downloads the object's current generation into `path` through the transfer engine
    // (net/transfer.h): parallel Range GETs of that generation, a broken stream continued where it
    // stopped, crc32c (and md5Hash when present) checked before `path` appears, a mismatch
    // refetched. Returns the object's metadata.
    ObjectInfo download_to_file(const std::string& bucket, const std::string& object, const std::filesystem::path& path,
                                const DownloadOptions& dopt = {}) {
        const std::string where = "gs://" + bucket + "/" + object;
        std::optional<ObjectInfo> info = stat(bucket, object);
        if (!info) fail(ErrorKind::remote, where + ": no such object");
        const std::string url = object_url(bucket, object) + "?alt=media&generation=" + std::to_string(info->generation);
        net::Source src;
        src.what = "GCS download " + where;
        src.identity = where + "#" + std::to_string(info->generation);
        src.request = [this, url] { return json_request("GET", url); };
        src.send = [this](const net::Request& q, const net::BodySink& sink) { return send(q, sink); };
        const std::int64_t generation = info->generation;
        src.fail_status = [this, bucket, object, where, generation](const net::Response& r) {
            if (r.status == 404)
                fail(ErrorKind::remote, where + ": generation " + std::to_string(generation) + " disappeared during the download");
            check(r, "download", bucket, object);
        };
        net::TransferOptions o;
        o.connections = std::max(1, dopt.threads);
        o.chunk_size = std::max<std::uint64_t>(dopt.part_size, 1);
        o.expected_size = info->size;
        if (!info->crc32c.empty()) o.checksums.push_back(net::Checksum::crc32c(info->crc32c));
        if (!info->md5_hash.empty()) o.checksums.push_back(net::Checksum::md5(info->md5_hash));
        o.retry = retry_policy(dopt.attempts_per_part);
        o.verify_attempts = std::max(1, dopt.whole_attempts);
        last_download_ = net::download(*http_, src, path, o);
        return *info;
    }

    // Single-request upload for small objects (markers, JSON, logs). With if_generation_match,
    // a 412 returns {created=false} instead of throwing.
    UploadResult upload(const std::string& bucket, const std::string& object, std::string_view data,
                        const UploadOptions& uopt = {}) {
        std::vector<std::pair<std::string, std::string>> q;
        net::Request req;
        req.method = "POST";
        if (uopt.metadata.empty()) {
            q = {{"uploadType", "media"}, {"name", object}};
            req.headers.set("Content-Type", uopt.content_type);
            req.body = std::string(data);
        } else {
            q = {{"uploadType", "multipart"}};
            nlohmann::json meta = {{"name", object}, {"contentType", uopt.content_type}};
            meta["metadata"] = uopt.metadata;
            meta["crc32c"] = crc32c_base64(crc32c(data));
            std::string boundary = make_boundary(data);
            req.headers.set("Content-Type", "multipart/related; boundary=" + boundary);
            req.body = "--" + boundary + "\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n" + meta.dump() +
                       "\r\n--" + boundary + "\r\nContent-Type: " + uopt.content_type + "\r\n\r\n" + std::string(data) +
                       "\r\n--" + boundary + "--\r\n";
        }
        if (uopt.if_generation_match) q.emplace_back("ifGenerationMatch", std::to_string(*uopt.if_generation_match));
        req.url = net::Url::parse(opt_.endpoint + "/upload/storage/v1/b/" + percent_encode(bucket) + "/o?" + form_encode(q));
        // Retrying a create is safe only under a generation precondition (cloud.md 4.4).
        req.idempotent = uopt.if_generation_match.has_value();
        net::Response r = send(req);
        if (r.status == 412 && uopt.if_generation_match) return UploadResult{false, std::nullopt};
        check(r, "upload", bucket, object);
        ObjectInfo o = parse_object_resource(r.body);
        std::string ours = crc32c_base64(crc32c(data));
        if (!o.crc32c.empty() && o.crc32c != ours)
            fail(ErrorKind::remote, "gs://" + bucket + "/" + object + ": stored crc32c " + o.crc32c +
                                        " differs from the uploaded data's " + ours);
        return UploadResult{true, std::move(o)};
    }

    // Resumable upload of a local file (cloud.md 4.1) through the transfer engine
    // (net/transfer.h): chunks of a 256 KiB multiple; after a dropped connection or a 5xx it asks
    // the session how much it persisted and continues from there (at any 256 KiB boundary);
    // a session that answers 404/410 is started again. The stored object's size and crc32c are
    // checked against the file.
    UploadResult upload_file(const std::string& bucket, const std::string& object, const std::filesystem::path& path,
                             const UploadOptions& uopt = {}) {
        const std::string where = "gs://" + bucket + "/" + object;
        std::error_code ec;
        const std::uint64_t total = std::filesystem::file_size(path, ec);
        if (ec) fail(ErrorKind::io, "cannot stat " + path.string() + ": " + ec.message());
        const std::string ours = crc32c_base64(file_crc32c(path, total));
        struct PreconditionFailed {};
        std::string session;
        auto ack_of = [&](net::Response r) {
            net::UploadAck a;
            if (r.status == 200 || r.status == 201) {
                a.state = net::UploadAck::State::complete;
            } else if (r.status == 308) {
                auto persisted = persisted_from_range(r.headers.get("Range"));
                if (!persisted || *persisted > total) fail(ErrorKind::remote, where + ": upload session reported a bad Range");
                a.state = net::UploadAck::State::persisted;
                a.persisted = *persisted;
            } else if (r.status == 404 || r.status == 410) {
                a.state = net::UploadAck::State::gone;
            } else if (r.status == 412 && uopt.if_generation_match) {
                throw PreconditionFailed{};
            } else if (net::RetryPolicy::retryable_status(r.status)) {
                a.state = net::UploadAck::State::transient;
            } else {
                check(r, "upload", bucket, object);
                fail(ErrorKind::remote, "GCS upload " + where + ": HTTP " + std::to_string(r.status));
            }
            a.response = std::move(r);
            return a;
        };
        net::UploadSession s;
        s.what = "GCS upload " + where;
        s.start = [&] {
            auto started = start_session(bucket, object, uopt, total, ours);
            if (!started) return false;
            session = *started;
            return true;
        };
        s.send = [&](std::uint64_t offset, net::BodySource body) {
            const std::uint64_t len = *body.size;
            net::Request req;
            req.method = "PUT";
            req.url = net::Url::parse(session);
            req.headers.set("Content-Range", total == 0 ? "bytes */0"
                                                        : "bytes " + std::to_string(offset) + "-" + std::to_string(offset + len - 1) +
                                                              "/" + std::to_string(total));
            if (offset + len == total) req.headers.set("x-goog-hash", "crc32c=" + ours);
            req.source = std::move(body);
            // The engine recovers with a status query; a blind resend could overlap what the
            // server already persisted.
            req.idempotent = false;
            return ack_of(http_->send(req));
        };
        s.query = [&] { return ack_of(query_session(session, total)); };
        net::UploadOptions o;
        o.chunk_size = std::max<std::uint64_t>(kResumableChunkMultiple, uopt.chunk_size / kResumableChunkMultiple * kResumableChunkMultiple);
        o.retry = retry_policy(opt_.max_upload_stalls);
        o.max_restarts = opt_.max_upload_restarts;
        net::UploadResult r;
        try {
            r = net::upload(path, s, o);
        } catch (const PreconditionFailed&) {
            return UploadResult{false, std::nullopt};
        }
        if (!r.started) return UploadResult{false, std::nullopt};
        ObjectInfo info = parse_object_resource(r.final.body);
        if (info.size != total)
            fail(ErrorKind::remote, where + ": stored size " + std::to_string(info.size) + " differs from the file's " + std::to_string(total));
        if (info.crc32c != ours) fail(ErrorKind::remote, where + ": stored crc32c " + info.crc32c + " differs from the file's " + ours);
        last_upload_ = r;
        return UploadResult{true, std::move(info)};
    }

    // What the last upload_file / download_to_file had to survive (tests read it; not meant for
    // concurrent calls).
    const net::UploadResult& last_upload() const { return last_upload_; }
    const net::TransferResult& last_download() const { return last_download_; }

    // Deletes the object (optionally only that generation). false when it did not exist.
    bool remove(const std::string& bucket, const std::string& object,
                std::optional<std::int64_t> if_generation_match = std::nullopt) {
        std::string url = object_url(bucket, object);
        if (if_generation_match) url += "?ifGenerationMatch=" + std::to_string(*if_generation_match);
        net::Request req = json_request("DELETE", url);
        net::Response r = send(req);
        if (r.status == 404 && !bucket_missing(r)) return false;
        check(r, "delete", bucket, object);
        return true;
    }

    std::string bucket_url(const std::string& bucket) const {
        return opt_.endpoint + "/storage/v1/b/" + percent_encode(bucket);
    }
    std::string object_url(const std::string& bucket, const std::string& object) const {
        return bucket_url(bucket) + "/o/" + percent_encode(object);
    }

private:
    net::Request json_request(const std::string& method, const std::string& url) const {
        net::Request req;
        req.method = method;
        req.url = net::Url::parse(url);
        return req;
    }

    // Adds credentials; on 401 drops the cached token and tries once more (google-auth's
    // DEFAULT_REFRESH_STATUS_CODES, cloud.md section 3).
    net::Response send(net::Request req, const net::BodySink& sink = {}) {
        for (int attempt = 0;; ++attempt) {
            if (!opt_.anonymous) {
                req.headers.set("Authorization", "Bearer " + tokens_->access_token());
                if (auto qp = tokens_->quota_project()) req.headers.set("x-goog-user-project", *qp);
            }
            net::Response r = http_->send(req, sink);
            if (r.status == 401 && !opt_.anonymous && attempt == 0) {
                tokens_->invalidate();
                continue;
            }
            return r;
        }
    }

    // A 404 for a missing bucket is a configuration error, not an absent object: GCS says
    // "The specified bucket does not exist." in the error body.
    static bool bucket_missing(const net::Response& r) {
        return gcs_error_message(r.body).find("bucket does not exist") != std::string::npos;
    }

    void check(const net::Response& r, const char* op, const std::string& bucket, const std::string& object) const {
        if (r.status >= 200 && r.status < 300) return;
        std::string where = "gs://" + bucket + "/" + object;
        std::string msg = gcs_error_message(r.body);
        std::string line = "GCS " + std::string(op) + " " + where + ": HTTP " + std::to_string(r.status) +
                           (msg.empty() ? "" : " (" + msg + ")");
        if (r.status == 401 || r.status == 403)
            fail(ErrorKind::auth, line + (opt_.anonymous ? "" : "; credentials: " + tokens_->describe()));
        fail(ErrorKind::remote, line);
    }

    static std::string make_boundary(std::string_view data) {
        std::mt19937_64 rng{std::random_device{}()};
        for (;;) {
            std::string b = "cmf-" + std::to_string(rng()) + std::to_string(rng());
            if (data.find(b) == std::string_view::npos) return b;
        }
    }

    // POST uploadType=resumable -> session URI; nullopt when the precondition failed (412).
    std::optional<std::string> start_session(const std::string& bucket, const std::string& object, const UploadOptions& uopt,
                                             std::uint64_t total, const std::string& crc) {
        std::vector<std::pair<std::string, std::string>> q = {{"uploadType", "resumable"}, {"name", object}};
        if (uopt.if_generation_match) q.emplace_back("ifGenerationMatch", std::to_string(*uopt.if_generation_match));
        net::Request req;
        req.method = "POST";
        req.url = net::Url::parse(opt_.endpoint + "/upload/storage/v1/b/" + percent_encode(bucket) + "/o?" + form_encode(q));
        nlohmann::json meta = {{"name", object}, {"contentType", uopt.content_type}, {"crc32c", crc}};
        if (!uopt.metadata.empty()) meta["metadata"] = uopt.metadata;
        req.body = meta.dump();
        req.headers.set("Content-Type", "application/json; charset=UTF-8");
        req.headers.set("X-Upload-Content-Type", uopt.content_type);
        req.headers.set("X-Upload-Content-Length", std::to_string(total));
        // Initiating creates no object; a duplicate session is harmless.
        req.idempotent = true;
        net::Response r = send(req);
        if (r.status == 412 && uopt.if_generation_match) return std::nullopt;
        check(r, "upload", bucket, object);
        auto loc = r.headers.get("Location");
        if (!loc || loc->empty())
            fail(ErrorKind::remote, "GCS upload gs://" + bucket + "/" + object + ": no session URI in the reply");
        try {
            (void)net::Url::parse(*loc);
        } catch (const Error&) {
            fail(ErrorKind::remote, "GCS upload gs://" + bucket + "/" + object + ": malformed session URI");
        }
        return *loc;
    }

    net::Response query_session(const std::string& session, std::uint64_t total) {
        net::Request req;
        req.method = "PUT";
        req.url = net::Url::parse(session);
        req.headers.set("Content-Range", "bytes */" + std::to_string(total));
        req.headers.set("Content-Length", "0");
        req.idempotent = true;
        return http_->send(req);
    }

    static std::uint32_t file_crc32c(const std::filesystem::path& path, std::uint64_t total) {
        Crc32c c;
        const std::uint64_t n = read_file_chunks(path, [&](const char* b, std::size_t len) { c.update(b, len); });
        if (n != total) fail(ErrorKind::io, path.string() + " changed while it was read");
        return c.value();
    }

    // The engine's retry policy from this client's backoff settings.
    net::RetryPolicy retry_policy(int attempts) const {
        net::RetryPolicy p;
        p.max_attempts = std::max(1, attempts);
        p.initial_backoff = opt_.initial_backoff;
        p.max_backoff = opt_.max_backoff;
        return p;
    }

    std::shared_ptr<net::HttpClient> http_;
    std::shared_ptr<TokenSource> tokens_;
    GcsOptions opt_;
    net::UploadResult last_upload_;
    net::TransferResult last_download_;
};

}  // namespace cmf::cloud
