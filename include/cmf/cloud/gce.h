// cmf::cloud::GceClient — the Compute Engine v1 subset the factory needs, over HttpClient +
// TokenSource (no gcloud). Facts: shared/research/cloud.md section 1.
//
//   insert_instance   POST  {base}/projects/P/zones/Z/instances?requestId=UUID -> Operation
//                     machineType / diskType as partial URLs with the zone, int64s as JSON
//                     strings (diskSizeGb, maxRunDuration.seconds), boot disk from an image
//                     family, metadata items, labels, service account + scopes,
//                     scheduling {maxRunDuration, instanceTerminationAction: DELETE, SPOT}.
//                     The same requestId is sent on every retry, so a retried insert whose
//                     first attempt did reach the server is not doubled (cloud.md 1.1).
//   wait_operation    POST  .../zones/Z/operations/OP/wait (zoneOperations.wait: returns at
//                     DONE or after ~2 min, maybe earlier; re-asked until DONE or deadline)
//   get_instance      GET   .../zones/Z/instances/N                     nullopt on 404
//   delete_instance   DELETE .../zones/Z/instances/N                    404 = already gone
//   list_instances    GET   .../aggregated/instances?filter=labels.K=V  (all zones), or one zone
//   serial_output     GET   .../instances/N/serialPort?port=1&start=S
//   default_service_account GET {base}/projects/P -> defaultServiceAccount, the account a VM
//                     created with serviceAccounts[].email "default" runs as
//                     (PROJECT_NUMBER-compute@developer.gserviceaccount.com)
// An insert operation is DONE even when it failed: the verdict is in operation.error.errors[]
// (ZONE_RESOURCE_POOL_EXHAUSTED[_WITH_DETAILS] = this zone is out of capacity, try another zone
// of the region; QUOTA_EXCEEDED = regional, other zones will not help). Stockouts may also come
// synchronously as HTTP 503 with the code in the message (cloud.md 1.4).
//
// Endpoint: https://compute.googleapis.com/compute/v1, overridden by GceOptions::endpoint or
// the CMF_COMPUTE_API environment variable (the emulator in tests; same name as startup.sh).
// Errors are cmf::Error with one line; server text is redacted and clipped; tokens never appear.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cmf/core/encoding.h"
#include "cmf/cloud/token_source.h"
#include "cmf/core/error.h"
#include "cmf/net/http.h"

namespace cmf::cloud {

inline constexpr const char* kComputeDefaultEndpoint = "https://compute.googleapis.com/compute/v1";
inline constexpr const char* kDebian12Family = "projects/debian-cloud/global/images/family/debian-12";

struct GceOptions {
    std::string endpoint = kComputeDefaultEndpoint;
    int max_attempts = 6;                              // per call, same requestId for inserts
    std::chrono::milliseconds initial_backoff{1000};   // doubled per attempt ...
    std::chrono::milliseconds max_backoff{10000};      // ... up to this
    std::chrono::milliseconds request_timeout{150000}; // operations.wait may hold ~2 min
    // Injected sleep (tests); default std::this_thread::sleep_for.
    std::function<void(std::chrono::milliseconds)> sleep;
};

// CMF_COMPUTE_API overrides the endpoint (emulator); everything else stays default.
inline GceOptions gce_options_from_env(const Env& env = process_env()) {
    GceOptions o;
    if (auto e = env("CMF_COMPUTE_API"); e && !e->empty()) {
        std::string v = *e;
        while (!v.empty() && v.back() == '/') v.pop_back();
        o.endpoint = v;
    }
    return o;
}

// A random (version 4) UUID for requestId.
inline std::string new_request_id() {
    std::random_device rd;
    std::mt19937_64 g((static_cast<std::uint64_t>(rd()) << 32) ^ rd());
    unsigned char b[16];
    for (int i = 0; i < 16; i += 8) {
        std::uint64_t x = g();
        for (int k = 0; k < 8; ++k) b[i + k] = static_cast<unsigned char>(x >> (8 * k));
    }
    b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
    b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
    static const char* hex = "0123456789abcdef";
    std::string s;
    for (int i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
        s += hex[b[i] >> 4];
        s += hex[b[i] & 15];
    }
    return s;
}

// GCE names and label values: RFC 1035 names [a-z]([-a-z0-9]*[a-z0-9])?, 1-63 characters.
inline bool is_gce_name(const std::string& s) {
    if (s.empty() || s.size() > 63 || !(s[0] >= 'a' && s[0] <= 'z') || s.back() == '-') return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    return true;
}
// Label keys start with a lower-case letter; keys and values <= 63 chars of [a-z0-9_-].
inline bool is_label_text(const std::string& s, bool key) {
    if (s.size() > 63 || (key && (s.empty() || !(s[0] >= 'a' && s[0] <= 'z')))) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return false;
    return true;
}
// Lower-cases and maps anything else to '-', clipped to 63: job ids become label values.
inline std::string to_label_value(const std::string& s) {
    std::string o;
    for (char c : s) {
        char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        o += ((l >= 'a' && l <= 'z') || (l >= '0' && l <= '9') || l == '_' || l == '-') ? l : '-';
    }
    if (o.size() > 63) o.resize(63);
    return o;
}

// "us-central1-a" -> "us-central1"
inline std::string region_of_zone(const std::string& zone) {
    auto d = zone.rfind('-');
    return d == std::string::npos ? zone : zone.substr(0, d);
}

struct InstanceSpec {
    std::string name;
    std::string zone;                   // us-central1-a
    std::string machine_type;           // e2-standard-8
    std::string disk_type = "pd-balanced";
    unsigned long disk_size_gb = 100;
    std::string source_image = kDebian12Family;
    std::vector<std::pair<std::string, std::string>> metadata;  // startup-script, factory-config, ...
    std::map<std::string, std::string> labels;
    std::string service_account = "default";
    std::vector<std::string> scopes = {std::string(kCloudPlatformScope)};
    std::optional<unsigned long> max_run_seconds;  // + instanceTerminationAction DELETE
    bool spot = false;
    std::string network = "global/networks/default";
    bool external_ip = true;  // the worker needs Hugging Face; no Cloud NAT assumed
    std::string description;
};

// Metadata limits (cloud.md 1.1): keys [a-zA-Z0-9-_] < 128 bytes, a value <= 256 KiB, all < 512 KB.
inline void check_metadata(const std::vector<std::pair<std::string, std::string>>& items) {
    std::size_t total = 0;
    for (const auto& [k, v] : items) {
        bool ok = !k.empty() && k.size() < 128;
        for (char c : k) ok &= std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
        if (!ok) fail(ErrorKind::usage, "GCE metadata key '" + k.substr(0, 60) + "' is not [a-zA-Z0-9-_], 1-127 characters");
        if (v.size() > 262144) fail(ErrorKind::usage, "GCE metadata value of '" + k + "' is larger than 256 KiB");
        total += k.size() + v.size();
    }
    if (total >= 512 * 1024) fail(ErrorKind::usage, "GCE metadata is larger than 512 KB in total");
}

// The Instance resource for instances.insert.
inline nlohmann::json instance_body(const InstanceSpec& s) {
    if (!is_gce_name(s.name)) fail(ErrorKind::usage, "GCE instance name '" + s.name + "' must match [a-z]([-a-z0-9]*[a-z0-9])?, 1-63 characters");
    if (s.zone.empty() || s.machine_type.empty()) fail(ErrorKind::usage, "GCE instance: zone and machine type are required");
    for (const auto& [k, v] : s.labels)
        if (!is_label_text(k, true) || !is_label_text(v, false))
            fail(ErrorKind::usage, "GCE label '" + k + "=" + v + "' must be lower-case [a-z0-9_-], at most 63 characters");
    check_metadata(s.metadata);
    nlohmann::json items = nlohmann::json::array();
    for (const auto& [k, v] : s.metadata) items.push_back({{"key", k}, {"value", v}});
    nlohmann::json nic = {{"network", s.network}};
    if (s.external_ip)
        nic["accessConfigs"] = nlohmann::json::array({{{"type", "ONE_TO_ONE_NAT"}, {"name", "External NAT"}, {"networkTier", "PREMIUM"}}});
    nlohmann::json sched = nlohmann::json::object();
    if (s.spot) {
        sched["provisioningModel"] = "SPOT";
        sched["automaticRestart"] = false;
        sched["onHostMaintenance"] = "TERMINATE";
        sched["instanceTerminationAction"] = "DELETE";
    } else {
        sched["provisioningModel"] = "STANDARD";
    }
    if (s.max_run_seconds) {
        sched["maxRunDuration"] = {{"seconds", std::to_string(*s.max_run_seconds)}, {"nanos", 0}};
        sched["instanceTerminationAction"] = "DELETE";
    }
    nlohmann::json body = {
        {"name", s.name},
        {"machineType", "zones/" + s.zone + "/machineTypes/" + s.machine_type},
        {"disks",
         nlohmann::json::array({{{"boot", true},
                                 {"autoDelete", true},
                                 {"type", "PERSISTENT"},
                                 {"initializeParams",
                                  {{"sourceImage", s.source_image},
                                   {"diskSizeGb", std::to_string(s.disk_size_gb)},
                                   {"diskType", "zones/" + s.zone + "/diskTypes/" + s.disk_type}}}}})},
        {"networkInterfaces", nlohmann::json::array({nic})},
        {"serviceAccounts", nlohmann::json::array({{{"email", s.service_account}, {"scopes", s.scopes}}})},
        {"metadata", {{"items", items}}},
        {"labels", s.labels},
        {"scheduling", sched}};
    if (!s.description.empty()) body["description"] = s.description;
    return body;
}

struct OperationError {
    std::string code;     // ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS, QUOTA_EXCEEDED, ...
    std::string message;
};

struct Operation {
    std::string name, zone, status, operation_type, target_link;
    std::vector<OperationError> errors;
    int http_error_status = 0;
    std::string http_error_message;
    bool done() const { return status == "DONE"; }
    bool failed() const { return !errors.empty(); }
};

inline Operation parse_operation(const nlohmann::json& j) {
    if (!j.is_object() || j.value("kind", std::string("compute#operation")) != "compute#operation" || !j.contains("name"))
        fail(ErrorKind::remote, "Compute API: reply is not an Operation");
    auto s = [&](const char* k) { return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string(); };
    Operation op;
    op.name = s("name");
    op.zone = s("zone");
    if (auto p = op.zone.rfind('/'); p != std::string::npos) op.zone = op.zone.substr(p + 1);
    op.status = s("status");
    op.operation_type = s("operationType");
    op.target_link = s("targetLink");
    op.http_error_message = s("httpErrorMessage");
    if (j.contains("httpErrorStatusCode") && j["httpErrorStatusCode"].is_number_integer())
        op.http_error_status = j["httpErrorStatusCode"].get<int>();
    if (j.contains("error") && j["error"].is_object() && j["error"].contains("errors") && j["error"]["errors"].is_array())
        for (const auto& e : j["error"]["errors"])
            if (e.is_object())
                op.errors.push_back({e.value("code", std::string()), one_line(e.value("message", std::string()))});
    return op;
}

enum class GceFailure { none, stockout, quota, other };

inline bool is_stockout_text(const std::string& s) { return s.find("ZONE_RESOURCE_POOL_EXHAUSTED") != std::string::npos; }

// Stockout: ZONE_RESOURCE_POOL_EXHAUSTED and ..._WITH_DETAILS (match both, cloud.md 1.4).
inline GceFailure classify(const std::vector<OperationError>& errors) {
    if (errors.empty()) return GceFailure::none;
    for (const auto& e : errors)
        if (is_stockout_text(e.code) || is_stockout_text(e.message)) return GceFailure::stockout;
    for (const auto& e : errors)
        if (e.code.find("QUOTA") != std::string::npos) return GceFailure::quota;
    return GceFailure::other;
}

inline std::string describe_errors(const std::vector<OperationError>& errors) {
    std::string o;
    for (const auto& e : errors) o += (o.empty() ? "" : "; ") + e.code + (e.message.empty() ? "" : ": " + e.message);
    return one_line(o);
}

// The Google error envelope {"error":{"code","message","errors":[{"reason","message"}]}} as errors.
inline std::vector<OperationError> parse_error_envelope(const std::string& body) {
    std::vector<OperationError> out;
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (!j.is_object() || !j.contains("error") || !j["error"].is_object()) return out;
    const auto& e = j["error"];
    std::string msg = e.value("message", std::string());
    std::string reason;
    if (e.contains("errors") && e["errors"].is_array() && !e["errors"].empty() && e["errors"][0].is_object())
        reason = e["errors"][0].value("reason", std::string());
    // a synchronous stockout carries its code in the message (cloud.md 1.4)
    std::string code = reason;
    if (is_stockout_text(msg)) code = msg.find("_WITH_DETAILS") != std::string::npos ? "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"
                                                                                   : "ZONE_RESOURCE_POOL_EXHAUSTED";
    else if (msg.find("QUOTA_EXCEEDED") != std::string::npos || reason == "quotaExceeded") code = "QUOTA_EXCEEDED";
    out.push_back({code, one_line(msg)});
    return out;
}

struct Instance {
    std::string name, zone, status, status_message, machine_type, creation_timestamp;
    std::map<std::string, std::string> labels;
    nlohmann::json raw;
};

inline Instance parse_instance(const nlohmann::json& j) {
    if (!j.is_object() || !j.contains("name")) fail(ErrorKind::remote, "Compute API: reply is not an Instance");
    auto s = [&](const char* k) { return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string(); };
    auto last = [](std::string v) {
        auto p = v.rfind('/');
        return p == std::string::npos ? v : v.substr(p + 1);
    };
    Instance i;
    i.name = s("name");
    i.zone = last(s("zone"));
    i.status = s("status");
    i.status_message = s("statusMessage");
    i.machine_type = last(s("machineType"));
    i.creation_timestamp = s("creationTimestamp");
    if (j.contains("labels") && j["labels"].is_object())
        for (auto it = j["labels"].begin(); it != j["labels"].end(); ++it)
            if (it->is_string()) i.labels[it.key()] = it->get<std::string>();
    i.raw = j;
    return i;
}

// Result of an insert attempt in one zone.
struct InsertResult {
    GceFailure failure = GceFailure::none;
    std::string error;       // one line, for messages
    std::string request_id;  // what was sent (tests)
    std::optional<Operation> operation;
    bool ok() const { return failure == GceFailure::none; }
};

class GceClient {
public:
    GceClient(std::shared_ptr<net::HttpClient> http, std::shared_ptr<TokenSource> tokens, GceOptions options = gce_options_from_env())
        : http_(std::move(http)), tokens_(std::move(tokens)), opt_(std::move(options)) {
        while (!opt_.endpoint.empty() && opt_.endpoint.back() == '/') opt_.endpoint.pop_back();
        if (!tokens_) fail(ErrorKind::internal, "GceClient needs a token source");
        if (!opt_.sleep) opt_.sleep = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
    }
    const GceOptions& options() const { return opt_; }

    std::string zone_url(const std::string& project, const std::string& zone) const {
        return opt_.endpoint + "/projects/" + percent_encode(project) + "/zones/" + percent_encode(zone);
    }

    // POSTs the insert (retrying transient failures with the same requestId) and waits for the
    // operation. Stockout / quota / other errors come back classified, not thrown; transport
    // failures after all retries, auth failures and malformed replies throw.
    InsertResult insert_instance(const std::string& project, const InstanceSpec& spec,
                                 std::chrono::seconds wait_deadline = std::chrono::seconds(600),
                                 std::string request_id = "") {
        InsertResult res;
        res.request_id = request_id.empty() ? new_request_id() : std::move(request_id);
        const std::string body = instance_body(spec).dump();
        const std::string url = zone_url(project, spec.zone) + "/instances?requestId=" + res.request_id;
        net::Response r = call("POST", url, body, "instances.insert " + spec.name, /*stop_on_stockout=*/true);
        if (r.status < 200 || r.status >= 300) {
            auto errs = parse_error_envelope(r.body);
            if (errs.empty()) errs.push_back({"HTTP_" + std::to_string(r.status), one_line(r.body)});
            res.failure = classify(errs);
            if (res.failure == GceFailure::none) res.failure = GceFailure::other;
            res.error = "HTTP " + std::to_string(r.status) + ": " + describe_errors(errs);
            return res;
        }
        Operation op = parse_operation(parse_json(r.body, "instances.insert"));
        if (op.zone.empty()) op.zone = spec.zone;
        if (!op.done()) op = wait_operation(project, op.zone, op.name, wait_deadline);
        res.operation = op;
        if (!op.done()) {
            res.failure = GceFailure::other;
            res.error = "operation " + op.name + " did not finish within " + std::to_string(wait_deadline.count()) + " s";
        } else if (op.failed()) {
            res.failure = classify(op.errors);
            res.error = describe_errors(op.errors);
        }
        return res;
    }

    // zoneOperations.wait until DONE or the deadline; returns the last state seen.
    Operation wait_operation(const std::string& project, const std::string& zone, const std::string& name,
                             std::chrono::seconds deadline = std::chrono::seconds(600)) {
        auto until = std::chrono::steady_clock::now() + deadline;
        Operation op;
        std::chrono::milliseconds pause{250};
        for (;;) {
            net::Response r = call("POST", zone_url(project, zone) + "/operations/" + percent_encode(name) + "/wait", "",
                                   "zoneOperations.wait " + name, false);
            if (r.status == 404) fail(ErrorKind::remote, "Compute API: operation " + name + " not found");
            check(r, "zoneOperations.wait " + name);
            op = parse_operation(parse_json(r.body, "zoneOperations.wait"));
            if (op.done() || std::chrono::steady_clock::now() >= until) return op;
            // wait may return early under load: ask again, briefly paced
            opt_.sleep(pause);
            pause = std::min(pause * 2, std::chrono::milliseconds(5000));
        }
    }

    std::optional<Instance> get_instance(const std::string& project, const std::string& zone, const std::string& name) {
        net::Response r = call("GET", zone_url(project, zone) + "/instances/" + percent_encode(name), "", "instances.get " + name, false);
        if (r.status == 404) return std::nullopt;
        check(r, "instances.get " + name);
        return parse_instance(parse_json(r.body, "instances.get"));
    }

    // Deletes the VM (its boot disk has autoDelete). 404 = already gone: returns quietly.
    // Does not wait for the operation; see delete_instance_and_wait.
    void delete_instance(const std::string& project, const std::string& zone, const std::string& name) {
        (void)start_delete(project, zone, name);
    }

    // Deletes and waits (bounded) for the operation; true when the VM is gone or going.
    bool delete_instance_and_wait(const std::string& project, const std::string& zone, const std::string& name,
                                  std::chrono::seconds deadline = std::chrono::seconds(120)) {
        auto op = start_delete(project, zone, name);
        if (!op) return true;
        if (op->done()) return !op->failed();
        Operation o = wait_operation(project, zone, op->name, deadline);
        return o.done() && !o.failed();
    }

    // The project's Compute Engine default service account (projects.get defaultServiceAccount):
    // who a VM created with service account "default" is, for IAM bindings made for it.
    std::string default_service_account(const std::string& project) {
        net::Response r = call("GET", opt_.endpoint + "/projects/" + percent_encode(project), "", "projects.get " + project, false);
        check(r, "projects.get " + project);
        const nlohmann::json j = parse_json(r.body, "projects.get");
        const std::string email = j.is_object() && j.contains("defaultServiceAccount") && j["defaultServiceAccount"].is_string()
                                      ? j["defaultServiceAccount"].get<std::string>()
                                      : "";
        if (email.empty())
            fail(ErrorKind::remote, "project " + project + " has no Compute Engine default service account; set GCE_SERVICE_ACCOUNT to the worker VM's account");
        return email;
    }

    // Instances carrying label key=value: all zones (aggregatedList) when zone is empty.
    std::vector<Instance> list_instances(const std::string& project, const std::string& label_key, const std::string& label_value,
                                         const std::string& zone = "") {
        std::vector<Instance> out;
        std::string filter = label_key.empty() ? "" : "labels." + label_key + "=" + label_value;
        std::string base = zone.empty() ? opt_.endpoint + "/projects/" + percent_encode(project) + "/aggregated/instances"
                                        : zone_url(project, zone) + "/instances";
        std::string token;
        for (int page = 0; page < 1000; ++page) {
            std::vector<std::pair<std::string, std::string>> q;
            if (!filter.empty()) q.emplace_back("filter", filter);
            q.emplace_back("maxResults", "500");
            if (!token.empty()) q.emplace_back("pageToken", token);
            net::Response r = call("GET", base + "?" + form_encode(q), "", "instances.list", false);
            check(r, "instances.list");
            auto j = parse_json(r.body, "instances.list");
            if (j.contains("items")) {
                const auto& items = j["items"];
                if (zone.empty() && items.is_object()) {
                    for (auto it = items.begin(); it != items.end(); ++it)
                        if (it->is_object() && it->contains("instances") && (*it)["instances"].is_array())
                            for (const auto& i : (*it)["instances"]) out.push_back(parse_instance(i));
                } else if (items.is_array()) {
                    for (const auto& i : items) out.push_back(parse_instance(i));
                }
            }
            std::string next = j.value("nextPageToken", std::string());
            if (next.empty() || next == token) break;
            token = next;
        }
        return out;
    }

    // Serial port 1 output from byte `start` (negative: the last -start bytes); `next` is the
    // start of the following call. nullopt when the instance is gone.
    struct SerialOutput {
        std::string contents;
        long long start = 0, next = 0;
    };
    std::optional<SerialOutput> serial_output(const std::string& project, const std::string& zone, const std::string& name,
                                              long long start = 0) {
        net::Response r = call("GET", zone_url(project, zone) + "/instances/" + percent_encode(name) + "/serialPort?port=1&start=" +
                                          std::to_string(start), "", "instances.getSerialPortOutput " + name, false);
        if (r.status == 404) return std::nullopt;
        check(r, "instances.getSerialPortOutput " + name);
        auto j = parse_json(r.body, "serialPort");
        SerialOutput s;
        s.contents = j.value("contents", std::string());
        auto num = [&](const char* k) -> long long {
            if (!j.contains(k)) return 0;
            if (j[k].is_number_integer()) return j[k].get<long long>();
            if (j[k].is_string()) try {
                    return std::stoll(j[k].get<std::string>());
                } catch (...) {
                }
            return 0;
        };
        s.start = num("start");
        s.next = num("next");
        return s;
    }

private:
    std::optional<Operation> start_delete(const std::string& project, const std::string& zone, const std::string& name) {
        net::Response r = call("DELETE", zone_url(project, zone) + "/instances/" + percent_encode(name), "", "instances.delete " + name, false);
        if (r.status == 404) return std::nullopt;
        check(r, "instances.delete " + name);
        Operation op = parse_operation(parse_json(r.body, "instances.delete"));
        if (op.zone.empty()) op.zone = zone;
        return op;
    }

    static nlohmann::json parse_json(const std::string& body, const std::string& what) {
        auto j = nlohmann::json::parse(body, nullptr, false);
        if (j.is_discarded()) fail(ErrorKind::remote, "Compute API: " + what + " reply is not JSON");
        return j;
    }

    void check(const net::Response& r, const std::string& what) const {
        if (r.status >= 200 && r.status < 300) return;
        auto errs = parse_error_envelope(r.body);
        std::string detail = errs.empty() ? "" : ": " + describe_errors(errs);
        ErrorKind k = (r.status == 401 || r.status == 403) ? ErrorKind::auth : ErrorKind::remote;
        fail(k, "Compute API: " + what + " returned HTTP " + std::to_string(r.status) + detail);
    }

    // One API call with our own retry loop (the HttpClient is asked for a single attempt so
    // that a 503 stockout is seen at once, and an insert is repeated only with its requestId).
    // Retries transport errors, 408, 429, 5xx; refreshes the token once on 401.
    net::Response call(const std::string& method, const std::string& url, const std::string& body, const std::string& what,
                       bool stop_on_stockout) {
        std::chrono::milliseconds backoff = opt_.initial_backoff;
        bool refreshed = false;
        for (int attempt = 1;; ++attempt) {
            net::Request req;
            req.method = method;
            req.url = net::Url::parse(url);
            req.body = body;
            if (!body.empty() || method == "POST") req.headers.set("Content-Type", "application/json");
            req.headers.set("Authorization", "Bearer " + tokens_->access_token());
            if (auto qp = tokens_->quota_project()) req.headers.set("x-goog-user-project", *qp);
            req.idempotent = false;  // no hidden retries below us: this loop decides
            req.timeout = opt_.request_timeout;
            std::optional<net::Response> r;
            std::string transport_error;
            try {
                r = http_->send(req);
            } catch (const Error& e) {
                if (e.kind() != ErrorKind::network) throw;
                transport_error = e.what();
            }
            if (r && r->status == 401 && !refreshed) {
                refreshed = true;
                tokens_->invalidate();
                --attempt;
                continue;
            }
            bool retry = !r || net::RetryPolicy::retryable_status(r->status);
            if (r && stop_on_stockout && r->status == 503 && is_stockout_text(r->body)) retry = false;
            if (!retry) return *r;
            if (attempt >= opt_.max_attempts) {
                if (r) return *r;
                fail(ErrorKind::network, "Compute API: " + what + " failed after " + std::to_string(attempt) + " attempts: " +
                                             one_line(transport_error));
            }
            opt_.sleep(backoff);
            backoff = std::min(backoff * 2, opt_.max_backoff);
        }
    }

    std::shared_ptr<net::HttpClient> http_;
    std::shared_ptr<TokenSource> tokens_;
    GceOptions opt_;
};

}  // namespace cmf::cloud
