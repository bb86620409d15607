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

#include "cmf/cloud/crc32c.h"
#include "cmf/cloud/encoding.h"
#include "cmf/cloud/md5.h"
#include "cmf/cloud/token_source.h"
#include "cmf/core/error.h"
#include "cmf/net/http.h"

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
            if (auto m = e->find("message"); m != e->end() && m->is_string()) return redact(m->get<std::string>(), {});
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

    // Downloads into `path` with parallel Range GETs into a temp file (pwrite), fsync, verifies
    // the whole object's crc32c (and md5Hash when present), refetching on a mismatch, then
    // renames into place. Returns the object's metadata.
    ObjectInfo download_to_file(const std::string& bucket, const std::string& object, const std::filesystem::path& path,
                                const DownloadOptions& dopt = {}) {
        const std::string where = "gs://" + bucket + "/" + object;
        std::optional<ObjectInfo> info = stat(bucket, object);
        if (!info) fail(ErrorKind::remote, where + ": no such object");
        std::filesystem::path tmp = path;
        tmp += ".cmf-partial";
        for (int whole = 1;; ++whole) {
            fetch_parts(bucket, object, *info, tmp, dopt);
            std::string bad = verify_file(tmp, *info);
            if (bad.empty()) break;
            if (whole >= dopt.whole_attempts) {
                std::error_code ec;
                std::filesystem::remove(tmp, ec);
                fail(ErrorKind::remote, where + ": downloaded data does not match the object's " + bad + " after " +
                                            std::to_string(whole) + " attempts");
            }
        }
        std::error_code ec;
        std::filesystem::rename(tmp, path, ec);
        if (ec) fail(ErrorKind::io, "cannot rename " + tmp.string() + " to " + path.string() + ": " + ec.message());
        sync_dir(path);
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

    // Resumable upload of a local file (cloud.md 4.1): survives dropped connections and 5xx by
    // asking the session how much it persisted; restarts the session on 404/410.
    UploadResult upload_file(const std::string& bucket, const std::string& object, const std::filesystem::path& path,
                             const UploadOptions& uopt = {}) {
        const std::string where = "gs://" + bucket + "/" + object;
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail(ErrorKind::io, "cannot open " + path.string() + ": " + std::strerror(errno));
        FdCloser closer{fd};
        struct stat st {};
        if (::fstat(fd, &st) != 0) fail(ErrorKind::io, "cannot stat " + path.string());
        const std::uint64_t total = static_cast<std::uint64_t>(st.st_size);
        const std::string ours = crc32c_base64(file_crc32c(fd, total, path));
        std::uint64_t chunk = std::max<std::uint64_t>(kResumableChunkMultiple,
                                                      uopt.chunk_size / kResumableChunkMultiple * kResumableChunkMultiple);
        std::string buf;
        for (int restart = 0;; ++restart) {
            std::optional<std::string> session = start_session(bucket, object, uopt, total, ours);
            if (!session) return UploadResult{false, std::nullopt};
            std::uint64_t offset = 0;
            int stalls = 0;
            bool gone = false;
            std::optional<net::Response> done;
            while (!done && !gone) {
                net::Response r;
                bool failed = false;
                std::uint64_t len = std::min(chunk, total - offset);
                try {
                    if (offset == total && total != 0) {
                        r = query_session(*session, total);
                    } else {
                        buf.resize(len);
                        read_at(fd, buf.data(), len, offset, path);
                        net::Request req;
                        req.method = "PUT";
                        req.url = net::Url::parse(*session);
                        req.headers.set("Content-Range", total == 0 ? "bytes */0"
                                                                    : "bytes " + std::to_string(offset) + "-" +
                                                                          std::to_string(offset + len - 1) + "/" +
                                                                          std::to_string(total));
                        if (offset + len == total) req.headers.set("x-goog-hash", "crc32c=" + ours);
                        req.body = buf;
                        // We recover with a status query ourselves; a blind resend could
                        // overlap what the server already persisted.
                        req.idempotent = false;
                        r = http_->send(req);
                    }
                } catch (const Error& e) {
                    if (e.kind() != ErrorKind::network) throw;
                    failed = true;
                }
                if (!failed) {
                    if (r.status == 200 || r.status == 201) {
                        done = std::move(r);
                        break;
                    }
                    if (r.status == 308) {
                        auto persisted = persisted_from_range(r.headers.get("Range"));
                        if (!persisted || *persisted > total)
                            fail(ErrorKind::remote, where + ": upload session reported a bad Range");
                        if (*persisted > offset) stalls = 0;
                        else ++stalls;
                        offset = *persisted;
                        if (stalls > opt_.max_upload_stalls)
                            fail(ErrorKind::remote, where + ": upload makes no progress");
                        continue;
                    }
                    if (r.status == 404 || r.status == 410) {
                        gone = true;
                        break;
                    }
                    if (r.status == 412 && uopt.if_generation_match) return UploadResult{false, std::nullopt};
                    if (!net::RetryPolicy::retryable_status(r.status)) check(r, "upload", bucket, object);
                    failed = true;
                }
                // Dropped connection or transient status: back off, then ask where we are.
                if (++stalls > opt_.max_upload_stalls)
                    fail(ErrorKind::network, where + ": upload failed " + std::to_string(stalls) + " times without progress");
                backoff(stalls);
                try {
                    net::Response q = query_session(*session, total);
                    if (q.status == 200 || q.status == 201) {
                        done = std::move(q);
                    } else if (q.status == 308) {
                        auto persisted = persisted_from_range(q.headers.get("Range"));
                        if (!persisted || *persisted > total)
                            fail(ErrorKind::remote, where + ": upload session reported a bad Range");
                        if (*persisted > offset) stalls = 0;
                        offset = *persisted;
                    } else if (q.status == 404 || q.status == 410) {
                        gone = true;
                    } else if (q.status == 412 && uopt.if_generation_match) {
                        return UploadResult{false, std::nullopt};
                    } else if (!net::RetryPolicy::retryable_status(q.status)) {
                        check(q, "upload", bucket, object);
                    }
                } catch (const Error& e) {
                    if (e.kind() != ErrorKind::network) throw;
                }
            }
            if (done) {
                ObjectInfo o = parse_object_resource(done->body);
                if (o.size != total)
                    fail(ErrorKind::remote, where + ": stored size " + std::to_string(o.size) + " differs from the file's " +
                                                std::to_string(total));
                if (o.crc32c != ours)
                    fail(ErrorKind::remote, where + ": stored crc32c " + o.crc32c + " differs from the file's " + ours);
                return UploadResult{true, std::move(o)};
            }
            if (restart >= opt_.max_upload_restarts)
                fail(ErrorKind::remote, where + ": the upload session expired " + std::to_string(restart + 1) + " times");
        }
    }

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
    struct FdCloser {
        int fd;
        ~FdCloser() {
            if (fd >= 0) ::close(fd);
        }
    };

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

    void backoff(int failures) const {
        auto ms = opt_.initial_backoff.count();
        for (int i = 1; i < failures && ms < opt_.max_backoff.count(); ++i) ms *= 2;
        ms = std::min<long long>(ms, opt_.max_backoff.count());
        thread_local std::mt19937_64 rng{std::random_device{}()};
        // full jitter
        auto sleep = std::uniform_int_distribution<long long>(ms / 2, std::max<long long>(ms, 1))(rng);
        std::this_thread::sleep_for(std::chrono::milliseconds(sleep));
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

    static void read_at(int fd, char* buf, std::uint64_t len, std::uint64_t off, const std::filesystem::path& path) {
        while (len) {
            ssize_t n = ::pread(fd, buf, len, static_cast<off_t>(off));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) fail(ErrorKind::io, "cannot read " + path.string());
            buf += n;
            len -= static_cast<std::uint64_t>(n);
            off += static_cast<std::uint64_t>(n);
        }
    }

    static std::uint32_t file_crc32c(int fd, std::uint64_t total, const std::filesystem::path& path) {
        Crc32c c;
        std::vector<char> buf(4 << 20);
        for (std::uint64_t off = 0; off < total;) {
            std::uint64_t n = std::min<std::uint64_t>(buf.size(), total - off);
            read_at(fd, buf.data(), n, off, path);
            c.update(buf.data(), n);
            off += n;
        }
        return c.value();
    }

    static void sync_dir(const std::filesystem::path& path) {
        auto dir = path.parent_path();
        if (dir.empty()) dir = ".";
        int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d >= 0) {
            ::fsync(d);
            ::close(d);
        }
    }

    // All bytes of the pinned generation into `tmp` (created/truncated to the object size).
    void fetch_parts(const std::string& bucket, const std::string& object, const ObjectInfo& info,
                     const std::filesystem::path& tmp, const DownloadOptions& dopt) {
        const std::string where = "gs://" + bucket + "/" + object;
        int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) fail(ErrorKind::io, "cannot create " + tmp.string() + ": " + std::strerror(errno));
        FdCloser closer{fd};
        if (::ftruncate(fd, static_cast<off_t>(info.size)) != 0)
            fail(ErrorKind::io, "cannot size " + tmp.string() + ": " + std::strerror(errno));
        const std::uint64_t part = std::max<std::uint64_t>(dopt.part_size, 1);
        const std::uint64_t nparts = (info.size + part - 1) / part;
        std::atomic<std::uint64_t> next{0};
        std::mutex err_mu;
        std::exception_ptr first_error;
        std::atomic<bool> abort{false};
        auto worker = [&] {
            try {
                for (std::uint64_t i; !abort && (i = next++) < nparts;) {
                    std::uint64_t a = i * part, b = std::min(info.size, a + part) - 1;
                    fetch_range(bucket, object, info, fd, a, b, dopt, where);
                }
            } catch (...) {
                std::lock_guard lock(err_mu);
                if (!first_error) first_error = std::current_exception();
                abort = true;
            }
        };
        int nthreads = static_cast<int>(std::min<std::uint64_t>(std::max(dopt.threads, 1), std::max<std::uint64_t>(nparts, 1)));
        std::vector<std::thread> pool;
        for (int t = 1; t < nthreads; ++t) pool.emplace_back(worker);
        worker();
        for (auto& t : pool) t.join();
        if (first_error) std::rethrow_exception(first_error);
        if (::fsync(fd) != 0) fail(ErrorKind::io, "cannot fsync " + tmp.string() + ": " + std::strerror(errno));
    }

    // Bytes [a, b] into fd at the same offsets; resumes from the last byte written after a
    // dropped connection or a retryable status.
    void fetch_range(const std::string& bucket, const std::string& object, const ObjectInfo& info, int fd,
                     std::uint64_t a, std::uint64_t b, const DownloadOptions& dopt, const std::string& where) {
        std::uint64_t pos = a;
        int failures = 0;
        while (pos <= b) {
            std::uint64_t start = pos;
            bool io_error = false;
            net::BodySink sink = [&](const char* data, std::size_t len) {
                if (pos + len > b + 1) return false;  // more than we asked for: the server ignored Range
                for (std::size_t done = 0; done < len;) {
                    ssize_t n = ::pwrite(fd, data + done, len - done, static_cast<off_t>(pos + done));
                    if (n < 0 && errno == EINTR) continue;
                    if (n <= 0) {
                        io_error = true;
                        return false;
                    }
                    done += static_cast<std::size_t>(n);
                }
                pos += len;
                return true;
            };
            std::string url = object_url(bucket, object) + "?alt=media&generation=" + std::to_string(info.generation);
            net::Request req = json_request("GET", url);
            req.headers.set("Range", "bytes=" + std::to_string(start) + "-" + std::to_string(b));
            bool ok = false;
            std::string why;
            try {
                net::Response r = send(req, sink);
                if (io_error) fail(ErrorKind::io, "cannot write the download of " + where + ": " + std::strerror(errno));
                if (r.status == 206 || (r.status == 200 && start == 0 && b + 1 == info.size)) {
                    ok = pos == b + 1;
                    if (!ok) why = "short body";
                } else if (r.status == 200) {
                    pos = start;  // the whole object came back; nothing trustworthy was kept
                    why = "server ignored Range";
                } else if (r.status == 404) {
                    fail(ErrorKind::remote, where + ": generation " + std::to_string(info.generation) +
                                                " disappeared during the download");
                } else if (!net::RetryPolicy::retryable_status(r.status)) {
                    check(r, "download", bucket, object);
                    why = "HTTP " + std::to_string(r.status);
                } else {
                    why = "HTTP " + std::to_string(r.status);
                }
            } catch (const Error& e) {
                if (e.kind() != ErrorKind::network) throw;
                why = e.what();
            }
            if (ok) return;
            if (pos > start) failures = 0;  // progress: this is a new failure, not the same one
            if (++failures >= dopt.attempts_per_part)
                fail(ErrorKind::network, where + ": bytes " + std::to_string(a) + "-" + std::to_string(b) + " failed " +
                                             std::to_string(failures) + " times (" + why + ")");
            backoff(failures);
        }
    }

    // "" when the file matches the object, else which checksum differs.
    static std::string verify_file(const std::filesystem::path& tmp, const ObjectInfo& info) {
        int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail(ErrorKind::io, "cannot reopen " + tmp.string());
        FdCloser closer{fd};
        Crc32c c;
        std::optional<Md5> md5;
        if (!info.md5_hash.empty()) md5.emplace();
        std::vector<char> buf(4 << 20);
        for (std::uint64_t off = 0; off < info.size;) {
            std::uint64_t n = std::min<std::uint64_t>(buf.size(), info.size - off);
            read_at(fd, buf.data(), n, off, tmp);
            c.update(buf.data(), n);
            if (md5) md5->update(buf.data(), n);
            off += n;
        }
        if (!info.crc32c.empty() && crc32c_base64(c.value()) != info.crc32c) return "crc32c";
        if (md5 && md5->finish_base64() != info.md5_hash) return "md5Hash";
        return "";
    }

    std::shared_ptr<net::HttpClient> http_;
    std::shared_ptr<TokenSource> tokens_;
    GcsOptions opt_;
};

}  // namespace cmf::cloud
