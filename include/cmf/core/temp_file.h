// Temporary files, interrupts and free space: how cmf writes a file so that no run, however it
// ends, leaves a partial or hidden one behind.
//
//   1. A file is written as DIR/.cmf-tmp-<pid>-<n>-<name> beside its final path DIR/<name>
//      (same filesystem, so the final rename is atomic) and renamed into place by commit()
//      after fsync. Until then it is a TempFile: destroying it uncommitted unlinks it.
//   2. A TempFile holds an exclusive flock on its file for its whole life. The kernel drops the
//      lock when the owner dies in any way (SIGKILL, OOM killer, crash), so "lock free" means
//      "owner gone"; sweep_stale_temporaries() removes exactly those files. (Power loss
//      leaves no lock either.) It also removes the names older cmf versions used,
//      `.NAME.tmp-<pid>`, when that pid is no longer running.
//   3. Every live TempFile is in a process-wide registry. install_interrupt_watcher() blocks
//      SIGINT, SIGTERM and SIGHUP in every thread and waits for them on one thread: on a signal
//      it unlinks every registered temporary, prints one line and exits with 128 + signal.
//      InterruptDeferral holds the exit back over a section that must not be cut (renaming a
//      run's outputs into place, deleting a cloud VM).
//   4. Resumable downloads are a separate, VISIBLE kind: net/transfer.h keeps `<out>.cmf-partial`
//      and `<out>.cmf-partial.json` so that the next run continues where this one stopped.
//      They are never swept nor removed on interrupt; register_kept_partial() lets the
//      interrupt line say that they were kept.
//   5. commit_all() renames a run's outputs only when every one of them is complete, and
//      require_free_space() refuses a run before it writes anything when the outputs (their
//      sizes are known from the plan) do not fit.
#pragma once

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cmf/core/error.h"

namespace cmf {

namespace fs = std::filesystem;

inline constexpr const char* kTempPrefix = ".cmf-tmp-";
// A lock-free temporary whose pid is running again (pid reuse) is still stale once it is this
// old; younger ones may be in the instant between their creation and their flock.
inline constexpr int kTempLockGraceSeconds = 600;

namespace detail {

struct TempRegistry {
    std::mutex mu;  // held around create+register and rename+unregister, and by the exit path
    std::map<uint64_t, fs::path> live;
    std::map<std::string, fs::path> kept;  // resumable partial downloads, by path
    uint64_t next_id = 0;
    std::string what = "running";

    // interrupt deferral
    std::mutex dmu;
    std::condition_variable dcv;
    int deferrals = 0;
    std::function<void(int)> handler;  // a section that handles signals itself
    bool watching = false;
};

inline TempRegistry& temp_registry() {
    static TempRegistry* r = new TempRegistry;  // never destroyed: the watcher may use it at exit
    return *r;
}

inline std::string signal_name(int sig) {
    switch (sig) {
        case SIGINT: return "SIGINT";
        case SIGTERM: return "SIGTERM";
        case SIGHUP: return "SIGHUP";
        default: return "signal " + std::to_string(sig);
    }
}

inline std::string plural(size_t n, const std::string& one, const std::string& many) {
    return std::to_string(n) + " " + (n == 1 ? one : many);
}

inline bool pid_alive(long pid) {
    if (pid <= 0) return false;
    if (::kill(static_cast<pid_t>(pid), 0) == 0) return true;
    return errno == EPERM;
}

inline void sync_dir(const fs::path& dir) {
    int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

}  // namespace detail

// "1.23 GB" (decimal, as df -H and disk vendors count)
inline std::string format_bytes(uint64_t b) {
    const char* u[] = {"bytes", "kB", "MB", "GB", "TB"};
    double v = static_cast<double>(b);
    int i = 0;
    while (v >= 1000 && i < 4) {
        v /= 1000;
        ++i;
    }
    char s[40];
    std::snprintf(s, sizeof s, i ? "%.1f %s" : "%.0f %s", v, u[i]);
    return s;
}

// What the interrupt line says the process was doing ("quantizing gemma-3-4b-it").
inline void set_interrupt_context(const std::string& what) {
    auto& r = detail::temp_registry();
    std::lock_guard lk(r.mu);
    r.what = what;
}

// A resumable partial download (net/transfer.h): kept on interrupt, named in the line.
inline void register_kept_partial(const fs::path& p) {
    auto& r = detail::temp_registry();
    std::lock_guard lk(r.mu);
    r.kept[p.string()] = p;
}
inline void unregister_kept_partial(const fs::path& p) {
    auto& r = detail::temp_registry();
    std::lock_guard lk(r.mu);
    r.kept.erase(p.string());
}

// Registers a resumable partial download for its lifetime (what the interrupt line names).
class KeptPartial {
public:
    explicit KeptPartial(fs::path p) : p_(std::move(p)) { register_kept_partial(p_); }
    ~KeptPartial() { unregister_kept_partial(p_); }
    KeptPartial(const KeptPartial&) = delete;
    KeptPartial& operator=(const KeptPartial&) = delete;

private:
    fs::path p_;
};

// A file being written beside its final path; see the top of this header.
class TempFile {
public:
    explicit TempFile(const fs::path& final_path, mode_t mode = 0644) : final_(final_path) {
        auto& r = detail::temp_registry();
        {
            // create and register under one lock: the interrupt path never misses a file
            std::lock_guard lk(r.mu);
            id_ = r.next_id++;
            tmp_ = final_path.parent_path() /
                   (kTempPrefix + std::to_string(::getpid()) + "-" + std::to_string(id_) + "-" + final_path.filename().string());
            fd_ = ::open(tmp_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
            if (fd_ < 0) {
                const int e = errno;
                fail_io("cannot create " + tmp_.string() + ": " + std::strerror(e));
            }
            r.live[id_] = tmp_;
        }
        if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
            const int e = errno;
            abandon();
            fail_io("cannot lock " + tmp_.string() + ": " + std::strerror(e));
        }
    }
    ~TempFile() { abandon(); }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;

    int fd() const { return fd_; }
    const fs::path& path() const { return tmp_; }  // the temporary name
    const fs::path& final_path() const { return final_; }
    bool committed() const { return committed_; }

    void write(const void* data, size_t n) {
        const char* p = static_cast<const char*>(data);
        while (n > 0) {
            ssize_t w = ::write(fd_, p, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) fail_io("write error on " + final_.string() + ": " + std::strerror(w < 0 ? errno : ENOSPC));
            p += w;
            n -= static_cast<size_t>(w);
        }
    }
    void write(const std::string& s) { write(s.data(), s.size()); }
    // Appends the bytes of the file `src`.
    void copy_from(const fs::path& src) {
        int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
        if (in < 0) fail_io("cannot open " + src.string() + ": " + std::strerror(errno));
        std::vector<char> buf(1 << 20);
        for (;;) {
            ssize_t n = ::read(in, buf.data(), buf.size());
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                const int e = errno;
                ::close(in);
                fail_io("read error on " + src.string() + ": " + std::strerror(e));
            }
            if (n == 0) break;
            try {
                write(buf.data(), static_cast<size_t>(n));
            } catch (...) {
                ::close(in);
                throw;
            }
        }
        ::close(in);
    }
    void pwrite_at(const void* data, size_t n, uint64_t off) {
        const char* p = static_cast<const char*>(data);
        while (n > 0) {
            ssize_t w = ::pwrite(fd_, p, n, static_cast<off_t>(off));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) fail_io("write error on " + final_.string() + ": " + std::strerror(w < 0 ? errno : ENOSPC));
            p += w;
            off += static_cast<uint64_t>(w);
            n -= static_cast<size_t>(w);
        }
    }

    // Data on disk; the first half of commit(), done for every file by commit_all() before
    // any is renamed.
    void sync() {
        if (::fsync(fd_) != 0) fail_io("fsync failed on " + final_.string() + ": " + std::strerror(errno));
    }
    // fsync, rename into place, fsync the directory.
    void commit() {
        sync();
        rename_into_place();
        detail::sync_dir(final_.parent_path());
    }
    // Removes the temporary now (what the destructor does when not committed).
    void abandon() {
        if (committed_) return;
        auto& r = detail::temp_registry();
        std::lock_guard lk(r.mu);
        if (fd_ >= 0) {
            ::unlink(tmp_.c_str());
            ::close(fd_);
            fd_ = -1;
        }
        r.live.erase(id_);
    }

private:
    friend void commit_all(const std::vector<TempFile*>& temps);
    void rename_into_place() {
        auto& r = detail::temp_registry();
        std::lock_guard lk(r.mu);
        if (::rename(tmp_.c_str(), final_.c_str()) != 0) {
            const int e = errno;
            fail_io("cannot rename into " + final_.string() + ": " + std::strerror(e));
        }
        r.live.erase(id_);
        ::close(fd_);  // releases the lock
        fd_ = -1;
        committed_ = true;
    }
    fs::path final_, tmp_;
    uint64_t id_ = 0;
    int fd_ = -1;
    bool committed_ = false;
};

// Holds the interrupt watcher's exit back while it lives. Default: a signal that arrives is
// acted on (temporaries removed, exit 128+sig) when the last deferral ends. With a handler: the
// section handles signals itself (the gce backend deletes its VM and returns 130); the watcher
// calls on_signal from its thread and does not exit.
class InterruptDeferral {
public:
    InterruptDeferral() {
        auto& r = detail::temp_registry();
        std::lock_guard lk(r.dmu);
        ++r.deferrals;
    }
    explicit InterruptDeferral(std::function<void(int)> on_signal) : handles_(true) {
        auto& r = detail::temp_registry();
        std::lock_guard lk(r.dmu);
        previous_ = std::move(r.handler);
        r.handler = std::move(on_signal);
    }
    ~InterruptDeferral() {
        auto& r = detail::temp_registry();
        std::lock_guard lk(r.dmu);
        if (handles_)
            r.handler = std::move(previous_);
        else
            --r.deferrals;
        r.dcv.notify_all();
    }
    InterruptDeferral(const InterruptDeferral&) = delete;
    InterruptDeferral& operator=(const InterruptDeferral&) = delete;

private:
    bool handles_ = false;
    std::function<void(int)> previous_;
};

// Renames every file into place only when all are complete: all are fsynced first (any
// failure leaves every temporary to its destructor and no output appears), then renamed with
// interrupts deferred. If a rename fails the ones already renamed are removed again.
inline void commit_all(const std::vector<TempFile*>& temps) {
    for (auto* t : temps) t->sync();
    InterruptDeferral hold;
    for (size_t i = 0; i < temps.size(); ++i) {
        try {
            temps[i]->rename_into_place();
        } catch (...) {
            for (size_t j = 0; j < i; ++j) ::unlink(temps[j]->final_path().c_str());
            throw;
        }
    }
    std::vector<fs::path> dirs;
    for (auto* t : temps)
        if (std::find(dirs.begin(), dirs.end(), t->final_path().parent_path()) == dirs.end()) dirs.push_back(t->final_path().parent_path());
    for (const auto& d : dirs) detail::sync_dir(d);
}

// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (call at the start of main, before
// any thread exists, so that every thread inherits the mask) and starts the thread that waits
// for them. Children started with exec inherit the mask; cmf children install their own
// watcher, anything else must unblock (restore_signal_mask_for_child()).
inline void install_interrupt_watcher(const std::string& what) {
    auto& r = detail::temp_registry();
    set_interrupt_context(what);
    {
        std::lock_guard lk(r.dmu);
        if (r.watching) return;
        r.watching = true;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::thread([set] {
        auto& r = detail::temp_registry();
        for (;;) {
            int sig = 0;
            if (::sigwait(&set, &sig) != 0) continue;
            std::unique_lock dl(r.dmu);
            if (r.handler) {
                auto h = r.handler;
                dl.unlock();
                h(sig);
                continue;
            }
            r.dcv.wait(dl, [&] { return r.deferrals == 0; });
            dl.unlock();
            // Hold the registry lock to the end: no temporary is created or renamed after this.
            r.mu.lock();
            size_t removed = 0;
            for (const auto& [id, p] : r.live)
                if (::unlink(p.c_str()) == 0) ++removed;
            std::string line = "cmf: interrupted by " + detail::signal_name(sig) + " while " + r.what + "; removed " +
                               detail::plural(removed, "temporary file", "temporary files");
            std::vector<std::string> kept;
            for (const auto& [k, p] : r.kept)
                if (::access(p.c_str(), F_OK) == 0) kept.push_back(p.string());
            if (!kept.empty()) {
                line += "; kept " + detail::plural(kept.size(), "resumable partial download", "resumable partial downloads") + " (" + kept[0];
                if (kept.size() > 1) line += ", ...";
                line += ")";
            }
            line += "\n";
            ssize_t ignored = ::write(2, line.data(), line.size());
            (void)ignored;
            ::_exit(128 + sig);
        }
    }).detach();
}

// For a child about to exec something other than cmf: the default signal mask.
inline void restore_signal_mask_for_child() {
    sigset_t none;
    sigemptyset(&none);
    ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
}

struct SweptTemporaries {
    std::vector<fs::path> files;
    uint64_t bytes = 0;
};

// Removes the temporaries of dead runs in `dir` (not recursive): `.cmf-tmp-*` whose flock is
// free and whose pid is not running (or that are older than kTempLockGraceSeconds), and the
// legacy `.NAME.tmp-<pid>` whose pid is not running. Never touches `*.cmf-partial*`.
inline SweptTemporaries sweep_stale_temporaries(const fs::path& dir) {
    SweptTemporaries out;
    std::error_code ec;
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.find(".cmf-partial") != std::string::npos) continue;  // resumable, visible, kept
        long pid = -1;
        bool ours = false;
        if (name.starts_with(kTempPrefix)) {
            ours = true;
            pid = std::strtol(name.c_str() + std::strlen(kTempPrefix), nullptr, 10);
        } else if (name.starts_with(".")) {
            const auto k = name.rfind(".tmp-");
            if (k == std::string::npos || k == 0) continue;
            const std::string digits = name.substr(k + 5);
            if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
            pid = std::strtol(digits.c_str(), nullptr, 10);
        } else {
            continue;
        }
        if (pid == ::getpid()) continue;
        struct ::stat st {};
        if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
        int fd = ::open(it->path().c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) continue;
        bool stale = false;
        if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
            const bool old = std::time(nullptr) - st.st_mtim.tv_sec > kTempLockGraceSeconds;
            stale = !detail::pid_alive(pid) || (ours && old);
        }
        if (stale && ::unlink(it->path().c_str()) == 0) {
            out.files.push_back(it->path());
            out.bytes += static_cast<uint64_t>(st.st_size);
        }
        ::close(fd);
    }
    return out;
}

// The line a front end prints after a sweep that removed something ("" when nothing).
inline std::string describe_sweep(const SweptTemporaries& s, const fs::path& dir) {
    if (s.files.empty()) return "";
    return "removed " + detail::plural(s.files.size(), "stale temporary file", "stale temporary files") + " (" + format_bytes(s.bytes) +
           ") left by dead runs in " + dir.string();
}

// Bytes available to this user on the filesystem of `dir`.
inline uint64_t free_space(const fs::path& dir) {
    struct ::statvfs v {};
    if (::statvfs(dir.c_str(), &v) != 0) fail_io("cannot query free space of " + dir.string() + ": " + std::strerror(errno));
    return static_cast<uint64_t>(v.f_bavail) * static_cast<uint64_t>(v.f_frsize);
}

// Fails, before anything is written, when `bytes_needed` do not fit in `dir`.
inline void require_free_space(const fs::path& dir, uint64_t bytes_needed, const std::string& what) {
    const uint64_t avail = free_space(dir);
    if (avail >= bytes_needed) return;
    fail_io("not enough free space in " + dir.string() + " for " + what + ": needs " + std::to_string(bytes_needed) + " bytes (" +
            format_bytes(bytes_needed) + "), " + std::to_string(avail) + " bytes (" + format_bytes(avail) + ") available");
}

}  // namespace cmf
