// Emulated Google auth: the GCE metadata server and the OAuth2 token endpoint (cloud.md 2, 3).
//
//   GET  /computeMetadata/v1/...     needs `Metadata-Flavor: Google` (else 403), rejects
//                                    X-Forwarded-For; answers carry `Metadata-Flavor: Google`;
//                                    404 for keys that are not set
//        instance/attributes/KEY, instance/attributes/?recursive=true&alt=json,
//        project/attributes/KEY, project/project-id, project/numeric-project-id,
//        instance/zone (projects/N/zones/Z), instance/name, instance/id, instance/preempted,
//        instance/maintenance-event, instance/service-accounts/default/{token,email,scopes}
//   POST /token                      grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
//                                    (RS256 signature checked against the seeded public key,
//                                    aud, iat/exp <= 3600 and within 5 min of now, scope) or
//                                    grant_type=refresh_token (client_id/secret/refresh_token)
//   GET  /_emu/google_auth/stats     {"tokens_issued","jwt_grants","refresh_grants",
//                                     "metadata_tokens","rejected","issued": [every token]}
//   POST /_emu/google_auth/metadata  merges {"attributes":{...}, "project_attributes":{...},
//                                    "preempted": "TRUE", ...} into the metadata at run time
//
// Config ("google_auth" key of --config):
//   {"service_accounts": [{"client_email": E, "public_key_pem": PEM}],
//    "authorized_users": [{"client_id","client_secret","refresh_token"}],
//    "token_lifetime": 3599,
//    "metadata": {"project_id","numeric_project_id","zone","instance_name","instance_id",
//                 "service_account_email","scopes":[...],"attributes":{},"project_attributes":{}}}
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmf/core/encoding.h"
#include "cmf/cloud/jwt.h"
#include "context.h"
#include "control_service.h"
#include "handler.h"

namespace cmf::emu {

// Access tokens the emulator issued (GCS checks them when "require_auth" is on).
struct TokenRegistry {
    std::mutex mu;
    std::map<std::string, std::chrono::steady_clock::time_point> tokens;
    // Who each token speaks for, as IAM names members ("serviceAccount:E", "user:ID"): services
    // that enforce IAM (Secret Manager) check bindings against it.
    std::map<std::string, std::string> principals;

    std::string issue(std::chrono::seconds lifetime, const std::string& principal = "") {
        static std::atomic<std::uint64_t> counter{0};
        std::random_device rd;
        char buf[64];
        std::snprintf(buf, sizeof buf, "ya29.emu-%llu-%08x%08x", static_cast<unsigned long long>(++counter), rd(), rd());
        std::lock_guard lock(mu);
        tokens[buf] = std::chrono::steady_clock::now() + lifetime;
        principals[buf] = principal;
        return buf;
    }
    // The principal of a valid token, or "".
    std::string principal(const std::string& t) {
        std::lock_guard lock(mu);
        auto it = tokens.find(t);
        if (it == tokens.end() || std::chrono::steady_clock::now() >= it->second) return "";
        return principals[t];
    }
    bool valid(const std::string& t) {
        std::lock_guard lock(mu);
        auto it = tokens.find(t);
        return it != tokens.end() && std::chrono::steady_clock::now() < it->second;
    }
    std::vector<std::string> all() {
        std::lock_guard lock(mu);
        std::vector<std::string> v;
        for (const auto& [t, _] : tokens) v.push_back(t);
        return v;
    }
};

inline TokenRegistry& token_registry(Context& ctx) {
    return *ctx.service_state<TokenRegistry>([](TokenRegistry&) {});  // the context keeps it
}

struct GoogleAuthState {
    std::mutex mu;
    std::map<std::string, std::string> sa_public_keys;  // client_email -> PEM
    struct User {
        std::string client_secret, refresh_token;
    };
    std::map<std::string, User> users;  // client_id -> secrets
    std::int64_t token_lifetime = 3599;
    nlohmann::json metadata = nlohmann::json::object();
    std::atomic<std::uint64_t> tokens_issued{0}, jwt_grants{0}, refresh_grants{0}, metadata_tokens{0}, rejected{0};
};

inline std::shared_ptr<GoogleAuthState> google_auth_state(Context& ctx) {
    return ctx.service_state<GoogleAuthState>([&](GoogleAuthState& st) {
        GoogleAuthState* s = &st;
        nlohmann::json g = ctx.config.is_object() && ctx.config.contains("google_auth") ? ctx.config["google_auth"]
                                                                                        : nlohmann::json::object();
        if (!g.is_object()) g = nlohmann::json::object();
        if (auto it = g.find("service_accounts"); it != g.end() && it->is_array())
            for (const auto& sa : *it)
                if (sa.is_object()) s->sa_public_keys[sa.value("client_email", "")] = sa.value("public_key_pem", "");
        if (auto it = g.find("authorized_users"); it != g.end() && it->is_array())
            for (const auto& u : *it)
                if (u.is_object())
                    s->users[u.value("client_id", "")] = {u.value("client_secret", ""), u.value("refresh_token", "")};
        s->token_lifetime = g.value("token_lifetime", std::int64_t{3599});
        nlohmann::json md = {{"project_id", "emu-project"},
                             {"numeric_project_id", "123456789012"},
                             {"zone", "us-central1-a"},
                             {"instance_name", "emu-instance"},
                             {"instance_id", "4242424242424242424"},
                             {"service_account_email", "emu-sa@emu-project.iam.gserviceaccount.com"},
                             {"scopes", {"https://www.googleapis.com/auth/cloud-platform"}},
                             {"preempted", "FALSE"},
                             {"maintenance_event", "NONE"},
                             {"attributes", nlohmann::json::object()},
                             {"project_attributes", nlohmann::json::object()}};
        if (auto it = g.find("metadata"); it != g.end() && it->is_object()) md.merge_patch(*it);
        s->metadata = md;
    });
}

namespace auth_detail {
inline Response text(int status, const std::string& body, bool flavor = true) {
    Response r;
    r.status = status;
    r.headers.set("Content-Type", "application/text");
    if (flavor) r.headers.set("Metadata-Flavor", "Google");
    r.body = body;
    return r;
}
inline Response oauth_error(int status, const std::string& error, const std::string& desc) {
    return json_response(status, {{"error", error}, {"error_description", desc}});
}
inline std::string value_text(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }
}  // namespace auth_detail

inline Handler make_google_auth_service(Context& ctx) {
    using namespace auth_detail;
    auto st = google_auth_state(ctx);
    Context* cp = &ctx;
    return [st, cp](const Request& req) -> std::optional<Response> {
        const std::string path = path_of(req.target);

        if (path == "/_emu/google_auth/stats") {
            return json_response(200, {{"tokens_issued", st->tokens_issued.load()},
                                       {"jwt_grants", st->jwt_grants.load()},
                                       {"refresh_grants", st->refresh_grants.load()},
                                       {"metadata_tokens", st->metadata_tokens.load()},
                                       {"rejected", st->rejected.load()},
                                       {"issued", token_registry(*cp).all()}});  // tests search outputs for them
        }
        if (path == "/_emu/google_auth/metadata") {
            if (req.method != "POST") return json_response(405, {{"error", "POST"}});
            auto j = nlohmann::json::parse(req.body, nullptr, false);
            if (!j.is_object()) return json_response(400, {{"error", "JSON object expected"}});
            std::lock_guard lock(st->mu);
            st->metadata.merge_patch(j);
            return json_response(200, st->metadata);
        }

        // ---------------------------------------------------------------- metadata server
        const std::string root = "/computeMetadata/v1/";
        if (path.rfind(root, 0) == 0 || path == "/computeMetadata/v1") {
            if (req.headers.get("Metadata-Flavor").value_or("") != "Google")
                return text(403, "Missing required header: Metadata-Flavor", false);
            if (req.headers.has("X-Forwarded-For")) return text(403, "Request denied: X-Forwarded-For", false);
            if (req.method != "GET") return text(405, "Method not allowed");
            std::string key = path.size() > root.size() ? path.substr(root.size()) : "";
            std::lock_guard lock(st->mu);
            const nlohmann::json& md = st->metadata;
            auto str = [&md](const char* k) -> std::optional<std::string> {
                auto it = md.find(k);
                if (it == md.end() || it->is_null()) return std::nullopt;
                return value_text(*it);
            };
            std::optional<std::string> v;
            if (key == "project/project-id") v = str("project_id");
            else if (key == "project/numeric-project-id") v = str("numeric_project_id");
            else if (key == "instance/zone") {
                auto z = str("zone");
                if (z) v = "projects/" + str("numeric_project_id").value_or("0") + "/zones/" + *z;
            } else if (key == "instance/name") v = str("instance_name");
            else if (key == "instance/hostname") {
                auto n = str("instance_name");
                if (n) v = *n + "." + str("zone").value_or("") + ".c." + str("project_id").value_or("") + ".internal";
            } else if (key == "instance/id") v = str("instance_id");
            else if (key == "instance/preempted") v = str("preempted");
            else if (key == "instance/maintenance-event") v = str("maintenance_event");
            else if (key == "instance/service-accounts/default/email") v = str("service_account_email");
            else if (key == "instance/service-accounts/default/scopes") {
                std::string s;
                if (md.contains("scopes") && md["scopes"].is_array())
                    for (const auto& x : md["scopes"]) s += value_text(x) + "\n";
                v = s;
            } else if (key == "instance/service-accounts/default/token") {
                if (!str("service_account_email")) return text(404, "no service account");
                std::string tok = token_registry(*cp).issue(std::chrono::seconds(st->token_lifetime),
                                                            "serviceAccount:" + *str("service_account_email"));
                ++st->tokens_issued;
                ++st->metadata_tokens;
                Response r = json_response(200, {{"access_token", tok}, {"expires_in", st->token_lifetime},
                                                 {"token_type", "Bearer"}});
                r.headers.set("Metadata-Flavor", "Google");
                return r;
            } else if (key == "instance/attributes/" || key == "project/attributes/") {
                const nlohmann::json& a = md[key[0] == 'i' ? "attributes" : "project_attributes"];
                if (query_param(req.target, "alt").value_or("") == "json") {
                    nlohmann::json out = nlohmann::json::object();
                    for (const auto& [k, x] : a.items()) out[k] = value_text(x);
                    Response r = json_response(200, out);
                    r.headers.set("Metadata-Flavor", "Google");
                    return r;
                }
                std::string s;
                for (const auto& [k, x] : a.items()) s += k + "\n";
                v = s;
            } else if (key.rfind("instance/attributes/", 0) == 0 || key.rfind("project/attributes/", 0) == 0) {
                bool inst = key[0] == 'i';
                auto name = cmf::percent_decode(key.substr(inst ? 20 : 19));
                const nlohmann::json& a = md[inst ? "attributes" : "project_attributes"];
                if (name && a.is_object() && a.contains(*name)) v = value_text(a[*name]);
            }
            if (!v) return text(404, "Not Found");
            Response r = text(200, *v);
            r.headers.set("ETag", std::to_string(std::hash<std::string>{}(*v)));
            return r;
        }

        // ---------------------------------------------------------------- token endpoint
        if (path != "/token") return std::nullopt;
        if (req.method != "POST") return oauth_error(405, "invalid_request", "POST required");
        if (req.headers.get("Content-Type").value_or("").rfind("application/x-www-form-urlencoded", 0) != 0) {
            ++st->rejected;
            return oauth_error(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded");
        }
        std::map<std::string, std::string> form;
        for (auto& [k, v] : cmf::form_decode(req.body)) form[k] = v;
        const std::string grant = form["grant_type"];
        auto issue = [&](const std::string& principal) {
            std::string tok = token_registry(*cp).issue(std::chrono::seconds(st->token_lifetime), principal);
            ++st->tokens_issued;
            return json_response(200, {{"access_token", tok}, {"expires_in", st->token_lifetime}, {"token_type", "Bearer"}});
        };
        if (grant == "urn:ietf:params:oauth:grant-type:jwt-bearer") {
            auto jwt = cloud::decode_jwt(form["assertion"]);
            if (!jwt) {
                ++st->rejected;
                return oauth_error(400, "invalid_grant", "Invalid JWT: malformed assertion.");
            }
            if (jwt->header.value("alg", "") != "RS256") {
                ++st->rejected;
                return oauth_error(400, "invalid_grant", "Invalid JWT: unsupported algorithm.");
            }
            const auto& c = jwt->claims;
            std::string iss = c.contains("iss") && c["iss"].is_string() ? c["iss"].get<std::string>() : "";
            std::string pem;
            {
                std::lock_guard lock(st->mu);
                auto it = st->sa_public_keys.find(iss);
                if (it != st->sa_public_keys.end()) pem = it->second;
            }
            if (pem.empty()) {
                ++st->rejected;
                return oauth_error(400, "invalid_grant", "Invalid grant: account not found");
            }
            if (!cloud::rs256_verify(pem, jwt->signing_input, jwt->signature)) {
                ++st->rejected;
                return oauth_error(400, "invalid_grant", "Invalid JWT Signature.");
            }
            std::string aud = c.contains("aud") && c["aud"].is_string() ? c["aud"].get<std::string>() : "";
            auto localhost = [](std::string b) {
                auto p = b.find("127.0.0.1");
                if (p != std::string::npos) b.replace(p, 9, "localhost");
                return b;
            };
            std::set<std::string> auds = {"https://oauth2.googleapis.com/token", cp->https_base + "/token",
                                          cp->http_base + "/token", localhost(cp->https_base) + "/token",
                                          localhost(cp->http_base) + "/token"};
            if (!auds.count(aud)) {
                ++st->rejected;
                return oauth_error(400, "invalid_grant", "Invalid JWT: audience does not match the token endpoint.");
            }
            if (!c.contains("iat") || !c["iat"].is_number_integer() || !c.contains("exp") || !c["exp"].is_number_integer()) {
                ++st->rejected;
                return oauth_error(400, "invalid_grant", "Invalid JWT: iat and exp are required.");
            }
            long long iat = c["iat"].get<long long>(), exp = c["exp"].get<long long>();
            long long now = std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
            if (exp <= iat || exp - iat > 3600 || iat > now + 300 || exp < now - 300) {
                ++st->rejected;
                return oauth_error(400, "invalid_grant",
                                   "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                                   "timeframe. Check your iat and exp values in the JWT claim.");
            }
            if (!c.contains("scope") || !c["scope"].is_string() || c["scope"].get<std::string>().empty()) {
                ++st->rejected;
                return oauth_error(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.");
            }
            ++st->jwt_grants;
            return issue("serviceAccount:" + iss);
        }
        if (grant == "refresh_token") {
            std::lock_guard lock(st->mu);
            auto it = st->users.find(form["client_id"]);
            if (it == st->users.end() || it->second.client_secret != form["client_secret"]) {
                ++st->rejected;
                return oauth_error(401, "invalid_client", "The OAuth client was not found.");
            }
            if (it->second.refresh_token != form["refresh_token"]) {
                ++st->rejected;
                return oauth_error(400, "invalid_grant", "Token has been expired or revoked.");
            }
            ++st->refresh_grants;
            return issue("user:" + form["client_id"]);
        }
        ++st->rejected;
        return oauth_error(400, "unsupported_grant_type", "Invalid grant_type: " + grant.substr(0, 100));
    };
}

}  // namespace cmf::emu
