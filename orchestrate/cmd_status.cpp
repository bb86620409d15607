// cmf status: what the bucket says about each variant (markers, sizes, failures with log tails),
// and with --backend gce also the factory's VMs (label managed-by=cmf) and their state.
#include <cstdio>

#include "cmf/factory/bucket.h"
#include "cmf/factory/status_report.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"
#include "orchestrate/gce_backend.h"

namespace cmf::cli {

static const char* kStatusHelp = R"(usage: cmf status [--backend gce|local] [--bucket B] [--prefix P] [--json]

Prints one row per variant found under PREFIXstatus/ (built / pushed / failed, size, when),
the jobs' states, the last heartbeat, and for each failed variant its error line and the last
30 lines of its build log. --json prints status/<job>.json documents instead.

  --backend gce     the bucket is GCS_BUCKET (gs://); also lists the factory's VMs (label
                    managed-by=cmf) with zone and state, and its Secret Manager secrets (the
                    push key; a job's secrets while it runs, or a leftover). Default when GCS_BUCKET and
                    GCP_PROJECT are configured.
  --backend local   --bucket DIR is a directory (what `cmf build --backend local` writes)
Configuration options (--project, --bucket, --env-file, ...): see `cmf config --help`.
)";

static int status_gce(const Args& a, const std::string& prefix) {
    const factory::FactoryConfig cfg = factory_config(a);
    gce::Cloud c = gce::connect(cfg, true);
    factory::GcsBucket bucket(*c.gcs, c.bucket);
    const factory::BucketStatus s = factory::read_bucket_status(bucket, prefix);
    if (a.has("json")) {
        nlohmann::json j = s.jobs;
        std::printf("%s\n", j.dump(1).c_str());
        return 0;
    }
    std::fputs(factory::render_status(bucket, prefix, s).c_str(), stdout);
    try {
        auto vms = c.gce->list_instances(c.project, gce::kManagedLabel, gce::kManagedValue);
        if (vms.empty()) {
            std::printf("VMs: none (project %s)\n", c.project.c_str());
        } else {
            std::printf("\n%-40s %-16s %-12s %s\n", "VM", "zone", "state", "job");
            for (const auto& v : vms) {
                auto job = v.labels.count(gce::kJobLabel) ? v.labels.at(gce::kJobLabel) : "";
                std::printf("%-40s %-16s %-12s %s\n", v.name.c_str(), v.zone.c_str(), v.status.c_str(), job.c_str());
            }
        }
    } catch (const Error& e) {
        std::printf("VMs: cannot list them: %s\n", e.what());
    }
    // the factory's secrets: the push key, and job secrets (a leftover shows here until the
    // next build or `cmf cleanup` deletes it)
    try {
        if (c.sm->service_enabled()) {
            const auto secrets = c.sm->list(gce::kManagedLabel, gce::kManagedValue);
            if (secrets.empty()) std::printf("secrets: none\n");
            else std::printf("\n%-60s %-22s %s\n", "secret", "created", "job");
            for (const auto& x : secrets) {
                const auto job = x.labels.find(gce::kJobLabel);
                std::printf("%-60s %-22s %s\n", x.id.c_str(), x.create_time.substr(0, 19).c_str(),
                            job != x.labels.end() ? job->second.c_str() : x.labels.count(factory::kRoleLabel) ? "(push key)" : "");
            }
        }
    } catch (const Error& e) {
        std::printf("secrets: cannot list them: %s\n", e.what());
    }
    return 0;
}

int cmd_status(const std::vector<std::string>& argv) {
    std::set<std::string> values = factory::config_flag_names();
    for (const char* o : {"backend", "prefix"}) values.insert(o);
    Args a = parse_args(argv, values, {"json", "help"}, "status");
    if (a.has("help")) {
        std::fputs(kStatusHelp, stdout);
        return 0;
    }
    if (!a.positional.empty()) fail(ErrorKind::usage, "status: unexpected argument '" + a.positional[0] + "'");
    std::string prefix = a.get("prefix").value_or("");
    if (!prefix.empty() && prefix.back() != '/') prefix += '/';
    std::string backend = a.get("backend").value_or("");
    if (backend.empty()) {
        auto b = a.get("bucket");
        backend = (b && std::filesystem::is_directory(*b)) ? "local" : "gce";
    }
    if (backend == "gce") return status_gce(a, prefix);
    if (backend != "local") fail(ErrorKind::usage, "status: --backend must be local or gce");
    auto dir = a.get("bucket");
    if (!dir) fail(ErrorKind::usage, "status: --bucket DIR is required with --backend local");
    if (!std::filesystem::is_directory(*dir)) fail_io("status: bucket directory " + *dir + " does not exist");
    factory::LocalBucket bucket(*dir);
    const factory::BucketStatus s = factory::read_bucket_status(bucket, prefix);
    if (a.has("json")) {
        nlohmann::json j = s.jobs;
        std::printf("%s\n", j.dump(1).c_str());
        return 0;
    }
    std::fputs(factory::render_status(bucket, prefix, s).c_str(), stdout);
    return 0;
}

}  // namespace cmf::cli
