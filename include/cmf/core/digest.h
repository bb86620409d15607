// Streaming message digests over OpenSSL EVP: SHA-256 (file and blob names everywhere: GGUF
// tensor hashes, Hugging Face LFS etags, Ollama blob digests, model cards), SHA-1 (git blob ids
// of small Hugging Face files) and MD5 (only to check GCS's md5Hash). One class for all three.
#pragma once

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cmf/core/encoding.h"
#include "cmf/core/error.h"

namespace cmf {

class Digest {
public:
    enum class Algo { sha256, sha1, md5 };
    explicit Digest(Algo algo = Algo::sha256) : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
        const EVP_MD* md = algo == Algo::sha256 ? EVP_sha256() : algo == Algo::sha1 ? EVP_sha1() : EVP_md5();
        if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), md, nullptr) != 1)
            fail(ErrorKind::internal, "OpenSSL digest initialisation failed");
    }
    void update(const void* data, std::size_t len) {
        if (len && EVP_DigestUpdate(ctx_.get(), data, len) != 1) fail(ErrorKind::internal, "OpenSSL digest update failed");
    }
    void update(std::string_view s) { update(s.data(), s.size()); }
    // Raw digest bytes; the object cannot be updated afterwards.
    std::string finish() {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (EVP_DigestFinal_ex(ctx_.get(), md, &n) != 1) fail(ErrorKind::internal, "OpenSSL digest final failed");
        return std::string(reinterpret_cast<const char*>(md), n);
    }
    // Lower-case hex of finish().
    std::string hex() { return to_hex(finish()); }

    static std::string to_hex(std::string_view raw) {
        static const char* k = "0123456789abcdef";
        std::string out;
        out.reserve(raw.size() * 2);
        for (unsigned char c : raw) {
            out += k[c >> 4];
            out += k[c & 15];
        }
        return out;
    }

private:
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

// base64 of the MD5 digest, as GCS reports md5Hash.
inline std::string md5_base64(std::string_view data) {
    Digest d(Digest::Algo::md5);
    d.update(data);
    return base64_encode(d.finish());
}

inline std::string sha256_hex(std::string_view data) {
    Digest d;
    d.update(data);
    return d.hex();
}

// Feeds a whole file to `each(data, n)` in 1 MiB reads; returns the byte count.
template <class F>
inline std::uint64_t read_file_chunks(const std::filesystem::path& p, F&& each) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail_io("cannot open " + p.string() + ": " + std::strerror(errno));
    std::vector<char> buf(1 << 20);
    std::uint64_t total = 0;
    for (;;) {
        const ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            const int e = errno;
            ::close(fd);
            fail_io("read error on " + p.string() + ": " + std::strerror(e));
        }
        if (n == 0) break;
        each(buf.data(), static_cast<std::size_t>(n));
        total += static_cast<std::uint64_t>(n);
    }
    ::close(fd);
    return total;
}

inline std::string sha256_file(const std::filesystem::path& p) {
    Digest d;
    read_file_chunks(p, [&](const char* b, std::size_t n) { d.update(b, n); });
    return d.hex();
}

}  // namespace cmf
