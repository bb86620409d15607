// The Ollama export of a built variant: `models/<name>/<name>.ollama.tar.zst`, a tar of
// Ollama's local store layout (research/ollama.md section 4) compressed with zstd:
//
//   blobs/sha256-<hex>                               every layer and the config blob
//   manifests/<host>/<namespace>/<model>/<tag>       the manifest, last
//
// Unpacked into $OLLAMA_MODELS (`zstd -dc X.ollama.tar.zst | tar -x -C ~/.ollama/models`) the
// model is ready for `ollama run`. The archive is deterministic: fixed mtime/owner/mode, blobs
// in manifest order, so the same build gives the same bytes.
//
// TarZstdWriter is a minimal POSIX ustar writer (regular files only) streaming through
// libzstd's ZSTD_compressStream2: names longer than 100 bytes are split into the ustar
// `prefix` field at a '/', and sizes of 8 GiB or more use the base-256 size encoding that GNU
// tar and libarchive read (ustar's 11 octal digits stop at 8 GiB - 1).
#pragma once

#include <zstd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/registry/model_name.h"
#include "cmf/registry/ollama_model.h"

namespace cmf::factory {

namespace fs = std::filesystem;

class TarZstdWriter {
public:
    TarZstdWriter(const fs::path& path, int level = 3) : path_(path) {
        f_ = std::fopen(path.c_str(), "wb");
        if (!f_) fail_io("cannot create " + path.string() + ": " + std::strerror(errno));
        cctx_ = ZSTD_createCCtx();
        if (!cctx_) fail(ErrorKind::internal, "zstd: cannot create a compression context");
        ZSTD_CCtx_setParameter(cctx_, ZSTD_c_compressionLevel, level);
        ZSTD_CCtx_setParameter(cctx_, ZSTD_c_checksumFlag, 1);
        out_.resize(ZSTD_CStreamOutSize());
    }
    ~TarZstdWriter() {
        if (cctx_) ZSTD_freeCCtx(cctx_);
        if (f_) std::fclose(f_);
    }
    TarZstdWriter(const TarZstdWriter&) = delete;
    TarZstdWriter& operator=(const TarZstdWriter&) = delete;

    void add_bytes(const std::string& name, const std::string& data) {
        header(name, data.size());
        compress(data.data(), data.size());
        pad(data.size());
    }

    void add_file(const std::string& name, const fs::path& file) {
        std::error_code ec;
        const uint64_t size = fs::file_size(file, ec);
        if (ec) fail_io("cannot stat " + file.string() + ": " + ec.message());
        std::FILE* in = std::fopen(file.c_str(), "rb");
        if (!in) fail_io("cannot open " + file.string() + ": " + std::strerror(errno));
        header(name, size);
        std::vector<char> buf(1 << 20);
        uint64_t done = 0;
        while (done < size) {
            const size_t n = std::fread(buf.data(), 1, buf.size(), in);
            if (n == 0) {
                std::fclose(in);
                fail_io("read error on " + file.string() + " (file changed while archiving?)");
            }
            const size_t use = static_cast<size_t>(std::min<uint64_t>(n, size - done));
            compress(buf.data(), use);
            done += use;
        }
        std::fclose(in);
        pad(size);
    }

    // Two zero blocks end the archive; then the zstd frame is closed and the file synced.
    void finish() {
        static const char zeros[1024] = {};
        compress(zeros, sizeof zeros);
        ZSTD_inBuffer in{nullptr, 0, 0};
        for (;;) {
            ZSTD_outBuffer o{out_.data(), out_.size(), 0};
            const size_t left = ZSTD_compressStream2(cctx_, &o, &in, ZSTD_e_end);
            if (ZSTD_isError(left)) fail(ErrorKind::internal, std::string("zstd: ") + ZSTD_getErrorName(left));
            write(o.dst, o.pos);
            if (left == 0) break;
        }
        if (std::fflush(f_) != 0 || ::fsync(::fileno(f_)) != 0) fail_io("cannot write " + path_.string() + ": " + std::strerror(errno));
        std::fclose(f_);
        f_ = nullptr;
    }

    // The ustar header of one regular file (exposed for tests).
    static std::string make_header(const std::string& name, uint64_t size) {
        std::string h(512, '\0');
        std::string base = name, prefix;
        if (name.size() > 100) {
            // split at a '/' so that prefix <= 155 and name <= 100
            size_t cut = std::string::npos;
            for (size_t i = name.find('/'); i != std::string::npos; i = name.find('/', i + 1))
                if (i <= 155 && name.size() - i - 1 <= 100 && i > 0) cut = i;
            if (cut == std::string::npos) fail(ErrorKind::internal, "tar: name too long for ustar: " + name);
            prefix = name.substr(0, cut);
            base = name.substr(cut + 1);
        }
        if (base.empty()) fail(ErrorKind::internal, "tar: empty file name");
        std::memcpy(&h[0], base.data(), base.size());
        octal(h, 100, 8, 0644);    // mode
        octal(h, 108, 8, 0);       // uid
        octal(h, 116, 8, 0);       // gid
        if (size < (1ull << 33)) {
            octal(h, 124, 12, size);
        } else {  // base-256: high bit of the first byte set, big-endian value in the rest
            h[124] = static_cast<char>(0x80);
            for (int i = 0; i < 11; ++i) h[135 - i] = static_cast<char>((size >> (8 * i)) & 0xff);
        }
        octal(h, 136, 12, 0);      // mtime: fixed, so the archive is reproducible
        h[156] = '0';              // regular file
        std::memcpy(&h[257], "ustar", 6);  // magic "ustar\0"
        h[263] = '0';
        h[264] = '0';              // version "00"
        std::memcpy(&h[265], "root", 4);   // uname
        std::memcpy(&h[297], "root", 4);   // gname
        if (!prefix.empty()) std::memcpy(&h[345], prefix.data(), prefix.size());
        // checksum: sum of the header bytes with the checksum field read as 8 spaces
        std::memset(&h[148], ' ', 8);
        unsigned sum = 0;
        for (unsigned char c : h) sum += c;
        char ck[8];
        std::snprintf(ck, sizeof ck, "%06o", sum & 0777777u);
        std::memcpy(&h[148], ck, 6);
        h[154] = '\0';
        h[155] = ' ';
        return h;
    }

private:
    static void octal(std::string& h, size_t off, size_t width, uint64_t v) {
        // width-1 octal digits, zero-padded, then NUL
        for (size_t i = 0; i + 1 < width; ++i) {
            h[off + width - 2 - i] = static_cast<char>('0' + (v & 7));
            v >>= 3;
        }
        h[off + width - 1] = '\0';
    }
    void header(const std::string& name, uint64_t size) {
        const std::string h = make_header(name, size);
        compress(h.data(), h.size());
    }
    void pad(uint64_t size) {
        static const char zeros[512] = {};
        const size_t r = static_cast<size_t>(size % 512);
        if (r) compress(zeros, 512 - r);
    }
    void compress(const void* p, size_t n) {
        ZSTD_inBuffer in{p, n, 0};
        while (in.pos < in.size) {
            ZSTD_outBuffer o{out_.data(), out_.size(), 0};
            const size_t rc = ZSTD_compressStream2(cctx_, &o, &in, ZSTD_e_continue);
            if (ZSTD_isError(rc)) fail(ErrorKind::internal, std::string("zstd: ") + ZSTD_getErrorName(rc));
            write(o.dst, o.pos);
        }
    }
    void write(const void* p, size_t n) {
        if (n && std::fwrite(p, 1, n, f_) != n) fail_io("cannot write " + path_.string() + ": " + std::strerror(errno));
    }

    fs::path path_;
    std::FILE* f_ = nullptr;
    ZSTD_CCtx* cctx_ = nullptr;
    std::vector<char> out_;
};

struct OllamaExport {
    std::string model;            // e.g. registry.ollama.ai/library/tiny-q8:latest
    std::string manifest_digest;  // sha256:... of the manifest bytes
    std::string manifest_path;    // inside the archive
};

// Writes the store layout of `m` under `name` into `out` (tar.zst).
inline OllamaExport write_ollama_export(const fs::path& out, const ollama::OllamaModel& m, const ollama::ModelName& name) {
    TarZstdWriter w(out);
    for (const auto* b : m.blobs()) {
        auto hex = ollama::digest_hex(b->digest);
        if (!hex) fail(ErrorKind::internal, "ollama export: bad digest " + b->digest);
        const std::string entry = "blobs/sha256-" + *hex;
        if (b->file.empty()) w.add_bytes(entry, b->data);
        else w.add_file(entry, b->file);
    }
    const std::string manifest = m.manifest_bytes(true);
    OllamaExport e;
    e.manifest_path = "manifests/" + name.manifest_rel_path();
    w.add_bytes(e.manifest_path, manifest);
    w.finish();
    e.model = name.display();
    e.manifest_digest = ollama::sha256_digest(manifest);
    return e;
}

}  // namespace cmf::factory
