// cmf cloud-init --print startup|user-data: the VM bootstrap files built into this binary.
#include <cstdio>

#include "cmf/cloud_init_files.h"
#include "cmf/factory/cloud_init.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

static const char* kCloudInitHelp = R"(usage: cmf cloud-init --print startup|user-data

Prints the worker VM bootstrap built into this binary:
  startup     cloud-init/startup.sh, the GCE `startup-script` for Debian images
  user-data   cloud-init/user-data.yaml (#cloud-config) with startup.sh inlined, the GCE
              `user-data` for Ubuntu images
The script reads the metadata keys cmf-binary (gs://BUCKET/OBJECT), cmf-binary-sha256,
factory-config (the job JSON) and cmf-keep-vm (TRUE keeps the VM for debugging).
)";

int cmd_cloudinit(const std::vector<std::string>& argv) {
    Args a = parse_args(argv, {"print"}, {"help"}, "cloud-init");
    if (a.has("help")) {
        std::fputs(kCloudInitHelp, stdout);
        return 0;
    }
    if (!a.positional.empty()) fail(ErrorKind::usage, "cloud-init: unexpected argument '" + a.positional[0] + "'");
    const std::string what = a.get("print").value_or("");
    if (what == "startup") std::fputs(embedded::kStartupSh, stdout);
    else if (what == "user-data") std::fputs(factory::render_user_data(embedded::kUserDataYaml, embedded::kStartupSh).c_str(), stdout);
    else fail(ErrorKind::usage, "cloud-init: --print must be startup or user-data");
    return 0;
}

}  // namespace cmf::cli
