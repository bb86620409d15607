// Google credentials without gcloud: Application Default Credentials as google-auth's default().
//
// Precedence (cloud.md section 3.3):
//   1. GOOGLE_APPLICATION_CREDENTIALS -> that JSON file; set but missing is an error (no fallback)
//   2. gcloud's well-known file $CLOUDSDK_CONFIG/application_default_credentials.json
//      (default ~/.config/gcloud/application_default_credentials.json)
//   3. the GCE metadata server (cmf/cloud/metadata.h)
// File types: "service_account" (RS256 JWT-bearer grant, section 3.1) and "authorized_user"
// (refresh-token grant, section 3.2). Both POST a form body to token_uri
// (default https://oauth2.googleapis.com/token).
//
// Errors are cmf::Error(auth) with one line; private keys, client secrets, refresh tokens and
// access tokens never appear in them (server text is passed through redact()).
#pragma once

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmf/core/encoding.h"
#include "cmf/cloud/jwt.h"
#include "cmf/cloud/metadata.h"
#include "cmf/cloud/token_source.h"
#include "cmf/core/error.h"
#include "cmf/net/http.h"

namespace cmf::cloud {

inline constexpr const char* kDefaultTokenUri = "https://oauth2.googleapis.com/token";
inline constexpr const char* kJwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer";
// google-auth _DEFAULT_TOKEN_LIFETIME_SECS; the token endpoint rejects exp - iat > 3600.
inline constexpr long long kJwtLifetimeSeconds = 3600;
inline constexpr std::chrono::milliseconds kTokenRequestTimeout{30000};

struct ServiceAccountKey {
    std::string client_email;
    std::string private_key;  // PKCS#8 PEM
    std::string private_key_id;
    std::string token_uri = kDefaultTokenUri;
    std::string project_id;
};

struct AuthorizedUser {
    std::string client_id;
    std::string client_secret;
    std::string refresh_token;
    std::string token_uri = kDefaultTokenUri;
    std::string quota_project_id;
};

namespace detail {
inline std::string json_string(const nlohmann::json& j, const char* key, const std::string& what, bool required) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        if (required) fail(ErrorKind::auth, what + ": field \"" + key + "\" is missing");
        return "";
    }
    if (!it->is_string()) fail(ErrorKind::auth, what + ": field \"" + key + "\" is not a string");
    const auto& s = it->get_ref<const std::string&>();
    if (required && s.empty()) fail(ErrorKind::auth, what + ": field \"" + key + "\" is empty");
    return s;
}

// Only https token endpoints, except plain http on loopback (emulators in tests). Checked on the
// text so that key-file parsing needs no URL parser.
inline void check_token_uri(const std::string& uri, const std::string& what) {
    auto starts = [&uri](std::string_view p) { return uri.compare(0, p.size(), p) == 0; };
    bool ok = starts("https://") && uri.size() > 8;
    for (std::string_view host : {"http://127.0.0.1", "http://localhost", "http://[::1]"})
        if (starts(host) && (uri.size() == host.size() || uri[host.size()] == ':' || uri[host.size()] == '/')) ok = true;
    if (!ok) fail(ErrorKind::auth, what + ": token_uri must be an https URL");
    if (uri.find_first_of(" \r\n\t") != std::string::npos) fail(ErrorKind::auth, what + ": token_uri is not a valid URL");
}

inline net::Response post_form(net::HttpClient& http, const std::string& uri, const std::string& body,
                               const std::string& what) {
    net::Request req;
    req.method = "POST";
    req.url = net::Url::parse(uri);
    req.headers.set("Content-Type", "application/x-www-form-urlencoded");
    req.headers.set("Accept", "application/json");
    req.body = body;
    // A token grant has no side effect; google-auth retries it (cloud.md section 3.1).
    req.idempotent = true;
    req.timeout = kTokenRequestTimeout;
    try {
        return http.send(req);
    } catch (const Error& e) {
        fail(ErrorKind::auth, what + ": token endpoint " + req.url.str() + " unreachable: " + e.what());
    }
}
}  // namespace detail

inline ServiceAccountKey parse_service_account_key(const nlohmann::json& j, const std::string& what) {
    ServiceAccountKey k;
    k.client_email = detail::json_string(j, "client_email", what, true);
    k.private_key = detail::json_string(j, "private_key", what, true);
    k.private_key_id = detail::json_string(j, "private_key_id", what, false);
    k.project_id = detail::json_string(j, "project_id", what, false);
    if (auto t = detail::json_string(j, "token_uri", what, false); !t.empty()) k.token_uri = t;
    detail::check_token_uri(k.token_uri, what);
    return k;
}

inline AuthorizedUser parse_authorized_user(const nlohmann::json& j, const std::string& what) {
    AuthorizedUser u;
    u.client_id = detail::json_string(j, "client_id", what, true);
    u.client_secret = detail::json_string(j, "client_secret", what, true);
    u.refresh_token = detail::json_string(j, "refresh_token", what, true);
    u.quota_project_id = detail::json_string(j, "quota_project_id", what, false);
    if (auto t = detail::json_string(j, "token_uri", what, false); !t.empty()) u.token_uri = t;
    detail::check_token_uri(u.token_uri, what);
    return u;
}

// The signed assertion of the JWT-bearer grant: iss = client_email, scope = space-separated
// scopes, aud = token_uri, iat = now, exp = iat + 3600.
inline std::string make_service_account_assertion(const ServiceAccountKey& key, const std::vector<std::string>& scopes,
                                                  Clock::time_point now) {
    long long iat = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    nlohmann::json header = {{"alg", "RS256"}, {"typ", "JWT"}};
    if (!key.private_key_id.empty()) header["kid"] = key.private_key_id;
    std::string scope;
    for (const auto& s : scopes) scope += (scope.empty() ? "" : " ") + s;
    nlohmann::json claims = {{"iss", key.client_email}, {"scope", scope}, {"aud", key.token_uri},
                             {"iat", iat},              {"exp", iat + kJwtLifetimeSeconds}};
    return make_rs256_jwt(header, claims, key.private_key);
}

class ServiceAccountTokenSource : public CachingTokenSource {
public:
    ServiceAccountTokenSource(std::shared_ptr<net::HttpClient> http, ServiceAccountKey key, std::vector<std::string> scopes)
        : http_(std::move(http)), key_(std::move(key)), scopes_(std::move(scopes)) {}
    std::string describe() const override { return "service account " + key_.client_email; }
    const ServiceAccountKey& key() const { return key_; }

protected:
    AccessToken fetch() override {
        const std::string what = "service account " + key_.client_email;
        std::string assertion = make_service_account_assertion(key_, scopes_, now());
        std::string body = form_encode({{"grant_type", kJwtBearerGrant}, {"assertion", assertion}});
        net::Response r = detail::post_form(*http_, key_.token_uri, body, what);
        if (r.status != 200) {
            std::string err = oauth_error_text(r.body, {assertion, key_.private_key});
            fail(ErrorKind::auth, what + ": token endpoint refused the key (HTTP " + std::to_string(r.status) + ")" +
                                      (err.empty() ? "" : ": " + err) +
                                      (err.find("invalid_grant") != std::string::npos
                                           ? " (check the clock, and that the key is not deleted or disabled)"
                                           : ""));
        }
        return parse_token_response(r.body, now(), what);
    }

private:
    std::shared_ptr<net::HttpClient> http_;
    ServiceAccountKey key_;
    std::vector<std::string> scopes_;
};

class AuthorizedUserTokenSource : public CachingTokenSource {
public:
    AuthorizedUserTokenSource(std::shared_ptr<net::HttpClient> http, AuthorizedUser user)
        : http_(std::move(http)), user_(std::move(user)) {}
    std::string describe() const override { return "gcloud user credentials (client " + user_.client_id + ")"; }
    std::optional<std::string> quota_project() const override {
        if (user_.quota_project_id.empty()) return std::nullopt;
        return user_.quota_project_id;
    }

protected:
    AccessToken fetch() override {
        const std::string what = "gcloud user credentials";
        std::string body = form_encode({{"grant_type", "refresh_token"},
                                        {"client_id", user_.client_id},
                                        {"client_secret", user_.client_secret},
                                        {"refresh_token", user_.refresh_token}});
        net::Response r = detail::post_form(*http_, user_.token_uri, body, what);
        if (r.status != 200) {
            std::string err = oauth_error_text(r.body, {user_.refresh_token, user_.client_secret});
            fail(ErrorKind::auth, what + ": token refresh failed (HTTP " + std::to_string(r.status) + ")" +
                                      (err.empty() ? "" : ": " + err) +
                                      (r.status == 400 || r.status == 401
                                           ? "; run `gcloud auth application-default login` again"
                                           : ""));
        }
        AccessToken t = parse_token_response(r.body, now(), what);
        // The reply may carry a rotated refresh token; keep the old one when it does not.
        nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
        if (auto rt = j.find("refresh_token"); rt != j.end() && rt->is_string() && !rt->get_ref<const std::string&>().empty())
            user_.refresh_token = rt->get<std::string>();
        return t;
    }

private:
    std::shared_ptr<net::HttpClient> http_;
    AuthorizedUser user_;
};

struct Credentials {
    std::shared_ptr<TokenSource> tokens;
    std::optional<std::string> project_id;  // from the key file, when it names one
    std::string origin;                     // "GOOGLE_APPLICATION_CREDENTIALS=...", "gcloud ADC file ...", "metadata server"
};

// Loads a credentials JSON file of a supported type.
inline Credentials load_credentials_file(std::shared_ptr<net::HttpClient> http, const std::filesystem::path& path,
                                         const std::vector<std::string>& scopes, const std::string& origin) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(ErrorKind::auth, origin + ": cannot read " + path.string());
    std::stringstream ss;
    ss << in.rdbuf();
    // No parser message: it could quote a fragment of the key.
    nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
    if (!j.is_object()) fail(ErrorKind::auth, origin + ": " + path.string() + " is not a JSON credentials file");
    std::string type = detail::json_string(j, "type", origin + ": " + path.string(), true);
    Credentials c;
    c.origin = origin;
    const std::string what = origin + ": " + path.string();
    if (type == "service_account") {
        ServiceAccountKey key = parse_service_account_key(j, what);
        if (!key.project_id.empty()) c.project_id = key.project_id;
        c.tokens = std::make_shared<ServiceAccountTokenSource>(std::move(http), std::move(key), scopes);
    } else if (type == "authorized_user") {
        AuthorizedUser u = parse_authorized_user(j, what);
        c.tokens = std::make_shared<AuthorizedUserTokenSource>(std::move(http), std::move(u));
    } else {
        fail(ErrorKind::auth, what + ": credential type \"" + one_line(type) +
                                  "\" is not supported (use a service_account key or `gcloud auth "
                                  "application-default login`)");
    }
    return c;
}

// gcloud's ADC file: $CLOUDSDK_CONFIG/application_default_credentials.json, else
// $HOME/.config/gcloud/application_default_credentials.json.
inline std::optional<std::filesystem::path> gcloud_adc_path(const Env& env) {
    if (auto d = env("CLOUDSDK_CONFIG"); d && !d->empty())
        return std::filesystem::path(*d) / "application_default_credentials.json";
    if (auto h = env("HOME"); h && !h->empty())
        return std::filesystem::path(*h) / ".config" / "gcloud" / "application_default_credentials.json";
    return std::nullopt;
}

// Application Default Credentials, in google-auth's order.
inline Credentials default_credentials(std::shared_ptr<net::HttpClient> http,
                                       const std::vector<std::string>& scopes = {std::string(kCloudPlatformScope)},
                                       const Env& env = process_env()) {
    if (auto p = env("GOOGLE_APPLICATION_CREDENTIALS"); p && !p->empty()) {
        std::error_code ec;
        if (!std::filesystem::is_regular_file(*p, ec))
            fail(ErrorKind::auth, "GOOGLE_APPLICATION_CREDENTIALS=" + *p + ": file does not exist");
        return load_credentials_file(std::move(http), *p, scopes, "GOOGLE_APPLICATION_CREDENTIALS");
    }
    if (auto p = gcloud_adc_path(env)) {
        std::error_code ec;
        if (std::filesystem::is_regular_file(*p, ec))
            return load_credentials_file(std::move(http), *p, scopes, "gcloud application-default credentials");
    }
    Credentials c;
    c.tokens = std::make_shared<MetadataTokenSource>(std::move(http), env);
    c.origin = "metadata server";
    return c;
}

// Project id: GOOGLE_CLOUD_PROJECT, GCLOUD_PROJECT, the credentials file, else nullopt (callers
// on GCE then ask MetadataServer::project_id()).
inline std::optional<std::string> default_project_id(const Credentials& c, const Env& env = process_env()) {
    for (const char* name : {"GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"})
        if (auto v = env(name); v && !v->empty()) return v;
    return c.project_id;
}

}  // namespace cmf::cloud
