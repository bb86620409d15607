// libFuzzer target for the untrusted JSON and tokens of Google auth (cmf/cloud/auth.h, jwt.h):
// token-endpoint and metadata-server replies, OAuth error bodies, credentials files
// (service_account / authorized_user) and compact JWTs (the emulator's token endpoint decodes
// them). The first input byte picks the parser.
//
// Any input must either parse or raise cmf::Error; a crash, a sanitizer report or another
// exception type is a bug. Messages stay one line.
//
// CMF_FUZZ_SEED_DIR=DIR writes real-shaped inputs into DIR at start-up (tests/fuzz.cmake).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "cmf/cloud/auth.h"
#include "cmf/core/encoding.h"
#include "cmf/cloud/jwt.h"
#include "cmf/cloud/token_source.h"

namespace {

void seed(const std::string& dir, const std::string& name, char selector, const std::string& body) {
    std::ofstream(dir + "/" + name, std::ios::binary) << selector << body;
}

void one_line(const std::string& m) {
    if (m.find('\n') != std::string::npos) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    if (const char* dir = std::getenv("CMF_FUZZ_SEED_DIR")) {
        seed(dir, "token", 0, R"({"access_token":"FAKE-access-token-a","expires_in":3599,"token_type":"Bearer"})");
        seed(dir, "token_str", 0, R"({"access_token":"FAKE-access-token-b","expires_in":"3599","token_type":"bearer","scope":"s"})");
        seed(dir, "oauth_error", 1, R"({"error":"invalid_grant","error_description":"Invalid JWT Signature."})");
        seed(dir, "sa", 2,
             R"({"type":"service_account","project_id":"p","private_key_id":"k","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",)"
             R"("client_email":"a@p.iam.gserviceaccount.com","token_uri":"https://oauth2.googleapis.com/token"})");
        seed(dir, "user", 3,
             R"({"type":"authorized_user","client_id":"c","client_secret":"s","refresh_token":"1//r","quota_project_id":"q"})");
        // a JWT-shaped seed, assembled here so no token-like literal sits in the source
        seed(dir, "jwt", 4,
             cmf::base64url_encode(R"({"alg":"RS256","typ":"JWT"})") + "." +
                 cmf::base64url_encode(R"({"iss":"a@b","scope":"s","aud":"x","iat":1,"exp":2})") + "." +
                 cmf::base64url_encode("sig"));
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
    const auto now = cmf::cloud::Clock::time_point(std::chrono::seconds(1'800'000'000));
    try {
        switch (data[0] % 5) {
            case 0: {
                auto t = cmf::cloud::parse_token_response(body, now, "fuzz");
                if (t.value.empty() || t.expiry < now) std::abort();
                break;
            }
            case 1:
                one_line(cmf::cloud::oauth_error_text(body, {"secret-value"}));
                break;
            case 2: {
                auto j = nlohmann::json::parse(body, nullptr, false);
                auto k = cmf::cloud::parse_service_account_key(j, "fuzz");
                if (k.client_email.empty() || k.private_key.empty()) std::abort();
                break;
            }
            case 3: {
                auto j = nlohmann::json::parse(body, nullptr, false);
                auto u = cmf::cloud::parse_authorized_user(j, "fuzz");
                if (u.refresh_token.empty()) std::abort();
                break;
            }
            case 4: {
                auto d = cmf::cloud::decode_jwt(body);
                if (d && (!d->header.is_object() || !d->claims.is_object())) std::abort();
                break;
            }
        }
    } catch (const cmf::Error& e) {
        one_line(e.what());
    }
    return 0;
}
