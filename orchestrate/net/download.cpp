// Parallel ranged download (include/cmf/net/download.h). Written against the abstract
// HttpClient: no Beast here; the client brings pooling, deadlines, retries of statuses, and
// this file adds what only it can do: restart a chunk at the byte where its stream broke.
#include "cmf/net/download.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/net/http_parse.h"

namespace cmf::net {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The sidecar is rewritten at most this often (each rewrite costs an fdatasync of the data).
constexpr std::chrono::seconds kStateSaveInterval{1};
// Non-TTY progress lines: often enough to show life in CI logs, rare enough to read them.
constexpr std::chrono::seconds kPlainProgressInterval{5};
constexpr int kStateVersion = 1;

std::string hex(const unsigned char* d, std::size_t n) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
        s.push_back(digits[d[i] >> 4]);
        s.push_back(digits[d[i] & 15]);
    }
    return s;
}

std::string sha256_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) fail_io("cannot read " + p.string());
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    std::vector<char> buf(1 << 20);
    while (in) {
        in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        if (in.gcount() > 0) EVP_DigestUpdate(ctx, buf.data(), static_cast<std::size_t>(in.gcount()));
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    return hex(md, len);
}

std::string human_bytes(double b) {
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
    // Reads exactly n bytes at off (the caller knows they were written).
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
        if (::fsync(fd_) != 0) fail_io("cannot sync " + path_.string() + ": " + std::strerror(errno));
    }
    std::uint64_t size() const {
        struct stat st {};
        return ::fstat(fd_, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
    }

private:
    fs::path path_;
    int fd_ = -1;
};

struct State {
    std::uint64_t size = 0;
    std::uint64_t chunk_size = 0;
    std::set<std::uint64_t> done;
};

std::string url_path(const Url& u) { return u.target.substr(0, u.target.find('?')); }

std::optional<State> load_state(const fs::path& part, const Url& url) {
    std::ifstream in(part);
    if (!in) return std::nullopt;
    try {
        auto j = nlohmann::json::parse(in);
        if (j.at("version").get<int>() != kStateVersion || j.at("url_path").get<std::string>() != url_path(url))
            return std::nullopt;
        State s;
        s.size = j.at("size").get<std::uint64_t>();
        s.chunk_size = j.at("chunk_size").get<std::uint64_t>();
        for (auto& c : j.at("done")) s.done.insert(c.get<std::uint64_t>());
        return s;
    } catch (const std::exception&) {
        return std::nullopt;  // a damaged sidecar only costs a fresh download
    }
}

void save_state(const fs::path& part, const Url& url, const State& s) {
    nlohmann::json j = {{"version", kStateVersion}, {"url_path", url_path(url)}, {"size", s.size},
                        {"chunk_size", s.chunk_size}, {"done", s.done}};
    fs::path tmp = part.string() + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << j.dump();
        if (!out.flush()) fail_io("cannot write " + tmp.string());
    }
    std::error_code ec;
    fs::rename(tmp, part, ec);
    if (ec) fail_io("cannot write " + part.string() + ": " + ec.message());
}

struct Run {
    HttpClient& client;
    const Url& url;
    const DownloadOptions& opt;
    fs::path tmp, part;
    std::string what;  // "GET host/path" for messages (no query: signatures live there)

    std::atomic<std::uint64_t> fetched{0};  // body bytes this call
    std::atomic<std::uint64_t> on_disk{0};  // bytes of finished chunks + progress inside chunks
    std::atomic<int> chunk_retries{0};
    std::optional<std::uint64_t> total;

    Request get(std::optional<std::pair<std::uint64_t, std::uint64_t>> range) const {
        Request r;
        r.url = url;
        r.headers = opt.headers;
        r.headers.set("Accept-Encoding", "identity");  // byte offsets must be offsets of the object
        if (range) r.headers.set("Range", "bytes=" + std::to_string(range->first) + "-" + std::to_string(range->second));
        return r;
    }
};

// Progress ticker: calls the callback every interval until stopped; the final call has finished.
class Ticker {
public:
    Ticker(Run& run, std::uint64_t resumed) : run_(run), resumed_(resumed), start_(Clock::now()) {
        if (run_.opt.progress) thread_ = std::thread([this] { loop(); });
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
        if (run_.opt.progress && finished) run_.opt.progress(snapshot(true));
    }

private:
    DownloadProgress snapshot(bool finished) {
        DownloadProgress p;
        p.done = run_.on_disk.load();
        p.total = run_.total;
        double secs = std::chrono::duration<double>(Clock::now() - start_).count();
        std::uint64_t fresh = p.done > resumed_ ? p.done - resumed_ : 0;
        p.bytes_per_sec = secs > 0 ? static_cast<double>(fresh) / secs : 0;
        if (p.total && p.bytes_per_sec > 0 && *p.total >= p.done)
            p.eta_seconds = static_cast<double>(*p.total - p.done) / p.bytes_per_sec;
        p.finished = finished;
        return p;
    }
    void loop() {
        std::unique_lock lock(mu_);
        while (!cv_.wait_for(lock, run_.opt.progress_interval, [this] { return stopped_; })) {
            lock.unlock();
            run_.opt.progress(snapshot(false));
            lock.lock();
        }
    }

    Run& run_;
    std::uint64_t resumed_;
    Clock::time_point start_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stopped_ = false;
    std::thread thread_;
};

// SHA-256 of the file computed while the download runs: a thread follows the finished prefix
// (chunks 0..k all done) and hashes it back from the page cache, so at the end only what
// finished last is left to hash instead of the whole object (0.3-0.4 s per 512 MiB on a
// 2-core VM, which otherwise adds straight to the wall time).
class PrefixHasher {
public:
    PrefixHasher(const File& file, std::uint64_t size, std::uint64_t chunk_size)
        : file_(file), size_(size), chunk_(chunk_size), ctx_(EVP_MD_CTX_new()) {
        if (!ctx_ || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) fail_io("sha256: cannot initialize");
        thread_ = std::thread([this] { loop(); });
    }
    ~PrefixHasher() {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
        EVP_MD_CTX_free(ctx_);
    }
    void chunk_done(std::uint64_t i) {
        {
            std::lock_guard lock(mu_);
            done_.insert(i);
        }
        cv_.notify_all();
    }
    // Waits for the hash of the whole file (every chunk must have been reported done).
    std::string finish() {
        {
            std::lock_guard lock(mu_);
            finishing_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
        if (error_) std::rethrow_exception(error_);
        if (hashed_ != size_) fail_io("sha256: file incomplete when hashed");
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        EVP_DigestFinal_ex(ctx_, md, &len);
        return hex(md, len);
    }

private:
    void loop() {
        std::vector<char> buf(1 << 20);
        std::uint64_t next = 0;
        try {
            for (;;) {
                {
                    std::unique_lock lock(mu_);
                    cv_.wait(lock, [&] { return stop_ || finishing_ || done_.count(next); });
                    if (stop_ || (!done_.count(next) && finishing_)) return;
                }
                std::uint64_t first = next * chunk_, end = std::min(size_, first + chunk_);
                for (std::uint64_t off = first; off < end;) {
                    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), end - off));
                    file_.pread_all(buf.data(), n, off);
                    EVP_DigestUpdate(ctx_, buf.data(), n);
                    off += n;
                }
                hashed_ = end;
                ++next;
                if (hashed_ >= size_) return;
            }
        } catch (...) {
            error_ = std::current_exception();
        }
    }

    const File& file_;
    std::uint64_t size_, chunk_;
    EVP_MD_CTX* ctx_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::set<std::uint64_t> done_;
    bool stop_ = false, finishing_ = false;
    std::uint64_t hashed_ = 0;
    std::exception_ptr error_;
    std::thread thread_;
};

// One plain stream into the file (server ignores Range, or the object is tiny). Restarts from
// zero when the stream breaks: without Range there is no other way.
void fetch_whole(Run& run, File& file, std::uint64_t known_bytes_from_probe) {
    (void)known_bytes_from_probe;
    std::string last;
    for (int attempt = 1; attempt <= run.opt.chunk_attempts; ++attempt) {
        std::uint64_t off = 0;
        file.resize(0);
        run.on_disk = 0;
        auto sink = [&](const char* d, std::size_t n) {
            file.pwrite_all(d, n, off);
            off += n;
            run.fetched += n;
            run.on_disk += n;
            return true;
        };
        try {
            Response r = run.client.send(run.get(std::nullopt), sink);
            if (r.status != 200)
                fail(ErrorKind::remote, run.what + ": HTTP " + std::to_string(r.status));
            run.total = off;
            return;
        } catch (const Error& e) {
            if (e.kind() != ErrorKind::network) throw;
            last = e.what();
            ++run.chunk_retries;
        }
    }
    fail(ErrorKind::network, last);
}

DownloadResult fetch_once(Run& run, bool allow_resume) {
    DownloadResult res;
    const auto& opt = run.opt;
    std::uint64_t chunk_size = std::max<std::uint64_t>(opt.chunk_size, 64 * 1024);
    std::optional<State> state;
    if (allow_resume && fs::exists(run.tmp)) state = load_state(run.part, run.url);
    if (state && state->chunk_size != chunk_size) state.reset();
    File file(run.tmp, !state);

    // Probe with a one-byte range: 206 tells the size and that ranges work; 200 means the
    // server ignores Range and the whole object is already streaming into the file.
    std::uint64_t probe_off = 0;
    bool probe_overflow = false;
    auto probe_sink = [&](const char* d, std::size_t n) {
        file.pwrite_all(d, n, probe_off);
        probe_off += n;
        run.fetched += n;
        return true;
    };
    Response probe;
    for (int attempt = 1;; ++attempt) {
        probe_off = 0;
        try {
            probe = run.client.send(run.get(std::make_pair(0ull, 0ull)), probe_sink);
            break;
        } catch (const Error& e) {
            // a broken 200 stream: fall through to fetch_whole, which restarts it
            if (e.kind() != ErrorKind::network || probe_off == 0 || attempt >= 2) throw;
            probe.status = 200;
            probe_overflow = true;
            break;
        }
    }
    if (probe.status == 200) {
        state.reset();
        std::error_code ec;
        fs::remove(run.part, ec);
        if (probe_overflow) fetch_whole(run, file, probe_off);
        else run.total = probe_off, run.on_disk = probe_off;
        res.size = *run.total;
    } else if (probe.status == 206 || probe.status == 416) {
        std::uint64_t size = 0;
        if (probe.status == 206) {
            auto cr = parse_content_range(probe.headers.get("content-range").value_or(""));
            if (!cr || !cr->total || cr->first != 0)
                fail(ErrorKind::remote, run.what + ": 206 without a usable Content-Range");
            size = *cr->total;
        } else {
            // "bytes */0": an empty object cannot satisfy bytes=0-0
            auto v = probe.headers.get("content-range").value_or("");
            if (v != "bytes */0") fail(ErrorKind::remote, run.what + ": HTTP 416 for bytes=0-0");
        }
        run.total = size;
        if (opt.expected_size && *opt.expected_size != size)
            fail(ErrorKind::remote, run.what + ": server reports " + std::to_string(size) + " bytes, expected " +
                                        std::to_string(*opt.expected_size));
        if (state && (state->size != size || file.size() != size)) {
            state.reset();
        }
        if (!state) {
            state = State{size, chunk_size, {}};
        } else {
            res.resumed = !state->done.empty();
        }
        file.resize(size);
        res.ranged = true;
        res.size = size;

        std::uint64_t nchunks = (size + chunk_size - 1) / chunk_size;
        std::vector<std::uint64_t> pending;
        std::uint64_t resumed_bytes = 0;
        for (std::uint64_t i = 0; i < nchunks; ++i) {
            if (state->done.count(i)) resumed_bytes += std::min(chunk_size, size - i * chunk_size);
            else pending.push_back(i);
        }
        run.on_disk = resumed_bytes;
        std::optional<PrefixHasher> hasher;
        if (size > 0) {
            hasher.emplace(file, size, chunk_size);
            for (auto i : state->done) hasher->chunk_done(i);
        }
        std::mutex state_mu;
        std::atomic<std::size_t> next{0};
        std::atomic<bool> stop{false};
        std::exception_ptr first_error;
        std::mutex err_mu;
        Ticker ticker(run, resumed_bytes);

        // The sidecar vouches for chunks whose bytes are on disk: snapshot the list, fsync the
        // data, then write the list. A background thread does it every kStateSaveInterval so
        // no connection waits for an fsync between two requests.
        auto persist = [&] {
            State snap;
            {
                std::lock_guard lock(state_mu);
                snap = *state;
            }
            file.sync();
            save_state(run.part, run.url, snap);
        };
        std::mutex persist_mu;
        std::condition_variable persist_cv;
        bool persist_stop = false;
        std::exception_ptr persist_error;
        std::thread persister([&] {
            std::unique_lock lock(persist_mu);
            while (!persist_cv.wait_for(lock, kStateSaveInterval, [&] { return persist_stop; })) {
                lock.unlock();
                try {
                    persist();
                } catch (...) {
                    lock.lock();
                    persist_error = std::current_exception();
                    return;
                }
                lock.lock();
            }
        });
        auto stop_persister = [&] {
            {
                std::lock_guard lock(persist_mu);
                persist_stop = true;
            }
            persist_cv.notify_all();
            if (persister.joinable()) persister.join();
        };
        struct OnExit {
            std::function<void()> f;
            ~OnExit() { f(); }
        } persister_guard{stop_persister};

        auto fetch_chunk = [&](std::uint64_t i) {
            std::uint64_t first = i * chunk_size;
            std::uint64_t len = std::min(chunk_size, size - first);
            std::uint64_t got = 0;
            std::string last;
            for (int attempt = 1; attempt <= opt.chunk_attempts; ++attempt) {
                if (stop) return;
                bool overflow = false;
                std::uint64_t start = got;
                auto sink = [&](const char* d, std::size_t n) {
                    if (got + n > len) {
                        overflow = true;
                        return false;
                    }
                    file.pwrite_all(d, n, first + got);
                    got += n;
                    run.fetched += n;
                    run.on_disk += n;
                    return true;
                };
                Response r;
                try {
                    r = run.client.send(run.get(std::make_pair(first + got, first + len - 1)), sink);
                } catch (const Error& e) {
                    if (overflow) fail(ErrorKind::remote, run.what + ": server stopped honoring Range");
                    if (e.kind() != ErrorKind::network) throw;
                    last = e.what();
                    ++run.chunk_retries;
                    continue;
                }
                if (r.status == 206) {
                    auto cr = parse_content_range(r.headers.get("content-range").value_or(""));
                    if (!cr || cr->first != first + start || cr->last != first + len - 1)
                        fail(ErrorKind::remote, run.what + ": server answered a different range than asked");
                    if (got == len) break;
                    last = run.what + ": short range body";
                    ++run.chunk_retries;
                    continue;
                }
                if (RetryPolicy::retryable_status(r.status)) {
                    last = run.what + ": HTTP " + std::to_string(r.status);
                    ++run.chunk_retries;
                    continue;
                }
                fail(ErrorKind::remote, run.what + ": HTTP " + std::to_string(r.status) + " for a range request");
            }
            if (got != len)
                fail(ErrorKind::network, last + " (chunk " + std::to_string(i) + " gave up after " +
                                             std::to_string(opt.chunk_attempts) + " attempts)");
            hasher->chunk_done(i);
            std::lock_guard lock(state_mu);
            state->done.insert(i);
        };

        int workers = static_cast<int>(std::min<std::uint64_t>(std::max(1, opt.connections), pending.size()));
        std::vector<std::thread> threads;
        for (int w = 0; w < workers; ++w)
            threads.emplace_back([&] {
                while (!stop) {
                    std::size_t k = next++;
                    if (k >= pending.size()) return;
                    try {
                        fetch_chunk(pending[k]);
                    } catch (...) {
                        std::lock_guard lock(err_mu);
                        if (!first_error) first_error = std::current_exception();
                        stop = true;
                    }
                }
            });
        for (auto& t : threads) t.join();
        stop_persister();
        persist();  // also on failure: the next run resumes from here
        if (persist_error && !first_error) first_error = persist_error;
        ticker.stop(!first_error);
        if (first_error) std::rethrow_exception(first_error);
        if (hasher) res.sha256 = hasher->finish();
    } else {
        fail(probe.status == 401 || probe.status == 403 ? ErrorKind::auth : ErrorKind::remote,
             run.what + ": HTTP " + std::to_string(probe.status));
    }
    if (opt.expected_size && *opt.expected_size != res.size)
        fail(ErrorKind::remote, run.what + ": got " + std::to_string(res.size) + " bytes, expected " +
                                    std::to_string(*opt.expected_size));
    file.sync();
    return res;
}

}  // namespace

ProgressCallback stderr_progress(std::string label) {
    bool tty = ::isatty(STDERR_FILENO) == 1;
    auto last = std::make_shared<Clock::time_point>(Clock::now());
    return [label = std::move(label), tty, last](const DownloadProgress& p) {
        std::string line = label + " " + human_bytes(static_cast<double>(p.done));
        if (p.total) line += " / " + human_bytes(static_cast<double>(*p.total));
        char rate[64];
        std::snprintf(rate, sizeof rate, "  %.1f MB/s", p.bytes_per_sec / 1e6);
        line += rate;
        if (p.eta_seconds && !p.finished) {
            auto s = static_cast<long long>(*p.eta_seconds);
            char eta[48];
            std::snprintf(eta, sizeof eta, "  ETA %lld:%02lld", s / 60, s % 60);
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

DownloadResult download_file(HttpClient& client, const Url& url, const fs::path& out, const DownloadOptions& options) {
    Run run{client, url, options, out.string() + ".cmftmp", out.string() + ".cmfpart", "GET " + redacted(url)};
    if (out.has_parent_path()) fs::create_directories(out.parent_path());
    int refetches = 0;
    for (int pass = 0; pass < std::max(1, options.verify_attempts); ++pass) {
        DownloadResult res = fetch_once(run, options.resume && pass == 0);
        if (res.sha256.empty()) res.sha256 = sha256_file(run.tmp);  // not hashed on the way (no ranges, empty)
        res.bytes_fetched = run.fetched;
        res.chunk_retries = run.chunk_retries;
        res.refetches = refetches;
        std::error_code ec;
        if (options.expected_sha256.empty() || res.sha256 == options.expected_sha256) {
            fs::rename(run.tmp, out, ec);
            if (ec) fail_io("cannot rename " + run.tmp.string() + " to " + out.string() + ": " + ec.message());
            fs::remove(run.part, ec);
            return res;
        }
        // sha256 names no chunk: start over from nothing (never keep a corrupt byte)
        fs::remove(run.tmp, ec);
        fs::remove(run.part, ec);
        ++refetches;
    }
    fail(ErrorKind::input, run.what + ": sha256 mismatch after " + std::to_string(refetches) +
                               " fetches (expected " + options.expected_sha256 + ")");
}

}  // namespace cmf::net
