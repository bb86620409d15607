// MD5 over OpenSSL EVP, only to check GCS's `md5Hash` (base64 of the 16-byte digest). Not used
// for anything security-relevant; composite objects have no md5Hash at all.
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>

#include "cmf/cloud/encoding.h"
#include "cmf/core/error.h"

namespace cmf::cloud {

class Md5 {
public:
    Md5() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
        if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_md5(), nullptr) != 1)
            fail(ErrorKind::internal, "OpenSSL MD5 init failed");
    }
    void update(const void* data, std::size_t len) {
        if (len && EVP_DigestUpdate(ctx_.get(), data, len) != 1) fail(ErrorKind::internal, "OpenSSL MD5 update failed");
    }
    void update(std::string_view s) { update(s.data(), s.size()); }
    // Raw 16 bytes; the object is spent afterwards.
    std::string finish() {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned n = 0;
        if (EVP_DigestFinal_ex(ctx_.get(), md, &n) != 1) fail(ErrorKind::internal, "OpenSSL MD5 final failed");
        return std::string(reinterpret_cast<char*>(md), n);
    }
    std::string finish_base64() { return base64_encode(finish()); }

private:
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

inline std::string md5_base64(std::string_view data) {
    Md5 m;
    m.update(data);
    return m.finish_base64();
}

}  // namespace cmf::cloud
