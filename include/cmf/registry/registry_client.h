// Ollama registry client (OCI distribution API with Ollama's token flow), written against the
// abstract cmf::net::HttpClient (research/ollama.md sections 1 and 2):
//
//   auth   a request answered 401 carries `WWW-Authenticate: Bearer realm=..,service=..,scope=..`;
//          GET <realm>?<nonce,scope..,service,ts sorted, form-encoded> with
//          `Authorization: <P>:<S>`, S = Ed25519 over "GET,<token url>,<Z>"; the reply
//          {"token":..} is sent as Bearer on the retried request and every later one. A second
//          401 means the key may not access the repository.
//   push   per blob (layers, then config), one blob at a time: HEAD (2xx: skip) -> POST
//          uploads/ (201: mounted; 202: session URL) -> PATCH each part (Content-Range a-b,
//          X-Redirect-Uploads: 1); a 307 sends the part to the presigned `Location` by PUT
//          (no Authorization) while the next PATCH goes to `Docker-Upload-Location`, so parts
//          go to storage in parallel -> PUT <session>?digest=..&etag=<md5 of part md5s>-<n>.
//          Then PUT the manifest. A broken PATCH is resumed from the offset the session reports
//          (GET upload URL -> Range: 0-N), or the session is started over (net/transfer.h).
//   pull   GET the manifest, then every missing blob in parallel ranged parts through the
//          transfer engine (resumed mid-body, SHA-256 verified before the blob gets its final
//          name); the manifest is stored last, byte for byte as served.
#pragma once

#include <chrono>
#include <ctime>
#include <fcntl.h>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <openssl/rand.h>

#include "cmf/core/digest.h"
#include "cmf/core/encoding.h"
#include "cmf/core/error.h"
#include "cmf/net/http.h"
#include "cmf/net/transfer.h"
#include "cmf/registry/ed25519_key.h"
#include "cmf/registry/local_store.h"
#include "cmf/registry/model_name.h"
#include "cmf/registry/ollama_model.h"

namespace cmf::ollama {

// Part sizes of server/upload.go and download.go: size/16 clamped to [100 MB, 1000 MB]
// (decimal megabytes), at most 16 parts in flight; 6 attempts per part, sleeping 2^try seconds.
inline constexpr uint64_t kMinPartSize = 100'000'000;
inline constexpr uint64_t kMaxPartSize = 1'000'000'000;
inline constexpr int kPartsInFlight = 16;
inline constexpr int kPartAttempts = 6;

// The fixed third field of the signed string: standard base64 of the hex SHA-256 of "".
inline constexpr std::string_view kEmptyBodyHashB64 = "ZTNiMGM0NDI5OGZjMWMxNDlhZmJmNGM4OTk2ZmI5MjQyN2FlNDFlNDY0OWI5MzRjYTQ5NTk5MWI3ODUyYjg1NQ==";

struct RegistryOptions {
    uint64_t min_part = kMinPartSize, max_part = kMaxPartSize;
    int parts_in_flight = kPartsInFlight;
    int part_attempts = kPartAttempts;
    std::chrono::milliseconds backoff_unit{1000};  // sleep backoff_unit * 2^try between attempts
    std::function<Ed25519Key()> key;               // loaded on the first 401 only
    std::function<int64_t()> now;                  // Unix seconds (tests pin it)
    std::function<void(const std::string&)> log;   // progress lines (never secrets)
};

struct PushResult {
    std::string manifest_digest;
    int uploaded = 0, skipped = 0;
    uint64_t bytes_uploaded = 0;
};

struct PullResult {
    std::string manifest_digest;
    int downloaded = 0, present = 0;
    uint64_t bytes_downloaded = 0;
};

// Part boundaries [offset, length) of a blob.
inline std::vector<std::pair<uint64_t, uint64_t>> plan_parts(uint64_t size, uint64_t min_part, uint64_t max_part) {
    uint64_t part = std::clamp<uint64_t>(size / 16, min_part, std::max(min_part, max_part));
    std::vector<std::pair<uint64_t, uint64_t>> v;
    if (size == 0) return {{0, 0}};
    for (uint64_t off = 0; off < size; off += part) v.emplace_back(off, std::min(part, size - off));
    return v;
}

// Value of `key="..."` in a challenge: up to the next '"' followed by ',' or the end.
inline std::string challenge_value(std::string_view h, std::string_view key) {
    const std::string k = std::string(key) + "=\"";
    size_t p = 0;
    while ((p = h.find(k, p)) != std::string_view::npos) {
        if (p == 0 || h[p - 1] == ',' || h[p - 1] == ' ') break;
        ++p;
    }
    if (p == std::string_view::npos) return "";
    const size_t start = p + k.size();
    for (size_t q = start; q < h.size(); ++q)
        if (h[q] == '"' && (q + 1 == h.size() || h[q + 1] == ',')) return std::string(h.substr(start, q - start));
    return "";
}

// The token URL of a challenge: realm's own query kept, plus service, each scope, ts and nonce,
// encoded like Go's url.Values.Encode (keys sorted, values of a key in order).
inline std::string token_url(const std::string& realm, const std::string& service, const std::string& scope, int64_t ts,
                             const std::string& nonce) {
    std::vector<std::pair<std::string, std::string>> q;
    std::string base = realm;
    if (auto qm = realm.find('?'); qm != std::string::npos) {
        base = realm.substr(0, qm);
        std::string_view rest(realm);
        rest.remove_prefix(qm + 1);
        while (!rest.empty()) {
            size_t amp = rest.find('&');
            std::string_view kv = rest.substr(0, amp);
            if (!kv.empty()) {
                size_t eq = kv.find('=');
                auto unescape = [](std::string_view x) { return percent_decode(x, true).value_or(std::string(x)); };
                q.emplace_back(unescape(kv.substr(0, eq)), eq == std::string_view::npos ? "" : unescape(kv.substr(eq + 1)));
            }
            if (amp == std::string_view::npos) break;
            rest.remove_prefix(amp + 1);
        }
    }
    q.emplace_back("service", service);
    size_t i = 0;
    while (i <= scope.size()) {
        size_t sp = scope.find(' ', i);
        if (sp == std::string::npos) sp = scope.size();
        q.emplace_back("scope", scope.substr(i, sp - i));
        i = sp + 1;
    }
    q.emplace_back("ts", std::to_string(ts));
    q.emplace_back("nonce", nonce);
    std::stable_sort(q.begin(), q.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string enc;
    for (const auto& [k, v] : q) enc += (enc.empty() ? "" : "&") + query_escape(k) + "=" + query_escape(v);
    return base + "?" + enc;
}

// The exact bytes the token request signs.
inline std::string token_signing_string(const std::string& url) { return "GET," + url + "," + std::string(kEmptyBodyHashB64); }

class RegistryClient {
public:
    RegistryClient(std::shared_ptr<net::HttpClient> http, ModelName name, RegistryOptions opt = {})
        : http_(std::move(http)), name_(std::move(name)), opt_(std::move(opt)) {
        if (!opt_.now) opt_.now = [] { return static_cast<int64_t>(std::time(nullptr)); };
    }

    std::string blob_url(const std::string& digest) const { return name_.base_url() + "/v2/" + name_.repository() + "/blobs/" + digest; }
    std::string manifest_url() const { return name_.base_url() + "/v2/" + name_.repository() + "/manifests/" + name_.tag; }

    // Uploads every blob the registry lacks, then the manifest.
    PushResult push(const OllamaModel& m) {
        PushResult r;
        for (const OllamaBlob* b : m.blobs()) {
            if (push_blob(*b)) {
                ++r.uploaded;
                r.bytes_uploaded += b->size;
            } else {
                ++r.skipped;
            }
        }
        const std::string body = m.manifest_bytes(false);
        net::Response resp = send([&] {
            net::Request q;
            q.method = "PUT";
            q.url = net::Url::parse(manifest_url());
            q.headers.set("Content-Type", kMediaManifest);
            q.body = body;
            return q;
        });
        if (resp.status >= 400) fail_status("pushing the manifest of " + name_.display(), resp);
        r.manifest_digest = sha256_digest(body);
        log("pushed manifest " + r.manifest_digest);
        return r;
    }

    // Downloads the manifest and every blob the store lacks; the manifest is written last.
    PullResult pull(const OllamaStore& store) {
        PullResult r;
        net::Response resp = send([&] {
            net::Request q;
            q.url = net::Url::parse(manifest_url());
            q.headers.set("Accept", kMediaManifest);
            return q;
        });
        if (resp.status == 404) fail(ErrorKind::remote, "model " + name_.display() + " not found in the registry");
        if (resp.status >= 400) fail_status("fetching the manifest of " + name_.display(), resp);
        const ParsedManifest pm = parse_manifest(resp.body, name_.display());
        std::vector<ManifestDesc> all = pm.layers;
        all.push_back(pm.config);
        store.ensure_dirs();
        std::vector<std::pair<std::string, uint64_t>> sizes;
        for (const auto& d : all) sizes.emplace_back(d.digest, d.size);
        store.require_space_for(sizes, "pulling " + name_.display());
        for (const auto& d : all) {
            if (store.has_blob(d.digest, d.size)) {
                ++r.present;
                continue;
            }
            download_blob(store, d);
            ++r.downloaded;
            r.bytes_downloaded += d.size;
        }
        store.write_manifest(name_, resp.body);
        r.manifest_digest = sha256_digest(resp.body);
        return r;
    }

    // Sends a request built by `make` (called again for a retry, so bodies start fresh), adding
    // the bearer token; on 401 fetches a token once and retries.
    net::Response send(const std::function<net::Request()>& make, const net::BodySink& sink = {}) {
        for (int attempt = 0;; ++attempt) {
            net::Request q = make();
            if (auto t = token(); !t.empty()) q.headers.set("Authorization", "Bearer " + t);
            net::Response resp = http_->send(q, sink);
            if (resp.status != 401) return resp;
            if (attempt > 0)
                fail(ErrorKind::auth, "unauthorized: access to " + name_.repository() + " on " + name_.host +
                                          " was denied; you may not push to or pull from namespace '" + name_.ns +
                                          "' with this key (add the public key to the account that owns it)");
            fetch_token(resp, q.url);
        }
    }

private:
    void log(const std::string& s) const {
        if (opt_.log) opt_.log(s);
    }
    std::string token() {
        std::lock_guard<std::mutex> l(mu_);
        return token_;
    }

    [[noreturn]] void fail_status(const std::string& what, const net::Response& r) const {
        std::string body = r.body.substr(0, 300);
        for (auto& c : body)
            if (c == '\n' || c == '\r') c = ' ';
        if (r.status == 401 || r.status == 403)
            fail(ErrorKind::auth, what + ": HTTP " + std::to_string(r.status) + " (not authorized for namespace '" + name_.ns + "')" +
                                      (body.empty() ? "" : ": " + body));
        fail(ErrorKind::remote, what + ": HTTP " + std::to_string(r.status) + (body.empty() ? "" : ": " + body));
    }

    void fetch_token(const net::Response& challenge_resp, const net::Url& request_url) {
        std::string h = challenge_resp.headers.get("WWW-Authenticate").value_or("");
        if (h.size() >= 7 && (h.compare(0, 7, "Bearer ") == 0 || h.compare(0, 7, "bearer ") == 0)) h = h.substr(7);
        const std::string realm = challenge_value(h, "realm"), service = challenge_value(h, "service"),
                          scope = challenge_value(h, "scope");
        if (realm.empty())
            fail(ErrorKind::auth, name_.host + " answered 401 without a token realm; the registry requires credentials cmf cannot provide");
        const net::Url ru = net::Url::parse(realm);
        // a realm on another host could collect our signature for its own use
        if (ru.host != request_url.host || ru.port != request_url.port)
            fail(ErrorKind::auth, "the registry's token realm " + ru.authority() + " is on a different host than " + request_url.authority() +
                                      "; refusing to sign for it");
        if (!opt_.key) fail(ErrorKind::auth, name_.host + " requires authentication and no Ollama key was given");
        const Ed25519Key key = opt_.key();
        unsigned char nonce[16];
        if (RAND_bytes(nonce, sizeof nonce) != 1) fail(ErrorKind::internal, "no randomness for the token nonce");
        const std::string url = token_url(realm, service, scope, opt_.now(),
                                          base64url_encode(std::string_view(reinterpret_cast<char*>(nonce), sizeof nonce)));
        const std::string auth = key.public_base64() + ":" + base64_encode(key.sign(token_signing_string(url)));
        net::Request q;
        q.url = net::Url::parse(url);
        q.headers.set("Authorization", auth);
        net::Response r = http_->send(q);
        if (r.status >= 400) {
            std::string body = r.body.substr(0, 300);
            fail(ErrorKind::auth, "the registry refused a token for " + name_.repository() + " (HTTP " + std::to_string(r.status) +
                                      (body.empty() ? "" : ": " + body) + "); is this key registered with the account owning namespace '" +
                                      name_.ns + "'?");
        }
        std::string tok;
        try {
            auto j = nlohmann::json::parse(r.body);
            tok = j.at("token").get<std::string>();
        } catch (const std::exception&) {
            fail(ErrorKind::remote, "the registry's token reply is not {\"token\": ...}");
        }
        std::lock_guard<std::mutex> l(mu_);
        token_ = tok;
    }

    std::string resolve(const std::string& loc, const net::Url& base) const {
        if (loc.rfind("http://", 0) == 0 || loc.rfind("https://", 0) == 0) return loc;
        if (!loc.empty() && loc[0] == '/') return base.scheme + "://" + base.authority() + loc;
        fail(ErrorKind::remote, "the registry sent an unusable upload location '" + loc.substr(0, 120) + "'");
    }

    // A body that streams [off, off+len) of a blob.
    static net::BodySource part_source(const OllamaBlob& b, uint64_t off, uint64_t len) {
        struct State {
            int fd = -1;
            uint64_t pos = 0;
            ~State() {
                if (fd >= 0) ::close(fd);
            }
        };
        auto st = std::make_shared<State>();
        if (!b.file.empty()) {
            st->fd = ::open(b.file.c_str(), O_RDONLY | O_CLOEXEC);
            if (st->fd < 0) fail_io("cannot open " + b.file.string());
        }
        const OllamaBlob* bp = &b;
        net::BodySource s;
        s.size = len;
        s.read = [st, bp, off, len](char* buf, size_t cap) -> size_t {
            const uint64_t n = std::min<uint64_t>(cap, len - st->pos);
            if (n == 0) return 0;
            if (st->fd >= 0) {
                ssize_t r;
                do r = ::pread(st->fd, buf, n, static_cast<off_t>(off + st->pos));
                while (r < 0 && errno == EINTR);
                if (r <= 0) fail_io("read error on " + bp->file.string());
                st->pos += static_cast<uint64_t>(r);
                return static_cast<size_t>(r);
            }
            std::memcpy(buf, bp->data.data() + off + st->pos, n);
            st->pos += n;
            return static_cast<size_t>(n);
        };
        s.rewind = [st] {
            st->pos = 0;
            return true;
        };
        return s;
    }

    static std::string part_md5(const OllamaBlob& b, uint64_t off, uint64_t len) {
        net::BodySource s = part_source(b, off, len);
        Digest h(Digest::Algo::md5);
        std::string buf(1 << 20, '\0');
        while (size_t n = s.read(buf.data(), buf.size())) h.update(buf.data(), n);
        return h.finish();
    }

    // PUT of one part to presigned storage: no Authorization; < 400 is success.
    void put_redirected(const OllamaBlob& b, const std::string& location, uint64_t off, uint64_t len) {
        std::string last;
        for (int a = 0; a < opt_.part_attempts; ++a) {
            if (a) std::this_thread::sleep_for(retry_policy().delay(a));
            try {
                net::Request q;
                q.method = "PUT";
                q.url = net::Url::parse(location);
                q.headers.set("Content-Type", "application/octet-stream");
                q.source = part_source(b, off, len);
                net::Response r = http_->send(q);
                if (r.status < 400) return;
                last = "HTTP " + std::to_string(r.status);
            } catch (const Error& e) {
                if (e.kind() != ErrorKind::network) throw;
                last = e.what();
            }
            log("part at " + std::to_string(off) + " of " + b.digest.substr(0, 19) + " failed (" + last + "), retrying");
        }
        fail(ErrorKind::network, "uploading a part of " + b.digest + " to storage failed after " + std::to_string(opt_.part_attempts) +
                                     " attempts: " + last);
    }

    // The engine's retry policy from Ollama's: part_attempts tries, backoff_unit * 2^try.
    net::RetryPolicy retry_policy() const {
        net::RetryPolicy p;
        p.max_attempts = std::max(1, opt_.part_attempts);
        p.initial_backoff = std::chrono::duration_cast<std::chrono::milliseconds>(opt_.backoff_unit);
        p.max_backoff = std::chrono::duration_cast<std::chrono::milliseconds>(opt_.backoff_unit * 1024);
        return p;
    }

    // An upload session's persisted bytes from `Range: 0-N` (distribution's blobUploadResponse;
    // "0-0" is what it says for 0 bytes too, so it reads as 0: at worst one byte is resent and
    // the registry refuses the overlap, which restarts the session).
    static std::optional<uint64_t> upload_range_end(const net::Response& r) {
        auto v = r.headers.get("Range");
        if (!v) return std::nullopt;
        std::string_view x = *v;
        if (x.rfind("bytes=", 0) == 0) x.remove_prefix(6);
        if (x.rfind("0-", 0) != 0) return std::nullopt;
        auto n = net::detail::parse_u64(x.substr(2));
        if (!n) return std::nullopt;
        return *n == 0 ? 0 : *n + 1;
    }

    // Returns false when the registry already had the blob.
    //
    // The parts go up through the transfer engine's resumable upload (net/transfer.h): PATCH with
    // Content-Range; after a dropped connection or a 5xx the session is asked where it stands
    // (GET on the upload URL -> 204 + Range: 0-N) and the upload continues from there; a
    // session the registry dropped (404, or distribution's 400 BLOB_UPLOAD_INVALID after a broken
    // PATCH, or a 416 overlap) starts again with a new POST. A registry that answers a PATCH
    // with 307 (ollama.com) gets that part by PUT at the presigned Location, in parallel with the
    // next PATCHes; such a part is retried whole, the unit that storage accepts.
    bool push_blob(const OllamaBlob& b) {
        net::Response head = send([&] {
            net::Request q;
            q.method = "HEAD";
            q.url = net::Url::parse(blob_url(b.digest));
            return q;
        });
        if (head.status >= 200 && head.status < 300) {
            log("blob " + b.digest + " exists, skipped");
            return false;
        }
        if (head.status != 404) fail_status("checking blob " + b.digest, head);
        const net::Url uploads = net::Url::parse(name_.base_url() + "/v2/" + name_.repository() + "/blobs/uploads/");
        const auto parts = b.size ? plan_parts(b.size, opt_.min_part, opt_.max_part) : std::vector<std::pair<uint64_t, uint64_t>>{};
        const uint64_t part_size = parts.empty() ? 1 : parts.front().second;

        std::string url;
        bool mounted = false;
        std::vector<std::future<void>> in_flight;
        auto reap = [&](size_t keep) {
            while (in_flight.size() > keep) {
                in_flight.front().get();  // rethrows a part's failure
                in_flight.erase(in_flight.begin());
            }
        };
        auto follow = [&](const net::Response& r) {
            const net::Url cur = net::Url::parse(url);
            auto next = r.headers.get("Docker-Upload-Location");
            if (!next) next = r.headers.get("Location");
            if (next) url = resolve(*next, cur);
        };
        auto ack_of = [&](const net::Response& r, uint64_t sent_end) {
            net::UploadAck a;
            a.response = r;
            if (r.status >= 200 && r.status < 300) {
                follow(r);
                a.state = net::UploadAck::State::persisted;
                a.persisted = upload_range_end(r).value_or(sent_end);
            } else if (r.status == 404 || r.status == 400 || r.status == 416) {
                a.state = net::UploadAck::State::gone;
            } else if (net::RetryPolicy::retryable_status(r.status)) {
                a.state = net::UploadAck::State::transient;
            } else {
                fail_status("uploading a part of " + b.digest, r);
            }
            return a;
        };

        net::UploadSession session;
        session.what = "uploading blob " + b.digest;
        session.start = [&] {
            reap(0);
            net::Response post = send([&] {
                net::Request q;
                q.method = "POST";
                q.url = uploads;
                return q;
            });
            if (post.status == 201) {
                mounted = true;
                return false;
            }
            if (post.status != 202) fail_status("starting the upload of " + b.digest, post);
            url = resolve(post.headers.get("Docker-Upload-Location").value_or(post.headers.get("Location").value_or("")), uploads);
            return true;
        };
        session.send = [&](uint64_t offset, net::BodySource body) {
            const uint64_t len = *body.size;
            if (len == 0) {  // an empty blob has no part to PATCH: the commit alone creates it
                net::UploadAck a;
                a.state = net::UploadAck::State::persisted;
                return a;
            }
            auto shared = std::make_shared<net::BodySource>(std::move(body));
            net::Response r = send([&] {
                net::Request q;
                q.method = "PATCH";
                q.url = net::Url::parse(url);
                q.follow_redirects = false;
                q.idempotent = false;  // the engine asks the session before sending again
                q.headers.set("Content-Type", "application/octet-stream");
                q.headers.set("X-Redirect-Uploads", "1");
                q.headers.set("Content-Range", std::to_string(offset) + "-" + std::to_string(offset + len - 1));
                shared->rewind();
                q.source = *shared;
                return q;
            });
            if (r.status == 307) {
                const std::string loc = r.headers.get("Location").value_or("");
                if (loc.empty()) fail(ErrorKind::remote, "the registry redirected an upload without a Location");
                const net::Url cur = net::Url::parse(url);
                url = resolve(r.headers.get("Docker-Upload-Location").value_or(url), cur);
                const std::string target = resolve(loc, cur);
                reap(static_cast<size_t>(std::max(1, opt_.parts_in_flight)) - 1);
                in_flight.push_back(std::async(std::launch::async, [this, &b, target, offset, len] { put_redirected(b, target, offset, len); }));
                net::UploadAck a;
                a.state = net::UploadAck::State::persisted;
                a.persisted = offset + len;
                return a;
            }
            if (r.status >= 400 && r.status < 500 && r.status != 400 && r.status != 404 && r.status != 416 && r.status != 408 && r.status != 429)
                fail_status("uploading a part of " + b.digest, r);
            return ack_of(r, offset + len);
        };
        session.query = [&] {
            net::Response r = send([&] {
                net::Request q;
                q.url = net::Url::parse(url);
                return q;
            });
            return ack_of(r, 0);
        };
        net::UploadOptions uo;
        uo.chunk_size = part_size;
        uo.retry = retry_policy();
        try {
            const net::UploadResult ur = net::upload_source(b.size, [&](uint64_t off, uint64_t len) { return part_source(b, off, len); },
                                                            session, uo);
            stats_.failed_attempts += ur.failed_attempts;
            stats_.resumed += ur.resumed;
            stats_.restarts += ur.restarts;
            if (mounted) return true;
            reap(0);
        } catch (...) {
            for (auto& f : in_flight)
                if (f.valid()) f.wait();
            throw;
        }
        std::string md5s;
        for (const auto& [off, len] : parts) md5s += part_md5(b, off, len);
        Digest e(Digest::Algo::md5);
        e.update(md5s);
        const std::string etag = e.hex() + "-" + std::to_string(parts.size());
        const std::string commit = url + (url.find('?') == std::string::npos ? "?" : "&") + "digest=" + query_escape(b.digest) +
                                   "&etag=" + query_escape(etag);
        std::string last;
        for (int a = 1; a <= opt_.part_attempts; ++a) {
            net::Response r = send([&] {
                net::Request q;
                q.method = "PUT";
                q.url = net::Url::parse(commit);
                q.headers.set("Content-Type", "application/octet-stream");
                q.headers.set("Content-Length", "0");
                return q;
            });
            if (r.status >= 200 && r.status < 300) {
                log("uploaded blob " + b.digest + " (" + std::to_string(b.size) + " bytes, " + std::to_string(parts.size()) + " part(s))");
                return true;
            }
            if (!net::RetryPolicy::retryable_status(r.status)) fail_status("committing blob " + b.digest, r);
            last = "HTTP " + std::to_string(r.status);
            std::this_thread::sleep_for(retry_policy().delay(a));
        }
        fail(ErrorKind::remote, "committing blob " + b.digest + " failed: " + last);
    }

    // Into the store through the transfer engine (net/transfer.h): parallel ranged parts of
    // Ollama's sizes, a broken stream continued where it stopped, the sha256 checked before the
    // blob gets its final name.
    void download_blob(const OllamaStore& store, const ManifestDesc& d) {
        const auto parts = plan_parts(d.size, opt_.min_part, opt_.max_part);
        const std::string url = blob_url(d.digest);
        net::Source src;
        src.what = "blob " + d.digest;
        src.identity = d.digest;
        src.request = [url] {
            net::Request q;
            q.url = net::Url::parse(url);
            return q;
        };
        src.send = [this](const net::Request& q, const net::BodySink& sink) { return send([&] { return q; }, sink); };
        src.fail_status = [this, d](const net::Response& r) { fail_status("downloading blob " + d.digest, r); };
        net::TransferOptions o;
        o.connections = std::max(1, opt_.parts_in_flight);
        o.chunk_size = parts.front().second ? parts.front().second : 1;
        o.expected_size = d.size;
        o.checksums = {net::Checksum::sha256(d.digest.substr(d.digest.find(':') + 1))};
        o.retry = retry_policy();
        net::TransferResult r;
        try {
            r = net::download(*http_, src, store.blob_path(d.digest), o);
        } catch (const net::ChecksumMismatch& e) {
            fail(ErrorKind::remote, "blob " + d.digest + " from the registry does not match its digest; discarded (" + e.what() + ")");
        }
        stats_.failed_attempts += r.failed_attempts;
        stats_.resumed += r.resumed_streams;
        stats_.restarts += r.restarts;
        log("downloaded blob " + d.digest + " (" + std::to_string(d.size) + " bytes)");
    }

public:
    // What the transfers of this client had to survive (tests and logs read it).
    struct TransferStats {
        int failed_attempts = 0, resumed = 0, restarts = 0;
    };
    const TransferStats& transfer_stats() const { return stats_; }

private:
    TransferStats stats_;
    std::shared_ptr<net::HttpClient> http_;
    ModelName name_;
    RegistryOptions opt_;
    std::mutex mu_;
    std::string token_;
};

}  // namespace cmf::ollama
