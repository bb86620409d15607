// cmf::cloud::TokenSource — where Google OAuth2 access tokens come from.
//
// Every credential kind (metadata server, service-account key, gcloud user credentials) is a
// CachingTokenSource: it fetches a token with its lifetime, hands out the cached value, and
// fetches again when less than kRefreshMargin is left (google-auth refreshes 3 min 45 s early,
// cloud.md section 2; 5 min leaves room for slow uploads to start). Thread-safe: concurrent
// callers wait for one fetch.
//
// Secrets (access tokens, refresh tokens, private keys, client secrets) never enter an error
// message: messages built from server replies go through redact() first.
#pragma once

#include <chrono>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmf/core/encoding.h"
#include "cmf/core/redact.h"
#include "cmf/core/error.h"

namespace cmf::cloud {

using Clock = std::chrono::system_clock;

// Lookup of environment variables; tests pass a map instead of the process environment.
using Env = std::function<std::optional<std::string>(const std::string& name)>;

inline Env process_env() {
    return [](const std::string& name) -> std::optional<std::string> {
        const char* v = std::getenv(name.c_str());
        if (!v) return std::nullopt;
        return std::string(v);
    };
}

// Refresh this long before the token expires.
inline constexpr std::chrono::seconds kRefreshMargin{300};

// The scope the factory needs for GCS + Compute.
inline constexpr std::string_view kCloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform";

struct AccessToken {
    std::string value;
    Clock::time_point expiry;
};

class TokenSource {
public:
    virtual ~TokenSource() = default;
    // A valid bearer token (without the "Bearer " prefix). Throws cmf::Error(auth).
    virtual std::string access_token() = 0;
    // Drop the cached token (after a 401), so the next access_token() fetches a new one.
    virtual void invalidate() {}
    // Project to bill quota to (authorized_user `quota_project_id`) -> x-goog-user-project.
    virtual std::optional<std::string> quota_project() const { return std::nullopt; }
    // What this source is, for messages ("service account x@y", "metadata server").
    virtual std::string describe() const = 0;
};

class CachingTokenSource : public TokenSource {
public:
    std::string access_token() override {
        std::lock_guard lock(mu_);
        auto now = now_();
        if (!cached_ || now + kRefreshMargin >= cached_->expiry) cached_ = fetch();
        return cached_->value;
    }
    void invalidate() override {
        std::lock_guard lock(mu_);
        cached_.reset();
    }
    // Injected clock for tests.
    void set_clock(std::function<Clock::time_point()> now) {
        std::lock_guard lock(mu_);
        now_ = std::move(now);
    }

protected:
    Clock::time_point now() const { return now_(); }
    virtual AccessToken fetch() = 0;

private:
    std::mutex mu_;
    std::optional<AccessToken> cached_;
    std::function<Clock::time_point()> now_ = [] { return Clock::now(); };
};

// A fixed token (tests, or a token handed in by the user). Never refreshes.
class StaticTokenSource : public TokenSource {
public:
    explicit StaticTokenSource(std::string token) : token_(std::move(token)) {}
    std::string access_token() override { return token_; }
    std::string describe() const override { return "static token"; }

private:
    std::string token_;
};

// Parses an OAuth2 token reply (token endpoint or metadata server):
// {"access_token": "...", "expires_in": 3599, "token_type": "Bearer", ...}. `expires_in` may be
// a number or a numeric string. Throws cmf::Error(auth) on anything else; the message never
// contains the body.
inline AccessToken parse_token_response(std::string_view body, Clock::time_point now, const std::string& what) {
    nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
    if (!j.is_object()) fail(ErrorKind::auth, what + ": token reply is not a JSON object");
    auto tok = j.find("access_token");
    if (tok == j.end() || !tok->is_string() || tok->get_ref<const std::string&>().empty())
        fail(ErrorKind::auth, what + ": token reply has no access_token");
    long long secs = 3600;
    if (auto e = j.find("expires_in"); e != j.end()) {
        if (e->is_number_integer()) {
            secs = e->get<long long>();
        } else if (e->is_number_float()) {
            double d = e->get<double>();
            if (!(d >= 0 && d < 1e9)) fail(ErrorKind::auth, what + ": token reply has a bad expires_in");
            secs = static_cast<long long>(d);
        } else if (e->is_string()) {
            const auto& s = e->get_ref<const std::string&>();
            if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos)
                fail(ErrorKind::auth, what + ": token reply has a bad expires_in");
            secs = std::stoll(s);
        } else {
            fail(ErrorKind::auth, what + ": token reply has a bad expires_in");
        }
    }
    if (secs < 0 || secs > 1000000000LL) fail(ErrorKind::auth, what + ": token reply has a bad expires_in");
    if (auto t = j.find("token_type"); t != j.end()) {
        if (!t->is_string()) fail(ErrorKind::auth, what + ": token reply has a bad token_type");
        std::string tt = t->get<std::string>();
        for (char& c : tt) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (tt != "bearer") fail(ErrorKind::auth, what + ": token type is not Bearer");
    }
    return AccessToken{tok->get<std::string>(), now + std::chrono::seconds(secs)};
}

// The `error` / `error_description` of an OAuth2 error reply, redacted; "" when absent.
inline std::string oauth_error_text(std::string_view body, const std::vector<std::string>& secrets) {
    nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
    if (!j.is_object()) return "";
    std::string out;
    if (auto e = j.find("error"); e != j.end() && e->is_string()) out = e->get<std::string>();
    if (auto d = j.find("error_description"); d != j.end() && d->is_string())
        out += (out.empty() ? "" : ": ") + d->get<std::string>();
    return one_line(redact(out, secrets));
}

}  // namespace cmf::cloud
