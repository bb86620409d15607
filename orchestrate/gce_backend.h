// The orchestrator's GCE backend (`cmf build|build+push --backend gce`, `cmf status`, `cmf cleanup`):
// one disposable VM per job through the Compute REST API (cmf/cloud/gce.h), the bucket over GCS.
//
// Flow of run_gce_job (cloud.md sections 1, 2, 7):
//   1. this static binary (/proc/self/exe) -> gs://BUCKET/bin/<sha256>/cmf, uploaded only if absent
//   2. the secrets (docs/secrets.md, factory/job_secrets.h): leftovers of dead jobs are destroyed
//      first; the HF token, and for a push a copy of the factory push key (`cmf keys create`),
//      each go into a Secret Manager secret of the job's (labels managed-by=cmf, cmf-job=<job>,
//      ttl GCE_MAX_RUN + 1 h) that only the VM's service account may read; the job names the
//      versions (sm:projects/P/secrets/ID/versions/1). CMF_SECRET_STORE=bucket (objects under
//      PREFIXsecrets/<job>/) or metadata (--secrets-in-metadata) are opt-ins with a warning.
//   3. instances.insert in GCE_ZONE; on ZONE_RESOURCE_POOL_EXHAUSTED[_WITH_DETAILS] the next zone
//      of the same region (QUOTA_EXCEEDED is regional: stop with the message). Metadata keys:
//      startup-script (cloud-init/startup.sh), cmf-binary, cmf-binary-sha256, factory-config,
//      cmf-keep-vm (--keep-vm). Labels managed-by=cmf, cmf-job=<job>.
//   4. watch: markers, job status and heartbeat in the bucket, the VM's state, its serial port
//   5. SIGINT/SIGTERM: delete the VM, exit 130; at the end the VM is deleted in every case
//      (the worker deletes itself; a 404 here is the normal case), and the job's secrets with
//      it, on every exit path (a throw included).
#pragma once

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cmf/cloud/auth.h"
#include "cmf/core/temp_file.h"
#include "cmf/cloud/gce.h"
#include "cmf/cloud/gcs.h"
#include "cmf/cloud_init_files.h"
#include "cmf/factory/config.h"
#include "cmf/factory/digest.h"
#include "cmf/factory/gcs_bucket.h"
#include "cmf/factory/job.h"
#include "cmf/factory/job_secrets.h"
#include "cmf/factory/status.h"
#include "cmf/factory/status_report.h"

namespace cmf::cli::gce {

using factory::kJobLabel;
using factory::kManagedLabel;
using factory::kManagedValue;

struct Cloud {
    std::shared_ptr<net::HttpClient> http;
    cloud::Credentials creds;
    std::string project;
    std::shared_ptr<cloud::GcsClient> gcs;
    std::shared_ptr<cloud::GceClient> gce;
    std::shared_ptr<cloud::SecretManagerClient> sm;
    std::string bucket;  // name, no gs://
};

// Credentials (ADC), project (GCP_PROJECT, else the credentials'), bucket (GCS_BUCKET).
inline Cloud connect(const factory::FactoryConfig& cfg, bool need_bucket) {
    Cloud c;
    c.http = net::make_http_client();
    c.creds = cloud::default_credentials(c.http);
    if (cfg.is_set("GCP_PROJECT")) c.project = cfg.get("GCP_PROJECT");
    else if (auto p = cloud::default_project_id(c.creds)) c.project = *p;
    if (c.project.empty()) fail(ErrorKind::usage, "no Google Cloud project: set GCP_PROJECT (.env, environment or --project)");
    if (need_bucket) {
        if (!cfg.is_set("GCS_BUCKET")) fail(ErrorKind::usage, "no bucket: set GCS_BUCKET (.env, environment or --bucket)");
        c.bucket = factory::normalize_bucket_name(cfg.get("GCS_BUCKET"));
    }
    c.gcs = std::make_shared<cloud::GcsClient>(c.http, c.creds.tokens, cloud::gcs_options_from_env());
    c.gce = std::make_shared<cloud::GceClient>(c.http, c.creds.tokens, cloud::gce_options_from_env());
    cloud::SecretManagerOptions so;
    if (const char* e = std::getenv("CMF_SECRET_MANAGER_API"); e && *e) so.endpoint = e;  // the emulator in tests
    c.sm = std::make_shared<cloud::SecretManagerClient>(c.http, c.creds.tokens, c.project, so);
    return c;
}

// The IAM member the worker VM runs as: GCE_SERVICE_ACCOUNT, or for "default" the project's
// Compute Engine default account (projects.get).
inline std::string vm_member(Cloud& c, const factory::FactoryConfig& cfg) {
    std::string sa = cfg.get("GCE_SERVICE_ACCOUNT");
    if (sa.empty() || sa == "default") sa = c.gce->default_service_account(c.project);
    return "serviceAccount:" + sa;
}

// Destroys the job secrets of jobs that have no VM any more (a killed orchestrator whose VM
// ended), older than factory::kLeftoverGrace. Returns what it did, a line each.
inline std::vector<std::string> sweep_leftover_secrets(Cloud& c) {
    std::set<std::string> live;
    for (const auto& i : c.gce->list_instances(c.project, kManagedLabel, kManagedValue))
        if (auto it = i.labels.find(kJobLabel); it != i.labels.end()) live.insert(it->second);
    return factory::destroy_job_secrets(*c.sm, [&](const std::string& job, std::chrono::seconds age) {
        return !live.count(job) && age >= factory::kLeftoverGrace;
    });
}

// The gce backend is the default when a bucket and a project are configured.
inline bool gce_configured(const factory::FactoryConfig& cfg) {
    return cfg.is_set("GCS_BUCKET") && (cfg.is_set("GCP_PROJECT") || std::getenv("GOOGLE_CLOUD_PROJECT"));
}

// ---------------------------------------------------------------- signals
inline std::atomic<int>& pending_signal() {
    static std::atomic<int> s{0};
    return s;
}
inline void on_signal(int sig) { pending_signal().store(sig); }
inline void install_signal_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
}
// Sleeps up to `d`, waking early when a signal arrived.
inline void nap(std::chrono::milliseconds d) {
    auto until = std::chrono::steady_clock::now() + d;
    while (!pending_signal().load() && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(std::chrono::milliseconds(50), d));
}

// ---------------------------------------------------------------- the binary
struct Binary {
    std::string object, sha256;
};

// Uploads this executable to bin/<sha256>/cmf unless an object of that name and size exists.
inline Binary upload_self(Cloud& c, const std::string& exe, bool quiet) {
    Binary b;
    b.sha256 = factory::sha256_file(exe);
    b.object = "bin/" + b.sha256 + "/cmf";
    const auto size = std::filesystem::file_size(exe);
    auto have = c.gcs->stat(c.bucket, b.object);
    if (have && have->size == size) return b;
    if (!quiet) std::fprintf(stderr, "cmf: uploading the worker binary to gs://%s/%s (%s)\n", c.bucket.c_str(), b.object.c_str(),
                             factory::human_size(size).c_str());
    cloud::UploadOptions o;
    o.content_type = "application/octet-stream";
    c.gcs->upload_file(c.bucket, b.object, exe, o);
    return b;
}

// ---------------------------------------------------------------- naming
inline std::string instance_name_for(const std::string& job_id) {
    std::string n = "cmf-" + cloud::to_label_value(job_id);
    for (char& ch : n)
        if (ch == '_') ch = '-';
    if (n.size() > 63) n.resize(63);
    while (!n.empty() && n.back() == '-') n.pop_back();
    return n;
}

// GCE_ZONE first, then the other zones of its region (explicit --zones wins).
inline std::vector<std::string> zone_order(const std::string& primary, const std::vector<std::string>& explicit_zones) {
    std::vector<std::string> z;
    auto add = [&z](const std::string& s) {
        if (std::find(z.begin(), z.end(), s) == z.end()) z.push_back(s);
    };
    add(primary);
    if (!explicit_zones.empty()) {
        for (const auto& s : explicit_zones) add(s);
        return z;
    }
    const std::string region = cloud::region_of_zone(primary);
    for (const char* s : {"a", "b", "c", "d", "f"}) add(region + "-" + s);
    return z;
}

struct RunOptions {
    bool push = false;
    factory::SecretStore store = factory::SecretStore::secret_manager;
    bool keep_vm = false;
    bool spot = false;
    bool quiet = false;
    std::vector<std::string> zones;  // fallback order override
    std::chrono::milliseconds poll{5000};
    std::string exe = "/proc/self/exe";
};

struct RunState {
    std::string instance, zone;
    bool created = false;
};

// Deletes the VM (404 = gone) and waits a bounded time; never throws (clean-up path).
inline void ensure_deleted(Cloud& c, const RunState& rs, bool quiet) {
    if (!rs.created) return;
    try {
        bool ok = c.gce->delete_instance_and_wait(c.project, rs.zone, rs.instance, std::chrono::seconds(120));
        if (!quiet) std::fprintf(stderr, "cmf: VM %s %s\n", rs.instance.c_str(), ok ? "is deleted" : "is being deleted");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "cmf: could not delete VM %s in %s: %s -- run `cmf cleanup`\n", rs.instance.c_str(), rs.zone.c_str(),
                     e.what());
    }
}

inline std::string last_n_lines(const std::string& s, size_t n) { return factory::last_lines(s, n); }

// Runs one job on a VM. Returns the exit status (0 all built [and pushed], 1 a variant failed,
// 130/143 interrupted). `job` is filled in (bucket, secrets) here.
inline int run_gce_job(Cloud& c, const factory::FactoryConfig& cfg, factory::Job job, const RunOptions& ro) {
    install_signal_handlers();
    // Under cmf's interrupt watcher the signals are blocked and arrive here instead: this run
    // handles them itself (deletes the VM, returns 130/143).
    InterruptDeferral signals([](int sig) { pending_signal().store(sig); });
    const bool quiet = ro.quiet;
    auto say = [quiet](const std::string& s) {
        if (!quiet) std::fprintf(stderr, "cmf: %s\n", s.c_str());
    };
    factory::GcsBucket bucket(*c.gcs, c.bucket);
    const std::string secret_prefix = job.prefix + "secrets/" + job.job_id + "/";
    const factory::SecretStore store = ro.store;
    std::vector<std::string> secret_objects;
    std::optional<factory::JobSecrets> job_secrets;
    RunState rs;
    rs.instance = instance_name_for(job.job_id);

    // clean-up on every exit path below: the VM, then the secrets
    bool finished = false;
    auto finish = [&](int rc) {
        if (finished) return rc;
        finished = true;
        if (ro.keep_vm && !pending_signal().load() && rs.created)
            std::fprintf(stderr, "cmf: --keep-vm: VM %s in %s is left running; delete it with `cmf cleanup --job %s`\n",
                         rs.instance.c_str(), rs.zone.c_str(), job.job_id.c_str());
        else
            ensure_deleted(c, rs, quiet);
        for (const auto& o : secret_objects) {
            try {
                c.gcs->remove(c.bucket, o);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "cmf: could not remove gs://%s/%s: %s\n", c.bucket.c_str(), o.c_str(), e.what());
            }
        }
        if (job_secrets) {
            const std::size_t n = job_secrets->ids().size();
            const auto failed = job_secrets->destroy_all();
            for (const auto& f : failed) std::fprintf(stderr, "cmf: %s -- `cmf cleanup` deletes it, or Secret Manager at its ttl\n", f.c_str());
            if (n && failed.empty() && !quiet) std::fprintf(stderr, "cmf: the job's secrets are deleted\n");
        }
        return rc;
    };
    // a throw on the way out of this function still cleans up
    struct OnExit {
        std::function<void()> f;
        ~OnExit() { f(); }
    } on_exit{[&] { finish(0); }};
    auto interrupted = [&]() -> std::optional<int> {
        int sig = pending_signal().load();
        if (!sig) return std::nullopt;
        std::fprintf(stderr, "cmf: %s: deleting the VM and the job's secrets, and stopping\n", sig == SIGINT ? "interrupted" : "terminated");
        return finish(128 + sig);
    };

    const Binary bin = upload_self(c, ro.exe, quiet);
    if (auto r = interrupted()) return *r;

    std::vector<std::pair<std::string, std::string>> metadata;
    const std::string hf_token = cfg.get("HF_TOKEN");
    if (!hf_token.empty() || ro.push) {
        // the push key is cmf's factory key from Secret Manager, whatever the store
        std::string push_key = ro.push ? factory::read_push_key(*c.sm, c.project) : std::string();
        if (auto r = interrupted()) return *r;
        struct Secret {
            const char* what;        // job secret name part / object name / metadata key
            const std::string* value;
            std::string* ref;
        };
        std::vector<Secret> wanted;
        if (!hf_token.empty()) wanted.push_back({"hf-token", &hf_token, &job.hf_token_ref});
        if (ro.push) wanted.push_back({"push-key", &push_key, &job.registry_key_ref});
        if (store == factory::SecretStore::secret_manager) {
            for (const auto& line : sweep_leftover_secrets(c)) say(line);
            const std::string member = vm_member(c, cfg);
            job_secrets.emplace(*c.sm, job.job_id, member,
                                std::chrono::seconds(factory::parse_duration_seconds(cfg.get("GCE_MAX_RUN"))) + std::chrono::hours(1));
            for (const auto& w : wanted) {
                if (auto r = interrupted()) return *r;
                *w.ref = job_secrets->put(w.what, *w.value);
            }
            say("secrets: " + std::to_string(wanted.size()) + " in Secret Manager (" + job_secrets->ids().front() + (wanted.size() > 1 ? ", ..." : "") +
                "), readable by " + member + " only, deleted with the job");
        } else if (store == factory::SecretStore::metadata) {
            std::fprintf(stderr, "cmf: warning: CMF_SECRET_STORE=metadata puts the job's secrets into instance metadata, readable by "
                                 "anyone with compute.instances.get on the project and by every process on the VM\n");
            for (const auto& w : wanted) {
                const std::string key = std::string("cmf-") + w.what;
                metadata.emplace_back(key, *w.value);
                *w.ref = "metadata:" + key;
            }
        } else {
            std::fprintf(stderr, "cmf: warning: CMF_SECRET_STORE=bucket puts the job's secrets into gs://%s/%s, readable by everyone "
                                 "who can read the bucket until the job ends (and after it, if it dies before its cleanup)\n",
                         c.bucket.c_str(), secret_prefix.c_str());
            for (const auto& w : wanted) {
                const std::string obj = secret_prefix + w.what;
                cloud::UploadOptions o;
                o.content_type = "text/plain";
                secret_objects.push_back(obj);
                c.gcs->upload(c.bucket, obj, *w.value, o);
                *w.ref = "gs://" + c.bucket + "/" + obj;
            }
        }
        OPENSSL_cleanse(push_key.data(), push_key.size());
    }
    factory::validate_job(job);
    const std::string job_json = factory::job_to_json(job).dump();
    bucket.put(job.prefix + "jobs/" + job.job_id + ".json", factory::job_to_json(job).dump(1) + "\n");

    metadata.emplace_back("startup-script", embedded::kStartupSh);
    metadata.emplace_back("cmf-binary", "gs://" + c.bucket + "/" + bin.object);
    metadata.emplace_back("cmf-binary-sha256", bin.sha256);
    metadata.emplace_back("factory-config", job_json);
    if (ro.keep_vm) metadata.emplace_back("cmf-keep-vm", "TRUE");

    cloud::InstanceSpec spec;
    spec.name = rs.instance;
    spec.machine_type = cfg.get("GCE_MACHINE_TYPE");
    spec.disk_type = cfg.get("GCE_DISK_TYPE");
    spec.disk_size_gb = factory::parse_disk_size_gb(cfg.get("GCE_DISK_SIZE"));
    spec.max_run_seconds = factory::parse_duration_seconds(cfg.get("GCE_MAX_RUN"));
    spec.metadata = metadata;
    spec.labels = {{kManagedLabel, kManagedValue}, {kJobLabel, cloud::to_label_value(job.job_id)}};
    spec.spot = ro.spot;
    spec.service_account = cfg.get("GCE_SERVICE_ACCOUNT").empty() ? "default" : cfg.get("GCE_SERVICE_ACCOUNT");
    spec.description = "cmf worker for job " + job.job_id;

    // ---- create, moving zones on stockout
    const std::vector<std::string> zones = zone_order(cfg.get("GCE_ZONE"), ro.zones);
    std::string last_error;
    for (size_t i = 0; i < zones.size() && !rs.created; ++i) {
        if (auto r = interrupted()) return *r;
        spec.zone = zones[i];
        say("creating VM " + spec.name + " (" + spec.machine_type + ") in " + spec.zone);
        cloud::InsertResult ir;
        try {
            ir = c.gce->insert_instance(c.project, spec);
        } catch (...) {
            // an insert may have landed before the failure: do not leave it behind
            rs.zone = spec.zone;
            rs.created = true;
            finish(0);
            throw;
        }
        if (ir.ok()) {
            rs.zone = spec.zone;
            rs.created = true;
            break;
        }
        last_error = ir.error;
        if (ir.failure == cloud::GceFailure::stockout) {
            say("zone " + spec.zone + " is out of capacity (" + ir.error.substr(0, ir.error.find(':')) + ")" +
                (i + 1 < zones.size() ? "; trying " + zones[i + 1] : ""));
            continue;
        }
        const bool unknown_zone = i > 0 && (ir.error.find("Unknown zone") != std::string::npos || ir.error.find("notFound") != std::string::npos);
        if (unknown_zone) continue;
        finish(0);
        if (ir.failure == cloud::GceFailure::quota)
            fail(ErrorKind::remote, "cannot create the VM: quota exceeded in region " + cloud::region_of_zone(spec.zone) +
                                        " (other zones of the region share it; use another machine type or region): " + ir.error);
        fail(ErrorKind::remote, "cannot create the VM in " + spec.zone + ": " + ir.error);
    }
    if (!rs.created) {
        finish(0);
        fail(ErrorKind::remote, "no zone had capacity for " + spec.machine_type + " (tried " + std::to_string(zones.size()) +
                                    " zones): " + last_error);
    }
    say("VM " + rs.instance + " is up in " + rs.zone + "; job " + job.job_id + " (watch: cmf status)");

    // ---- watch
    std::set<std::string> reported;
    std::string last_hb, serial;
    long long serial_next = 0;
    bool vm_gone = false;
    std::optional<nlohmann::json> final_status;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(*spec.max_run_seconds + 600);
    int errors_in_row = 0;
    for (;;) {
        if (auto r = interrupted()) return *r;
        try {
            auto inst = c.gce->get_instance(c.project, rs.zone, rs.instance);
            if (!inst || inst->status == "TERMINATED" || inst->status == "STOPPED") vm_gone = true;
            if (inst && !vm_gone) {
                if (auto so = c.gce->serial_output(c.project, rs.zone, rs.instance, serial_next)) {
                    serial += so->contents;
                    if (serial.size() > 65536) serial.erase(0, serial.size() - 65536);
                    serial_next = so->next;
                }
            }
            factory::BucketStatus s = factory::read_bucket_status(bucket, job.prefix);
            if (s.heartbeat && s.heartbeat->is_object() && s.heartbeat->value("job_id", s.heartbeat->value("job", "")) == job.job_id) {
                std::string hb = s.heartbeat->value("phase", "") + " " + s.heartbeat->value("detail", "");
                if (hb != last_hb) say("worker: " + hb);
                last_hb = hb;
            }
            for (const auto& v : job.variants) {
                auto it = s.variants.find(v.name);
                if (it == s.variants.end()) continue;
                for (auto [flag, word] : {std::pair{it->second.built, "built"}, {it->second.pushed, "pushed"}, {it->second.failed, "failed"}})
                    if (flag && reported.insert(v.name + "." + word).second)
                        say(v.name + ": " + word + (std::string(word) == "failed" ? ": " + it->second.fail_line : ""));
            }
            for (const auto& j : s.jobs)
                if (j.value("job_id", "") == job.job_id && j.value("state", "running") != "running") final_status = j;
            errors_in_row = 0;
        } catch (const Error& e) {
            if (e.kind() == ErrorKind::auth || ++errors_in_row >= 10) {
                std::fprintf(stderr, "cmf: lost track of the job: %s\n", e.what());
                return finish(1);
            }
        }
        if (final_status || vm_gone) break;
        if (std::chrono::steady_clock::now() > deadline) {
            std::fprintf(stderr, "cmf: the job did not finish within GCE_MAX_RUN + 10 min\n");
            break;
        }
        nap(ro.poll);
    }
    if (auto r = interrupted()) return *r;
    // the worker writes its status before it deletes the VM; give a VM that just vanished one
    // more look at the bucket
    if (!final_status) {
        factory::BucketStatus s = factory::read_bucket_status(bucket, job.prefix);
        for (const auto& j : s.jobs)
            if (j.value("job_id", "") == job.job_id && j.value("state", "running") != "running") final_status = j;
    }
    finish(0);

    factory::BucketStatus s = factory::read_bucket_status(bucket, job.prefix);
    std::printf("\n%s", factory::render_status(bucket, job.prefix, s).c_str());
    bool ok = final_status && final_status->value("state", "") == "succeeded";
    for (const auto& v : job.variants) {
        auto it = s.variants.find(v.name);
        if (it == s.variants.end() || !it->second.built) ok = false;
        if (ro.push && (it == s.variants.end() || !it->second.pushed)) ok = false;
    }
    if (!final_status) {
        std::fprintf(stderr, "cmf: job %s did not report a result (the VM %s); last %zu lines of its serial console:\n%s",
                     job.job_id.c_str(), vm_gone ? "is gone: preempted, out of time or the worker crashed" : "timed out",
                     factory::kFailureLogLines, serial.empty() ? "(none)\n" : last_n_lines(serial, factory::kFailureLogLines).c_str());
    } else if (!ok) {
        std::fprintf(stderr, "cmf: job %s: %s\n", job.job_id.c_str(), final_status->value("state", "?").c_str());
    }
    return ok ? 0 : 1;
}

}  // namespace cmf::cli::gce
