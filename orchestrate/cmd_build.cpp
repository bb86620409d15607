// cmf build / build+push: makes a factory job from the configuration and runs it. `--backend
// local` runs the worker as a local child process against a directory standing in for the
// bucket; `--backend gce` (the default when GCS_BUCKET and a project are configured) runs it on
// a disposable Compute Engine VM (orchestrate/gce_backend.h).
#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>

#include "cmf/factory/bucket.h"
#include "cmf/factory/config.h"
#include "cmf/factory/job.h"
#include "cmf/factory/status_report.h"
#include "cmf/factory/variant.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"
#include "orchestrate/gce_backend.h"

namespace cmf::cli {

static const char* kBuildHelp = R"(usage: cmf build VARIANTS [--backend gce|local] [options]
       cmf build+push VARIANTS [--backend gce] [options]

Builds the variants (comma list: q4s, q4, q8, f16 = Q4_K_S, Q4_K_M, Q8_0, F16, or any type
`cmf quantize` accepts) in one pass over the source, as a factory job: GGUFs, model cards and
build logs under models/<PREFIX-VARIANT>/, markers under status/. Then prints `cmf status`.
Rerunning skips what is already built.

build+push also pushes every built variant to the Ollama registry (OLLAMA_REGISTRY_NS).

  --backend gce     one disposable VM builds all variants from one download of CMF_MODEL
                    (default when GCS_BUCKET and GCP_PROJECT are set): uploads this binary
                    to gs://BUCKET/bin/<sha256>/cmf, puts the HF token (and for build+push a
                    copy of the factory push key, `cmf keys create`) into Secret Manager
                    secrets of the job that only the VM's service account may read, creates
                    the VM (next zone of the region on a stockout), prints progress from the
                    bucket's markers, deletes the VM and the secrets at the end or on Ctrl-C
  --backend local   run the worker here as a child process; the bucket is a directory
  --source DIR      local: checkpoint directory
  --bucket B        local: bucket directory (default: ./cmf-bucket); gce: GCS_BUCKET
  --zones Z1,Z2     gce: zones to try after GCE_ZONE (default: the region's a,b,c,d,f)
  --spot            gce: a Spot VM (cheaper, may be preempted)
  --keep-vm         gce: keep the VM after the job (debugging; metadata cmf-keep-vm=TRUE):
                    neither the worker nor cmf deletes it, except on Ctrl-C; then
                    `cmf cleanup --job JOB`
  --secrets-in-metadata  gce: CMF_SECRET_STORE=metadata: the secrets as instance metadata
                    (anyone with compute.instances.get can read them; a warning is printed)
  --poll SECONDS    gce: how often to look at the bucket and the VM (default 5)
  --prefix P        object prefix inside the bucket (default: none)
  --work DIR        worker scratch directory
  --threads N       worker threads (default: all cores)
  --no-mmproj       do not write the vision projector of a multimodal model
  --no-gate         publish without the quality gate (CMF_GATE=0). By default every variant is
                    evaluated with llama.cpp against the lossless conversion of the same pass
                    (mean KL divergence and top-1 agreement as llama-perplexity measures them,
                    and a degeneration smoke, with the image when there is a vision tower); a
                    variant over its limits is failed with the reason and neither published nor
                    pushed. Limits: per type (README), or --max-kld X / --min-top1 PERCENT
  --upload-reference  also upload the lossless reference of the gate (reference/ in the bucket)
  --imatrix auto    compute an importance matrix first (llama.cpp, on cmf's built-in calibration
                    text: medical document extraction + general instructions, chat-formatted)
                    from the F16 of the checkpoint, and quantize every variant with it
                    (CMF_IMATRIX=auto); recorded in each file's metadata and model card
  --dry-run         print the job JSON and stop
  --quiet           only the final status table (and errors)
Configuration options (--model, --name-prefix, --registry-ns, ..., --env-file): see
`cmf config --help`.
)";

static std::string new_job_id(const std::string& prefix) {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char ts[32];
    std::strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tm);
    std::random_device rd;
    char rnd[8];
    std::snprintf(rnd, sizeof rnd, "%04x", rd() & 0xffff);
    std::string id = prefix + "-" + ts + "-" + rnd;
    // job ids are object names and VM names: keep them within GCE's 63 characters
    if (id.size() > 63) id = id.substr(id.size() - 63);
    while (!id.empty() && !std::isalnum(static_cast<unsigned char>(id[0]))) id.erase(id.begin());
    return id;
}

// --backend gce: one VM for the job.
// CMF_LORA / CMF_PUBLISH_ADAPTER into the job. `bucket` is GCS_BUCKET for --backend gce (a bare
// PATH is a directory in it) and "" for --backend local (a bare PATH is a directory here).
static void set_job_lora(factory::Job& job, const factory::FactoryConfig& cfg, const std::string& bucket) {
    if (!cfg.is_set("CMF_LORA")) return;
    std::string v = cfg.get("CMF_LORA");
    const bool scheme = v.find("://") != std::string::npos;
    if (bucket.empty() && !scheme) {
        if (!fs::is_directory(v)) fail(ErrorKind::usage, "CMF_LORA " + v + " is not an adapter directory");
        v = "file://" + fs::canonical(v).string();
    }
    const factory::LoraLocation l = factory::parse_lora_location(v, bucket);
    if (!bucket.empty() && l.uri.rfind("file://", 0) == 0)
        fail(ErrorKind::usage, "CMF_LORA " + v + ": the worker VM cannot read this machine's files; put the adapter in GCS_BUCKET or on the Hub");
    if (bucket.empty() && l.is_gs()) fail(ErrorKind::usage, "CMF_LORA " + v + ": --backend local reads adapters from hf:// or a local directory");
    if (l.is_gs() && l.uri.rfind("gs://" + bucket + "/", 0) != 0)
        fail(ErrorKind::usage, "CMF_LORA " + v + ": the adapter must be in GCS_BUCKET (gs://" + bucket + "/), which the worker can read");
    job.lora_uri = l.uri;
    job.lora_revision = l.revision;
    job.publish_adapter = cfg.get("CMF_PUBLISH_ADAPTER") == "1";
}

// CMF_GATE / CMF_MAX_KLD / CMF_MIN_TOP1 / --upload-reference into the job.
static void set_job_gate(factory::Job& job, const factory::FactoryConfig& cfg, const Args& a) {
    job.gate = cfg.get("CMF_GATE") != "0";
    if (cfg.is_set("CMF_MAX_KLD")) job.max_kld = factory::parse_gate_number("CMF_MAX_KLD", cfg.get("CMF_MAX_KLD"));
    if (cfg.is_set("CMF_MIN_TOP1")) job.min_top1 = factory::parse_gate_number("CMF_MIN_TOP1", cfg.get("CMF_MIN_TOP1"));
    job.upload_reference = a.has("upload-reference");
    job.imatrix_auto = cfg.get("CMF_IMATRIX") == "auto";
    if (cfg.is_set("CMF_HF_REPO")) {
        job.hub_repo = factory::hub_repo_uri(cfg.get("CMF_HF_REPO"));
        job.hub_private = cfg.get("CMF_HF_PRIVATE") == "1";
        if (cfg.get("HF_TOKEN").empty())
            fail(ErrorKind::auth, "CMF_HF_REPO needs HF_TOKEN, a Hugging Face token with write access (https://huggingface.co/settings/tokens)");
    }
    if (!job.gate && (job.max_kld || job.min_top1 || job.upload_reference))
        fail(ErrorKind::usage, "--no-gate with --max-kld, --min-top1 or --upload-reference: they are the gate's");
}

static int build_gce(const Args& a, const std::vector<factory::FactoryVariant>& variants, bool push) {
    const std::string cmdname = push ? "build+push" : "build";
    for (const char* o : {"source", "work"})
        if (a.get(o)) fail(ErrorKind::usage, cmdname + ": --" + std::string(o) + " is for --backend local");
    const factory::FactoryConfig cfg = factory_config(a);
    if (!cfg.is_set("GCS_BUCKET")) fail(ErrorKind::usage, cmdname + ": --backend gce needs GCS_BUCKET (.env, environment or --bucket)");
    if (push && !cfg.is_set("OLLAMA_REGISTRY_NS"))
        fail(ErrorKind::usage, "build+push: set OLLAMA_REGISTRY_NS (the registry namespace to push to)");

    factory::Job job;
    const std::string name_prefix = cfg.get("CMF_NAME_PREFIX");
    job.job_id = new_job_id(name_prefix);
    job.created = factory::utc_timestamp();
    job.source_uri = "hf://" + cfg.get("CMF_MODEL");
    job.revision = cfg.get("CMF_REVISION");
    set_job_lora(job, cfg, factory::normalize_bucket_name(cfg.get("GCS_BUCKET")));
    set_job_gate(job, cfg, a);
    for (const auto& v : variants) job.variants.push_back({v.name, v.type, name_prefix + "-" + v.name});
    job.bucket = "gs://" + factory::normalize_bucket_name(cfg.get("GCS_BUCKET"));
    job.prefix = a.get("prefix").value_or("");
    if (!job.prefix.empty() && job.prefix.back() != '/') job.prefix += '/';
    if (push) job.registry_namespace = cfg.get("OLLAMA_REGISTRY_NS");
    job.mmproj = !a.has("no-mmproj");
    job.delete_vm = true;
    if (auto t = a.get("threads")) {
        try {
            job.threads = static_cast<unsigned>(std::stoul(*t));
        } catch (...) {
            fail(ErrorKind::usage, cmdname + ": --threads must be a number");
        }
    }
    const factory::SecretStore store =
        a.has("secrets-in-metadata") ? factory::SecretStore::metadata : factory::parse_secret_store(cfg.get("CMF_SECRET_STORE"));
    // the secret references are filled in by run_gce_job; what they will look like keeps
    // validation (and --dry-run) honest
    auto planned_ref = [&](const std::string& what) -> std::string {
        if (store == factory::SecretStore::metadata) return "metadata:cmf-" + what;
        if (store == factory::SecretStore::bucket)
            return "gs://" + factory::normalize_bucket_name(cfg.get("GCS_BUCKET")) + "/" + job.prefix + "secrets/" + job.job_id + "/" + what;
        const char* env_project = std::getenv("GOOGLE_CLOUD_PROJECT");
        const std::string project = cfg.is_set("GCP_PROJECT") ? cfg.get("GCP_PROJECT") : env_project ? env_project : "PROJECT";
        return "sm:projects/" + project + "/secrets/" + factory::job_secret_id(job.job_id, what) + "/versions/1";
    };
    if (!cfg.get("HF_TOKEN").empty()) job.hf_token_ref = planned_ref("hf-token");
    if (push) job.registry_key_ref = planned_ref("push-key");
    factory::validate_job(job);
    if (a.has("dry-run")) {
        std::fputs((factory::job_to_json(job).dump(1) + "\n").c_str(), stdout);
        return 0;
    }
    gce::RunOptions ro;
    ro.push = push;
    ro.store = store;
    ro.keep_vm = a.has("keep-vm");
    ro.spot = a.has("spot");
    ro.quiet = a.has("quiet");
    ro.zones = split_list(a.get("zones").value_or(""));
    if (auto p = a.get("poll")) {
        double secs = 0;
        try {
            secs = std::stod(*p);
        } catch (...) {
        }
        if (!(secs >= 0.05 && secs <= 600)) fail(ErrorKind::usage, cmdname + ": --poll must be 0.05 to 600 seconds");
        ro.poll = std::chrono::milliseconds(static_cast<long long>(secs * 1000));
    }
    gce::Cloud c = gce::connect(cfg, true);
    std::fprintf(stderr, "cmf %s: job %s -> gs://%s/%s (project %s)\n", cmdname.c_str(), job.job_id.c_str(), c.bucket.c_str(),
                 job.prefix.c_str(), c.project.c_str());
    return gce::run_gce_job(c, cfg, job, ro);
}

static int build_command(const std::vector<std::string>& argv_in, bool push) {
    const std::string cmdname = push ? "build+push" : "build";
    std::vector<std::string> argv = argv_in;
    for (auto& x : argv)
        if (x == "--no-gate") x = "--gate=0";
    std::set<std::string> values = factory::config_flag_names();
    for (const char* o : {"backend", "source", "prefix", "work", "threads", "zones", "poll"}) values.insert(o);
    Args a = parse_args(argv, values, {"no-mmproj", "dry-run", "quiet", "help", "spot", "keep-vm", "secrets-in-metadata", "upload-reference"}, cmdname);
    if (a.has("help")) {
        std::fputs(kBuildHelp, stdout);
        return 0;
    }
    if (a.positional.size() != 1)
        fail(ErrorKind::usage, cmdname + ": expected one VARIANTS list, e.g. q4,q8,f16 (see cmf build --help)");
    const auto variants = factory::parse_factory_variants(a.positional[0]);
    std::string backend = a.get("backend").value_or("");
    if (backend.empty()) backend = gce::gce_configured(factory_config(a)) ? "gce" : "";
    if (backend.empty())
        fail(ErrorKind::usage, cmdname + ": no backend: set GCS_BUCKET and GCP_PROJECT for --backend gce, or use --backend local");
    if (backend == "gce") return build_gce(a, variants, push);
    if (backend != "local") fail(ErrorKind::usage, cmdname + ": --backend must be gce or local");
    if (push) fail(ErrorKind::usage, "build+push: the local backend does not push; build, then `cmf push BUILD NAME`");

    // with the local backend --bucket is a directory, not GCS_BUCKET
    const factory::FactoryConfig cfg = factory_config(a, {"bucket"});

    auto src = a.get("source");
    if (!src)
        fail(ErrorKind::usage, "build: --source DIR is required: downloading hf://" + cfg.get("CMF_MODEL") +
                                   " needs the Hugging Face client, which is not in this build yet");
    if (!fs::is_directory(*src)) fail(ErrorKind::usage, "build: --source " + *src + " is not a directory");
    factory::LocalBucket bucket(a.get("bucket").value_or("cmf-bucket"));

    factory::Job job;
    const std::string name_prefix = cfg.get("CMF_NAME_PREFIX");
    job.job_id = new_job_id(name_prefix);
    job.created = factory::utc_timestamp();
    job.source_uri = "file://" + fs::canonical(*src).string();
    job.revision = cfg.get("CMF_REVISION");
    set_job_lora(job, cfg, "");
    set_job_gate(job, cfg, a);
    for (const auto& v : variants) job.variants.push_back({v.name, v.type, name_prefix + "-" + v.name});
    job.bucket = bucket.uri();
    job.prefix = a.get("prefix").value_or("");
    if (!job.prefix.empty() && job.prefix.back() != '/') job.prefix += '/';
    job.registry_namespace = cfg.get("OLLAMA_REGISTRY_NS");
    if (cfg.is_set("OLLAMA_KEY_FILE")) job.registry_key_ref = "file:" + cfg.get("OLLAMA_KEY_FILE");
    const std::string hf_token = cfg.get("HF_TOKEN");
    if (!hf_token.empty()) job.hf_token_ref = "env:HF_TOKEN";
    job.mmproj = !a.has("no-mmproj");
    if (auto t = a.get("threads")) {
        try {
            job.threads = static_cast<unsigned>(std::stoul(*t));
        } catch (...) {
            fail(ErrorKind::usage, "build: --threads must be a number");
        }
    }
    factory::validate_job(job);
    const std::string job_json = factory::job_to_json(job).dump(1) + "\n";
    if (a.has("dry-run")) {
        std::fputs(job_json.c_str(), stdout);
        return 0;
    }
    const std::string job_object = job.prefix + "jobs/" + job.job_id + ".json";
    bucket.put(job_object, job_json);
    std::fprintf(stderr, "cmf build: job %s -> %s\n", job.job_id.c_str(), bucket.uri().c_str());

    std::vector<std::string> args = {"cmf", "worker", "--job", (bucket.root() / job_object).string(), "--backend", "local", "--bucket",
                                     bucket.root().string()};
    if (auto w = a.get("work")) args.insert(args.end(), {"--work", *w});
    if (a.has("quiet")) args.push_back("--quiet");
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) fail_io("build: cannot start the worker: fork failed");
    if (pid == 0) {
        // the token reaches the worker through its environment only (job: hf_token_ref env:HF_TOKEN)
        if (!hf_token.empty()) ::setenv("HF_TOKEN", hf_token.c_str(), 1);
        std::vector<char*> cargv;
        for (auto& s : args) cargv.push_back(s.data());
        cargv.push_back(nullptr);
        // this same binary: /proc/self/exe, or the path it was started by where /proc is not
        // mounted (a bare chroot)
        ::execv("/proc/self/exe", cargv.data());
        ::execvp(program_invocation_name, cargv.data());
        std::fprintf(stderr, "cmf build: cannot run the worker (%s)\n", program_invocation_name);
        ::_exit(127);
    }
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    const int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    std::printf("\n");
    std::fputs(factory::render_status(bucket, job.prefix, factory::read_bucket_status(bucket, job.prefix)).c_str(), stdout);
    return rc;
}

int cmd_build(const std::vector<std::string>& argv) { return build_command(argv, false); }
int cmd_build_push(const std::vector<std::string>& argv) { return build_command(argv, true); }

}  // namespace cmf::cli
