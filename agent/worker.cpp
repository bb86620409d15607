// cmf worker: runs one factory job (the VM side of `cmf build`; also the local backend's child).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

#include "cmf/cloud/gcs.h"
#include "cmf/cloud/metadata.h"
#include "cmf/cloud/secret_manager.h"
#include "cmf/core/temp_file.h"
#include "cmf/engine/gate_run.h"
#include "cmf/engine/imatrix_file.h"
#include "cmf/factory/bucket.h"
#include "cmf/factory/gce_worker.h"
#include "cmf/factory/gcs_bucket.h"
#include "cmf/factory/job.h"
#include "cmf/factory/registry_push.h"
#include "cmf/factory/self_delete.h"
#include "cmf/factory/worker.h"
#include "cmf/hub/hf_publish.h"
#include "cmf/net/http.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

static const char* kWorkerHelp = R"(usage: cmf worker [--job FILE] [--backend local|gce] [--bucket DIR|gs://NAME] [--work DIR]

Runs one factory job: builds every variant of the job from one read of the source, uploads
the GGUFs, an Ollama export (models/<name>/<name>.ollama.tar.zst: the Ollama store layout,
blobs + manifest), model cards and build logs, writes the markers
status/<variant>.built|.pushed|-error.fail and status/<job>.json, and keeps
status/heartbeat.json fresh from a background thread. A variant that is already built is not
rebuilt, so a restarted worker finishes what is left.

  --job FILE        the job JSON (schema cmf.job/1; see include/cmf/factory/job.h). Without
                    it the job is the instance metadata key factory-config (on a GCE VM)
  --backend B       local: the bucket is a directory; gce: a GCS bucket, written with the VM's
                    service-account token from the metadata server (default: gce when the
                    job's output.bucket is gs://, else local)
  --bucket B        local bucket directory, or gs://NAME for gce (overrides the job's bucket)
  --work DIR        scratch directory for downloads and GGUFs (default: $TMPDIR/cmf-work/JOB)
  --heartbeat SEC   rewrite status/heartbeat.json every SEC seconds (default 30; 0 = only at
                    phase changes)
  --compute-endpoint URL
                    Compute API base for the self-delete (default $CMF_COMPUTE_API, else
                    https://compute.googleapis.com/compute/v1)
  --quiet           no progress lines

hf:// sources go through the source cache in the job's bucket (PREFIX/hf/ORG/REPO/COMMIT/ +
manifest.json) and come from the Hub only when the commit is not there yet. Secrets:
secrets.hf_token_ref env:NAME, file:/PATH, gs://BUCKET/OBJECT, metadata:KEY.
When the job came from instance metadata, or flags.delete_vm is set, the worker deletes its
own VM at the end (instances.delete with the metadata token) unless the instance attribute
cmf-keep-vm is TRUE.
Push: when the job names registry.namespace, every built variant is pushed from its Ollama
export in the bucket as NAMESPACE/<model_name>:latest (blobs the registry has are skipped),
then status/<variant>.pushed is written (reference, manifest digest, time); a variant with
.pushed is not pushed again; a failed push writes status/<variant>-error.fail ("push: ...")
and is retried by the next run. The registry is the job's registry.host, else
$CMF_OLLAMA_REGISTRY, else registry.ollama.ai (plain http:// only for 127.0.0.1/localhost);
the key is registry.key_ref (env:, file:, gs://, metadata:), never logged.
Environment: GCE_METADATA_HOST, STORAGE_EMULATOR_HOST, HF_ENDPOINT, SSL_CERT_FILE, CMF_COMPUTE_API,
CMF_OLLAMA_REGISTRY.

Exit status: 0 all variants built (or already built), 1 some variant failed (its
status/<variant>-error.fail says why), 2 usage, 3 bad job or input, 4 I/O, 6 secrets.
)";

static std::optional<std::string> env_value(const std::string& n) {
    const char* v = std::getenv(n.c_str());
    return v && *v ? std::optional<std::string>(v) : std::nullopt;
}

int cmd_worker(const std::vector<std::string>& argv) {
    Args a = parse_args(argv, {"job", "backend", "bucket", "work", "heartbeat", "compute-endpoint"}, {"quiet", "help"}, "worker");
    if (a.has("help")) {
        std::fputs(kWorkerHelp, stdout);
        return 0;
    }
    if (!a.positional.empty()) fail(ErrorKind::usage, "worker: unexpected argument '" + a.positional[0] + "'");
    double heartbeat_s = 30;
    if (auto h = a.get("heartbeat")) {
        try {
            size_t used = 0;
            heartbeat_s = std::stod(*h, &used);
            if (used != h->size()) heartbeat_s = -1;
        } catch (...) {
            heartbeat_s = -1;
        }
        if (!(heartbeat_s >= 0 && heartbeat_s <= 3600)) fail(ErrorKind::usage, "worker: --heartbeat must be 0 to 3600 seconds");
    }
    const bool quiet = a.has("quiet");
    auto console = [quiet](const std::string& line) {
        if (!quiet) std::fprintf(stderr, "cmf worker: %s\n", line.c_str());
    };

    auto http = net::make_http_client();
    cloud::MetadataServer mds(http);
    factory::Job job;
    bool from_metadata = false;
    if (auto job_file = a.get("job")) {
        std::ifstream f(*job_file, std::ios::binary);
        if (!f) fail_io("worker: cannot read " + *job_file);
        std::stringstream ss;
        ss << f.rdbuf();
        job = factory::job_from_json_text(ss.str(), *job_file);
    } else {
        // Off GCE nothing answers at the metadata address: one quick probe, so a mistaken
        // `cmf worker` on a laptop fails in seconds with one line, not after minutes of retries.
        if (!env_value("GCE_METADATA_HOST") && !env_value("GCE_METADATA_ROOT")) {
            net::ClientOptions po;
            po.connect_timeout = std::chrono::milliseconds(2000);
            po.io_timeout = std::chrono::milliseconds(3000);
            po.retry.max_attempts = 1;
            try {
                cloud::MetadataServer probe(net::make_http_client(po));
                (void)probe.get("instance/id");
            } catch (const Error&) {
                fail(ErrorKind::usage, "worker: --job FILE is required off GCE (no metadata server answered at " + mds.root() + ")");
            }
        }
        job = factory::job_from_json_text(factory::job_text_from_metadata(mds), "instance metadata " + std::string(factory::kJobMetadataKey));
        from_metadata = true;
    }
    // the registry: the job's registry.host, else $CMF_OLLAMA_REGISTRY (checked like the job's)
    if (job.registry_host.empty())
        if (auto r = env_value("CMF_OLLAMA_REGISTRY")) {
            job.registry_host = *r;
            factory::validate_job(job);
        }

    const std::string backend = a.get("backend").value_or(
        (a.get("bucket") ? *a.get("bucket") : job.bucket).rfind("gs://", 0) == 0 ? "gce" : "local");
    if (backend != "local" && backend != "gce") fail(ErrorKind::usage, "worker: --backend must be local or gce");

    // GCS with the VM's service-account token (also against STORAGE_EMULATOR_HOST: the emulated
    // metadata server issues tokens the emulated GCS can check). Created on first use.
    std::unique_ptr<cloud::GcsClient> gcs;
    auto gcs_client = [&]() -> cloud::GcsClient* {
        if (!gcs) {
            cloud::GcsOptions gopt = cloud::gcs_options_from_env();
            gopt.anonymous = false;
            gcs = std::make_unique<cloud::GcsClient>(http, std::make_shared<cloud::MetadataTokenSource>(http), gopt);
        }
        return gcs.get();
    };

    std::unique_ptr<factory::Bucket> bucket;
    factory::SourceCacheTarget cache_target;
    cache_target.prefix = job.prefix;
    // bucket object -> local file, for the push step (large objects are never held in memory)
    std::function<void(const std::string&, const fs::path&)> download_object;
    if (backend == "gce") {
        const std::string b = a.get("bucket").value_or(job.bucket);
        if (b.rfind("gs://", 0) != 0) fail(ErrorKind::usage, "worker: --backend gce needs a gs://NAME bucket (job output.bucket or --bucket)");
        const cloud::GcsPath p = cloud::GcsPath::parse(b);
        if (!p.object.empty()) fail(ErrorKind::usage, "worker: the bucket is gs://NAME; put a path into the job's output.prefix");
        bucket = std::make_unique<factory::GcsBucket>(*gcs_client(), p.bucket);
        cache_target.gcs = gcs_client();
        cache_target.bucket = p.bucket;
        download_object = [&gcs_client, name = p.bucket](const std::string& obj, const fs::path& dst) {
            gcs_client()->download_to_file(name, obj, dst);
        };
    } else {
        std::string bucket_dir;
        if (auto b = a.get("bucket")) bucket_dir = *b;
        else if (job.bucket.rfind("file://", 0) == 0) bucket_dir = job.bucket.substr(7);
        else fail(ErrorKind::usage, "worker: --backend local needs --bucket DIR or a file:// bucket in the job");
        auto lb = std::make_unique<factory::LocalBucket>(bucket_dir);
        cache_target.local_root = lb->root();
        download_object = [root = lb->root()](const std::string& obj, const fs::path& dst) {
            factory::check_object_name(obj);
            TempFile t(dst);  // core/temp_file.h: no partial copy under dst, not even on Ctrl-C
            t.copy_from(root / obj);
            t.commit();
        };
        bucket = std::move(lb);
    }
    job.bucket = bucket->uri();

    factory::WorkerOptions opts;
    if (auto w = a.get("work")) opts.work_dir = *w;
    else {
        // not fs::temp_directory_path(): it fails when the directory does not exist yet (a
        // fresh chroot or container); the worker creates what it needs
        const char* tmp = std::getenv("TMPDIR");
        opts.work_dir = fs::path(tmp && *tmp ? tmp : "/tmp") / "cmf-work" / job.job_id;
    }
    opts.heartbeat_every = std::chrono::milliseconds(static_cast<long long>(heartbeat_s * 1000));
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    opts.host = host;

    factory::WorkerHooks hooks;
    hooks.getenv = [](const std::string& n) -> std::optional<std::string> {
        const char* v = std::getenv(n.c_str());
        return v ? std::optional<std::string>(v) : std::nullopt;
    };
    hooks.console = console;
    // Secret Manager with the VM's token; CMF_SECRET_MANAGER_API points it elsewhere (the emulator)
    auto sm_access = [&](const std::string& version) {
        const std::string project = version.substr(9, version.find('/', 9) - 9);
        cloud::SecretManagerOptions so;
        so.endpoint = env_value("CMF_SECRET_MANAGER_API").value_or(cloud::kSecretManagerEndpoint);
        return cloud::SecretManagerClient(http, std::make_shared<cloud::MetadataTokenSource>(http), project, so).access(version);
    };
    hooks.resolve_remote_secret = [&](const std::string& ref) { return factory::resolve_cloud_secret(ref, gcs_client(), &mds, sm_access); };
    hooks.fetch_hf_source = [&](const factory::Job& j, const fs::path& dir, const std::string& token) {
        return factory::fetch_hf_source_cached(j, dir, token, http, cache_target, console);
    };
    hooks.fetch_hf_adapter = [&](const std::string& repo, const std::string& rev, const fs::path& dir, const std::string& token) {
        return factory::fetch_hf_repo_cached(repo, rev, dir, token, http, cache_target, console);
    };
    hooks.push = [&](const factory::Job& j, const factory::JobVariant& v, const nlohmann::json& built,
                     const std::string& key) -> factory::PushOutcome {
        if (!built.contains("ollama_export") || !built["ollama_export"].is_object() || !built["ollama_export"].contains("object"))
            fail_input(v.name + " has no Ollama export in the bucket (built without one); rebuild it to push");
        factory::RegistryPushRequest q;
        q.registry = factory::parse_registry_host(j.registry_host);
        q.ns = j.registry_namespace;
        q.model = v.model_name;
        q.export_object = built["ollama_export"]["object"].get<std::string>();
        q.key_pem = key;
        q.key_where = j.registry_key_ref;
        q.work_dir = opts.work_dir;
        q.download = download_object;
        q.http = http;
        q.log = [console, name = v.name](const std::string& s) { console(name + ": " + s); };
        const factory::RegistryPushResult r = factory::push_export_to_registry(q);
        factory::PushOutcome o;
        o.pushed = true;
        o.reference = r.reference;
        o.manifest_digest = r.manifest_digest;
        o.export_manifest_digest = r.export_manifest_digest;
        o.uploaded = r.uploaded;
        o.already_present = r.skipped;
        o.bytes_uploaded = r.bytes_uploaded;
        return o;
    };
    // job.hub_repo: the Hub endpoint from HF_ENDPOINT (as for downloads), the job's token.
    auto hub_client = [&](const std::string& token) {
        hub::HfEnv env = hub::HfEnv::from_environment();
        env.token = token;
        env.token_origin = job.hf_token_ref.empty() ? "the job's token" : job.hf_token_ref;
        return hub::HfClient(http, env);
    };
    hooks.hub_check = [&](const std::string& repo_id, const std::string& token) {
        hub::HfClient c = hub_client(token);
        hub::HfPublisher(c).check_write_access(repo_id);
    };
    hooks.hub_publish = [&](const factory::Job& j, std::vector<hub::HubFile> files, const std::string& token) -> nlohmann::json {
        hub::HfClient c = hub_client(token);
        hub::HfPublisher pub(c, [console](const std::string& l) { console("hub: " + l); });
        hub::PublishRequest req;
        req.target = hub::HfSource::parse(j.hub_repo);
        req.private_repo = j.hub_private;
        req.message = "Upload GGUF files made by cmf (job " + j.job_id + ")";
        req.description = "Built and measured by cmf " CMF_VERSION " from " + j.source_uri + ".";
        req.files = std::move(files);
        const hub::PublishResult r = pub.publish(std::move(req));
        return {{"commit", r.commit}, {"url", r.commit_url}, {"committed", r.committed}, {"unchanged", r.unchanged},
                {"lfs_sent", r.lfs_sent}, {"lfs_stored", r.lfs_stored}, {"bytes_sent", r.bytes_sent}};
    };
    // The quality gate runs on the engine linked into this binary; a cmf without one leaves the
    // hook unset and a gated job fails with a line saying so.
    if (engine::info().available)
        hooks.gate = [](const fs::path& reference, const fs::path& mmproj) -> std::unique_ptr<engine::GateSession> {
            engine::require();
            // the factory's budget: 4 chunks of 512 (1020 scored tokens per variant: the mean KLD's
            // uncertainty stays far below any limit) and answers of at most 96 tokens in the smoke
            engine::EvalSettings es;
            es.chunks = 4;
            engine::SmokeSettings ss;
            ss.max_tokens_cap = 96;
            return std::make_unique<engine::EngineGate>(reference, mmproj, es, ss);
        };
    if (engine::info().available)
        hooks.imatrix = [](const fs::path& lossless, const fs::path& out) {
            engine::require();
            const engine::Imatrix m = engine::collect_imatrix(lossless, engine::builtin_text(engine::texts::calibration(), "built-in calibration"), {});
            engine::write_imatrix_gguf(out, m, {engine::kBuiltinCalibrationDataset});
        };
    // Test hook for the restart tests: CMF_TEST_STALL_AT=PHASE makes the worker stop dead when
    // it enters PHASE ("quantize": after the first block, with partial outputs on disk), so a
    // test can kill -9 it at a known point.
    if (const char* stall = std::getenv("CMF_TEST_STALL_AT"); stall && *stall) {
        std::string at = stall;
        hooks.on_phase = [at](const std::string& phase) {
            if (phase != at) return;
            std::fprintf(stderr, "cmf worker: stalled at %s (CMF_TEST_STALL_AT)\n", at.c_str());
            for (;;) ::pause();
        };
    }
    // Last step on a VM: delete it (a guest shutdown would only stop it). A failure is reported
    // but does not change the job's outcome: maxRunDuration deletes the VM anyway.
    auto self_delete = [&] {
        if (!from_metadata && !job.delete_vm) return;
        try {
            const std::string endpoint =
                a.get("compute-endpoint").value_or(env_value("CMF_COMPUTE_API").value_or(factory::kComputeDefaultEndpoint));
            console(factory::delete_own_instance(http, mds, endpoint).detail);
        } catch (const Error& e) {
            std::fprintf(stderr, "cmf worker: warning: VM not deleted: %s\n", e.what());
        }
    };
    factory::WorkerReport r;
    try {
        r = factory::run_worker(job, *bucket, opts, hooks);
    } catch (...) {
        self_delete();
        throw;
    }
    self_delete();
    if (!r.ok()) {
        std::string names;
        for (const auto& v : r.failed) names += (names.empty() ? "" : ", ") + v;
        std::fprintf(stderr, "cmf worker: failed: %s (see status/<variant>-error.fail and -build.log in %s)\n", names.c_str(),
                     bucket->uri().c_str());
        return 1;
    }
    std::printf("job %s: built %zu, already built %zu, failed 0\n", job.job_id.c_str(), r.built.size(), r.skipped.size());
    return 0;
}

}  // namespace cmf::cli
