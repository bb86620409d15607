// Emulated Secret Manager v1 REST (secretmanager.googleapis.com; docs/research/secrets.md): the
// subset a factory job needs, with IAM enforced per secret.
//
//   POST   /v1/projects/P/secrets?secretId=ID           {replication, labels, ttl?} -> Secret; 409 ALREADY_EXISTS
//   GET    /v1/projects/P/secrets[?filter=labels.K=V]    {secrets: [...], totalSize}
//   GET    /v1/projects/P/secrets/ID                     Secret
//   DELETE /v1/projects/P/secrets/ID                     {}; 404 NOT_FOUND
//   POST   /v1/projects/P/secrets/ID:addVersion          {payload: {data (base64), dataCrc32c (int64 as a string)}}
//                                                        -> SecretVersion {name: .../versions/N, state: ENABLED}
//   GET    /v1/projects/P/secrets/ID/versions/N|latest:access   {name, payload: {data, dataCrc32c}}
//   GET|POST /v1/projects/P/secrets/ID:getIamPolicy     {version, etag, bindings}
//   POST   /v1/projects/P/secrets/ID:setIamPolicy        {policy: {bindings, etag}}; a stale etag: 409 ABORTED
//
// Who calls: the Bearer token's principal from the emulated OAuth / metadata server
// (TokenRegistry: "serviceAccount:E" for a JWT grant or the metadata server's account). Project
// owners ("secret_manager": {"owners": [...]}) may do everything; anyone else may only access a
// version of a secret whose policy binds them to roles/secretmanager.secretAccessor, else 403
// PERMISSION_DENIED "Permission 'secretmanager.versions.access' denied ... (or it may not exist)".
// "enabled": false answers every call 403 SERVICE_DISABLED with the ErrorInfo Google sends.
// gax's `$alt=json;enum-encoding=int` query is accepted and ignored.
// GET /_emu/secret_manager/log: every access, {secret, principal, allowed}, and every secret ever
// created with its labels and whether it still exists.
// Time: createTime is the real time; a `ttl` sets expireTime = createTime + ttl, and an expired
// secret is deleted (as the service does) before any later call sees it ("deleted" records
// {name, by: "ttl"}). POST /_emu/secret_manager/age {"seconds": N} moves every secret's
// createTime and expireTime N seconds into the past: the passage of time for tests of
// leftovers.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "cmf/core/crc32c.h"
#include "cmf/core/encoding.h"
#include "cmf/core/rfc3339.h"
#include "context.h"
#include "control_service.h"
#include "google_auth_service.h"
#include "handler.h"

namespace cmf::emu {

struct SecretManagerState {
    struct Secret {
        nlohmann::json meta;  // name, replication, labels, createTime, etag
        std::vector<std::string> versions;  // payloads, version N = index N-1
        std::chrono::system_clock::time_point created;
        std::optional<std::chrono::system_clock::time_point> expires;  // from ttl
        nlohmann::json bindings = nlohmann::json::array();
        int policy_etag = 1;
    };
    std::mutex mu;
    bool enabled = true;
    std::set<std::string> owners;
    std::map<std::string, Secret> secrets;  // projects/P/secrets/ID
    nlohmann::json log = {{"accesses", nlohmann::json::array()}, {"created", nlohmann::json::array()}, {"deleted", nlohmann::json::array()}};
};

namespace smemu {

inline Response error(int code, const std::string& status, const std::string& message, nlohmann::json details = nlohmann::json::array()) {
    return json_response(code, {{"error", {{"code", code}, {"message", message}, {"status", status}, {"details", details}}}});
}

inline std::string crc_text(const std::string& data) { return std::to_string(cmf::crc32c(data)); }

// "3600s" / "3600.5s" -> seconds; nullopt when not a duration.
inline std::optional<long long> duration_seconds(const nlohmann::json& v) {
    if (!v.is_string()) return std::nullopt;
    const std::string d = v.get<std::string>();
    if (d.size() < 2 || d.back() != 's') return std::nullopt;
    try {
        std::size_t n = 0;
        const double x = std::stod(d.substr(0, d.size() - 1), &n);
        if (n != d.size() - 1 || x < 0) return std::nullopt;
        return static_cast<long long>(x);
    } catch (...) {
        return std::nullopt;
    }
}

// Deletes expired secrets; refreshes createTime / expireTime in the metadata (caller holds mu).
inline void tick(SecretManagerState& st) {
    const auto now = std::chrono::system_clock::now();
    for (auto it = st.secrets.begin(); it != st.secrets.end();) {
        auto& s = it->second;
        s.meta["createTime"] = cmf::format_rfc3339(s.created);
        if (s.expires) s.meta["expireTime"] = cmf::format_rfc3339(*s.expires);
        if (s.expires && *s.expires <= now) {
            st.log["deleted"].push_back({{"name", it->first}, {"by", "ttl"}});
            it = st.secrets.erase(it);
        } else {
            ++it;
        }
    }
}

}  // namespace smemu

inline Handler make_secret_manager_service(Context& ctx) {
    auto st = ctx.service_state<SecretManagerState>([&](SecretManagerState& s) {
        const auto c = ctx.config.value("secret_manager", nlohmann::json::object());
        s.enabled = c.value("enabled", true);
        for (const auto& o : c.value("owners", nlohmann::json::array())) s.owners.insert(o.get<std::string>());
    });
    Context* cp = &ctx;
    return [st, cp](const Request& req) -> std::optional<Response> {
        const std::string path = path_of(req.target);
        if (path == "/_emu/secret_manager/log") {
            std::lock_guard lock(st->mu);
            smemu::tick(*st);
            return json_response(200, st->log);
        }
        if (path == "/_emu/secret_manager/age" && req.method == "POST") {
            auto j = nlohmann::json::parse(req.body, nullptr, false);
            if (!j.is_object() || !j.contains("seconds") || !j["seconds"].is_number()) return json_response(400, {{"error", "{\"seconds\": N}"}});
            const auto d = std::chrono::seconds(j["seconds"].get<long long>());
            std::lock_guard lock(st->mu);
            for (auto& [_, sec] : st->secrets) {
                sec.created -= d;
                if (sec.expires) *sec.expires -= d;
            }
            smemu::tick(*st);
            return json_response(200, {{"secrets", st->secrets.size()}});
        }
        const std::string prefix = "/v1/projects/";
        if (path.rfind(prefix, 0) != 0 || path.find("/secrets") == std::string::npos) return std::nullopt;
        std::string rest = path.substr(prefix.size());
        std::string verb;
        if (auto c = rest.rfind(':'); c != std::string::npos && rest.find('/', c) == std::string::npos) {
            verb = rest.substr(c + 1);
            rest = rest.substr(0, c);
        }
        // rest: P/secrets[/ID[/versions/V]]
        std::vector<std::string> seg;
        for (std::size_t i = 0; i <= rest.size();) {
            auto j = rest.find('/', i);
            if (j == std::string::npos) j = rest.size();
            seg.push_back(rest.substr(i, j - i));
            i = j + 1;
        }
        if (seg.size() < 2 || seg[1] != "secrets") return std::nullopt;
        const std::string project = seg[0];

        std::lock_guard lock(st->mu);
        smemu::tick(*st);
        if (!st->enabled)
            return smemu::error(403, "PERMISSION_DENIED",
                                "Secret Manager API has not been used in project " + project +
                                    " before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/secretmanager.googleapis.com/overview?project=" +
                                    project + " then retry.",
                                nlohmann::json::array({{{"@type", "type.googleapis.com/google.rpc.ErrorInfo"},
                                                        {"reason", "SERVICE_DISABLED"},
                                                        {"domain", "googleapis.com"},
                                                        {"metadata", {{"service", "secretmanager.googleapis.com"}, {"consumer", "projects/" + project},
                                                                      {"activationUrl", "https://console.developers.google.com/apis/api/secretmanager.googleapis.com/overview?project=" + project}}}}}));
        const std::string auth = req.headers.get("Authorization").value_or("");
        const std::string principal = auth.rfind("Bearer ", 0) == 0 ? token_registry(*cp).principal(auth.substr(7)) : "";
        if (principal.empty())
            return smemu::error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token.");
        const bool owner = st->owners.count(principal) > 0;
        auto denied = [&](const std::string& perm, const std::string& resource) {
            return smemu::error(403, "PERMISSION_DENIED", "Permission '" + perm + "' denied for resource '" + resource + "' (or it may not exist).");
        };
        const std::string parent = "projects/" + project;

        if (seg.size() == 2) {  // the collection
            if (req.method == "POST") {
                if (!owner) return denied("secretmanager.secrets.create", parent);
                const std::string id = query_param(req.target, "secretId").value_or("");
                if (id.empty() || id.size() > 255 || id.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != std::string::npos)
                    return smemu::error(400, "INVALID_ARGUMENT", "Invalid secret id: " + id);
                const std::string name = parent + "/secrets/" + id;
                if (st->secrets.count(name)) return smemu::error(409, "ALREADY_EXISTS", "Secret [" + name + "] already exists.");
                auto body = nlohmann::json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
                if (!body.is_object()) return smemu::error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
                SecretManagerState::Secret s;
                s.created = std::chrono::system_clock::now();
                s.meta = {{"name", name}, {"replication", body.value("replication", nlohmann::json{{"automatic", nlohmann::json::object()}})},
                          {"createTime", cmf::format_rfc3339(s.created)}, {"labels", body.value("labels", nlohmann::json::object())}, {"etag", "\"1\""}};
                if (body.contains("ttl")) {
                    const auto ttl = smemu::duration_seconds(body["ttl"]);
                    if (!ttl) return smemu::error(400, "INVALID_ARGUMENT", "Invalid value at 'secret.ttl' (type.googleapis.com/google.protobuf.Duration)");
                    s.expires = s.created + std::chrono::seconds(*ttl);
                    s.meta["expireTime"] = cmf::format_rfc3339(*s.expires);
                }
                st->secrets[name] = s;
                st->log["created"].push_back({{"name", name}, {"labels", s.meta["labels"]}, {"by", principal}});
                return json_response(200, s.meta);
            }
            if (req.method == "GET") {
                if (!owner) return denied("secretmanager.secrets.list", parent);
                const std::string filter = query_param(req.target, "filter").value_or("");
                nlohmann::json out = nlohmann::json::array();
                for (const auto& [n, s] : st->secrets) {
                    if (n.rfind(parent + "/", 0) != 0) continue;
                    if (filter.rfind("labels.", 0) == 0) {
                        const auto eq = filter.find('=');
                        const std::string k = filter.substr(7, eq == std::string::npos ? std::string::npos : eq - 7);
                        const std::string v = eq == std::string::npos ? "" : filter.substr(eq + 1);
                        const auto& l = s.meta["labels"];
                        if (!l.contains(k) || (eq != std::string::npos && l[k] != v)) continue;
                    }
                    out.push_back(s.meta);
                }
                return json_response(200, {{"secrets", out}, {"totalSize", out.size()}});
            }
            return smemu::error(405, "INVALID_ARGUMENT", "Method not allowed");
        }
        const std::string name = parent + "/secrets/" + seg[2];
        auto it = st->secrets.find(name);
        if (seg.size() == 5 && seg[3] == "versions" && verb == "access" && req.method == "GET") {
            bool allowed = owner;
            if (it != st->secrets.end())
                for (const auto& b : it->second.bindings)
                    if (b.value("role", std::string()) == "roles/secretmanager.secretAccessor")
                        for (const auto& m : b.value("members", nlohmann::json::array())) allowed |= m == principal;
            const std::string vname = name + "/versions/" + seg[4];
            st->log["accesses"].push_back({{"secret", name}, {"principal", principal}, {"allowed", allowed && it != st->secrets.end()}});
            if (!allowed || it == st->secrets.end()) {
                if (owner) return smemu::error(404, "NOT_FOUND", "Secret [" + name + "] not found or has no versions.");
                return denied("secretmanager.versions.access", vname);
            }
            const auto& vs = it->second.versions;
            std::size_t n = 0;
            if (seg[4] == "latest") n = vs.size();
            else
                try {
                    n = std::stoul(seg[4]);
                } catch (...) {
                    return smemu::error(400, "INVALID_ARGUMENT", "Invalid version: " + seg[4]);
                }
            if (n == 0 || n > vs.size()) return smemu::error(404, "NOT_FOUND", "Secret Version [" + vname + "] not found.");
            return json_response(200, {{"name", name + "/versions/" + std::to_string(n)},
                                       {"payload", {{"data", cmf::base64_encode(vs[n - 1])}, {"dataCrc32c", smemu::crc_text(vs[n - 1])}}}});
        }
        if (!owner) return denied(verb.empty() ? "secretmanager.secrets.get" : "secretmanager.secrets." + verb, name);
        if (it == st->secrets.end()) return smemu::error(404, "NOT_FOUND", "Secret [" + name + "] not found.");
        auto& s = it->second;
        if (seg.size() == 3 && verb.empty()) {
            if (req.method == "GET") return json_response(200, s.meta);
            if (req.method == "DELETE") {
                st->log["deleted"].push_back({{"name", name}, {"by", principal}});
                st->secrets.erase(it);
                return json_response(200, nlohmann::json::object());
            }
        }
        if (seg.size() == 3 && verb == "addVersion" && req.method == "POST") {
            auto body = nlohmann::json::parse(req.body, nullptr, false);
            if (!body.is_object() || !body.contains("payload")) return smemu::error(400, "INVALID_ARGUMENT", "payload is required");
            const auto data = cmf::base64_decode(body["payload"].value("data", std::string()));
            if (!data) return smemu::error(400, "INVALID_ARGUMENT", "payload.data is not base64");
            if (data->size() > 65536) return smemu::error(400, "INVALID_ARGUMENT", "Secret Payload cannot be larger than 64KiB.");
            const auto& crc = body["payload"].value("dataCrc32c", nlohmann::json());
            if (!crc.is_null() && (crc.is_string() ? crc.get<std::string>() : crc.dump()) != smemu::crc_text(*data))
                return smemu::error(400, "INVALID_ARGUMENT", "Checksum mismatch: the payload's dataCrc32c does not match its data.");
            s.versions.push_back(*data);
            return json_response(200, {{"name", name + "/versions/" + std::to_string(s.versions.size())}, {"state", "ENABLED"},
                                       {"createTime", "2026-12-07T00:00:00Z"}, {"etag", "\"1\""}});
        }
        auto policy = [&] {
            return nlohmann::json{{"version", 1}, {"etag", cmf::base64_encode(std::to_string(s.policy_etag))}, {"bindings", s.bindings}};
        };
        if (seg.size() == 3 && verb == "getIamPolicy") return json_response(200, policy());
        if (seg.size() == 3 && verb == "setIamPolicy" && req.method == "POST") {
            auto body = nlohmann::json::parse(req.body, nullptr, false);
            if (!body.is_object() || !body.contains("policy")) return smemu::error(400, "INVALID_ARGUMENT", "policy is required");
            const auto& p = body["policy"];
            if (p.contains("etag") && p["etag"] != cmf::base64_encode(std::to_string(s.policy_etag)))
                return smemu::error(409, "ABORTED", "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.");
            s.bindings = p.value("bindings", nlohmann::json::array());
            ++s.policy_etag;
            return json_response(200, policy());
        }
        return smemu::error(400, "INVALID_ARGUMENT", "Unsupported Secret Manager call");
    };
}

}  // namespace cmf::emu
