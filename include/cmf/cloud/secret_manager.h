// cmf::cloud::SecretManagerClient — Secret Manager v1 REST over net::HttpClient + TokenSource
// (facts: docs/research/secrets.md; googleapis google/cloud/secretmanager/v1/service.proto).
//
//   create        POST   {endpoint}/v1/projects/P/secrets?secretId=ID   {replication:{automatic:{}}, labels, ttl}
//   add_version   POST   .../secrets/ID:addVersion    {payload:{data: base64, dataCrc32c: "decimal int64"}}
//                                                     -> {name: projects/P/secrets/ID/versions/N}
//   access        GET    {version name}:access        {payload:{data, dataCrc32c}}, checked
//   grant_accessor GET .../secrets/ID:getIamPolicy, then POST :setIamPolicy with the policy's etag
//                 (a concurrent change answers 409 ABORTED: read-modify-write again)
//   destroy       DELETE .../secrets/ID (404: already gone, fine)
//   exists        GET    .../secrets/ID (404: no)
//   service_enabled GET  .../secrets?pageSize=1 (false on SERVICE_DISABLED)
//   list          GET    .../secrets?filter=labels.KEY=VALUE (pages by nextPageToken), with labels
//
// Read a version by the number add_version returned, not `latest`: only numbered reads are
// strongly consistent after an add. A reader just granted access may see 403 for minutes while
// IAM propagates (typically ~2 min, up to 7+): access() retries 403 within a bounded wait.
// A 403 whose ErrorInfo reason is SERVICE_DISABLED is one line naming how to enable the API.
// Payloads never reach a message.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cmf/cloud/token_source.h"
#include "cmf/core/crc32c.h"
#include "cmf/core/encoding.h"
#include "cmf/core/error.h"
#include "cmf/net/http.h"

namespace cmf::cloud {

inline constexpr const char* kSecretManagerEndpoint = "https://secretmanager.googleapis.com";
inline constexpr const char* kSecretAccessorRole = "roles/secretmanager.secretAccessor";
// How long access() keeps retrying a 403 (IAM propagation; docs/research/secrets.md C).
inline constexpr std::chrono::seconds kIamPropagationWait{600};
// Secret payloads are at most 64 KiB (the API's limit).
inline constexpr std::size_t kSecretPayloadMax = 64 * 1024;

struct SecretManagerOptions {
    std::string endpoint = kSecretManagerEndpoint;
    std::chrono::seconds propagation_wait = kIamPropagationWait;
    std::chrono::milliseconds poll = std::chrono::milliseconds(2000);  // between 403 retries
};

class SecretManagerClient {
public:
    SecretManagerClient(std::shared_ptr<net::HttpClient> http, std::shared_ptr<TokenSource> tokens, std::string project,
                        SecretManagerOptions options = {})
        : http_(std::move(http)), tokens_(std::move(tokens)), project_(std::move(project)), opt_(std::move(options)) {
        while (!opt_.endpoint.empty() && opt_.endpoint.back() == '/') opt_.endpoint.pop_back();
    }

    std::string secret_name(const std::string& id) const { return "projects/" + project_ + "/secrets/" + id; }

    // Creates secret `id` with `labels`; `ttl_seconds` > 0 makes the service delete it by itself
    // after that long (the backstop when every cleanup path failed).
    void create(const std::string& id, const std::map<std::string, std::string>& labels, long long ttl_seconds = 0) {
        nlohmann::json body{{"replication", {{"automatic", nlohmann::json::object()}}}, {"labels", labels}};
        if (ttl_seconds > 0) body["ttl"] = std::to_string(ttl_seconds) + "s";
        auto r = call("POST", "/v1/projects/" + project_ + "/secrets?secretId=" + percent_encode(id), body.dump());
        if (r.status / 100 != 2) throw_error(r, "creating secret " + id);
    }

    // Adds `data` as a new version; returns its name (projects/P/secrets/ID/versions/N).
    std::string add_version(const std::string& id, const std::string& data) {
        if (data.size() > kSecretPayloadMax) fail(ErrorKind::usage, "secret " + id + ": the value is larger than Secret Manager's 64 KiB");
        const nlohmann::json body{{"payload", {{"data", base64_encode(data)}, {"dataCrc32c", std::to_string(crc32c(data))}}}};
        auto r = call("POST", "/v1/" + secret_name(id) + ":addVersion", body.dump());
        if (r.status / 100 != 2) throw_error(r, "adding a version to secret " + id);
        const auto j = nlohmann::json::parse(r.body, nullptr, false);
        if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) fail(ErrorKind::remote, "Secret Manager's answer has no version name");
        return j["name"].get<std::string>();
    }

    // The payload of version `name`, its CRC32C checked. 403 is retried for propagation_wait
    // (a grant that has not reached this reader yet looks exactly like no grant).
    std::string access(const std::string& name) {
        const auto deadline = std::chrono::steady_clock::now() + opt_.propagation_wait;
        for (;;) {
            auto r = call("GET", "/v1/" + name + ":access", "");
            if (r.status / 100 == 2) {
                const auto j = nlohmann::json::parse(r.body, nullptr, false);
                const auto p = j.is_object() ? j.value("payload", nlohmann::json::object()) : nlohmann::json::object();
                auto data = base64_decode(p.value("data", std::string()));
                if (!data) fail(ErrorKind::remote, "Secret Manager's answer for " + short_name(name) + " is not base64");
                if (p.contains("dataCrc32c")) {
                    const auto& c = p["dataCrc32c"];
                    const std::string want = c.is_string() ? c.get<std::string>() : c.dump();
                    if (want != std::to_string(crc32c(*data))) fail(ErrorKind::remote, "secret " + short_name(name) + " arrived damaged (CRC32C)");
                }
                return *data;
            }
            if (r.status == 403 && !service_disabled(r) && std::chrono::steady_clock::now() < deadline) {
                std::this_thread::sleep_for(opt_.poll);
                continue;
            }
            throw_error(r, "reading secret " + short_name(name));
        }
    }

    // Binds `member` ("serviceAccount:E") to the accessor role on secret `id` only.
    void grant_accessor(const std::string& id, const std::string& member) {
        for (int attempt = 0;; ++attempt) {
            auto r = call("GET", "/v1/" + secret_name(id) + ":getIamPolicy", "");
            if (r.status / 100 != 2) throw_error(r, "reading the access policy of secret " + id);
            auto policy = nlohmann::json::parse(r.body, nullptr, false);
            if (!policy.is_object()) fail(ErrorKind::remote, "Secret Manager's policy answer is not JSON");
            auto& bindings = policy["bindings"];
            if (!bindings.is_array()) bindings = nlohmann::json::array();
            bool done = false;
            for (auto& b : bindings)
                if (b.value("role", std::string()) == kSecretAccessorRole) {
                    auto& m = b["members"];
                    if (std::find(m.begin(), m.end(), member) == m.end()) m.push_back(member);
                    done = true;
                }
            if (!done) bindings.push_back({{"role", kSecretAccessorRole}, {"members", {member}}});
            auto s = call("POST", "/v1/" + secret_name(id) + ":setIamPolicy", nlohmann::json{{"policy", policy}}.dump());
            if (s.status / 100 == 2) return;
            if (s.status == 409 && attempt < 5) continue;  // ABORTED: the policy changed meanwhile
            throw_error(s, "granting access to secret " + id);
        }
    }

    // Deletes secret `id` and every version; true when it existed.
    bool destroy(const std::string& id) {
        auto r = call("DELETE", "/v1/" + secret_name(id), "");
        if (r.status == 404) return false;
        if (r.status / 100 != 2) throw_error(r, "deleting secret " + id);
        return true;
    }

    // False when the Secret Manager API is not enabled in the project (then there are no
    // secrets); other failures throw.
    bool service_enabled() {
        auto r = call("GET", "/v1/projects/" + project_ + "/secrets?pageSize=1", "");
        if (r.status / 100 == 2) return true;
        if (service_disabled(r)) return false;
        throw_error(r, "listing secrets");
    }

    // Whether secret `id` exists (the caller may read its metadata).
    bool exists(const std::string& id) {
        auto r = call("GET", "/v1/" + secret_name(id), "");
        if (r.status == 404) return false;
        if (r.status / 100 != 2) throw_error(r, "looking up secret " + id);
        return true;
    }

    // Secrets whose label `key` is `value`, with all their labels.
    struct SecretInfo {
        std::string id;
        std::map<std::string, std::string> labels;
        std::string create_time;  // RFC 3339
        bool operator==(const SecretInfo&) const = default;
    };
    std::vector<SecretInfo> list(const std::string& key, const std::string& value) {
        std::vector<SecretInfo> out;
        std::string page;
        for (int n = 0; n < 1000; ++n) {
            std::string path = "/v1/projects/" + project_ + "/secrets?filter=" + percent_encode("labels." + key + "=" + value);
            if (!page.empty()) path += "&pageToken=" + percent_encode(page);
            auto r = call("GET", path, "");
            if (r.status / 100 != 2) throw_error(r, "listing secrets");
            const auto j = nlohmann::json::parse(r.body, nullptr, false);
            if (!j.is_object()) fail(ErrorKind::remote, "Secret Manager's list answer is not JSON");
            for (const auto& s : j.value("secrets", nlohmann::json::array())) {
                if (!s.is_object()) continue;
                const std::string name = s.value("name", std::string());
                SecretInfo info{name.substr(name.rfind('/') + 1), {}, {}};
                if (s.contains("createTime") && s["createTime"].is_string()) info.create_time = s["createTime"].get<std::string>();
                if (s.contains("labels") && s["labels"].is_object())
                    for (const auto& [k, v] : s["labels"].items())
                        if (v.is_string()) info.labels[k] = v.get<std::string>();
                out.push_back(std::move(info));
            }
            page = j.value("nextPageToken", std::string());
            if (page.empty()) break;
        }
        return out;
    }

private:
    net::Response call(const std::string& method, const std::string& path, const std::string& body) {
        for (int attempt = 0;; ++attempt) {
            net::Request q;
            q.method = method;
            q.url = net::Url::parse(opt_.endpoint + path);
            q.headers.set("Authorization", "Bearer " + tokens_->access_token());
            if (auto qp = tokens_->quota_project()) q.headers.set("x-goog-user-project", *qp);
            if (!body.empty()) {
                q.headers.set("Content-Type", "application/json");
                q.body = body;
            }
            // creating or adding twice is not harmless; reading, granting (etag) and deleting are
            q.idempotent = method != "POST" || path.find(":setIamPolicy") != std::string::npos;
            auto r = http_->send(q);
            if (r.status == 401 && attempt == 0) {
                tokens_->invalidate();
                continue;
            }
            return r;
        }
    }

    static bool service_disabled(const net::Response& r) {
        const auto j = nlohmann::json::parse(r.body, nullptr, false);
        if (!j.is_object() || !j.contains("error")) return false;
        for (const auto& d : j["error"].value("details", nlohmann::json::array()))
            if (d.is_object() && d.value("reason", std::string()) == "SERVICE_DISABLED") return true;
        return false;
    }

    static std::string short_name(const std::string& version) {
        const auto s = version.find("/secrets/");
        return s == std::string::npos ? version : version.substr(s + 9);
    }

    [[noreturn]] void throw_error(const net::Response& r, const std::string& what) {
        if (service_disabled(r))
            fail(ErrorKind::remote, what + ": the Secret Manager API is not enabled in project " + project_ +
                                        ": run `gcloud services enable secretmanager.googleapis.com --project " + project_ +
                                        "` or enable it at https://console.cloud.google.com/apis/library/secretmanager.googleapis.com?project=" +
                                        project_ + ", wait a few minutes, and retry");
        std::string msg;
        const auto j = nlohmann::json::parse(r.body, nullptr, false);
        if (j.is_object() && j.contains("error") && j["error"].is_object()) msg = j["error"].value("message", std::string());
        if (msg.size() > 300) msg.resize(300);
        const ErrorKind k = r.status == 401 || r.status == 403 ? ErrorKind::auth : r.status == 404 ? ErrorKind::input : ErrorKind::remote;
        fail(k, what + ": Secret Manager answered HTTP " + std::to_string(r.status) + (msg.empty() ? "" : " (" + msg + ")"));
    }

    std::shared_ptr<net::HttpClient> http_;
    std::shared_ptr<TokenSource> tokens_;
    std::string project_;
    SecretManagerOptions opt_;
};

}  // namespace cmf::cloud
