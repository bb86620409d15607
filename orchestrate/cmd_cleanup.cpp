// cmf cleanup: deletes every VM of the factory (label managed-by=cmf) in the project, in all
// zones -- what is left after an orchestrator was killed hard or lost its network.
#include <cstdio>

#include "orchestrate/args.h"
#include "orchestrate/commands.h"
#include "orchestrate/gce_backend.h"

namespace cmf::cli {

static const char* kCleanupHelp = R"(usage: cmf cleanup [--job JOB_ID] [--dry-run] [--project P]

Deletes the Compute Engine VMs that carry the label managed-by=cmf (every zone of the
project), or only the one of job JOB_ID (label cmf-job). Their boot disks go with them.
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
    std::map<std::string, std::string> flags;
    for (const auto& n : factory::config_flag_names())
        if (n != "env-file")
            if (auto v = a.get(n)) flags[n] = *v;
    const factory::FactoryConfig cfg = factory::load_factory_config(flags, a.get("env-file"));
    gce::Cloud c = gce::connect(cfg, false);
    std::vector<cloud::Instance> vms = c.gce->list_instances(c.project, gce::kManagedLabel, gce::kManagedValue);
    if (auto job = a.get("job")) {
        const std::string want = cloud::to_label_value(*job);
        std::erase_if(vms, [&](const cloud::Instance& i) { return !i.labels.count(gce::kJobLabel) || i.labels.at(gce::kJobLabel) != want; });
    }
    if (vms.empty()) {
        std::printf("no cmf VMs in project %s\n", c.project.c_str());
        return 0;
    }
    int failed = 0;
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
    return failed ? 7 : 0;
}

}  // namespace cmf::cli
