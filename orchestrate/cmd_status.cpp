// cmf status: what the bucket says about each variant (markers, sizes, failures with log tails).
#include <cstdio>

#include "cmf/factory/bucket.h"
#include "cmf/factory/status_report.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

static const char* kStatusHelp = R"(usage: cmf status --backend local --bucket DIR [--prefix P] [--json]

Prints one row per variant found under PREFIXstatus/ (built / pushed / failed, size, when),
the jobs' states, the last heartbeat, and for each failed variant its error line and the last
30 lines of its build log. --json prints status/<job>.json documents instead.
)";

int cmd_status(const std::vector<std::string>& argv) {
    Args a = parse_args(argv, {"backend", "bucket", "prefix"}, {"json", "help"}, "status");
    if (a.has("help")) {
        std::fputs(kStatusHelp, stdout);
        return 0;
    }
    if (!a.positional.empty()) fail(ErrorKind::usage, "status: unexpected argument '" + a.positional[0] + "'");
    const std::string backend = a.get("backend").value_or("local");
    if (backend == "gce") fail(ErrorKind::usage, "status: gs:// buckets need the GCS client, which is not in this build yet; use --backend local --bucket DIR");
    if (backend != "local") fail(ErrorKind::usage, "status: --backend must be local or gce");
    auto dir = a.get("bucket");
    if (!dir) fail(ErrorKind::usage, "status: --bucket DIR is required with --backend local");
    if (!std::filesystem::is_directory(*dir)) fail_io("status: bucket directory " + *dir + " does not exist");
    std::string prefix = a.get("prefix").value_or("");
    if (!prefix.empty() && prefix.back() != '/') prefix += '/';
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
