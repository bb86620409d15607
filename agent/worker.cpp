// cmf worker: runs one factory job (the VM side of `cmf build`; also the local backend's child).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "cmf/factory/bucket.h"
#include "cmf/factory/job.h"
#include "cmf/factory/worker.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

static const char* kWorkerHelp = R"(usage: cmf worker --job FILE [--backend local --bucket DIR] [--work DIR]

Runs one factory job: builds every variant of the job from one read of the source, uploads
the GGUFs, model cards and build logs, writes the markers status/<variant>.built|.pushed|
-error.fail and status/<job>.json, and keeps status/heartbeat.json fresh. A variant that is
already built is not rebuilt, so a restarted worker finishes what is left.

  --job FILE        the job JSON (schema cmf.job/1; see include/cmf/factory/job.h)
  --backend B       local: the bucket is a directory (default: what the job's output.bucket
                    says; gs:// buckets need the GCS client, not in this build yet)
  --bucket DIR      local bucket directory (overrides the job's file:// bucket)
  --work DIR        scratch directory for downloads and GGUFs (default: $TMPDIR/cmf-work/JOB)
  --quiet           no progress lines

Exit status: 0 all variants built (or already built), 1 some variant failed (its
status/<variant>-error.fail says why), 2 usage, 3 bad job or input, 4 I/O, 6 secrets.
)";

int cmd_worker(const std::vector<std::string>& argv) {
    Args a = parse_args(argv, {"job", "backend", "bucket", "work"}, {"quiet", "help"}, "worker");
    if (a.has("help")) {
        std::fputs(kWorkerHelp, stdout);
        return 0;
    }
    if (!a.positional.empty()) fail(ErrorKind::usage, "worker: unexpected argument '" + a.positional[0] + "'");
    auto job_file = a.get("job");
    // Seam: on a VM the job will come from the metadata key `factory-config`.
    if (!job_file) fail(ErrorKind::usage, "worker: --job FILE is required (reading the job from instance metadata is not in this build yet)");
    std::ifstream f(*job_file, std::ios::binary);
    if (!f) fail_io("worker: cannot read " + *job_file);
    std::stringstream ss;
    ss << f.rdbuf();
    factory::Job job = factory::job_from_json_text(ss.str(), *job_file);

    const std::string backend = a.get("backend").value_or(job.bucket.rfind("gs://", 0) == 0 ? "gce" : "local");
    if (backend != "local" && backend != "gce") fail(ErrorKind::usage, "worker: --backend must be local or gce");
    if (backend == "gce")
        fail(ErrorKind::usage, "worker: gs:// buckets need the GCS client, which is not in this build yet; use --backend local --bucket DIR");
    std::string bucket_dir;
    if (auto b = a.get("bucket")) bucket_dir = *b;
    else if (job.bucket.rfind("file://", 0) == 0) bucket_dir = job.bucket.substr(7);
    else fail(ErrorKind::usage, "worker: --backend local needs --bucket DIR or a file:// bucket in the job");
    factory::LocalBucket bucket(bucket_dir);
    job.bucket = bucket.uri();

    factory::WorkerOptions opts;
    if (auto w = a.get("work")) opts.work_dir = *w;
    else {
        // not fs::temp_directory_path(): it fails when the directory does not exist yet (a
        // fresh chroot or container); the worker creates what it needs
        const char* tmp = std::getenv("TMPDIR");
        opts.work_dir = fs::path(tmp && *tmp ? tmp : "/tmp") / "cmf-work" / job.job_id;
    }
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    opts.host = host;

    factory::WorkerHooks hooks;
    hooks.getenv = [](const std::string& n) -> std::optional<std::string> {
        const char* v = std::getenv(n.c_str());
        return v ? std::optional<std::string>(v) : std::nullopt;
    };
    const bool quiet = a.has("quiet");
    hooks.console = [quiet](const std::string& line) {
        if (!quiet) std::fprintf(stderr, "cmf worker: %s\n", line.c_str());
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
    factory::WorkerReport r = factory::run_worker(job, bucket, opts, hooks);
    if (job.delete_vm) hooks.console("note: delete_vm is set but this build has no GCE client; the startup script deletes the VM");
    if (!r.ok()) {
        std::string names;
        for (const auto& v : r.failed) names += (names.empty() ? "" : ", ") + v;
        std::fprintf(stderr, "cmf worker: failed: %s (see status/<variant>-error.fail and -build.log in %s)\n", names.c_str(),
                     bucket.uri().c_str());
        return 1;
    }
    std::printf("job %s: built %zu, already built %zu, failed 0\n", job.job_id.c_str(), r.built.size(), r.skipped.size());
    return 0;
}

}  // namespace cmf::cli
