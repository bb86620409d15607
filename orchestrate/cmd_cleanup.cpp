// cmf cleanup: deletes every VM of the factory (label managed-by=cmf) in the project, in all
// zones, and the Secret Manager secrets of its jobs (managed-by=cmf with a cmf-job label; never
// the factory push key) -- what is left after an orchestrator was killed hard or lost its network.
#include <cstdio>
#include <optional>

#include "orchestrate/args.h"
#include "orchestrate/commands.h"
#include "orchestrate/gce_backend.h"

namespace cmf::cli {

static const char* kCleanupHelp = R"(usage: cmf cleanup [--job JOB_ID] [--dry-run] [--project P]

Deletes the Compute Engine VMs that carry the label managed-by=cmf (every zone of the
project), or only the one of job JOB_ID (label cmf-job). Their boot disks go with them.
Then the Secret Manager secrets of those jobs (labels managed-by=cmf, cmf-job=JOB): the HF
token and push key copies a job's VM reads. The factory push key (`cmf keys`) stays.
  --dry-run   list what would be deleted
Configuration options (--project, --env-file, ...): see `cmf config --help`.
)";

int cmd_cleanup(const std::vector<std::string>& argv) {
    std::set<std::string> values = factory::config_flag_names();
    values.insert("job");
    Args a = parse_args(argv, values, {"dry-run", "help"}, "cleanup");
    if (a.has("help")) {
        std::fputs(kCleanupHelp, stdout);
        return 0;
    }
    if (!a.positional.empty()) fail(ErrorKind::usage, "cleanup: unexpected argument '" + a.positional[0] + "'");
    const factory::FactoryConfig cfg = factory_config(a);
    gce::Cloud c = gce::connect(cfg, false);
    std::vector<cloud::Instance> vms = c.gce->list_instances(c.project, gce::kManagedLabel, gce::kManagedValue);
    std::optional<std::string> want;
    if (auto job = a.get("job")) {
        want = cloud::to_label_value(*job);
        std::erase_if(vms, [&](const cloud::Instance& i) { return !i.labels.count(gce::kJobLabel) || i.labels.at(gce::kJobLabel) != *want; });
    }
    int failed = 0;
    if (vms.empty()) std::printf("no cmf VMs in project %s\n", c.project.c_str());
    for (const auto& v : vms) {
        if (a.has("dry-run")) {
            std::printf("would delete %s (%s, %s)\n", v.name.c_str(), v.zone.c_str(), v.status.c_str());
            continue;
        }
        try {
            bool done = c.gce->delete_instance_and_wait(c.project, v.zone, v.name, std::chrono::seconds(120));
            std::printf("deleted %s (%s)%s\n", v.name.c_str(), v.zone.c_str(), done ? "" : " -- still stopping");
        } catch (const Error& e) {
            ++failed;
            std::fprintf(stderr, "cmf cleanup: %s in %s: %s\n", v.name.c_str(), v.zone.c_str(), e.what());
        }
    }
    // the jobs' secrets: with every cmf VM gone no job can read them any more
    if (!c.sm->service_enabled()) return failed ? 7 : 0;  // no Secret Manager: no secrets
    int secret_failures = 0;
    const auto lines = factory::destroy_job_secrets(
        *c.sm, [&](const std::string& job, std::chrono::seconds) { return !want || job == *want; }, &secret_failures, a.has("dry-run"));
    for (const auto& l : lines) std::fprintf(l.starts_with("could not") ? stderr : stdout, "%s\n", l.c_str());
    if (lines.empty()) std::printf("no cmf job secrets in project %s\n", c.project.c_str());
    failed += secret_failures;
    return failed ? 7 : 0;
}

}  // namespace cmf::cli
