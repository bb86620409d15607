// MD5 over OpenSSL EVP, only to check GCS's `md5Hash` (base64 of the 16-byte digest). Not used
// for anything security-relevant; composite objects have no md5Hash at all.
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>

#include "cmf/cloud/encoding.h"
#include "cmf/core/digest.h"
#include "cmf/core/error.h"

namespace cmf::cloud {

// MD5 with a base64 result, as GCS reports md5Hash.
class Md5 {
public:
    void update(const void* data, std::size_t len) { d_.update(data, len); }
    void update(std::string_view s) { d_.update(s); }
    std::string finish() { return d_.finish(); }  // raw 16 bytes; the object is spent afterwards
    std::string finish_base64() { return base64_encode(finish()); }

private:
    Digest d_{Digest::Algo::md5};
};

inline std::string md5_base64(std::string_view data) {
    Md5 m;
    m.update(data);
    return m.finish_base64();
}

}  // namespace cmf::cloud
