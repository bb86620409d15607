// The Ollama local model store (ollama envconfig Models(), manifest/paths.go;
// research/ollama.md section 4):
//
//   <root>/blobs/sha256-<64 hex>                        one file per blob, mode 0644
//   <root>/manifests/<host>/<namespace>/<model>/<tag>   the manifest JSON, mode 0644, dirs 0755
//
// <root> is $OLLAMA_MODELS, else ~/.ollama/models. The Ollama server prunes blobs no manifest
// references and re-reads manifests on every list, so an importer writes and renames every blob
// first and the manifest last, each under a temporary name then renamed (never a partial file
// under a final name).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <string>

#include "cmf/core/error.h"
#include "cmf/core/temp_file.h"
#include "cmf/registry/model_name.h"
#include "cmf/registry/ollama_model.h"

namespace cmf::ollama {

// A file written under a temporary name next to its destination and renamed into place by
// commit(); removed if never committed, also on Ctrl-C (a TempFile, core/temp_file.h: the
// `.cmf-tmp-` name is not a digest, so Ollama's blob pruning removes one a crash left behind,
// and not a valid tag, so Ollama's manifest listing skips it).
class AtomicFile {
public:
    explicit AtomicFile(const fs::path& final_path, mode_t mode = 0644) : tmp_(make(final_path), 0600), mode_(mode) {}

    int fd() const { return tmp_.fd(); }
    const fs::path& temp_path() const { return tmp_.path(); }

    void write(const void* data, size_t n) { tmp_.write(data, n); }
    void pwrite_at(const void* data, size_t n, uint64_t off) { tmp_.pwrite_at(data, n, off); }
    void commit() {
        ::fchmod(tmp_.fd(), mode_);
        tmp_.commit();
    }

private:
    static const fs::path& make(const fs::path& final_path) {
        std::error_code ec;
        fs::create_directories(final_path.parent_path(), ec);
        return final_path;
    }
    TempFile tmp_;
    mode_t mode_;
};

class OllamaStore {
public:
    explicit OllamaStore(fs::path root) : root_(std::move(root)) {}

    // $OLLAMA_MODELS, else $HOME/.ollama/models (the store of the user running the server).
    static fs::path default_root() {
        if (const char* e = std::getenv("OLLAMA_MODELS"); e && *e) return fs::path(e);
        const char* home = std::getenv("HOME");
        if (!home || !*home) fail(ErrorKind::usage, "neither OLLAMA_MODELS nor HOME is set; cannot locate the Ollama model store");
        return fs::path(home) / ".ollama" / "models";
    }

    const fs::path& root() const { return root_; }

    fs::path blob_path(const std::string& digest) const {
        auto hex = digest_hex(digest);
        if (!hex) fail(ErrorKind::input, "invalid blob digest '" + digest.substr(0, 80) + "'");
        return root_ / "blobs" / ("sha256-" + *hex);
    }
    fs::path manifest_path(const ModelName& n) const { return root_ / "manifests" / n.manifest_rel_path(); }

    bool has_blob(const std::string& digest, uint64_t size) const {
        std::error_code ec;
        const fs::path p = blob_path(digest);
        return fs::is_regular_file(p, ec) && fs::file_size(p, ec) == size;
    }

    // Writes a blob (from its file or bytes) unless present, hashing what is written: a source
    // that changed since its digest was computed is refused, not stored under a wrong name.
    void put_blob(const OllamaBlob& b) const {
        if (has_blob(b.digest, b.size)) return;
        ensure_dirs();
        AtomicFile out(blob_path(b.digest));
        Digest h;
        uint64_t n = 0;
        if (!b.file.empty()) {
            int fd = ::open(b.file.c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0) fail_io("cannot open " + b.file.string() + ": " + std::strerror(errno));
            std::string buf(1 << 20, '\0');
            while (true) {
                ssize_t r = ::read(fd, buf.data(), buf.size());
                if (r < 0 && errno == EINTR) continue;
                if (r < 0) {
                    ::close(fd);
                    fail_io("read error on " + b.file.string());
                }
                if (r == 0) break;
                h.update(buf.data(), static_cast<size_t>(r));
                out.write(buf.data(), static_cast<size_t>(r));
                n += static_cast<uint64_t>(r);
            }
            ::close(fd);
        } else {
            h.update(b.data);
            out.write(b.data.data(), b.data.size());
            n = b.data.size();
        }
        if ("sha256:" + h.hex() != b.digest || n != b.size)
            fail_io((b.file.empty() ? std::string("blob") : b.file.string()) + " changed while it was being stored (digest mismatch)");
        out.commit();
    }

    void write_manifest(const ModelName& n, const std::string& bytes) const {
        const fs::path p = manifest_path(n);
        std::error_code ec;
        fs::create_directories(p.parent_path(), ec);
        if (!fs::is_directory(p.parent_path())) fail_io("cannot create " + p.parent_path().string());
        AtomicFile out(p);
        out.write(bytes.data(), bytes.size());
        out.commit();
    }

    std::optional<std::string> read_manifest(const ModelName& n) const {
        const fs::path p = manifest_path(n);
        std::ifstream f(p, std::ios::binary);
        if (!f) return std::nullopt;
        std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        return s;
    }

    // Fails before anything is written when the blobs not yet in the store do not fit (a
    // resumable `.cmf-partial` of one is already allocated and counts as written).
    void require_space_for(const std::vector<std::pair<std::string, uint64_t>>& blobs, const std::string& what) const {
        uint64_t need = 0;
        for (const auto& [digest, size] : blobs) {
            if (has_blob(digest, size)) continue;
            std::error_code ec;
            const auto part = fs::file_size(blob_path(digest).string() + ".cmf-partial", ec);
            need += ec ? size : (part < size ? size - part : 0);
        }
        // the store may not exist yet: its nearest existing directory, nothing created
        std::error_code ec;
        fs::path dir = fs::absolute(root_ / "blobs", ec);
        while (!fs::is_directory(dir, ec) && dir.has_relative_path()) dir = dir.parent_path();
        require_free_space(dir, need, what);
    }

    // Blobs first, manifest last: a reader never sees a manifest naming a missing blob.
    void import_model(const ModelName& n, const OllamaModel& m) const {
        std::vector<std::pair<std::string, uint64_t>> sizes;
        for (const OllamaBlob* b : m.blobs()) sizes.emplace_back(b->digest, b->size);
        require_space_for(sizes, "importing " + n.display());
        for (const OllamaBlob* b : m.blobs()) put_blob(*b);
        write_manifest(n, m.manifest_bytes(true));
    }

    void ensure_dirs() const {
        std::error_code ec;
        fs::create_directories(root_ / "blobs", ec);
        if (!fs::is_directory(root_ / "blobs")) fail_io("cannot create " + (root_ / "blobs").string());
    }

private:
    fs::path root_;
};

}  // namespace cmf::ollama
