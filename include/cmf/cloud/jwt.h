// RS256 JSON Web Tokens for the OAuth2 JWT-bearer grant (RFC 7523) that service-account keys use.
//
// Layout: b64url(header) "." b64url(claims) "." b64url(signature), base64url WITHOUT padding
// (RFC 7515). Header {"alg":"RS256","typ":"JWT","kid":private_key_id}; signature is
// RSASSA-PKCS1-v1_5 with SHA-256 over the first two parts (cloud.md section 3.1).
#pragma once

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cmf/core/encoding.h"
#include "cmf/core/error.h"

namespace cmf::cloud {

namespace detail {
using PkeyPtr = std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)>;

// Never puts the PEM (or OpenSSL's text about it) into the message.
inline PkeyPtr load_private_key(std::string_view pem) {
    std::unique_ptr<BIO, int (*)(BIO*)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
    if (!bio) fail(ErrorKind::internal, "OpenSSL BIO allocation failed");
    EVP_PKEY* k = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
    ERR_clear_error();
    if (!k) fail(ErrorKind::auth, "service-account key: private_key is not a readable PEM private key");
    if (EVP_PKEY_base_id(k) != EVP_PKEY_RSA) {
        EVP_PKEY_free(k);
        fail(ErrorKind::auth, "service-account key: private_key is not an RSA key (RS256 needs RSA)");
    }
    return PkeyPtr(k, EVP_PKEY_free);
}

inline PkeyPtr load_public_key(std::string_view pem) {
    std::unique_ptr<BIO, int (*)(BIO*)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
    if (!bio) fail(ErrorKind::internal, "OpenSSL BIO allocation failed");
    EVP_PKEY* k = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
    ERR_clear_error();
    if (!k) fail(ErrorKind::input, "not a PEM public key");
    return PkeyPtr(k, EVP_PKEY_free);
}
}  // namespace detail

// RSASSA-PKCS1-v1_5 SHA-256 signature of `data` (raw bytes).
inline std::string rs256_sign(std::string_view private_key_pem, std::string_view data) {
    auto key = detail::load_private_key(private_key_pem);
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    std::size_t len = 0;
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1) {
        ERR_clear_error();
        fail(ErrorKind::auth, "service-account key: RS256 signing failed");
    }
    std::string sig(len, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1) {
        ERR_clear_error();
        fail(ErrorKind::auth, "service-account key: RS256 signing failed");
    }
    sig.resize(len);
    return sig;
}

// True when `sig` is a valid RS256 signature of `data` under the PEM public key
// (SubjectPublicKeyInfo, "-----BEGIN PUBLIC KEY-----"). The emulator's token endpoint uses it.
inline bool rs256_verify(std::string_view public_key_pem, std::string_view data, std::string_view sig) {
    detail::PkeyPtr key(nullptr, EVP_PKEY_free);
    try {
        key = detail::load_public_key(public_key_pem);
    } catch (const Error&) {
        return false;
    }
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) == 1 &&
              EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                               reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
    ERR_clear_error();
    return ok;
}

// header.claims.signature, all base64url without padding.
inline std::string make_rs256_jwt(const nlohmann::json& header, const nlohmann::json& claims,
                                  std::string_view private_key_pem) {
    std::string signing_input = base64url_encode(header.dump()) + "." + base64url_encode(claims.dump());
    return signing_input + "." + base64url_encode(rs256_sign(private_key_pem, signing_input));
}

struct DecodedJwt {
    nlohmann::json header;
    nlohmann::json claims;
    std::string signing_input;  // "b64(header).b64(claims)"
    std::string signature;      // raw bytes
};

// Splits and decodes a compact JWT; nullopt when it is not three base64url parts with JSON
// objects in the first two. Does not verify anything.
inline std::optional<DecodedJwt> decode_jwt(std::string_view jwt) {
    std::size_t a = jwt.find('.');
    if (a == std::string_view::npos) return std::nullopt;
    std::size_t b = jwt.find('.', a + 1);
    if (b == std::string_view::npos || jwt.find('.', b + 1) != std::string_view::npos) return std::nullopt;
    for (char c : jwt)
        if (c == '=' || c == '+' || c == '/') return std::nullopt;  // url alphabet, unpadded
    auto h = base64_decode(jwt.substr(0, a));
    auto c = base64_decode(jwt.substr(a + 1, b - a - 1));
    auto s = base64_decode(jwt.substr(b + 1));
    if (!h || !c || !s) return std::nullopt;
    DecodedJwt d;
    d.header = nlohmann::json::parse(*h, nullptr, false);
    d.claims = nlohmann::json::parse(*c, nullptr, false);
    if (!d.header.is_object() || !d.claims.is_object()) return std::nullopt;
    d.signing_input = std::string(jwt.substr(0, b));
    d.signature = std::move(*s);
    return d;
}

}  // namespace cmf::cloud
