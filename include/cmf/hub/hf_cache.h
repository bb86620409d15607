// The Hugging Face cache, laid out exactly as huggingface_hub's file_download.py does, so that
// transformers, llama.cpp's converter and `hf` itself reuse what cmf downloaded and vice versa:
//
//   $HF_HUB_CACHE/
//     models--ORG--REPO/                 repo folder: "models" + "--" + repo id with '/' -> "--"
//       blobs/<etag>                     file content, named by the Hub's etag (sha256 for
//                                        LFS/Xet files, git blob id for small files)
//       blobs/<etag>.incomplete          huggingface_hub's download in progress (cmf's own is
//                                        blobs/<etag>.cmf-partial + .cmf-partial.json, resumable,
//                                        net/transfer.h; a different name, so neither tool
//                                        resumes the other's half-written file)
//       snapshots/<commit>/<path>        relative symlink to ../../blobs/<etag> (one more ../
//                                        per directory level in <path>)
//       refs/<revision>                  the commit the revision resolved to, no newline
//                                        (written only when the revision is not itself a commit)
//     .locks/models--ORG--REPO/<etag>.lock   advisory lock while a blob is being written
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "cmf/core/error.h"
#include "cmf/core/temp_file.h"
#include "cmf/hub/digest.h"

namespace cmf::hub {

namespace fs = std::filesystem;

class HfCache {
public:
    explicit HfCache(fs::path hub_cache) : root_(std::move(hub_cache)) {}

    const fs::path& root() const { return root_; }

    static std::string repo_folder_name(const std::string& repo_id) {
        std::string s = "models--";
        for (char c : repo_id) {
            if (c == '/') s += "--";
            else s += c;
        }
        return s;
    }
    fs::path repo_dir(const std::string& repo_id) const { return root_ / repo_folder_name(repo_id); }
    fs::path blob_path(const std::string& repo_id, const std::string& etag) const {
        return repo_dir(repo_id) / "blobs" / etag;
    }
    fs::path incomplete_path(const std::string& repo_id, const std::string& etag) const {
        return repo_dir(repo_id) / "blobs" / (etag + ".incomplete");
    }
    fs::path snapshot_dir(const std::string& repo_id, const std::string& commit) const {
        return repo_dir(repo_id) / "snapshots" / commit;
    }
    fs::path snapshot_path(const std::string& repo_id, const std::string& commit, const std::string& path) const {
        return snapshot_dir(repo_id, commit) / path;
    }
    fs::path ref_path(const std::string& repo_id, const std::string& revision) const {
        return repo_dir(repo_id) / "refs" / revision;
    }
    fs::path lock_path(const std::string& repo_id, const std::string& etag) const {
        return root_ / ".locks" / repo_folder_name(repo_id) / (etag + ".lock");
    }

    // A blob already in the cache with the expected size (huggingface_hub trusts an existing
    // blob by name; we also compare the size, which is free).
    bool has_blob(const std::string& repo_id, const std::string& etag, std::uint64_t size) const {
        std::error_code ec;
        const auto p = blob_path(repo_id, etag);
        return fs::is_regular_file(p, ec) && fs::file_size(p, ec) == size && !ec;
    }


    // snapshots/<commit>/<path> -> ../../blobs/<etag>, replacing whatever was there.
    void link_snapshot(const std::string& repo_id, const std::string& commit, const std::string& path,
                       const std::string& etag) const {
        const fs::path link = snapshot_path(repo_id, commit, path);
        std::error_code ec;
        fs::create_directories(link.parent_path(), ec);
        if (ec) fail_io("cannot create " + link.parent_path().string() + ": " + ec.message());
        const fs::path target = fs::path(blob_path(repo_id, etag)).lexically_relative(link.parent_path());
        if (fs::is_symlink(fs::symlink_status(link, ec)) && fs::read_symlink(link, ec) == target) return;
        fs::remove(link, ec);
        fs::create_symlink(target, link, ec);
        if (ec) fail_io("cannot create the snapshot link " + link.string() + ": " + ec.message());
    }

    void write_ref(const std::string& repo_id, const std::string& revision, const std::string& commit) const {
        if (revision == commit) return;
        const fs::path p = ref_path(repo_id, revision);
        std::error_code ec;
        fs::create_directories(p.parent_path(), ec);
        if (ec) fail_io("cannot create " + p.parent_path().string() + ": " + ec.message());
        if (read_ref(repo_id, revision) == commit) return;
        TempFile out(p);
        out.write(commit);
        out.commit();
    }

    std::optional<std::string> read_ref(const std::string& repo_id, const std::string& revision) const {
        std::ifstream in(ref_path(repo_id, revision), std::ios::binary);
        if (!in) return std::nullopt;
        std::stringstream ss;
        ss << in.rdbuf();
        std::string s = ss.str();
        while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
        if (!is_hex(s, 40)) return std::nullopt;
        return s;
    }

    // Prepares blobs/ and returns the path a new blob is written to (atomically, by the caller).
    fs::path begin_blob(const std::string& repo_id, const std::string& etag) const {
        std::error_code ec;
        fs::create_directories(repo_dir(repo_id) / "blobs", ec);
        if (ec) fail_io("cannot create " + (repo_dir(repo_id) / "blobs").string() + ": " + ec.message());
        return blob_path(repo_id, etag);
    }

    // flock(2) on .locks/.../<etag>.lock, released when the object dies: two cmf processes
    // never write the same blob at once (huggingface_hub uses the same lock file name).
    class BlobLock {
    public:
        BlobLock(const fs::path& p) {
            std::error_code ec;
            fs::create_directories(p.parent_path(), ec);
            fd_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
            if (fd_ >= 0) ::flock(fd_, LOCK_EX);
        }
        ~BlobLock() {
            if (fd_ >= 0) ::close(fd_);
        }
        BlobLock(const BlobLock&) = delete;
        BlobLock& operator=(const BlobLock&) = delete;

    private:
        int fd_ = -1;
    };
    BlobLock lock_blob(const std::string& repo_id, const std::string& etag) const {
        return BlobLock(lock_path(repo_id, etag));
    }

private:
    fs::path root_;
};

}  // namespace cmf::hub
