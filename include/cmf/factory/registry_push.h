// The worker's push step: one built variant from its Ollama export in the bucket to an Ollama
// registry (registry.ollama.ai or any OCI distribution registry).
//
// What is pushed is exactly what the export holds: models/<name>/<name>.ollama.tar.zst is
// fetched from the bucket (so a variant built by an earlier run is pushed the same way as one
// built now), unpacked, and its manifest and blobs are pushed unchanged as NS/<name>:latest.
// The registry's manifest is the export's manifest without the local store's trailing newline
// (Ollama's json.Encoder writes one; registries get the bare JSON), so
//   registry manifest digest == sha256(export manifest minus its final "\n").
// Both digests are returned. Blobs the registry already has are not uploaded again.
//
// TarZstdReader is the counterpart of TarZstdWriter (ollama_export.h): ustar regular files,
// names split into prefix/name, base-256 sizes for 8 GiB and more, streamed through libzstd.
#pragma once

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/factory/digest.h"
#include "cmf/factory/job.h"
#include "cmf/net/http.h"
#include "cmf/registry/ed25519_key.h"
#include "cmf/registry/model_name.h"
#include "cmf/registry/ollama_model.h"
#include "cmf/registry/registry_client.h"

namespace cmf::factory {

namespace fs = std::filesystem;

// Unpacks a tar.zst written by TarZstdWriter into `dir`. Only regular files with relative names
// without "." / ".." segments are accepted; returns the entry names in archive order.
inline std::vector<std::string> unpack_tar_zst(const fs::path& archive, const fs::path& dir) {
    std::FILE* in = std::fopen(archive.c_str(), "rb");
    if (!in) fail_io("cannot open " + archive.string() + ": " + std::strerror(errno));
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> in_guard(in, std::fclose);
    std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
    if (!dctx) fail(ErrorKind::internal, "zstd: cannot create a decompression context");
    const std::string where = archive.string();
    auto bad = [&](const std::string& why) { fail_input(where + ": not a cmf Ollama export (" + why + ")"); };

    std::vector<std::string> names;
    std::string header;          // collecting a 512-byte header
    uint64_t data_left = 0;      // bytes of the current entry still to write
    uint64_t pad_left = 0;       // padding after it
    int out_fd = -1;
    fs::path out_path;
    bool ended = false;
    auto close_out = [&] {
        if (out_fd >= 0) {
            if (::close(out_fd) != 0) fail_io("cannot write " + out_path.string());
            out_fd = -1;
        }
    };
    auto start_entry = [&](const std::string& h) {
        bool zero = true;
        for (char c : h) zero &= c == '\0';
        if (zero) {
            ended = true;
            return;
        }
        if (h.compare(257, 5, "ustar") != 0) bad("an entry without a ustar header");
        unsigned sum = 0;
        for (size_t i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
        unsigned stored = 0;
        for (size_t i = 148; i < 156 && h[i] >= '0' && h[i] <= '7'; ++i) stored = stored * 8 + static_cast<unsigned>(h[i] - '0');
        if (stored != sum) bad("a header checksum does not match");
        auto field = [&](size_t off, size_t len) { return std::string(h.data() + off, strnlen(h.data() + off, len)); };
        std::string name = field(0, 100);
        const std::string prefix = field(345, 155);
        if (!prefix.empty()) name = prefix + "/" + name;
        if (h[156] != '0' && h[156] != '\0') bad("entry " + name + " is not a regular file");
        uint64_t size = 0;
        if (static_cast<unsigned char>(h[124]) & 0x80) {
            for (size_t i = 125; i < 136; ++i) size = (size << 8) | static_cast<unsigned char>(h[i]);
        } else {
            for (size_t i = 124; i < 136 && h[i] >= '0' && h[i] <= '7'; ++i) size = size * 8 + static_cast<uint64_t>(h[i] - '0');
        }
        // relative, no empty / . / .. segments
        if (name.empty() || name.front() == '/') bad("entry name '" + name + "'");
        for (size_t i = 0; i <= name.size();) {
            size_t j = name.find('/', i);
            if (j == std::string::npos) j = name.size();
            const std::string seg = name.substr(i, j - i);
            if (seg.empty() || seg == "." || seg == "..") bad("entry name '" + name + "'");
            i = j + 1;
        }
        names.push_back(name);
        out_path = dir / name;
        std::error_code ec;
        fs::create_directories(out_path.parent_path(), ec);
        out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (out_fd < 0) fail_io("cannot create " + out_path.string() + ": " + std::strerror(errno));
        data_left = size;
        pad_left = (512 - size % 512) % 512;
        if (data_left == 0) close_out();
    };
    auto consume = [&](const char* p, size_t n) {
        while (n > 0 && !ended) {
            if (data_left > 0) {
                const size_t k = static_cast<size_t>(std::min<uint64_t>(data_left, n));
                size_t done = 0;
                while (done < k) {
                    const ssize_t w = ::write(out_fd, p + done, k - done);
                    if (w < 0 && errno == EINTR) continue;
                    if (w <= 0) fail_io("cannot write " + out_path.string() + ": " + std::strerror(errno));
                    done += static_cast<size_t>(w);
                }
                p += k;
                n -= k;
                data_left -= k;
                if (data_left == 0) close_out();
            } else if (pad_left > 0) {
                const size_t k = static_cast<size_t>(std::min<uint64_t>(pad_left, n));
                p += k;
                n -= k;
                pad_left -= k;
            } else {
                const size_t k = std::min(n, 512 - header.size());
                header.append(p, k);
                p += k;
                n -= k;
                if (header.size() == 512) {
                    start_entry(header);
                    header.clear();
                }
            }
        }
    };
    std::vector<char> ibuf(ZSTD_DStreamInSize()), obuf(ZSTD_DStreamOutSize());
    size_t last = 1;  // 0 once a frame is complete
    try {
        for (;;) {
            const size_t got = std::fread(ibuf.data(), 1, ibuf.size(), in);
            if (got == 0) {
                if (std::ferror(in)) fail_io("read error on " + where);
                break;
            }
            ZSTD_inBuffer zi{ibuf.data(), got, 0};
            while (zi.pos < zi.size) {
                ZSTD_outBuffer zo{obuf.data(), obuf.size(), 0};
                last = ZSTD_decompressStream(dctx.get(), &zo, &zi);
                if (ZSTD_isError(last)) bad(std::string("zstd: ") + ZSTD_getErrorName(last));
                consume(obuf.data(), zo.pos);
            }
        }
        // zstd keeps the last byte of a frame until every decompressed byte is out, so when
        // the input is used up `last` is 0 exactly when the frame was complete
    } catch (...) {
        if (out_fd >= 0) ::close(out_fd);
        throw;
    }
    if (last != 0) bad("truncated zstd stream");
    if (!ended || data_left > 0) bad("truncated tar archive");
    return names;
}

// The model of an unpacked export: its one manifest, every blob present with its size and digest.
struct ExportModel {
    ollama::OllamaModel model;
    std::string manifest;         // the manifest bytes as stored (trailing newline included)
    std::string manifest_digest;  // sha256 of `manifest` (the export's manifest_digest)
};

inline ExportModel load_unpacked_export(const fs::path& dir, const std::string& where) {
    std::vector<fs::path> manifests;
    std::error_code ec;
    if (fs::is_directory(dir / "manifests"))
        for (auto it = fs::recursive_directory_iterator(dir / "manifests", ec); it != fs::recursive_directory_iterator(); it.increment(ec))
            if (it->is_regular_file()) manifests.push_back(it->path());
    if (manifests.size() != 1) fail_input(where + ": expected one manifest, found " + std::to_string(manifests.size()));
    ExportModel e;
    {
        std::ifstream f(manifests[0], std::ios::binary);
        e.manifest.assign((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    }
    e.manifest_digest = ollama::sha256_digest(e.manifest);
    const ollama::ParsedManifest pm = ollama::parse_manifest(e.manifest, where);
    auto blob = [&](const ollama::ManifestDesc& d) {
        ollama::OllamaBlob b;
        b.media_type = d.media_type;
        b.digest = d.digest;
        b.size = d.size;
        b.file = dir / "blobs" / ("sha256-" + *ollama::digest_hex(d.digest));
        std::error_code ec2;
        const auto size = fs::file_size(b.file, ec2);
        if (ec2 || size != d.size) fail_input(where + ": blob " + d.digest + " is missing or has the wrong size");
        if ("sha256:" + sha256_file(b.file) != d.digest) fail_input(where + ": blob " + d.digest + " does not match its digest");
        return b;
    };
    for (const auto& l : pm.layers) e.model.layers.push_back(blob(l));
    e.model.config = blob(pm.config);
    // pushed as is: the registry manifest must be this manifest byte for byte
    if (e.model.manifest_bytes(true) != e.manifest) fail_input(where + ": the manifest is not in the form cmf writes");
    return e;
}

struct RegistryPushRequest {
    RegistryHost registry;        // parse_registry_host(job.registry_host)
    std::string ns, model, tag = "latest";
    std::string export_object;    // models/<name>/<name>.ollama.tar.zst
    std::string key_pem;          // the Ollama key (OpenSSH PEM), or "" when none is configured
    std::string key_where;        // names the key in errors (its reference, never its text)
    fs::path work_dir;            // scratch; cleaned before returning
    std::function<void(const std::string& object, const fs::path& dst)> download;  // bucket object -> file
    std::shared_ptr<net::HttpClient> http;
    std::function<void(const std::string&)> log;
    uint64_t part_size = 0;       // 0: the client's default
};

struct RegistryPushResult {
    std::string reference;               // host/ns/model:tag
    std::string manifest_digest;         // the registry's (bare JSON)
    std::string export_manifest_digest;  // the export's (store form, with newline)
    int uploaded = 0, skipped = 0;
    uint64_t bytes_uploaded = 0;
};

inline ollama::ModelName registry_model_name(const RegistryPushRequest& q) {
    return ollama::parse_model_name(q.registry.base_url() + "/" + q.ns + "/" + q.model + ":" + q.tag);
}

inline RegistryPushResult push_export_to_registry(const RegistryPushRequest& q) {
    if (!q.download) fail(ErrorKind::internal, "push: no way to read the bucket");
    const ollama::ModelName name = registry_model_name(q);
    struct Scratch {
        fs::path d;
        ~Scratch() {
            std::error_code ec;
            fs::remove_all(d, ec);
        }
    } scratch{q.work_dir / ("push-" + q.model)};
    std::error_code ec;
    fs::remove_all(scratch.d, ec);
    fs::create_directories(scratch.d / "x", ec);
    if (!fs::is_directory(scratch.d / "x")) fail_io("cannot create " + (scratch.d / "x").string());
    const fs::path archive = scratch.d / "export.tar.zst";
    q.download(q.export_object, archive);
    unpack_tar_zst(archive, scratch.d / "x");
    fs::remove(archive, ec);
    const ExportModel e = load_unpacked_export(scratch.d / "x", q.export_object);

    ollama::RegistryOptions o;
    const std::string pem = q.key_pem, where = q.key_where;
    o.key = [pem, where]() -> ollama::Ed25519Key {
        if (pem.empty())
            fail(ErrorKind::auth, "the registry asks for authentication and no Ollama key is configured (OLLAMA_KEY_FILE, registry.key_ref)");
        return ollama::Ed25519Key::from_openssh(pem, "the Ollama key " + where);
    };
    if (q.part_size) o.min_part = o.max_part = q.part_size;
    o.log = q.log;
    ollama::RegistryClient client(q.http ? q.http : net::make_http_client(), name, o);
    const ollama::PushResult r = client.push(e.model);
    const std::string expect = ollama::sha256_digest(e.model.manifest_bytes(false));
    if (r.manifest_digest != expect)
        fail(ErrorKind::internal, "push: pushed manifest " + r.manifest_digest + " is not the export's manifest " + expect);
    RegistryPushResult out;
    out.reference = name.display();
    out.manifest_digest = r.manifest_digest;
    out.export_manifest_digest = e.manifest_digest;
    out.uploaded = r.uploaded;
    out.skipped = r.skipped;
    out.bytes_uploaded = r.bytes_uploaded;
    return out;
}

}  // namespace cmf::factory
