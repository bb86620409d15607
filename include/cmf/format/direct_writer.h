// Write-combining output for files whose layout is known in advance (GGUF): bytes written at
// arbitrary offsets from many threads are gathered into aligned segments in memory, and each
// segment goes to disk with one O_DIRECT write as soon as every byte the layout puts in it has
// arrived, by a background thread per file, so the threads that compute never wait for the
// device.
//
// Why: a quantizer pass writes several GB (q4_k_s,q4_k_m,q8_0,f16 of a 1 B model: 4.6 GB).
// Through the page cache every byte is copied into freshly allocated cache pages and written
// back later; on cloud VMs that kernel work costs about as much CPU as the quantizing itself
// (measured here: 2 GiB buffered + fsync 7.2 s wall / 6.2 s system time, O_DIRECT 1.6 s /
// 0.3 s). Direct writes move the data from our buffers to the device without the copy.
//
// Contract: the caller names up front every byte range it will write, writes each exactly once
// (from any thread, in any order), and calls flush() at the end, which fails if a range was not
// completely written. Bytes outside the ranges (alignment padding) read back as zeros. The
// file's bytes do not depend on the order or timing of the writes.
//   - Memory is bounded: at most max_segments (default kMaxSegments) segments per file are
//     held; when the writers scatter wider than that, the least recently used partial segment
//     is written out whole and its remaining bytes go through the page cache when they come.
//   - Where O_DIRECT is refused (tmpfs on older kernels, some network filesystems; open or
//     the first write fails with EINVAL) or CMF_DIRECT_IO=0 is set, every write is a plain pwrite.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <thread>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "cmf/core/error.h"

namespace cmf {

class DirectWriter {
public:
    static constexpr uint64_t kSegment = 4ull << 20;  // bytes per segment (a multiple of every block size)
    static constexpr uint64_t kAlign = 4096;           // buffer address, offset and length alignment
    static constexpr size_t kMaxSegments = 8;          // held per file by default: 32 MiB

    // `fd` is the file opened without O_DIRECT (owned by the caller, used for plain writes);
    // `path` opens a second, O_DIRECT descriptor. `written` lists every [offset, offset+size)
    // range the caller will write exactly once (ranges must not overlap); size is the file size.
    DirectWriter(int fd, const std::string& path, const std::vector<std::pair<uint64_t, uint64_t>>& written,
                 uint64_t size, std::string display, size_t max_segments = kMaxSegments)
        : fd_(fd), size_(size), display_(std::move(display)), max_held_(std::max<size_t>(1, max_segments)) {
        const char* env = std::getenv("CMF_DIRECT_IO");
        if (env && std::string(env) == "0") return;
#ifdef O_DIRECT
        dfd_ = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
#endif
        if (dfd_ < 0) return;  // not supported here: plain writes
        segs_.resize(static_cast<size_t>((size_ + kSegment - 1) / kSegment));
        for (const auto& [off, n] : written) {
            uint64_t o = off, left = n;
            while (left > 0) {
                const uint64_t k = o / kSegment;
                const uint64_t take = std::min(left, (k + 1) * kSegment - o);
                segs_[static_cast<size_t>(k)].expected += take;
                o += take;
                left -= take;
            }
        }
        io_thread_ = std::thread([this] { io_loop(); });
    }
    ~DirectWriter() {
        stop_io(/*drain=*/false);
        if (dfd_ >= 0) ::close(dfd_);
        for (auto& s : segs_) std::free(s.buf);
        for (char* b : pool_) std::free(b);
    }
    DirectWriter(const DirectWriter&) = delete;
    DirectWriter& operator=(const DirectWriter&) = delete;

    bool direct() const { return dfd_ >= 0; }
    uint64_t spilled_segments() const { return spills_; }

    void write_at(const char* p, uint64_t n, uint64_t off) {
        if (dfd_ < 0) return plain_write(p, n, off);
        while (n > 0) {
            const uint64_t k = off / kSegment;
            const uint64_t take = std::min(n, (k + 1) * kSegment - off);
            write_segment(static_cast<size_t>(k), p, take, off - k * kSegment);
            p += take;
            n -= take;
            off += take;
        }
    }

    // Checks that every announced byte arrived and cuts the file to its size. Call once all
    // writers are done, before fsync.
    void flush() {
        if (dfd_ < 0) return;
        stop_io(/*drain=*/true);
        std::lock_guard lock(mu_);
        if (io_error_) std::rethrow_exception(io_error_);
        for (size_t k = 0; k < segs_.size(); ++k)
            if (segs_[k].filled != segs_[k].expected)
                fail(ErrorKind::internal, display_ + ": " + std::to_string(segs_[k].expected - segs_[k].filled) +
                                              " bytes of the layout were never written near offset " +
                                              std::to_string(k * kSegment));
        // a direct write of the last segment is rounded up to the alignment: cut it back
        if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0)
            fail_io("cannot size " + display_ + ": " + std::strerror(errno));
    }

private:
    // empty -> held (being filled) -> queued (complete, waiting for the I/O thread) -> writing
    // -> done; or held -> writing (spilled under memory pressure) -> spilled.
    enum class State { empty, held, queued, writing, done, spilled };
    struct Segment {
        char* buf = nullptr;
        uint64_t expected = 0, filled = 0;
        int writers = 0;
        uint64_t last_use = 0;
        State state = State::empty;
    };

    void plain_write(const char* p, uint64_t n, uint64_t off) {
        while (n > 0) {
            ssize_t w = ::pwrite(fd_, p, n, static_cast<off_t>(off));
            if (w < 0) {
                if (errno == EINTR) continue;
                fail_io("write error on " + display_ + ": " + std::strerror(errno));
            }
            p += w;
            n -= static_cast<uint64_t>(w);
            off += static_cast<uint64_t>(w);
        }
    }

    uint64_t seg_len(size_t k) const { return std::min(kSegment, size_ - k * kSegment); }

    void write_segment(size_t k, const char* p, uint64_t n, uint64_t at) {
        std::unique_lock lock(mu_);
        if (io_error_) std::rethrow_exception(io_error_);
        Segment& s = segs_[k];
        cv_.wait(lock, [&] { return s.state != State::writing; });  // a spill in progress
        if (s.state == State::spilled) {
            s.filled += n;
            lock.unlock();
            return plain_write(p, n, k * kSegment + at);
        }
        if (s.state == State::done || s.state == State::queued) fail(ErrorKind::internal, display_ + ": bytes written twice at offset " + std::to_string(k * kSegment + at));
        if (s.state == State::empty) {
            while (held_ >= max_held_) spill_one(lock);
            // the wait above may have let another writer take this segment
            if (s.state == State::empty) {
                s.buf = take_buffer(k);
                s.state = State::held;
                ++held_;
            } else if (s.state != State::held) {
                lock.unlock();
                return write_segment(k, p, n, at);
            }
        }
        s.last_use = ++clock_;
        ++s.writers;
        char* dst = s.buf + at;
        lock.unlock();
        std::memcpy(dst, p, n);
        lock.lock();
        --s.writers;
        if (waiting_ > 0) cv_.notify_all();  // a spiller may be waiting for a segment without writers
        s.filled += n;
        if (s.filled > s.expected)
            fail(ErrorKind::internal, display_ + ": more bytes written than the layout holds near offset " + std::to_string(k * kSegment));
        if (s.filled < s.expected || s.writers > 0) return;
        // complete: the I/O thread writes it while this thread goes back to computing
        s.state = State::queued;
        queue_.push_back(k);
        cv_.notify_all();
    }

    void io_loop() {
        std::unique_lock lock(mu_);
        for (;;) {
            cv_.wait(lock, [&] { return !queue_.empty() || io_stop_; });
            if (queue_.empty() || (io_stop_ && !io_drain_)) return;
            const size_t k = queue_.front();
            queue_.pop_front();
            segs_[k].state = State::writing;
            lock.unlock();
            try {
                write_out(k);
            } catch (...) {
                lock.lock();
                if (!io_error_) io_error_ = std::current_exception();
                release(k, State::done);
                continue;
            }
            lock.lock();
            release(k, State::done);
        }
    }

    // drain: write what is queued first (flush); otherwise drop it (the file is abandoned).
    void stop_io(bool drain) {
        if (!io_thread_.joinable()) return;
        {
            std::lock_guard lock(mu_);
            io_stop_ = true;
            io_drain_ = drain;
        }
        cv_.notify_all();
        io_thread_.join();
    }

    // Writes the least recently used partial segment out whole; caller holds the lock (it is
    // released during the write).
    void spill_one(std::unique_lock<std::mutex>& lock) {
        size_t victim = segs_.size();
        for (size_t k = 0; k < segs_.size(); ++k) {
            const Segment& s = segs_[k];
            if (s.state == State::held && s.writers == 0 && (victim == segs_.size() || s.last_use < segs_[victim].last_use))
                victim = k;
        }
        if (victim == segs_.size()) {  // every held segment is being copied into or written right now
            ++waiting_;
            cv_.wait(lock);
            --waiting_;
            return;
        }
        segs_[victim].state = State::writing;
        lock.unlock();
        write_out(victim);
        lock.lock();
        ++spills_;
        release(victim, State::spilled);
    }

    // Direct write of segment k (state writing, so nobody touches its buffer).
    void write_out(size_t k) {
        Segment& s = segs_[k];
        const uint64_t len = (seg_len(k) + kAlign - 1) / kAlign * kAlign;
        const uint64_t off = k * kSegment;
        uint64_t done = 0;
        while (done < len) {
            ssize_t w = ::pwrite(dfd_, s.buf + done, len - done, static_cast<off_t>(off + done));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && errno == EINVAL && done == 0) {
                // the filesystem accepted O_DIRECT at open but not this write: plain write
                plain_write(s.buf, seg_len(k), off);
                return;
            }
            if (w <= 0) fail_io("write error on " + display_ + ": " + (w < 0 ? std::strerror(errno) : "no progress"));
            done += static_cast<uint64_t>(w);
        }
    }

    void release(size_t k, State to) {
        Segment& s = segs_[k];
        pool_.push_back(s.buf);  // reused: fresh pages cost a fault each
        s.buf = nullptr;
        s.state = to;
        --held_;
        cv_.notify_all();
    }

    // A buffer for segment k; zeroed only when the layout leaves gaps in it (alignment
    // padding), since every other byte will be written.
    char* take_buffer(size_t k) {
        char* b;
        if (!pool_.empty()) {
            b = pool_.back();
            pool_.pop_back();
        } else {
            b = static_cast<char*>(std::aligned_alloc(kAlign, kSegment));
            if (!b) fail_io("out of memory for the output buffers of " + display_);
        }
        if (segs_[k].expected < seg_len(k)) std::memset(b, 0, kSegment);
        return b;
    }

    int fd_;
    int dfd_ = -1;
    uint64_t size_;
    std::string display_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<Segment> segs_;
    std::vector<char*> pool_;
    size_t max_held_;
    size_t held_ = 0, waiting_ = 0;
    std::deque<size_t> queue_;
    bool io_stop_ = false, io_drain_ = false;
    std::exception_ptr io_error_;
    std::thread io_thread_;
    uint64_t clock_ = 0, spills_ = 0;
};

}  // namespace cmf
