// The Ollama identity key: ~/.ollama/id_ed25519, an unencrypted Ed25519 key in OpenSSH's
// "openssh-key-v1" format, and the two encodings the registry sees (research/ollama.md 1.3, 1.4):
//
//   PEM "-----BEGIN OPENSSH PRIVATE KEY-----", base64 of:
//     "openssh-key-v1\0", string cipher ("none"), string kdf ("none"), string kdf options (""),
//     u32 key count (1), string public key blob, string private section:
//       u32 check, u32 check (equal), string "ssh-ed25519", string pub (32 bytes),
//       string priv (64 bytes: 32-byte seed + the public key), string comment, padding 1,2,3...
//   (strings are u32 big-endian length + bytes)
//
//   public key blob (SSH wire form) = string "ssh-ed25519" + string pub: 51 bytes, whose
//   standard base64 (68 chars, "AAAAC3NzaC1lZDI1NTE5AAAAI...") is the second field of the
//   authorized_keys line and the <P> of the registry's `<P>:<S>` authorization.
//
// Signatures are pure Ed25519 (RFC 8032) through OpenSSL EVP. The private key never appears in
// an error message.
#pragma once

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

#include "cmf/core/encoding.h"
#include "cmf/core/error.h"

namespace cmf::ollama {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------

inline constexpr std::string_view kOpensshMagic{"openssh-key-v1\0", 15};
inline constexpr std::string_view kEd25519KeyType = "ssh-ed25519";

namespace key_detail {
inline void put_u32(std::string& o, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) o += static_cast<char>((v >> s) & 0xff);
}
inline void put_str(std::string& o, std::string_view s) {
    put_u32(o, static_cast<uint32_t>(s.size()));
    o += s;
}
// Bounds-checked reader of SSH wire strings.
struct Reader {
    std::string_view s;
    bool ok = true;
    uint32_t u32() {
        if (s.size() < 4) {
            ok = false;
            return 0;
        }
        uint32_t v = (uint8_t(s[0]) << 24) | (uint8_t(s[1]) << 16) | (uint8_t(s[2]) << 8) | uint8_t(s[3]);
        s.remove_prefix(4);
        return v;
    }
    std::string_view str() {
        uint32_t n = u32();
        if (!ok || n > s.size()) {
            ok = false;
            return {};
        }
        std::string_view r = s.substr(0, n);
        s.remove_prefix(n);
        return r;
    }
};
}  // namespace key_detail

class Ed25519Key {
public:
    Ed25519Key() = default;
    ~Ed25519Key() { OPENSSL_cleanse(seed_.data(), seed_.size()); }
    Ed25519Key(const Ed25519Key& o) : seed_(o.seed_), pub_(o.pub_) {}
    Ed25519Key& operator=(const Ed25519Key& o) {
        seed_ = o.seed_;
        pub_ = o.pub_;
        return *this;
    }

    static Ed25519Key generate() {
        Ed25519Key k;
        if (RAND_bytes(k.seed_.data(), 32) != 1) fail(ErrorKind::internal, "no randomness for a new key");
        k.derive_public();
        return k;
    }

    // Parses the PEM text of an OpenSSH private key. `where` names the file in errors.
    static Ed25519Key from_openssh(std::string_view pem, const std::string& where) {
        auto bad = [&](const std::string& why) -> Ed25519Key {
            fail(ErrorKind::auth, where + " is not a usable Ollama key: " + why +
                                      " (expected an unencrypted OpenSSH ed25519 private key, as `ollama serve` writes)");
        };
        const std::string_view begin = "-----BEGIN OPENSSH PRIVATE KEY-----", end = "-----END OPENSSH PRIVATE KEY-----";
        const size_t b = pem.find(begin), e = pem.find(end);
        if (b == std::string_view::npos || e == std::string_view::npos || e < b) return bad("no OPENSSH PRIVATE KEY block");
        std::string bin;
        std::string body;
        for (char c : pem.substr(b + begin.size(), e - b - begin.size()))
            if (c != '\n' && c != '\r' && c != ' ' && c != '\t') body += c;
        auto decoded = base64_decode(body);
        OPENSSL_cleanse(body.data(), body.size());
        if (!decoded) return bad("the key block is not valid base64");
        bin = std::move(*decoded);
        std::string_view s(bin);
        if (s.substr(0, kOpensshMagic.size()) != kOpensshMagic) return bad("not in openssh-key-v1 format");
        key_detail::Reader r{s.substr(kOpensshMagic.size())};
        const std::string_view cipher = r.str(), kdf = r.str();
        r.str();  // kdf options
        const uint32_t nkeys = r.u32();
        if (!r.ok) return bad("truncated header");
        if (cipher != "none" || kdf != "none") return bad("the key is encrypted with a passphrase");
        if (nkeys != 1) return bad("it holds " + std::to_string(nkeys) + " keys");
        const std::string_view pubblob = r.str(), priv = r.str();
        if (!r.ok) return bad("truncated key data");
        key_detail::Reader pr{priv};
        const uint32_t c1 = pr.u32(), c2 = pr.u32();
        const std::string_view type = pr.str(), pub = pr.str(), sk = pr.str();
        if (!pr.ok) return bad("truncated private section");
        if (c1 != c2) return bad("check values differ (corrupt or encrypted)");
        if (type != kEd25519KeyType) return bad("key type is '" + std::string(type.substr(0, 40)) + "', not ssh-ed25519");
        if (pub.size() != 32 || sk.size() != 64) return bad("wrong ed25519 key sizes");
        if (sk.substr(32) != pub) return bad("public and private halves do not match");
        Ed25519Key k;
        std::memcpy(k.seed_.data(), sk.data(), 32);
        k.derive_public();
        if (std::string_view(reinterpret_cast<const char*>(k.pub_.data()), 32) != pub)
            return bad("the public key does not belong to the private key");
        key_detail::Reader wr{pubblob};
        if (wr.str() != kEd25519KeyType || wr.str() != pub || !wr.ok) return bad("the public key blob does not match");
        return k;
    }

    // Loads a key file; refuses one that group or others may read (like ssh does).
    static Ed25519Key load(const fs::path& p) {
        struct stat st {};
        if (::stat(p.c_str(), &st) != 0)
            fail(ErrorKind::auth, "no Ollama key at " + p.string() +
                                      " (run `ollama serve` once to create ~/.ollama/id_ed25519, or pass --key FILE)");
        if (!S_ISREG(st.st_mode)) fail(ErrorKind::auth, p.string() + " is not a regular file");
        if (st.st_mode & 077) {
            char mode[8];
            std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
            fail(ErrorKind::auth, "refusing to use the key " + p.string() + ": it is accessible by group or others (mode " + mode +
                                      "); run `chmod 600 " + p.string() + "`");
        }
        std::ifstream f(p, std::ios::binary);
        if (!f) fail(ErrorKind::auth, "cannot read the key " + p.string());
        std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        Ed25519Key k = from_openssh(text, p.string());
        OPENSSL_cleanse(text.data(), text.size());
        return k;
    }

    // The OpenSSH PEM text (empty comment, 64-column base64 like Go's pem.Encode).
    std::string to_openssh() const {
        using namespace key_detail;
        std::string pubblob;
        put_str(pubblob, kEd25519KeyType);
        put_str(pubblob, pub_view());
        std::string priv;
        uint32_t check = 0;
        if (RAND_bytes(reinterpret_cast<unsigned char*>(&check), 4) != 1) fail(ErrorKind::internal, "no randomness");
        put_u32(priv, check);
        put_u32(priv, check);
        put_str(priv, kEd25519KeyType);
        put_str(priv, pub_view());
        put_str(priv, std::string(reinterpret_cast<const char*>(seed_.data()), 32) + std::string(pub_view()));
        put_str(priv, "");
        for (char i = 1; priv.size() % 8; ++i) priv += i;
        std::string bin(kOpensshMagic);
        put_str(bin, "none");
        put_str(bin, "none");
        put_str(bin, "");
        put_u32(bin, 1);
        put_str(bin, pubblob);
        put_str(bin, priv);
        const std::string b64 = base64_encode(bin);
        std::string pem = "-----BEGIN OPENSSH PRIVATE KEY-----\n";
        for (size_t i = 0; i < b64.size(); i += 64) pem += b64.substr(i, 64) + "\n";
        pem += "-----END OPENSSH PRIVATE KEY-----\n";
        OPENSSL_cleanse(priv.data(), priv.size());
        OPENSSL_cleanse(bin.data(), bin.size());
        return pem;
    }

    std::string_view pub_view() const { return {reinterpret_cast<const char*>(pub_.data()), 32}; }

    // SSH wire form of the public key and its base64 (<P> of the registry authorization).
    std::string public_blob() const {
        std::string b;
        key_detail::put_str(b, kEd25519KeyType);
        key_detail::put_str(b, pub_view());
        return b;
    }
    std::string public_base64() const { return base64_encode(public_blob()); }
    std::string authorized_key_line() const { return "ssh-ed25519 " + public_base64() + "\n"; }

    // Raw 64-byte Ed25519 signature of `msg`.
    std::string sign(std::string_view msg) const {
        std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> pk(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed_.data(), 32),
                                                          EVP_PKEY_free);
        std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
        if (!pk || !ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pk.get()) != 1)
            fail(ErrorKind::internal, "cannot set up Ed25519 signing");
        std::string sig(64, '\0');
        size_t n = sig.size();
        if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &n,
                           reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) != 1 ||
            n != 64)
            fail(ErrorKind::internal, "Ed25519 signing failed");
        return sig;
    }

private:
    void derive_public() {
        std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> pk(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed_.data(), 32),
                                                          EVP_PKEY_free);
        size_t n = 32;
        if (!pk || EVP_PKEY_get_raw_public_key(pk.get(), pub_.data(), &n) != 1 || n != 32)
            fail(ErrorKind::internal, "cannot derive the Ed25519 public key");
    }
    std::array<unsigned char, 32> seed_{};
    std::array<unsigned char, 32> pub_{};
};

// Verifies a raw Ed25519 signature against a 32-byte public key (used by tests and checks).
inline bool ed25519_verify(std::string_view pub32, std::string_view msg, std::string_view sig) {
    std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> pk(
        EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(pub32.data()), pub32.size()),
        EVP_PKEY_free);
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    if (!pk || !ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pk.get()) != 1) return false;
    return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                            reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) == 1;
}

}  // namespace cmf::ollama
