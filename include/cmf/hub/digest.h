// Streaming SHA-256 and git blob ids, the two digests the Hugging Face Hub names files by.
//
// The Hub's ETag for an LFS/Xet file is the file's sha256 (64 hex); for a small file stored in
// git it is the git blob id: sha1("blob " + decimal size + "\0" + content) (40 hex). The HF cache
// names blobs by that etag, so checking a downloaded file means recomputing the right one.
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cmf/core/error.h"

namespace cmf::hub {

class Digest {
public:
    enum class Algo { sha256, sha1 };
    explicit Digest(Algo algo = Algo::sha256) : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
        if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), algo == Algo::sha256 ? EVP_sha256() : EVP_sha1(), nullptr) != 1)
            fail(ErrorKind::internal, "OpenSSL digest initialisation failed");
    }
    void update(const void* data, std::size_t len) {
        if (len && EVP_DigestUpdate(ctx_.get(), data, len) != 1) fail(ErrorKind::internal, "OpenSSL digest update failed");
    }
    void update(std::string_view s) { update(s.data(), s.size()); }
    // Lower-case hex; the object cannot be updated afterwards.
    std::string hex() {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (EVP_DigestFinal_ex(ctx_.get(), md, &n) != 1) fail(ErrorKind::internal, "OpenSSL digest final failed");
        static const char* k = "0123456789abcdef";
        std::string out;
        for (unsigned i = 0; i < n; ++i) {
            out += k[md[i] >> 4];
            out += k[md[i] & 15];
        }
        return out;
    }

private:
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

inline std::string sha256_hex(std::string_view data) {
    Digest d;
    d.update(data);
    return d.hex();
}

inline std::string git_blob_id(std::string_view data) {
    Digest d(Digest::Algo::sha1);
    d.update("blob " + std::to_string(data.size()));
    d.update("\0", 1);
    d.update(data);
    return d.hex();
}

// Both digests of a file in one read: {sha256, git blob id}.
struct FileDigests {
    std::uint64_t size = 0;
    std::string sha256;
    std::string git_blob;
};

inline FileDigests digest_file(const std::filesystem::path& p) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(p, ec);
    if (ec) fail_io("cannot stat " + p.string() + ": " + ec.message());
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(p.c_str(), "rb"), std::fclose);
    if (!f) fail_io("cannot open " + p.string());
    Digest s256, s1(Digest::Algo::sha1);
    s1.update("blob " + std::to_string(size));
    s1.update("\0", 1);
    std::vector<char> buf(1 << 20);
    std::uint64_t total = 0;
    for (;;) {
        const std::size_t n = std::fread(buf.data(), 1, buf.size(), f.get());
        if (n == 0) break;
        s256.update(buf.data(), n);
        s1.update(buf.data(), n);
        total += n;
    }
    if (std::ferror(f.get())) fail_io("read error on " + p.string());
    return {total, s256.hex(), s1.hex()};
}

inline bool is_hex(std::string_view s, std::size_t len) {
    if (s.size() != len) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

}  // namespace cmf::hub
