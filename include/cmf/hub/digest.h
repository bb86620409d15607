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

#include "cmf/core/digest.h"
#include "cmf/core/error.h"

namespace cmf::hub {

using cmf::Digest;
using cmf::sha256_hex;

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
    Digest s256, s1(Digest::Algo::sha1);
    s1.update("blob " + std::to_string(size));
    s1.update("\0", 1);
    const std::uint64_t total = read_file_chunks(p, [&](const char* b, std::size_t n) {
        s256.update(b, n);
        s1.update(b, n);
    });
    return {total, s256.hex(), s1.hex()};
}

inline bool is_hex(std::string_view s, std::size_t len) {
    if (s.size() != len) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

}  // namespace cmf::hub
