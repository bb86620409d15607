// The orchestrator's GCE backend (`cmf build|build+push --backend gce`, `cmf status`, `cmf cleanup`):
// one disposable VM per job through the Compute REST API (cmf/cloud/gce.h), the bucket over GCS.
//
// Flow of run_gce_job (cloud.md sections 1, 2, 7):
//   1. this static binary (/proc/self/exe) -> gs://BUCKET/bin/<sha256>/cmf, uploaded only if absent
//   2. the HF token -> gs://BUCKET/PREFIXsecrets/<job>/hf_token (create-only); the job names it
//      (secrets.hf_token_ref = gs://...). Only principals with read access to the bucket -- the
//      VM's service account and the bucket's owners -- can read it; the object is removed when
//      the job ends. Plain metadata (metadata:cmf-hf-token) only with --secrets-in-metadata:
//      metadata is readable by anyone with compute.instances.get and by every process on the VM.
//   3. instances.insert in GCE_ZONE; on ZONE_RESOURCE_POOL_EXHAUSTED[_WITH_DETAILS] the next zone
//      of the same region (QUOTA_EXCEEDED is regional: stop with the message). Metadata keys:
//      startup-script (cloud-init/startup.sh), cmf-binary, cmf-binary-sha256, factory-config,
//      cmf-keep-vm (--keep-vm). Labels managed-by=cmf, cmf-job=<job>.
//   4. watch: markers, job status and heartbeat in the bucket, the VM's state, its serial port
//   5. SIGINT/SIGTERM: delete the VM, exit 130; at the end the VM is deleted in every case
//      (the worker deletes itself; a 404 here is the normal case).
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
#include "cmf/factory/status.h"
#include "cmf/factory/status_report.h"

namespace cmf::cli::gce {

inline constexpr const char* kManagedLabel = "managed-by";
inline constexpr const char* kManagedValue = "cmf";
inline constexpr const char* kJobLabel = "cmf-job";
inline constexpr const char* kHfTokenMetadataKey = "cmf-hf-token";

struct Cloud {
    std::shared_ptr<net::HttpClient> http;
    cloud::Credentials creds;
    std::string project;
    std::shared_ptr<cloud::GcsClient> gcs;
    std::shared_ptr<cloud::GceClient> gce;
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
    return c;
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
    bool secrets_in_metadata = false;
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
    std::vector<std::string> secret_objects;
    RunState rs;
    rs.instance = instance_name_for(job.job_id);

    // clean-up on every exit path below
    auto finish = [&](int rc) {
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
        return rc;
    };
    auto interrupted = [&]() -> std::optional<int> {
        int sig = pending_signal().load();
        if (!sig) return std::nullopt;
        std::fprintf(stderr, "cmf: %s: deleting the VM and stopping\n", sig == SIGINT ? "interrupted" : "terminated");
        return finish(128 + sig);
    };

    const Binary bin = upload_self(c, ro.exe, quiet);
    if (auto r = interrupted()) return *r;

    std::vector<std::pair<std::string, std::string>> metadata;
    const std::string hf_token = cfg.get("HF_TOKEN");
    if (!hf_token.empty()) {
        if (ro.secrets_in_metadata) {
            std::fprintf(stderr, "cmf: warning: --secrets-in-metadata puts HF_TOKEN into instance metadata, readable by anyone "
                                 "with compute.instances.get on the project and by every process on the VM\n");
            metadata.emplace_back(kHfTokenMetadataKey, hf_token);
            job.hf_token_ref = std::string("metadata:") + kHfTokenMetadataKey;
        } else {
            const std::string obj = secret_prefix + "hf_token";
            cloud::UploadOptions o;
            o.content_type = "text/plain";
            c.gcs->upload(c.bucket, obj, hf_token, o);
            secret_objects.push_back(obj);
            job.hf_token_ref = "gs://" + c.bucket + "/" + obj;
        }
    }
    if (ro.push && cfg.is_set("OLLAMA_KEY_FILE")) {
        std::ifstream kf(cfg.get("OLLAMA_KEY_FILE"), std::ios::binary);
        if (!kf) {
            finish(0);
            fail_io("cannot read OLLAMA_KEY_FILE " + cfg.get("OLLAMA_KEY_FILE"));
        }
        std::string key((std::istreambuf_iterator<char>(kf)), std::istreambuf_iterator<char>());
        const std::string obj = secret_prefix + "ollama_key";
        cloud::UploadOptions o;
        o.content_type = "text/plain";
        c.gcs->upload(c.bucket, obj, key, o);
        secret_objects.push_back(obj);
        job.registry_key_ref = "gs://" + c.bucket + "/" + obj;
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
