// Bucket: the object store the factory writes models, markers, logs and status into.
//
// The interface is what GCS offers and the worker needs, nothing more:
//   put            whole-object write, atomic (readers see the old or the new object)
//   put_file       the same from a local file (streamed; GGUFs are gigabytes)
//   put_if_absent  create-only (GCS ifGenerationMatch=0); false when the object exists.
//                  Terminal markers use it: the first writer wins, retries are harmless.
//   get, stat, list(prefix), remove
// Object names are relative ("status/q8.built"); no leading '/', no "." or ".." segments.
//
// LocalBucket (`--backend local`) stands in for gs://BUCKET with a directory: writes go to a
// temporary file in the target's directory, are fsynced and renamed (put) or hard-linked
// (put_if_absent: link() fails with EEXIST when the name exists, atomically).
// The GCS implementation lives over cmf/cloud/gcs.h (GcsBucket, written separately).
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/core/temp_file.h"

namespace cmf::factory {

namespace fs = std::filesystem;

struct ObjectInfo {
    std::string name;
    uint64_t size = 0;
    std::chrono::system_clock::time_point updated;
};

class Bucket {
public:
    virtual ~Bucket() = default;
    virtual std::string uri() const = 0;  // "gs://name" or "file:///dir", for messages and cards
    virtual void put(const std::string& name, const std::string& data) = 0;
    virtual void put_file(const std::string& name, const fs::path& file) = 0;
    virtual bool put_if_absent(const std::string& name, const std::string& data) = 0;
    virtual std::optional<std::string> get(const std::string& name) = 0;
    virtual std::optional<ObjectInfo> stat(const std::string& name) = 0;
    virtual std::vector<ObjectInfo> list(const std::string& prefix) = 0;  // sorted by name
    virtual bool remove(const std::string& name) = 0;                      // false: did not exist
};

// Rejects names that could escape a directory or that GCS would treat differently.
inline void check_object_name(const std::string& name) {
    auto bad = [&](const char* why) { fail(ErrorKind::usage, "bad object name '" + name + "': " + why); };
    if (name.empty() || name.size() > 1024) bad("empty or longer than 1024 bytes");
    if (name.front() == '/' || name.back() == '/') bad("starts or ends with '/'");
    size_t i = 0;
    while (i <= name.size()) {
        size_t j = name.find('/', i);
        if (j == std::string::npos) j = name.size();
        std::string seg = name.substr(i, j - i);
        if (seg.empty() || seg == "." || seg == "..") bad("empty, '.' or '..' path segment");
        if (seg.rfind(".cmf-tmp", 0) == 0) bad("reserved '.cmf-tmp' prefix");
        i = j + 1;
    }
    for (unsigned char c : name)
        if (c < 0x20 || c == 0x7f) bad("control character");
}

class LocalBucket : public Bucket {
public:
    explicit LocalBucket(fs::path root) : root_(std::move(root)) {
        std::error_code ec;
        fs::create_directories(root_, ec);
        if (!fs::is_directory(root_)) fail_io("cannot create bucket directory " + root_.string());
        root_ = fs::canonical(root_);
    }
    const fs::path& root() const { return root_; }
    std::string uri() const override { return "file://" + root_.string(); }

    void put(const std::string& name, const std::string& data) override {
        const fs::path dst = path_of(name);
        TempFile t(dst);  // core/temp_file.h: removed on error or interrupt
        t.write(data);
        t.commit();
    }

    void put_file(const std::string& name, const fs::path& file) override {
        const fs::path dst = path_of(name);
        TempFile t(dst);
        t.copy_from(file);
        t.commit();
    }

    bool put_if_absent(const std::string& name, const std::string& data) override {
        const fs::path dst = path_of(name);
        TempFile t(dst);
        t.write(data);
        t.sync();
        // link() never replaces an existing name: the create-only write, atomic like GCS's
        // ifGenerationMatch=0. The temporary name goes with t.
        int rc = ::link(t.path().c_str(), dst.c_str());
        int e = errno;
        if (rc != 0) {
            if (e == EEXIST) return false;
            fail_io("cannot create " + dst.string() + ": " + std::strerror(e));
        }
        sync_dir(dst.parent_path());
        return true;
    }

    std::optional<std::string> get(const std::string& name) override {
        const fs::path p = path_of(name, false);
        int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT || errno == ENOTDIR) return std::nullopt;
            fail_io("cannot open " + p.string() + ": " + std::strerror(errno));
        }
        std::string out;
        char buf[65536];
        for (;;) {
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                int e = errno;
                ::close(fd);
                fail_io("read error on " + p.string() + ": " + std::strerror(e));
            }
            if (n == 0) break;
            out.append(buf, static_cast<size_t>(n));
        }
        ::close(fd);
        return out;
    }

    std::optional<ObjectInfo> stat(const std::string& name) override {
        struct ::stat st;
        const fs::path p = path_of(name, false);
        if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
        return info(name, st);
    }

    std::vector<ObjectInfo> list(const std::string& prefix) override {
        std::vector<ObjectInfo> out;
        std::error_code ec;
        for (auto it = fs::recursive_directory_iterator(root_, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
            const std::string fname = it->path().filename().string();
            if (fname.rfind(".cmf-tmp", 0) == 0) continue;
            if (!it->is_regular_file()) continue;
            std::string rel = it->path().lexically_relative(root_).generic_string();
            if (rel.compare(0, prefix.size(), prefix) != 0) continue;
            struct ::stat st;
            if (::stat(it->path().c_str(), &st) != 0) continue;
            out.push_back(info(rel, st));
        }
        std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.name < b.name; });
        return out;
    }

    bool remove(const std::string& name) override {
        const fs::path p = path_of(name, false);
        if (::unlink(p.c_str()) == 0) return true;
        if (errno == ENOENT || errno == ENOTDIR) return false;
        fail_io("cannot remove " + p.string() + ": " + std::strerror(errno));
    }

private:
    fs::path path_of(const std::string& name, bool make_parent = true) const {
        check_object_name(name);
        fs::path p = root_ / name;
        if (make_parent) {
            std::error_code ec;
            fs::create_directories(p.parent_path(), ec);
            if (!fs::is_directory(p.parent_path())) fail_io("cannot create directory " + p.parent_path().string());
        }
        return p;
    }

    static ObjectInfo info(const std::string& name, const struct ::stat& st) {
        ObjectInfo i;
        i.name = name;
        i.size = static_cast<uint64_t>(st.st_size);
        i.updated = std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
        return i;
    }

    static void sync_dir(const fs::path& dir) {
        int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            ::fsync(fd);
            ::close(fd);
        }
    }

    fs::path root_;
};

}  // namespace cmf::factory
