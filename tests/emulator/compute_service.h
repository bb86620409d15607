// Emulated Compute Engine API v1 (the subset cmf uses; shared/research/cloud.md section 1):
//
//   POST   /compute/v1/projects/P/zones/Z/instances[?requestId=UUID]   instances.insert -> Operation
//   GET    /compute/v1/projects/P/zones/Z/instances[?filter=labels.K=V]  instances.list
//   GET    /compute/v1/projects/P/aggregated/instances[?filter=...]       {"items":{"zones/Z":{"instances":[..]}}}
//   GET    /compute/v1/projects/P/zones/Z/instances/N                     instances.get (404 notFound)
//   DELETE /compute/v1/projects/P/zones/Z/instances/N[?requestId=]        -> Operation (404 notFound)
//   GET    /compute/v1/projects/P/zones/Z/instances/N/serialPort?port=1&start=S
//   GET    /compute/v1/projects/P                                        projects.get (defaultServiceAccount)
//   GET    /compute/v1/projects/P/zones/Z/operations/OP                   zoneOperations.get
//   POST   /compute/v1/projects/P/zones/Z/operations/OP/wait              blocks until DONE (<= 2 s here)
//   POST   /_emu/compute/config     merges {"stockout_zones":[..], "sync_stockout":bool,
//                                   "quota_exceeded_zones":[..], "launch":bool, ...} into the config
//   GET    /_emu/compute/stats      {"inserts","insert_request_ids":[..],"insert_bodies":[..],
//                                    "deletes","instances":[{name,zone,status,pid,exited,exit_status}],
//                                    "launched","deleted":[names]}
//
// Faithful points: every mutation answers 200 with an Operation (status RUNNING, DONE on the
// next get/wait); a failed insert is an Operation DONE with error.errors[] and leaves no instance
// (stockout: ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS; or synchronously HTTP 503 with the code
// in the message when "sync_stockout"); requestId de-duplicates inserts (same Operation back, no
// second instance); without it a second insert of a name is 409 alreadyExists. machineType and
// diskType must be partial URLs naming the path's zone; int64s are accepted as strings;
// maxRunDuration needs instanceTerminationAction. Errors use Google's envelope. A Bearer token is
// required (one issued by google_auth_service.h when "require_auth").
//
// The guest: after a successful insert the instance is RUNNING and its "boot" runs as a local
// process group, with the instance's metadata published on the emulated metadata server
// (google_auth_service.h: instance name, zone, project, attributes = the metadata items, and
// the service account it was created with, whose principal the metadata tokens carry), so
// the guest reads it exactly as on GCE. The environment points the guest at the emulator:
// GCE_METADATA_HOST, CMF_METADATA_ROOT, STORAGE_EMULATOR_HOST, CMF_STORAGE_API, CMF_COMPUTE_API,
// CMF_SECRET_MANAGER_API, HF_ENDPOINT, SSL_CERT_FILE, CURL_CA_BUNDLE, CMF_INSTALL_DIR, plus "worker_env".
//   "guest": "startup-script" (default) runs the `startup-script` item with bash, as the guest
//            agent does (it downloads the cmf binary from the emulated GCS and runs the worker);
//   "guest": "cmf" runs `<cmf_binary> worker --job <factory-config file> --work DIR`;
//   "guest": "none" runs nothing.
// Its output is the serial port. When the process ends the VM stays RUNNING (as a VM whose
// startup script finished). DELETE marks it STOPPING, kills the process group after
// "delete_delay_ms" (the guest may still be answering its own self-delete), then removes it.
// One metadata server serves all instances: the last inserted instance's metadata wins.
//
// Config ("compute" key of --config):
//   {"stockout_zones": [], "sync_stockout": false, "quota_exceeded_zones": [], "require_auth": false,
//    "launch": true, "guest": "startup-script", "cmf_binary": "/path/cmf", "worker_env": {},
//    ("worker_env" values may say ${EMU_HTTPS_BASE} / ${EMU_HTTP_BASE} for the emulator's address)
//    "delete_delay_ms": 300, "project": "emu-project"}
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "context.h"
#include "control_service.h"
#include "google_auth_service.h"
#include "handler.h"

namespace cmf::emu {

struct ComputeInstance {
    std::string project, zone, name, id, status;
    nlohmann::json resource;
    std::filesystem::path dir;  // state_dir/compute/<name>-<id>
    pid_t pid = -1;             // the guest's process group leader
    bool exited = false;
    int exit_status = -1;
};

struct ComputeState {
    std::mutex mu;
    std::condition_variable cv;
    nlohmann::json config = nlohmann::json::object();
    std::map<std::string, std::shared_ptr<ComputeInstance>> instances;  // "P/Z/N"
    std::map<std::string, nlohmann::json> operations;                   // op name -> Operation
    std::map<std::string, std::string> request_ops;                     // requestId -> op name
    std::set<std::string> finishing;                                    // ops turning DONE at next look
    std::uint64_t next_id = 7000000000000000001ull, inserts = 0, deletes = 0, launched = 0;
    std::vector<std::string> insert_request_ids, deleted;
    std::vector<nlohmann::json> insert_bodies;
    std::vector<std::shared_ptr<ComputeInstance>> all;  // every instance ever made (stats)
};

inline std::shared_ptr<ComputeState> compute_state(Context& ctx) {
    return ctx.service_state<ComputeState>([&](ComputeState& st) {
        ComputeState* s = &st;
        s->config = {{"stockout_zones", nlohmann::json::array()},
                     {"sync_stockout", false},
                     {"quota_exceeded_zones", nlohmann::json::array()},
                     {"require_auth", false},
                     {"launch", true},
                     {"guest", "startup-script"},
                     {"cmf_binary", ""},
                     {"worker_env", nlohmann::json::object()},
                     {"delete_delay_ms", 300}};
        if (ctx.config.is_object() && ctx.config.contains("compute") && ctx.config["compute"].is_object())
            s->config.merge_patch(ctx.config["compute"]);
    });
}

namespace compute_detail {

inline Response gce_error(int code, const std::string& reason, const std::string& message) {
    return json_response(code, {{"error",
                                 {{"code", code},
                                  {"message", message},
                                  {"errors", nlohmann::json::array({{{"domain", "global"}, {"reason", reason}, {"message", message}}})}}}});
}

inline std::string now_rfc3339() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[40];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S.000-00:00", &tm);
    return buf;
}

inline bool valid_name(const std::string& s) {
    static const std::regex re("[a-z]([-a-z0-9]{0,61}[a-z0-9])?");
    return std::regex_match(s, re);
}

inline bool in_list(const nlohmann::json& cfg, const char* key, const std::string& v) {
    if (!cfg.contains(key) || !cfg[key].is_array()) return false;
    for (const auto& x : cfg[key])
        if (x.is_string() && x.get<std::string>() == v) return true;
    return false;
}

// "labels.k=v", "labels.k = \"v\"", "(labels.k eq v)", terms joined by spaces / AND.
inline bool matches_filter(const nlohmann::json& inst, const std::string& filter) {
    static const std::regex term(R"re(labels\.([a-z][a-z0-9_-]*)\s*(=|eq)\s*"?([a-z0-9_-]*)"?)re");
    auto begin = std::sregex_iterator(filter.begin(), filter.end(), term);
    for (auto it = begin; it != std::sregex_iterator(); ++it) {
        const auto& m = *it;
        std::string k = m[1], v = m[3];
        if (!inst.contains("labels") || !inst["labels"].contains(k) || inst["labels"][k] != v) return false;
    }
    return true;
}

// A value of an int64 field: JSON string (as the API sends) or number.
inline std::optional<long long> int64_field(const nlohmann::json& v) {
    if (v.is_number_integer()) return v.get<long long>();
    if (v.is_string()) {
        const auto& s = v.get_ref<const std::string&>();
        if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
        return std::stoll(s);
    }
    return std::nullopt;
}

// Forks the guest as its own process group under a tiny supervisor (the forked child) that
// kills the group when the emulator dies (PR_SET_PDEATHSIG), and reaps the guest.
// Everything the child needs is prepared before fork: only async-signal-safe calls after it.
inline pid_t spawn_guest(const std::vector<std::string>& argv_s, const std::vector<std::string>& env_s,
                         const std::filesystem::path& dir, const std::filesystem::path& log) {
    std::vector<char*> argv, envp;
    for (const auto& a : argv_s) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : env_s) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    int logfd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int nullfd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (logfd < 0 || nullfd < 0) throw std::runtime_error("compute emulator: cannot open " + log.string());
    const std::string dir_s = dir.string();
    const pid_t parent = ::getpid();
    pid_t sup = ::fork();
    if (sup < 0) {
        ::close(logfd);
        ::close(nullfd);
        throw std::runtime_error("compute emulator: fork failed");
    }
    if (sup == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (::getppid() != parent) ::_exit(111);
        ::setpgid(0, 0);
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGTERM);
        sigaddset(&s, SIGINT);
        sigaddset(&s, SIGCHLD);
        sigprocmask(SIG_BLOCK, &s, nullptr);
        pid_t g = ::fork();
        if (g == 0) {
            sigset_t none;
            sigemptyset(&none);
            sigprocmask(SIG_SETMASK, &none, nullptr);
            ::signal(SIGPIPE, SIG_DFL);
            ::dup2(nullfd, 0);
            ::dup2(logfd, 1);
            ::dup2(logfd, 2);
            if (::chdir(dir_s.c_str()) != 0) ::_exit(126);
            ::execve(argv[0], argv.data(), envp.data());
            ::_exit(127);
        }
        if (g < 0) ::_exit(112);
        for (;;) {
            int sig = 0;
            sigwait(&s, &sig);
            if (sig == SIGCHLD) {
                int st = 0;
                if (::waitpid(g, &st, WNOHANG) == g) ::_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
            } else {
                ::kill(0, SIGKILL);  // the emulator went away: take the whole guest down
            }
        }
    }
    ::close(logfd);
    ::close(nullfd);
    ::setpgid(sup, sup);  // also from here: no race with the child's own setpgid
    return sup;
}

}  // namespace compute_detail

inline Handler make_compute_service(Context& ctx) {
    using namespace compute_detail;
    auto st = compute_state(ctx);
    Context* cp = &ctx;
    const std::string api = "/compute/v1/projects/";

    auto op_json = [cp, api](const std::string& project, const std::string& zone, const std::string& type, const std::string& target,
                        const std::string& id, std::uint64_t op_id) {
        std::string name = "operation-" + std::to_string(op_id) + "-" + type;
        std::string zurl = cp->https_base + api + project + "/zones/" + zone;
        return nlohmann::json{{"kind", "compute#operation"},
                              {"id", std::to_string(op_id)},
                              {"name", name},
                              {"zone", zurl},
                              {"operationType", type},
                              {"targetLink", zurl + "/instances/" + target},
                              {"targetId", id},
                              {"status", "RUNNING"},
                              {"progress", 0},
                              {"insertTime", now_rfc3339()},
                              {"startTime", now_rfc3339()},
                              {"selfLink", zurl + "/operations/" + name}};
    };

    // Turns an op DONE (caller holds st->mu).
    auto finish_op = [st](nlohmann::json& op) {
        if (op["status"] == "DONE") return;
        if (op["operationType"] == "delete" && !st->finishing.count(op["name"].get<std::string>())) return;  // still stopping
        op["status"] = "DONE";
        op["progress"] = 100;
        op["endTime"] = now_rfc3339();
    };

    // Boots the guest of a new instance (caller holds st->mu).
    auto boot = [st, cp](const std::shared_ptr<ComputeInstance>& inst, const nlohmann::json& body) {
        nlohmann::json attrs = nlohmann::json::object();
        if (body.contains("metadata") && body["metadata"].contains("items"))
            for (const auto& it : body["metadata"]["items"]) attrs[it.value("key", "")] = it.value("value", "");
        {
            auto g = google_auth_state(*cp);
            std::lock_guard glock(g->mu);
            g->metadata["instance_name"] = inst->name;
            // the VM runs as the account it was created with ("default": the project's Compute
            // Engine default account); the metadata server's tokens speak for it
            std::string sa = "default";
            if (body.contains("serviceAccounts") && body["serviceAccounts"].is_array() && !body["serviceAccounts"].empty() &&
                body["serviceAccounts"][0].is_object())
                sa = body["serviceAccounts"][0].value("email", sa);
            if (sa == "default") sa = g->metadata.value("numeric_project_id", std::string("123456789012")) + "-compute@developer.gserviceaccount.com";
            g->metadata["service_account_email"] = sa;
            g->metadata["zone"] = inst->zone;
            g->metadata["project_id"] = inst->project;
            g->metadata["instance_id"] = inst->id;
            g->metadata["preempted"] = "FALSE";
            g->metadata["attributes"] = attrs;  // replaced, not merged: no keys of an earlier VM
        }
        const auto& cfg = st->config;
        if (!cfg.value("launch", true)) return;
        const std::string guest = cfg.value("guest", std::string("startup-script"));
        if (guest == "none") return;
        std::filesystem::create_directories(inst->dir / "tmp");
        std::vector<std::string> argv;
        if (guest == "cmf") {
            std::string bin = cfg.value("cmf_binary", std::string());
            if (bin.empty() || !attrs.contains("factory-config")) return;
            std::ofstream(inst->dir / "job.json") << attrs["factory-config"].get<std::string>();
            argv = {bin, "worker", "--job", (inst->dir / "job.json").string(), "--work", (inst->dir / "work").string()};
        } else {
            if (!attrs.contains("startup-script")) return;
            std::ofstream(inst->dir / "startup-script") << attrs["startup-script"].get<std::string>();
            argv = {"/bin/bash", (inst->dir / "startup-script").string()};
        }
        auto http_hostport = cp->http_base.substr(cp->http_base.find("://") + 3);
        std::string ca = (cp->state_dir / "ca.pem").string();
        std::vector<std::string> env = {
            "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME=" + inst->dir.string(),
            "TMPDIR=" + (inst->dir / "tmp").string(),
            "GCE_METADATA_HOST=" + http_hostport,
            "CMF_METADATA_ROOT=" + cp->http_base + "/computeMetadata/v1",
            "STORAGE_EMULATOR_HOST=" + cp->https_base,
            "CMF_STORAGE_API=" + cp->https_base,
            "CMF_COMPUTE_API=" + cp->https_base + "/compute/v1",
            "CMF_SECRET_MANAGER_API=" + cp->https_base,
            "HF_ENDPOINT=" + cp->https_base,
            "SSL_CERT_FILE=" + ca,
            "CURL_CA_BUNDLE=" + ca,
            "CMF_INSTALL_DIR=" + (inst->dir / "install").string(),
            "NO_PROXY=*",
            "no_proxy=*"};
        // the emulated VM shares the host's cores: the host's engine thread setting goes along
        if (const char* t = std::getenv("CMF_ENGINE_THREADS"); t && *t) env.push_back(std::string("CMF_ENGINE_THREADS=") + t);
        if (cfg.contains("worker_env") && cfg["worker_env"].is_object())
            for (auto it = cfg["worker_env"].begin(); it != cfg["worker_env"].end(); ++it) {
                // "${EMU_HTTPS_BASE}" / "${EMU_HTTP_BASE}" stand for this emulator's own address
                std::string v = it->is_string() ? it->get<std::string>() : it->dump();
                for (const auto& [ph, val] : {std::pair<std::string, std::string>{"${EMU_HTTPS_BASE}", cp->https_base},
                                              {"${EMU_HTTP_BASE}", cp->http_base}})
                    for (std::size_t at; (at = v.find(ph)) != std::string::npos;) v.replace(at, ph.size(), val);
                env.push_back(it.key() + "=" + v);
            }
        // The thread that forks is the one that waits: PR_SET_PDEATHSIG fires when the forking
        // *thread* ends, so it must live as long as the guest (or the emulator).
        std::promise<pid_t> started;
        auto pid_future = started.get_future();
        std::thread([st, inst, argv, env, started = std::move(started)]() mutable {
            pid_t pid = -1;
            try {
                pid = spawn_guest(argv, env, inst->dir, inst->dir / "serial.log");
            } catch (...) {
            }
            started.set_value(pid);
            if (pid <= 0) return;
            int status = 0;
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            std::lock_guard lock(st->mu);
            inst->exited = true;
            inst->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            st->cv.notify_all();
        }).detach();
        inst->pid = pid_future.get();
        if (inst->pid <= 0) throw std::runtime_error("cannot start the guest process");
        ++st->launched;
    };

    return [st, cp, api, op_json, finish_op, boot](const Request& req) -> std::optional<Response> {
        const std::string path = path_of(req.target);

        if (path == "/_emu/compute/config") {
            if (req.method != "POST") return json_response(405, {{"error", "POST"}});
            auto j = nlohmann::json::parse(req.body, nullptr, false);
            if (!j.is_object()) return json_response(400, {{"error", "JSON object expected"}});
            std::lock_guard lock(st->mu);
            st->config.merge_patch(j);
            return json_response(200, st->config);
        }
        if (path == "/_emu/compute/stats") {
            std::lock_guard lock(st->mu);
            nlohmann::json insts = nlohmann::json::array();
            for (const auto& i : st->all)
                insts.push_back({{"name", i->name}, {"zone", i->zone}, {"status", i->status}, {"pid", i->pid},
                                 {"exited", i->exited}, {"exit_status", i->exit_status}, {"dir", i->dir.string()}});
            return json_response(200, {{"inserts", st->inserts},
                                       {"insert_request_ids", st->insert_request_ids},
                                       {"insert_bodies", st->insert_bodies},
                                       {"deletes", st->deletes},
                                       {"launched", st->launched},
                                       {"deleted", st->deleted},
                                       {"instances", insts},
                                       {"live", st->instances.size()}});
        }
        if (path.rfind(api, 0) != 0) return std::nullopt;

        // ---- auth
        auto authz = req.headers.get("Authorization").value_or("");
        if (authz.rfind("Bearer ", 0) != 0 || authz.size() <= 7)
            return gce_error(401, "required", "Request is missing required authentication credential.");
        {
            bool require = false;
            {
                std::lock_guard lock(st->mu);
                require = st->config.value("require_auth", false);
            }
            if (require && !token_registry(*cp).valid(authz.substr(7)))
                return gce_error(401, "authError", "Request had invalid authentication credentials.");
        }

        // ---- route: P/zones/Z/(instances[/N[/serialPort]] | operations/OP[/wait]) | P/aggregated/instances
        std::vector<std::string> seg;
        {
            std::string rest = path.substr(api.size());
            std::size_t i = 0;
            while (i <= rest.size()) {
                auto j = rest.find('/', i);
                if (j == std::string::npos) j = rest.size();
                seg.push_back(*cmf::percent_decode(rest.substr(i, j - i)));
                i = j + 1;
            }
        }
        auto not_found = [&](const std::string& what) {
            return gce_error(404, "notFound", "The resource '" + what + "' was not found");
        };
        if (seg.size() == 1 && req.method == "GET") {  // projects.get: who "default" is
            auto g = google_auth_state(*cp);
            std::string number;
            {
                std::lock_guard glock(g->mu);
                number = g->metadata.value("numeric_project_id", std::string("123456789012"));
            }
            return json_response(200, {{"kind", "compute#project"}, {"name", seg[0]}, {"id", number},
                                       {"defaultServiceAccount", number + "-compute@developer.gserviceaccount.com"}});
        }
        if (seg.size() < 3) return not_found(path);
        const std::string project = seg[0];
        auto list_reply = [&](const std::string& zone_filter, bool aggregated) {
            std::string filter = query_param(req.target, "filter").value_or("");
            std::lock_guard lock(st->mu);
            nlohmann::json items = aggregated ? nlohmann::json::object() : nlohmann::json::array();
            for (const auto& [key, inst] : st->instances) {
                if (inst->project != project) continue;
                if (!zone_filter.empty() && inst->zone != zone_filter) continue;
                nlohmann::json r = inst->resource;
                r["status"] = inst->status;
                if (!matches_filter(r, filter)) continue;
                if (aggregated) items["zones/" + inst->zone]["instances"].push_back(r);
                else items.push_back(r);
            }
            nlohmann::json out = {{"kind", aggregated ? "compute#instanceAggregatedList" : "compute#instanceList"},
                                  {"id", "projects/" + project + "/instances"}};
            if (!items.empty()) out["items"] = items;
            return json_response(200, out);
        };
        if (seg[1] == "aggregated" && seg.size() == 3 && seg[2] == "instances" && req.method == "GET") return list_reply("", true);
        if (seg[1] != "zones" || seg.size() < 4) return not_found(path);
        const std::string zone = seg[2];
        static const std::regex zone_re("[a-z]+-[a-z]+[0-9]+-[a-z]");
        if (!std::regex_match(zone, zone_re)) return gce_error(400, "invalid", "Invalid value for field 'zone': '" + zone + "'. Unknown zone.");

        // ---- operations
        if (seg[3] == "operations" && seg.size() >= 5) {
            const std::string name = seg[4];
            bool wait = seg.size() == 6 && seg[5] == "wait" && req.method == "POST";
            if (!wait && !(seg.size() == 5 && req.method == "GET")) return gce_error(405, "badRequest", "method not allowed");
            std::unique_lock lock(st->mu);
            auto it = st->operations.find(name);
            if (it == st->operations.end()) return not_found("projects/" + project + "/zones/" + zone + "/operations/" + name);
            if (wait) st->cv.wait_for(lock, std::chrono::seconds(2), [&] {
                finish_op(st->operations[name]);
                return st->operations[name]["status"] == "DONE";
            });
            else finish_op(it->second);
            return json_response(200, st->operations[name]);
        }
        if (seg[3] != "instances") return not_found(path);

        // ---- instances.list
        if (seg.size() == 4 && req.method == "GET") return list_reply(zone, false);

        // ---- instances.insert
        if (seg.size() == 4 && req.method == "POST") {
            auto body = nlohmann::json::parse(req.body, nullptr, false);
            if (!body.is_object()) return gce_error(400, "parseError", "Parse Error");
            const std::string rid = query_param(req.target, "requestId").value_or("");
            std::unique_lock lock(st->mu);
            ++st->inserts;
            st->insert_request_ids.push_back(rid);
            st->insert_bodies.push_back(body);
            if (!rid.empty()) {
                auto r = st->request_ops.find(rid);
                if (r != st->request_ops.end()) return json_response(200, st->operations[r->second]);  // de-duplicated
            }
            const std::string name = body.value("name", "");
            if (!valid_name(name))
                return gce_error(400, "invalid", "Invalid value for field 'resource.name': '" + name +
                                                     "'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'");
            const std::string mt = body.value("machineType", "");
            if (!std::regex_match(mt, std::regex("(.*/)?zones/" + zone + "/machineTypes/[a-z0-9-]+")))
                return gce_error(400, "invalid", "Invalid value for field 'resource.machineType': '" + mt +
                                                     "'. Machine type must be a partial URL naming zone " + zone + ".");
            if (!body.contains("disks") || !body["disks"].is_array() || body["disks"].empty())
                return gce_error(400, "required", "Required field 'resource.disks' not specified");
            for (const auto& d : body["disks"]) {
                const auto& ip = d.value("initializeParams", nlohmann::json::object());
                if (ip.contains("diskSizeGb") && !int64_field(ip["diskSizeGb"]))
                    return gce_error(400, "invalid", "Invalid value for field 'resource.disks[0].initializeParams.diskSizeGb'");
                std::string dt = ip.value("diskType", "");
                if (!dt.empty() && !std::regex_match(dt, std::regex("(.*/)?zones/" + zone + "/diskTypes/[a-z0-9-]+")))
                    return gce_error(400, "invalid", "Invalid value for field 'resource.disks[0].initializeParams.diskType': '" + dt + "'");
                if (ip.value("sourceImage", "").empty())
                    return gce_error(400, "required", "Required field 'resource.disks[0].initializeParams.sourceImage' not specified");
            }
            if (body.contains("scheduling")) {
                const auto& s = body["scheduling"];
                if (s.contains("maxRunDuration")) {
                    if (!s["maxRunDuration"].contains("seconds") || !int64_field(s["maxRunDuration"]["seconds"]))
                        return gce_error(400, "invalid", "Invalid value for field 'resource.scheduling.maxRunDuration.seconds'");
                    if (s.value("instanceTerminationAction", "").empty())
                        return gce_error(400, "invalid", "Invalid value for field 'resource.scheduling.instanceTerminationAction': ''. "
                                                         "Instance termination action must be specified with maxRunDuration.");
                }
                if (s.value("provisioningModel", "") == "SPOT" && s.value("automaticRestart", true))
                    return gce_error(400, "invalid", "Spot VMs require scheduling.automaticRestart = false");
            }
            if (body.contains("labels"))
                for (auto it = body["labels"].begin(); it != body["labels"].end(); ++it)
                    if (!std::regex_match(it.key(), std::regex("[a-z][a-z0-9_-]{0,62}")) || !it->is_string() ||
                        !std::regex_match(it->get<std::string>(), std::regex("[a-z0-9_-]{0,63}")))
                        return gce_error(400, "invalid", "Invalid value for field 'resource.labels': '" + it.key() + "'");
            if (body.contains("metadata") && body["metadata"].contains("items")) {
                std::size_t total = 0;
                for (const auto& m : body["metadata"]["items"]) {
                    std::string k = m.value("key", ""), v = m.value("value", "");
                    if (!std::regex_match(k, std::regex("[a-zA-Z0-9_-]{1,127}")) || v.size() > 262144)
                        return gce_error(400, "invalid", "Invalid value for field 'resource.metadata': key '" + k + "'");
                    total += k.size() + v.size();
                }
                if (total >= 512 * 1024) return gce_error(400, "invalid", "Metadata exceeds 512 KB");
            }
            const std::string key = project + "/" + zone + "/" + name;
            if (st->instances.count(key))
                return gce_error(409, "alreadyExists", "The resource 'projects/" + project + "/zones/" + zone + "/instances/" + name +
                                                           "' already exists");
            const std::uint64_t id = st->next_id++;
            if (in_list(st->config, "stockout_zones", zone) && st->config.value("sync_stockout", false))
                return gce_error(503, "resourceExhausted",
                                 "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS: The zone 'projects/" + project + "/zones/" + zone +
                                     "' does not have enough resources available to fulfill the request. '(resource type:compute)'.");
            nlohmann::json op = op_json(project, zone, "insert", name, std::to_string(id), st->next_id++);
            if (in_list(st->config, "stockout_zones", zone)) {
                op["error"] = {{"errors", nlohmann::json::array({{{"code", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"},
                                                                  {"message", "The zone 'projects/" + project + "/zones/" + zone +
                                                                                  "' does not have enough resources available to fulfill "
                                                                                  "the request.  '(resource type:compute)'."},
                                                                  {"errorDetails", nlohmann::json::array({{{"errorInfo",
                                                                      {{"reason", "resource_availability"}, {"domain", "compute.googleapis.com"},
                                                                       {"metadatas", {{"zone", zone}, {"vmType", mt}}}}}}})}}})}};
                op["httpErrorStatusCode"] = 503;
                op["httpErrorMessage"] = "SERVICE UNAVAILABLE";
            } else if (in_list(st->config, "quota_exceeded_zones", zone)) {
                op["error"] = {{"errors", nlohmann::json::array({{{"code", "QUOTA_EXCEEDED"},
                                                                  {"message", "Quota 'CPUS' exceeded.  Limit: 8.0 in region " +
                                                                                  zone.substr(0, zone.rfind('-')) + "."}}})}};
                op["httpErrorStatusCode"] = 403;
                op["httpErrorMessage"] = "FORBIDDEN";
            } else {
                auto inst = std::make_shared<ComputeInstance>();
                inst->project = project;
                inst->zone = zone;
                inst->name = name;
                inst->id = std::to_string(id);
                inst->status = "RUNNING";
                inst->dir = cp->state_dir / "compute" / (name + "-" + inst->id);
                std::filesystem::create_directories(inst->dir);
                const std::string zurl = cp->https_base + api + project + "/zones/" + zone;
                nlohmann::json r = body;
                r["kind"] = "compute#instance";
                r["id"] = inst->id;
                r["zone"] = zurl;
                r["machineType"] = cp->https_base + api + project + "/" + mt.substr(mt.find("zones/"));
                r["selfLink"] = zurl + "/instances/" + name;
                r["creationTimestamp"] = now_rfc3339();
                r["lastStartTimestamp"] = now_rfc3339();
                if (r.contains("scheduling") && r["scheduling"].contains("maxRunDuration")) {
                    auto secs = *int64_field(r["scheduling"]["maxRunDuration"]["seconds"]);
                    std::time_t t = std::time(nullptr) + static_cast<std::time_t>(secs);
                    std::tm tm{};
                    gmtime_r(&t, &tm);
                    char buf[40];
                    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S.000-00:00", &tm);
                    r["scheduling"]["terminationTime"] = buf;
                }
                inst->resource = r;
                st->instances[key] = inst;
                st->all.push_back(inst);
                try {
                    boot(inst, body);
                } catch (const std::exception& e) {
                    std::ofstream(inst->dir / "serial.log", std::ios::app) << "emulator: guest did not start: " << e.what() << "\n";
                }
            }
            const std::string opname = op["name"];
            st->operations[opname] = op;
            if (!rid.empty()) st->request_ops[rid] = opname;
            return json_response(200, op);
        }

        const std::string name = seg[4];
        const std::string key = project + "/" + zone + "/" + name;
        const std::string what = "projects/" + project + "/zones/" + zone + "/instances/" + name;

        // ---- serial port
        if (seg.size() == 6 && seg[5] == "serialPort" && req.method == "GET") {
            std::filesystem::path log;
            {
                std::lock_guard lock(st->mu);
                auto it = st->instances.find(key);
                if (it == st->instances.end()) return not_found(what);
                log = it->second->dir / "serial.log";
            }
            std::ifstream in(log, std::ios::binary);
            std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            long long start = 0;
            try {
                start = std::stoll(query_param(req.target, "start").value_or("0"));
            } catch (...) {
            }
            const long long size = static_cast<long long>(all.size());
            if (start < 0) start = std::max(0LL, size + start);
            if (start > size) start = size;
            return json_response(200, {{"kind", "compute#serialPortOutput"}, {"contents", all.substr(static_cast<std::size_t>(start))},
                                       {"start", std::to_string(start)}, {"next", std::to_string(size)}});
        }
        if (seg.size() != 5) return not_found(path);

        // ---- instances.get
        if (req.method == "GET") {
            std::lock_guard lock(st->mu);
            auto it = st->instances.find(key);
            if (it == st->instances.end()) return not_found(what);
            nlohmann::json r = it->second->resource;
            r["status"] = it->second->status;
            return json_response(200, r);
        }

        // ---- instances.delete
        if (req.method == "DELETE") {
            std::lock_guard lock(st->mu);
            auto it = st->instances.find(key);
            if (it == st->instances.end()) return not_found(what);
            auto inst = it->second;
            ++st->deletes;
            if (inst->status == "STOPPING") {
                // a second delete while the first runs: the same kind of answer, a new op
            }
            inst->status = "STOPPING";
            nlohmann::json op = op_json(project, zone, "delete", name, inst->id, st->next_id++);
            const std::string opname = op["name"];
            st->operations[opname] = op;
            const int delay = st->config.value("delete_delay_ms", 300);
            // the guest may be waiting for this very answer (self-delete): stop it a little later
            std::thread([st, inst, key, opname, delay] {
                std::this_thread::sleep_for(std::chrono::milliseconds(delay));
                std::unique_lock lock(st->mu);
                if (inst->pid > 0 && !inst->exited) {
                    ::kill(-inst->pid, SIGKILL);
                    st->cv.wait_for(lock, std::chrono::seconds(10), [&] { return inst->exited; });
                }
                inst->status = "TERMINATED";
                auto cur = st->instances.find(key);
                if (cur != st->instances.end() && cur->second == inst) {
                    st->instances.erase(cur);
                    st->deleted.push_back(inst->name);
                }
                st->finishing.insert(opname);
                st->cv.notify_all();
            }).detach();
            return json_response(200, op);
        }
        return gce_error(405, "badRequest", "method not allowed");
    };
}

}  // namespace cmf::emu
