// GCE metadata server client (worker side; also the last step of the ADC chain).
//
// Facts (cloud.md section 2): plain HTTP at 169.254.169.254 (the IP, so a static binary needs no
// resolver), override with GCE_METADATA_HOST (host[:port]) as google-auth does (GCE_METADATA_ROOT
// is its older name); every request carries `Metadata-Flavor: Google` (403 without it); 404 =
// key not set; zone comes back as `projects/N/zones/Z`; the SA token reply is
// {access_token, expires_in, token_type}.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "cmf/core/encoding.h"
#include "cmf/cloud/token_source.h"
#include "cmf/core/error.h"
#include "cmf/net/http.h"

namespace cmf::cloud {

inline constexpr const char* kMetadataDefaultHost = "169.254.169.254";
// google-auth's metadata timeout is 3 s; a token fetch may take a little longer under load.
inline constexpr std::chrono::milliseconds kMetadataTimeout{10000};

class MetadataServer {
public:
    MetadataServer(std::shared_ptr<net::HttpClient> http, const Env& env = process_env()) : http_(std::move(http)) {
        std::optional<std::string> host = env("GCE_METADATA_HOST");
        if (!host || host->empty()) host = env("GCE_METADATA_ROOT");
        if (!host || host->empty()) host = kMetadataDefaultHost;
        root_ = "http://" + *host + "/computeMetadata/v1/";
    }

    const std::string& root() const { return root_; }

    // Raw value of `path` under computeMetadata/v1/; nullopt on 404. Other statuses throw
    // cmf::Error(remote); transport failures propagate as cmf::Error(network).
    std::optional<std::string> get(const std::string& path) const {
        net::Response r = send(path);
        if (r.status == 404) return std::nullopt;
        if (r.status != 200)
            fail(ErrorKind::remote, "metadata server: GET " + path + " returned HTTP " + std::to_string(r.status));
        return std::move(r.body);
    }

    std::optional<std::string> attribute(const std::string& key) const {
        return get("instance/attributes/" + percent_encode(key));
    }
    std::string project_id() const { return required("project/project-id"); }
    std::string instance_name() const { return required("instance/name"); }
    // "projects/123/zones/us-central1-a" -> "us-central1-a"
    std::string zone() const {
        std::string z = required("instance/zone");
        auto slash = z.rfind('/');
        return slash == std::string::npos ? z : z.substr(slash + 1);
    }

    // The default service account's token. Errors are cmf::Error(auth).
    AccessToken token(Clock::time_point now) const {
        net::Response r;
        try {
            r = send("instance/service-accounts/default/token");
        } catch (const Error& e) {
            fail(ErrorKind::auth, "no Google credentials: GOOGLE_APPLICATION_CREDENTIALS is not set, there is no gcloud "
                                  "application-default credentials file, and the metadata server at " +
                                      root_ + " did not answer (" + e.what() + ")");
        }
        if (r.status != 200)
            fail(ErrorKind::auth, "metadata server: service-account token request returned HTTP " +
                                      std::to_string(r.status) + " (does the VM have a service account?)");
        return parse_token_response(r.body, now, "metadata server");
    }

private:
    net::Response send(const std::string& path) const {
        net::Request req;
        req.method = "GET";
        req.url = net::Url::parse(root_ + path);
        req.headers.set("Metadata-Flavor", "Google");
        req.timeout = kMetadataTimeout;
        return http_->send(req);
    }
    std::string required(const std::string& path) const {
        auto v = get(path);
        if (!v) fail(ErrorKind::remote, "metadata server: " + path + " is not set");
        return *v;
    }

    std::shared_ptr<net::HttpClient> http_;
    std::string root_;
};

class MetadataTokenSource : public CachingTokenSource {
public:
    explicit MetadataTokenSource(std::shared_ptr<net::HttpClient> http, const Env& env = process_env())
        : mds_(std::move(http), env) {}
    std::string describe() const override { return "metadata server " + mds_.root(); }

protected:
    AccessToken fetch() override { return mds_.token(now()); }

private:
    MetadataServer mds_;
};

}  // namespace cmf::cloud
