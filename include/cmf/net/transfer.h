// cmf::net transfers — the one engine that moves an object between a server and a file, for
// every client of the project (Hugging Face, GCS, the Ollama registry, plain URLs).
//
//   download(http, source, out, options)
//     GET one object into `out`: one stream, or N parallel ranged streams of `chunk_size`.
//     A stream that breaks mid-body continues at the first byte not on disk (Range: bytes=N-);
//     a server that ignores Range restarts that stream from byte 0. Every 206 is checked against
//     the range asked for before a byte is written (Request::on_head), a body shorter than its
//     range is never taken as complete, and the finished file is checked against every given
//     checksum (sha256, git blob id, md5, crc32c) and size; a mismatch refetches the whole object
//     up to `verify_attempts` times. One retry policy: attempts without progress are counted
//     (progress resets the count) and spaced by RetryPolicy::delay (full jitter, Retry-After).
//
//     On disk while running (named so on purpose: they are meant to survive an interrupt):
//       <out>.cmf-partial        the data, preallocated, written at each byte's own offset
//       <out>.cmf-partial.json   {"version","identity","size","chunk_size","got":{chunk: bytes}}
//                                rewritten (write + rename) after the data it vouches for was
//                                fdatasync'ed, at most once a second and when a run stops
//     A later download of the same object (same identity, size and chunk size) continues from
//     there. At the end: checksums, fsync, rename to <out>, fsync of the directory.
//
//   upload(file, session, options)
//     Sends a file through a protocol that can say how many bytes it persisted (a GCS resumable
//     session, an OCI blob upload): chunk after chunk; after a broken connection or a transient
//     status it asks the session where it stands and continues from there, at any offset; a
//     session the server forgot is started again from byte 0.
//
// Light header: written against the abstract HttpClient, no Beast.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmf/core/crc32c.h"
#include "cmf/core/digest.h"
#include "cmf/core/encoding.h"
#include "cmf/core/error.h"
#include "cmf/core/temp_file.h"
#include "cmf/net/http.h"
#include "cmf/net/http_parse.h"

namespace cmf::net {

namespace fs = std::filesystem;

// python transfer_manager's default part size (cloud.md 4.5).
inline constexpr std::uint64_t kDefaultChunkSize = 32ull << 20;
// The sidecar is rewritten at most this often (each rewrite costs an fdatasync of the data).
inline constexpr std::chrono::seconds kStateSaveInterval{1};
// The hasher is woken after this much new contiguous data, not for every buffer.
inline constexpr std::uint64_t kHashWakeBytes = 8ull << 20;
inline constexpr int kStateVersion = 2;
inline constexpr const char* kPartialSuffix = ".cmf-partial";
inline constexpr const char* kStateSuffix = ".cmf-partial.json";

inline fs::path partial_path(const fs::path& out) { return out.string() + kPartialSuffix; }
inline fs::path state_path(const fs::path& out) { return out.string() + kStateSuffix; }

// A check of the finished bytes.
struct Checksum {
    enum class Algo { sha256, git_blob_sha1, md5, crc32c };
    Algo algo = Algo::sha256;
    std::string expected;  // sha256 and git blob id: lower-case hex; md5 and crc32c: base64 (GCS's form)

    static Checksum sha256(std::string hex) { return {Algo::sha256, std::move(hex)}; }
    // The git blob id of a small Hugging Face file: sha1("blob <size>\0" + content).
    static Checksum git_blob(std::string hex) { return {Algo::git_blob_sha1, std::move(hex)}; }
    static Checksum md5(std::string b64) { return {Algo::md5, std::move(b64)}; }
    static Checksum crc32c(std::string b64) { return {Algo::crc32c, std::move(b64)}; }
    const char* name() const {
        switch (algo) {
            case Algo::sha256: return "sha256";
            case Algo::git_blob_sha1: return "git blob id";
            case Algo::md5: return "md5";
            case Algo::crc32c: return "crc32c";
        }
        return "?";
    }
};

// Where the bytes come from.
struct Source {
    std::string what;                   // "GET host/path" for messages: never a query, never a secret
    std::string identity;               // what must not change between runs to resume (etag, generation); "" = what
    std::function<Request()> request;   // a fresh GET for each attempt; the engine adds Range
    // Sends it (a client adds and refreshes credentials here); empty = HttpClient::send.
    std::function<Response(const Request&, const BodySink&)> send;
    // Throws the client's own error for a final answer that is neither 2xx nor retryable;
    // empty = Error(auth) for 401/403, Error(remote) otherwise.
    std::function<void(const Response&)> fail_status;
};

struct TransferProgress {
    std::uint64_t done = 0;                // bytes on disk (including resumed ones)
    std::optional<std::uint64_t> total;    // object size when known
    double bytes_per_sec = 0;              // over this run, excluding resumed bytes
    std::optional<double> eta_seconds;
    bool finished = false;                 // last call of a run
};
using ProgressCallback = std::function<void(const TransferProgress&)>;

// Non-TTY progress lines: often enough to show life in CI logs, rare enough to read them.
inline constexpr std::chrono::seconds kPlainProgressInterval{5};

// The default reporter: on a TTY one updating line on stderr ("label 1.2 GiB / 8.6 GiB
// 95.3 MB/s ETA 1:18"); otherwise one plain line every ~5 s and one at the end.
ProgressCallback stderr_progress(std::string label);

struct TransferOptions {
    int connections = 8;                        // parallel ranged streams for one object
    std::uint64_t chunk_size = kDefaultChunkSize;
    std::optional<std::uint64_t> expected_size;
    std::vector<Checksum> checksums;
    RetryPolicy retry;                          // attempts WITHOUT PROGRESS per stream, and the backoff
    int verify_attempts = 2;                    // whole fetches when a checksum does not match
    bool resume = true;                         // continue an earlier run's <out>.cmf-partial
    ProgressCallback progress;
    std::chrono::milliseconds progress_interval{200};
};

// What happened, for logs and for tests that must see the engine survive faults.
struct TransferResult {
    std::uint64_t size = 0;
    std::string sha256;             // lower-case hex of the final file
    bool ranged = false;            // parallel Range requests were used
    bool resumed = false;           // bytes came from an earlier run's partial file
    std::uint64_t bytes_fetched = 0;   // body bytes received in this call (> size when a stream restarted)
    int failed_attempts = 0;        // requests that broke or answered a transient status
    int resumed_streams = 0;        // requests that continued a stream mid-body (Range: bytes=N-)
    int restarts = 0;               // streams started over from their first byte (server ignored Range)
    int refetches = 0;              // whole fetches after a checksum mismatch
};

// The finished bytes did not match a checksum, `verify_attempts` times in a row.
struct ChecksumMismatch : Error {
    explicit ChecksumMismatch(const std::string& m) : Error(ErrorKind::remote, m) {}
};

namespace transfer_detail {

using Clock = std::chrono::steady_clock;

inline std::string human_bytes(double b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) b /= 1024, ++u;
    char s[32];
    std::snprintf(s, sizeof s, u ? "%.1f %s" : "%.0f %s", b, units[u]);
    return s;
}

class File {
public:
    File(const fs::path& p, bool truncate) : path_(p) {
        fd_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0644);
        if (fd_ < 0) fail_io("cannot open " + p.string() + ": " + std::strerror(errno));
    }
    ~File() {
        if (fd_ >= 0) ::close(fd_);
    }
    File(const File&) = delete;
    File& operator=(const File&) = delete;
    void pwrite_all(const char* d, std::size_t n, std::uint64_t off) {
        while (n) {
            ssize_t w = ::pwrite(fd_, d, n, static_cast<off_t>(off));
            if (w < 0) {
                if (errno == EINTR) continue;
                fail_io("cannot write " + path_.string() + ": " + std::strerror(errno));
            }
            d += w, n -= static_cast<std::size_t>(w), off += static_cast<std::uint64_t>(w);
        }
    }
    void pread_all(char* d, std::size_t n, std::uint64_t off) const {
        while (n) {
            ssize_t r = ::pread(fd_, d, n, static_cast<off_t>(off));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) fail_io("cannot read back " + path_.string() + (r < 0 ? std::string(": ") + std::strerror(errno) : ": unexpected end"));
            d += r, n -= static_cast<std::size_t>(r), off += static_cast<std::uint64_t>(r);
        }
    }
    void resize(std::uint64_t n) {
        if (::ftruncate(fd_, static_cast<off_t>(n)) != 0) fail_io("cannot size " + path_.string() + ": " + std::strerror(errno));
    }
    void sync() {
        if (::fdatasync(fd_) != 0) fail_io("cannot sync " + path_.string() + ": " + std::strerror(errno));
    }
    std::uint64_t size() const {
        struct stat st {};
        return ::fstat(fd_, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
    }

private:
    fs::path path_;
    int fd_ = -1;
};

inline void sync_dir(const fs::path& p) {
    fs::path dir = p.parent_path();
    if (dir.empty()) dir = ".";
    int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d >= 0) {
        ::fsync(d);
        ::close(d);
    }
}

// Every requested checksum (and always sha256) over a byte stream.
class Digests {
public:
    Digests(const std::vector<Checksum>& checks, std::uint64_t size) {
        for (const auto& c : checks) {
            if (c.algo == Checksum::Algo::git_blob_sha1 && !sha1_) {
                sha1_.emplace(Digest::Algo::sha1);
                sha1_->update("blob " + std::to_string(size));
                sha1_->update("\0", 1);
            }
            if (c.algo == Checksum::Algo::md5 && !md5_) md5_.emplace(Digest::Algo::md5);
            if (c.algo == Checksum::Algo::crc32c) crc_ = true;
        }
    }
    void update(const char* d, std::size_t n) {
        sha256_.update(d, n);
        if (sha1_) sha1_->update(d, n);
        if (md5_) md5_->update(d, n);
        if (crc_) crc32c_.update(d, n);
    }
    // {sha256 hex, first mismatch ("" when every check holds)}
    std::pair<std::string, std::string> finish(const std::vector<Checksum>& checks) {
        std::string sha = sha256_.hex(), sha1 = sha1_ ? sha1_->hex() : "", md5 = md5_ ? base64_encode(md5_->finish()) : "";
        std::string crc = crc_ ? crc32c_base64(crc32c_.value()) : "";
        for (const auto& c : checks) {
            const std::string& got = c.algo == Checksum::Algo::sha256 ? sha
                                     : c.algo == Checksum::Algo::git_blob_sha1 ? sha1
                                     : c.algo == Checksum::Algo::md5 ? md5 : crc;
            if (got != c.expected) return {sha, std::string(c.name()) + " mismatch (expected " + c.expected + ", got " + got + ")"};
        }
        return {sha, ""};
    }

private:
    Digest sha256_;
    std::optional<Digest> sha1_, md5_;
    bool crc_ = false;
    Crc32c crc32c_;
};

struct Chunk {
    std::uint64_t first = 0, len = 0;
    std::atomic<std::uint64_t> got{0};  // bytes on disk from `first`, contiguous
};

// The run of one download attempt: file, chunks, counters, hasher, sidecar.
class Download {
public:
    Download(HttpClient& http, const Source& src, const fs::path& out, const TransferOptions& opt)
        : http_(http), src_(src), out_(out), tmp_(partial_path(out)), state_(state_path(out)), opt_(opt) {
        identity_ = src_.identity.empty() ? src_.what : src_.identity;
        for (const auto& c : opt_.checksums) identity_ += " " + std::string(c.name()) + "=" + c.expected;
        chunk_size_ = std::max<std::uint64_t>(opt_.chunk_size, 1);
    }

    TransferResult run(bool allow_resume) {
        TransferResult res;
        std::optional<nlohmann::json> saved;
        if (allow_resume && opt_.resume && fs::exists(tmp_)) saved = load_state();
        file_ = std::make_unique<File>(tmp_, !saved);
        const KeptPartial kept(tmp_);  // survives an interrupt on purpose; the interrupt line names it
        std::optional<std::uint64_t> size = opt_.expected_size;
        if (saved && (!size || *size == saved->at("size").get<std::uint64_t>())) size = saved->at("size").get<std::uint64_t>();
        else saved.reset();
        if (size) size_ = *size;
        else probe_size();  // the first stream learns the size and may already bring the data
        if (saved && file_->size() != size_) saved.reset();
        if (!saved) file_->resize(size_);
        plan_chunks(saved);
        res.resumed = resumed_bytes_ > 0;
        fetch_all();
        res.ranged = chunks_.size() > 1;  // after a fallback to one stream: false
        auto [sha, bad] = hash_and_check();
        res.size = size_;
        res.sha256 = sha;
        res.bytes_fetched = fetched_;
        res.failed_attempts = failed_;
        res.resumed_streams = resumed_streams_;
        res.restarts = restarts_;
        if (!bad.empty()) {
            checksum_problem_ = bad;
            return res;
        }
        file_->sync();
        file_.reset();
        std::error_code ec;
        fs::rename(tmp_, out_, ec);
        if (ec) fail_io("cannot rename " + tmp_.string() + " to " + out_.string() + ": " + ec.message());
        fs::remove(state_, ec);
        sync_dir(out_);
        return res;
    }

    const std::string& checksum_problem() const { return checksum_problem_; }

    void discard() {
        file_.reset();
        std::error_code ec;
        fs::remove(tmp_, ec);
        fs::remove(state_, ec);
    }

private:
    // ------------------------------------------------------------------ the streams
    Response send(const Request& q, const BodySink& sink) { return src_.send ? src_.send(q, sink) : http_.send(q, sink); }

    [[noreturn]] void fail_status(const Response& r) {
        if (src_.fail_status) src_.fail_status(r);
        fail(r.status == 401 || r.status == 403 ? ErrorKind::auth : ErrorKind::remote,
             src_.what + ": HTTP " + std::to_string(r.status));
    }

    void backoff(int attempt, const Response* r) {
        auto d = opt_.retry.delay(attempt);
        if (r)
            if (auto ra = r->headers.get("retry-after"))
                if (auto v = parse_retry_after(*ra)) d = std::min(*v, opt_.retry.max_backoff);
        std::this_thread::sleep_for(d);
    }

    // The size of an object nobody announced: the first chunk goes out as a ranged GET (its 206
    // tells the total and brings the data), or as a plain GET when one stream is wanted.
    void probe_size() {
        probe_ = true;
        auto first = std::make_unique<Chunk>();
        first->first = 0;
        first->len = opt_.connections > 1 ? chunk_size_ : kUnknownLength;
        total_unknown_ = true;
        chunks_.push_back(std::move(first));
        fetch_chunk(*chunks_.front(), /*probe=*/true);
    }

    static constexpr std::uint64_t kUnknownLength = UINT64_MAX;

    void learn_size(std::uint64_t n) {
        size_ = n;
        total_unknown_ = false;
    }

    void plan_chunks(const std::optional<nlohmann::json>& saved) {
        const bool one_stream = opt_.connections <= 1 || size_ <= chunk_size_ || !ranges_ok_;
        const std::uint64_t cs = one_stream ? std::max<std::uint64_t>(size_, 1) : chunk_size_;
        std::uint64_t probed = 0;
        if (probe_) {  // chunk 0 of the probe stays; its length was a guess
            probed = chunks_.front()->got.load();
            chunks_.clear();
        }
        if (saved && saved->at("chunk_size").get<std::uint64_t>() != cs) {
            // a sidecar for another chunking vouches for nothing here
            file_->resize(0);
            file_->resize(size_);
            resumed_bytes_ = 0;
        }
        for (std::uint64_t off = 0; off < size_ || (size_ == 0 && chunks_.empty()); off += cs) {
            auto c = std::make_unique<Chunk>();
            c->first = off;
            c->len = std::min(cs, size_ - off);
            if (saved && saved->at("chunk_size").get<std::uint64_t>() == cs) {
                auto& g = saved->at("got");
                if (auto it = g.find(std::to_string(chunks_.size())); it != g.end()) c->got = std::min(c->len, it->get<std::uint64_t>());
                resumed_bytes_ += c->got;
            }
            if (off == 0 && probe_) c->got = std::min(c->len, probed);
            chunks_.push_back(std::move(c));
            if (size_ == 0) break;
        }
        chunk_size_ = cs;
        on_disk_ = 0;
        for (auto& c : chunks_) on_disk_ += c->got;
    }

    // Bytes [c.first + c.got, c.first + c.len) of the object into the file at the same offsets,
    // continuing after every break at the first byte not yet on disk.
    void fetch_chunk(Chunk& c, bool probe = false) {
        int fails = 0;  // consecutive attempts without progress
        std::string last;
        while (c.got < c.len) {
            if (stop_) return;
            const std::uint64_t got_before = c.got, pos = c.first + c.got;
            // the whole object in this one stream: its first request needs no Range
            const bool whole = c.first == 0 && (total_unknown_ ? !probe || opt_.connections <= 1 : c.len == size_);
            const bool want_range = !(whole && pos == 0) && ranges_ok_;
            if (!want_range && pos > 0) {  // no Range possible: start over
                c.got = 0;
                ++restarts_;
                hash_restart();
                continue;
            }
            Request q = src_.request();
            q.headers.set("Accept-Encoding", "identity");  // offsets must be offsets of the object
            if (want_range) {
                const bool open_end = c.len == UINT64_MAX;
                q.headers.set("Range", "bytes=" + std::to_string(pos) + "-" + (open_end ? "" : std::to_string(c.first + c.len - 1)));
            }
            if (pos > c.first) ++resumed_streams_;
            std::uint64_t write_at = pos;
            std::string refused;
            q.on_head = [&](int status, const Headers& h) {
                if (status == 206) {
                    auto cr = parse_content_range(h.get("content-range").value_or(""));
                    if (!cr || !cr->total || cr->first != pos) {
                        refused = "a 206 for another range than bytes=" + std::to_string(pos) + "-";
                        return false;
                    }
                    if (total_unknown_) {
                        learn_size(*cr->total);
                        c.len = std::min(c.len, *cr->total - c.first);
                    } else if (*cr->total != size_) {
                        refused = "the object changed size (" + std::to_string(*cr->total) + " bytes, was " + std::to_string(size_) + ")";
                        return false;
                    }
                    if (cr->last != c.first + c.len - 1) {
                        refused = "a 206 for another range than asked";
                        return false;
                    }
                    return true;
                }
                // 200: the whole object from byte 0 (a Range the server ignored, or none asked)
                std::optional<std::uint64_t> len;
                if (auto cl = h.get("content-length")) len = detail::parse_u64(*cl);
                if (want_range) ranges_ok_ = false;
                if (total_unknown_) {
                    if (len) {
                        learn_size(*len);
                        c.len = *len;
                    }  // else: a stream of unknown length; its clean end is the object's end
                } else if (len && *len != size_) {
                    refused = "a 200 of " + std::to_string(*len) + " bytes for an object of " + std::to_string(size_);
                    return false;
                }
                if (c.first != 0 || (!total_unknown_ && c.len != size_)) {
                    refused = kRangeRefused;
                    return false;
                }
                if (pos != 0) {  // the stream starts over at byte 0
                    c.got = 0;
                    write_at = 0;
                    ++restarts_;
                    hash_restart();
                }
                return true;
            };
            std::uint64_t since_wake = 0;
            auto sink = [&](const char* d, std::size_t n) {
                if (write_at + n > c.first + c.len) {
                    refused = "more bytes than the range asked for";
                    return false;
                }
                file_->pwrite_all(d, n, write_at);
                write_at += n;
                c.got = write_at - c.first;
                fetched_ += n;
                on_disk_ += n;
                if ((since_wake += n) >= kHashWakeBytes) {
                    since_wake = 0;
                    wake_hasher();
                }
                return true;
            };
            Response r;
            try {
                r = send(q, sink);
            } catch (const Error& e) {
                if (e.kind() != ErrorKind::network) throw;
                last = e.what();
                ++failed_;
                fails = c.got > got_before ? 0 : fails + 1;  // progress: a new failure, not the same one
                if (fails >= std::max(1, opt_.retry.max_attempts)) give_up(c, last, fails);
                if (fails) backoff(fails, nullptr);
                continue;
            }
            if (r.body_refused || !refused.empty()) {
                if (refused == kRangeRefused) throw RangeRefused{};
                fail(ErrorKind::remote, src_.what + ": " + (refused.empty() ? "answer refused" : refused));
            }
            if (r.status == 206 || r.status == 200) {
                wake_hasher();
                if (c.got == c.len || (total_unknown_ && r.status == 200)) break;
                // a complete answer that is shorter than its range: never taken as the data
                last = src_.what + ": short body (" + std::to_string(c.got) + " of " + std::to_string(c.len) + " bytes)";
                ++failed_;
                fails = c.got > got_before ? 0 : fails + 1;
                if (fails >= std::max(1, opt_.retry.max_attempts)) give_up(c, last, fails);
                continue;
            }
            if (r.status == 416 && total_unknown_) {  // "bytes */0": an empty object has no byte 0
                auto cr = r.headers.get("content-range").value_or("");
                if (cr != "bytes */0") fail(ErrorKind::remote, src_.what + ": HTTP 416 for " + q.headers.get("Range").value_or(""));
                learn_size(0);
                c.len = 0;
                break;
            }
            if (RetryPolicy::retryable_status(r.status)) {
                last = src_.what + ": HTTP " + std::to_string(r.status);
                ++failed_;
                if (++fails >= std::max(1, opt_.retry.max_attempts)) give_up(c, last, fails);
                backoff(fails, &r);
                continue;
            }
            fail_status(r);
        }
        if (total_unknown_) {  // a stream without Content-Length that ended cleanly
            learn_size(c.got);
            c.len = c.got;
        }
    }

    struct RangeRefused {};
    static constexpr const char* kRangeRefused = "the server stopped honoring Range";

    [[noreturn]] void give_up(const Chunk& c, const std::string& last, int fails) {
        const std::string end = c.len == kUnknownLength ? "" : std::to_string(c.first + c.len - 1);
        fail(ErrorKind::network, last + " (bytes " + std::to_string(c.first + c.got) + "-" + end + ": " + std::to_string(fails) +
                                     " attempts without progress)");
    }

    void fetch_all() {
        std::vector<Chunk*> pending;
        for (auto& c : chunks_)
            if (c->got < c->len) pending.push_back(c.get());
        start_hasher();
        start_persister();
        Ticker ticker(*this);
        std::atomic<std::size_t> next{0};
        std::exception_ptr first_error;
        std::mutex err_mu;
        bool range_refused = false;
        auto worker = [&] {
            while (!stop_) {
                const std::size_t k = next++;
                if (k >= pending.size()) return;
                try {
                    fetch_chunk(*pending[k]);
                    wake_hasher();
                } catch (const RangeRefused&) {
                    std::lock_guard lock(err_mu);
                    range_refused = true;
                    stop_ = true;
                } catch (...) {
                    std::lock_guard lock(err_mu);
                    if (!first_error) first_error = std::current_exception();
                    stop_ = true;
                }
            }
        };
        const int n = static_cast<int>(std::min<std::size_t>(std::max(1, opt_.connections), std::max<std::size_t>(1, pending.size())));
        std::vector<std::thread> threads;
        for (int i = 1; i < n; ++i) threads.emplace_back(worker);
        worker();
        for (auto& t : threads) t.join();
        stop_persister();
        try {
            persist();  // also on failure: the next run continues from here
        } catch (...) {
            if (!first_error) first_error = std::current_exception();
        }
        ticker.stop(!first_error && !range_refused);
        if (first_error) {
            stop_hasher();
            std::rethrow_exception(first_error);
        }
        if (range_refused) {
            // ranges worked for the first request and then stopped: one plain stream from byte 0
            stop_hasher();
            stop_ = false;
            ranges_ok_ = false;
            ++restarts_;
            chunks_.clear();
            auto c = std::make_unique<Chunk>();
            c->len = size_;
            chunks_.push_back(std::move(c));
            chunk_size_ = std::max<std::uint64_t>(size_, 1);
            on_disk_ = 0;
            hash_invalid_ = false;
            hashed_ = 0;
            fetch_all();
        }
    }

    // ------------------------------------------------------------------ the sidecar
    std::optional<nlohmann::json> load_state() {
        std::ifstream in(state_);
        if (!in) return std::nullopt;
        try {
            auto j = nlohmann::json::parse(in);
            if (j.at("version").get<int>() != kStateVersion || j.at("identity").get<std::string>() != identity_) return std::nullopt;
            (void)j.at("size").get<std::uint64_t>();
            (void)j.at("chunk_size").get<std::uint64_t>();
            if (!j.at("got").is_object()) return std::nullopt;
            return j;
        } catch (const std::exception&) {
            return std::nullopt;  // a damaged sidecar only costs a fresh download
        }
    }

    // The sidecar vouches for bytes that are on disk: snapshot the counters, sync, then write.
    void persist() {
        if (chunks_.empty() || total_unknown_) return;
        nlohmann::json got = nlohmann::json::object();
        for (std::size_t i = 0; i < chunks_.size(); ++i)
            if (auto g = chunks_[i]->got.load()) got[std::to_string(i)] = g;
        file_->sync();
        nlohmann::json j = {{"version", kStateVersion}, {"identity", identity_}, {"size", size_}, {"chunk_size", chunk_size_}, {"got", got}};
        TempFile t(state_);  // core/temp_file.h: never a half-written sidecar, not even on Ctrl-C
        t.write(j.dump());
        t.commit();
    }

    void start_persister() {
        persist_stop_ = false;
        persister_ = std::thread([this] {
            std::unique_lock lock(persist_mu_);
            while (!persist_cv_.wait_for(lock, kStateSaveInterval, [&] { return persist_stop_; })) {
                lock.unlock();
                try {
                    persist();
                } catch (...) {
                }
                lock.lock();
            }
        });
    }
    void stop_persister() {
        {
            std::lock_guard lock(persist_mu_);
            persist_stop_ = true;
        }
        persist_cv_.notify_all();
        if (persister_.joinable()) persister_.join();
    }

    // ------------------------------------------------------------------ hashing on the way
    // A thread follows the contiguous prefix of the file (every chunk before it complete) and
    // hashes it back from the page cache, so at the end only what finished last is left to hash.
    std::uint64_t contiguous() const {
        std::uint64_t end = 0;
        for (const auto& c : chunks_) {
            const std::uint64_t g = c->got.load();
            end = c->first + g;
            if (g < c->len) break;
        }
        return end;
    }
    void start_hasher() {
        digests_.emplace(opt_.checksums, size_);
        hasher_stop_ = hash_invalid_ = hash_finishing_ = false;
        hashed_ = 0;
        hasher_ = std::thread([this] {
            std::vector<char> buf(1 << 20);
            try {
                for (;;) {
                    std::uint64_t end;
                    {
                        std::unique_lock lock(hash_mu_);
                        hash_cv_.wait(lock, [&] { return hasher_stop_ || hash_invalid_ || hash_finishing_ || contiguous() > hashed_; });
                        if (hasher_stop_ || hash_invalid_) return;
                        end = contiguous();
                        if (end <= hashed_) return;  // finishing, and nothing more will come
                    }
                    while (hashed_ < end) {
                        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), end - hashed_));
                        file_->pread_all(buf.data(), n, hashed_);
                        digests_->update(buf.data(), n);
                        hashed_ += n;
                    }
                    if (hashed_ >= size_) return;
                }
            } catch (...) {
                std::lock_guard lock(hash_mu_);
                hash_invalid_ = true;
            }
        });
    }
    void wake_hasher() { hash_cv_.notify_all(); }
    void hash_restart() {  // bytes already hashed are being replaced: hash the file at the end
        std::lock_guard lock(hash_mu_);
        hash_invalid_ = true;
        hash_cv_.notify_all();
    }
    void stop_hasher() {
        {
            std::lock_guard lock(hash_mu_);
            hasher_stop_ = true;
        }
        hash_cv_.notify_all();
        if (hasher_.joinable()) hasher_.join();
    }
    std::pair<std::string, std::string> hash_and_check() {
        {  // every chunk is complete: the hasher finishes the prefix and ends
            std::lock_guard lock(hash_mu_);
            hash_finishing_ = true;
        }
        hash_cv_.notify_all();
        if (hasher_.joinable()) hasher_.join();
        if (hash_invalid_ || hashed_ != size_) {
            digests_.emplace(opt_.checksums, size_);
            std::vector<char> buf(1 << 20);
            for (std::uint64_t off = 0; off < size_;) {
                const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size_ - off));
                file_->pread_all(buf.data(), n, off);
                digests_->update(buf.data(), n);
                off += n;
            }
        }
        return digests_->finish(opt_.checksums);
    }

    // ------------------------------------------------------------------ progress
    class Ticker {
    public:
        explicit Ticker(Download& d) : d_(d), start_(Clock::now()), resumed_(d.on_disk_.load()) {
            if (d_.opt_.progress) thread_ = std::thread([this] { loop(); });
        }
        ~Ticker() { stop(false); }
        void stop(bool finished) {
            {
                std::lock_guard lock(mu_);
                if (stopped_) return;
                stopped_ = true;
            }
            cv_.notify_all();
            if (thread_.joinable()) thread_.join();
            if (d_.opt_.progress && finished) d_.opt_.progress(snapshot(true));
        }

    private:
        TransferProgress snapshot(bool finished) {
            TransferProgress p;
            p.done = d_.on_disk_.load();
            p.total = d_.size_;
            const double secs = std::chrono::duration<double>(Clock::now() - start_).count();
            const std::uint64_t fresh = p.done > resumed_ ? p.done - resumed_ : 0;
            p.bytes_per_sec = secs > 0 ? static_cast<double>(fresh) / secs : 0;
            if (p.bytes_per_sec > 0 && *p.total >= p.done) p.eta_seconds = static_cast<double>(*p.total - p.done) / p.bytes_per_sec;
            p.finished = finished;
            return p;
        }
        void loop() {
            std::unique_lock lock(mu_);
            while (!cv_.wait_for(lock, d_.opt_.progress_interval, [this] { return stopped_; })) {
                lock.unlock();
                d_.opt_.progress(snapshot(false));
                lock.lock();
            }
        }
        Download& d_;
        Clock::time_point start_;
        std::uint64_t resumed_;
        std::mutex mu_;
        std::condition_variable cv_;
        bool stopped_ = false;
        std::thread thread_;
    };

    HttpClient& http_;
    const Source& src_;
    fs::path out_, tmp_, state_;
    const TransferOptions& opt_;
    std::string identity_;
    std::unique_ptr<File> file_;
    std::vector<std::unique_ptr<Chunk>> chunks_;
    std::uint64_t size_ = 0, chunk_size_ = 0, resumed_bytes_ = 0;
    bool probe_ = false, total_unknown_ = false;
    std::atomic<bool> ranges_ok_{true}, stop_{false};
    std::atomic<std::uint64_t> fetched_{0}, on_disk_{0};
    std::atomic<int> failed_{0}, resumed_streams_{0}, restarts_{0};
    std::string checksum_problem_;

    std::optional<Digests> digests_;
    std::thread hasher_;
    std::mutex hash_mu_;
    std::condition_variable hash_cv_;
    bool hasher_stop_ = false, hash_invalid_ = false, hash_finishing_ = false;
    std::uint64_t hashed_ = 0;

    std::thread persister_;
    std::mutex persist_mu_;
    std::condition_variable persist_cv_;
    bool persist_stop_ = false;
};

}  // namespace transfer_detail

inline ProgressCallback stderr_progress(std::string label) {
    using Clock = std::chrono::steady_clock;
    const bool tty = ::isatty(STDERR_FILENO) == 1;
    auto last = std::make_shared<Clock::time_point>(Clock::now());
    return [label = std::move(label), tty, last](const TransferProgress& p) {
        std::string line = label + " " + transfer_detail::human_bytes(static_cast<double>(p.done));
        if (p.total) line += " / " + transfer_detail::human_bytes(static_cast<double>(*p.total));
        char rate[64];
        std::snprintf(rate, sizeof rate, "  %.1f MB/s", p.bytes_per_sec / 1e6);
        line += rate;
        if (p.eta_seconds && !p.finished) {
            const auto sec = static_cast<long long>(*p.eta_seconds);
            char eta[48];
            std::snprintf(eta, sizeof eta, "  ETA %lld:%02lld", sec / 60, sec % 60);
            line += eta;
        }
        if (tty) {
            std::fprintf(stderr, "\r%s\x1b[K%s", line.c_str(), p.finished ? "\n" : "");
        } else if (p.finished || Clock::now() - *last >= kPlainProgressInterval) {
            *last = Clock::now();
            std::fprintf(stderr, "%s\n", line.c_str());
        }
        std::fflush(stderr);
    };
}

inline TransferResult download(HttpClient& http, const Source& src, const fs::path& out, const TransferOptions& opt = {}) {
    if (out.has_parent_path()) fs::create_directories(out.parent_path());
    TransferResult total;
    std::string problem;
    for (int pass = 0; pass < std::max(1, opt.verify_attempts); ++pass) {
        transfer_detail::Download d(http, src, out, opt);
        // on an error the partial file and its sidecar stay: a later run continues from them
        TransferResult r = d.run(pass == 0);
        total.size = r.size;
        total.sha256 = r.sha256;
        total.ranged = total.ranged || r.ranged;
        total.resumed = total.resumed || r.resumed;
        total.bytes_fetched += r.bytes_fetched;
        total.failed_attempts += r.failed_attempts;
        total.resumed_streams += r.resumed_streams;
        total.restarts += r.restarts;
        if (d.checksum_problem().empty()) return total;
        // a checksum names no chunk: start over from nothing (never keep a corrupt byte)
        problem = d.checksum_problem();
        d.discard();
        ++total.refetches;
    }
    throw ChecksumMismatch(src.what + ": " + problem + " in " + std::to_string(total.refetches) + " fetches; nothing was kept");
}

// A plain URL, with headers sent on every request (Authorization for the URL's own host).
inline Source url_source(const Url& url, Headers headers = {}) {
    Source s;
    s.what = "GET " + redacted(url);
    s.request = [url, headers] {
        Request q;
        q.url = url;
        q.headers = headers;
        return q;
    };
    return s;
}

// ---------------------------------------------------------------------- uploads

// What the server says after a chunk or a status query.
struct UploadAck {
    enum class State { persisted, complete, gone, transient } state = State::transient;
    std::uint64_t persisted = 0;  // with `persisted`: bytes the server holds (the next offset)
    Response response;            // with `complete`: the final answer (e.g. the object resource)
};

// A resumable upload protocol, as callbacks.
struct UploadSession {
    std::string what;  // "GCS upload gs://b/o" for messages
    // Opens a session (again after `gone`). False: the server refused to create it (e.g. a
    // precondition), and the upload ends without sending anything.
    std::function<bool()> start;
    // Sends bytes [offset, offset + body.size) as one request; throws Error(network) when the
    // connection broke.
    std::function<UploadAck(std::uint64_t offset, BodySource body)> send;
    // Asks where the session stands.
    std::function<UploadAck()> query;
};

struct UploadOptions {
    std::uint64_t chunk_size = 16ull << 20;
    RetryPolicy retry;          // attempts without progress, and the backoff
    int max_restarts = 3;       // sessions started again after the server forgot one
};

struct UploadResult {
    bool started = false;       // false: start() refused, nothing was sent
    Response final;             // the completing answer
    int failed_attempts = 0;    // chunks that broke or answered a transient status
    int resumed = 0;            // chunks sent from an offset the server reported after a failure
    int restarts = 0;
    std::uint64_t bytes_sent = 0;
};

// A body that streams bytes [off, off + len) of an open file.
inline BodySource file_range_source(int fd, std::uint64_t off, std::uint64_t len, std::string path) {
    auto pos = std::make_shared<std::uint64_t>(0);
    BodySource s;
    s.size = len;
    s.read = [fd, off, len, pos, path](char* buf, std::size_t cap) -> std::size_t {
        const std::uint64_t n = std::min<std::uint64_t>(cap, len - *pos);
        if (n == 0) return 0;
        ssize_t r;
        do r = ::pread(fd, buf, n, static_cast<off_t>(off + *pos));
        while (r < 0 && errno == EINTR);
        if (r <= 0) fail_io("cannot read " + path);
        *pos += static_cast<std::uint64_t>(r);
        return static_cast<std::size_t>(r);
    };
    s.rewind = [pos] {
        *pos = 0;
        return true;
    };
    return s;
}

// The upload loop over any byte source: `body(offset, len)` gives a body for those bytes.
inline UploadResult upload_source(std::uint64_t total, const std::function<BodySource(std::uint64_t, std::uint64_t)>& body,
                                  UploadSession& session, const UploadOptions& opt = {}) {
    UploadResult res;
    const std::uint64_t chunk = std::max<std::uint64_t>(1, opt.chunk_size);
    if (!session.start()) return res;
    res.started = true;
    std::uint64_t offset = 0;
    int fails = 0;  // consecutive failures without progress
    std::string last;
    bool resumed = false;  // the next chunk starts where a status query said the session stands
    for (;;) {
        UploadAck ack;
        const std::uint64_t len = std::min(chunk, total - offset);
        try {
            if (resumed) ++res.resumed;
            ack = session.send(offset, body(offset, len));
            res.bytes_sent += len;
            if (ack.state == UploadAck::State::transient) last = session.what + ": HTTP " + std::to_string(ack.response.status);
        } catch (const Error& e) {
            if (e.kind() != ErrorKind::network) throw;
            last = e.what();
            ack.state = UploadAck::State::transient;
        }
        resumed = false;
        // broken or refused for now: wait, then ask the session where it stands
        while (ack.state == UploadAck::State::transient) {
            ++res.failed_attempts;
            if (++fails >= std::max(1, opt.retry.max_attempts))
                fail(ErrorKind::network, last + " (" + std::to_string(fails) + " attempts without progress)");
            std::this_thread::sleep_for(opt.retry.delay(fails));
            try {
                ack = session.query();
                if (ack.state == UploadAck::State::transient) last = session.what + ": HTTP " + std::to_string(ack.response.status);
            } catch (const Error& e) {
                if (e.kind() != ErrorKind::network) throw;
                last = e.what();
                ack.state = UploadAck::State::transient;
            }
            resumed = ack.state == UploadAck::State::persisted;
        }
        if (ack.state == UploadAck::State::complete) {
            res.final = std::move(ack.response);
            return res;
        }
        if (ack.state == UploadAck::State::gone) {
            if (++res.restarts > opt.max_restarts)
                fail(ErrorKind::remote, session.what + ": the server dropped the upload session " + std::to_string(res.restarts) + " times");
            if (!session.start()) fail(ErrorKind::remote, session.what + ": the server refused a new upload session");
            offset = 0;
            resumed = false;
            continue;
        }
        if (ack.persisted > total) fail(ErrorKind::remote, session.what + ": the server reports more bytes than the file has");
        if (ack.persisted > offset) fails = 0;
        offset = ack.persisted;
        if (offset == total) {
            res.final = std::move(ack.response);
            return res;
        }
    }
}

// A local file through `session` (see upload_source).
inline UploadResult upload(const fs::path& file, UploadSession& session, const UploadOptions& opt = {}) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail_io("cannot open " + file.string() + ": " + std::strerror(errno));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) fail_io("cannot stat " + file.string());
    const std::string name = file.string();
    return upload_source(static_cast<std::uint64_t>(st.st_size),
                         [fd, name](std::uint64_t off, std::uint64_t len) { return file_range_source(fd, off, len, name); }, session, opt);
}

}  // namespace cmf::net
