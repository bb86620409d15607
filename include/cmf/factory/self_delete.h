// The worker deletes its own VM at the end (cloud.md TL;DR 1, 1.5, 7): a guest shutdown only
// STOPS the VM, which clears maxRunDuration and leaves the disk billed.
//
//   DELETE {compute}/projects/P/zones/Z/instances/NAME   Authorization: Bearer <metadata token>
//
// P, Z (last segment of projects/N/zones/Z) and NAME come from the metadata server; the token is
// the VM's service account token from the metadata server. 2xx = the delete operation was
// accepted; 404 = already gone (success). Skipped when the instance attribute cmf-keep-vm is
// TRUE (debugging). {compute} is https://compute.googleapis.com/compute/v1, overridden by
// CMF_COMPUTE_API (the startup script's variable) or `cmf worker --compute-endpoint` for tests.
// With include/cmf/cloud/gce.h present the call goes through its GceClient::delete_instance;
// otherwise this header sends the one DELETE itself.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "cmf/core/encoding.h"
#include "cmf/cloud/metadata.h"
#include "cmf/core/error.h"
#include "cmf/net/http.h"
#if __has_include("cmf/cloud/gce.h")
#include "cmf/cloud/gce.h"
#define CMF_SELF_DELETE_HAS_GCE 1
#endif

namespace cmf::factory {

inline constexpr const char* kComputeDefaultEndpoint = "https://compute.googleapis.com/compute/v1";

struct SelfDeleteResult {
    bool requested = false;  // the DELETE was sent and accepted (or the VM was already gone)
    std::string detail;      // one line for the log (never the token)
};

inline std::string self_delete_url(std::string endpoint, const std::string& project, const std::string& zone, const std::string& name) {
    while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
    return endpoint + "/projects/" + cmf::percent_encode(project) + "/zones/" + cmf::percent_encode(zone) + "/instances/" +
           cmf::percent_encode(name);
}

inline SelfDeleteResult delete_own_instance(const std::shared_ptr<net::HttpClient>& http, const cloud::MetadataServer& mds,
                                            const std::string& endpoint) {
    SelfDeleteResult r;
    if (auto keep = mds.attribute("cmf-keep-vm"); keep && *keep == "TRUE") {
        r.detail = "cmf-keep-vm=TRUE: not deleting this VM";
        return r;
    }
    const std::string project = mds.project_id();
    const std::string zone = mds.zone();
    const std::string name = mds.instance_name();
#ifdef CMF_SELF_DELETE_HAS_GCE
    cloud::GceOptions o;
    o.endpoint = endpoint;
    while (!o.endpoint.empty() && o.endpoint.back() == '/') o.endpoint.pop_back();
    o.max_attempts = 4;
    cloud::GceClient gce(http, std::make_shared<cloud::MetadataTokenSource>(http), o);
    gce.delete_instance(project, zone, name);  // 404 = already gone: returns quietly
    r.requested = true;
    r.detail = "deleting instance " + name + " in " + zone + " (project " + project + ")";
#else
    const cloud::AccessToken tok = mds.token(cloud::Clock::now());
    net::Request req;
    req.method = "DELETE";
    req.url = net::Url::parse(self_delete_url(endpoint, project, zone, name));
    req.headers.set("Authorization", "Bearer " + tok.value);
    req.idempotent = true;  // deleting twice is harmless: the second answers 404
    net::Response resp = http->send(req);
    if (resp.status == 404) {
        r.requested = true;
        r.detail = "instance " + name + " in " + zone + " is already gone";
    } else if (resp.status >= 200 && resp.status < 300) {
        r.requested = true;
        r.detail = "deleting instance " + name + " in " + zone + " (project " + project + ")";
    } else {
        fail(ErrorKind::remote, "instances.delete of " + name + " in " + zone + " returned HTTP " + std::to_string(resp.status) +
                                    "; maxRunDuration will delete the VM");
    }
#endif
    return r;
}

}  // namespace cmf::factory
