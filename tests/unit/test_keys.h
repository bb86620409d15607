// RSA key pairs for tests of service-account (JWT-bearer) credentials: the private half as a
// service account key file carries it (PKCS#8 PEM), the public half as the emulated OAuth server
// takes it ("google_auth": {"service_accounts": [{"client_email", "public_key_pem"}]}).
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <stdexcept>
#include <string>

namespace cmf::test {

struct RsaTestKey {
    std::string private_pem;  // PKCS#8
    std::string public_pem;   // SubjectPublicKeyInfo
};

inline RsaTestKey make_rsa_test_key() {
    EVP_PKEY* k = EVP_RSA_gen(2048);
    if (!k) throw std::runtime_error("EVP_RSA_gen failed");
    RsaTestKey out;
    auto pem = [](auto write) {
        BIO* b = BIO_new(BIO_s_mem());
        write(b);
        char* p = nullptr;
        const long n = BIO_get_mem_data(b, &p);
        std::string s(p, static_cast<std::size_t>(n));
        BIO_free(b);
        return s;
    };
    out.private_pem = pem([k](BIO* b) { PEM_write_bio_PKCS8PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr); });
    out.public_pem = pem([k](BIO* b) { PEM_write_bio_PUBKEY(b, k); });
    EVP_PKEY_free(k);
    return out;
}

}  // namespace cmf::test
