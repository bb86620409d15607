// cloud-init/startup.sh and user-data.yaml: syntax, the copies embedded in the binary, and the
// script's behaviour against a fake `curl` on PATH that serves metadata, the bucket object and
// the Compute API from a directory and records every call (no network, no python needed).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "cmf/factory/digest.h"
#include "test_support.h"

namespace fs = std::filesystem;
using cmf::test::read_file;
using cmf::test::run;
using cmf::test::run_cmf;
using cmf::test::shell_quote;
using cmf::test::TempDir;
using cmf::test::write_file;

namespace {

const fs::path kStartup = fs::path(CMF_SOURCE_DIR) / "cloud-init" / "startup.sh";

// curl stand-in: the URL is the last argument; -o FILE, -X METHOD, -H HEADER are honoured.
// http://md.test/computeMetadata/v1/P -> $FAKE/md/P (needs Metadata-Flavor: Google)
// http://storage.test/storage/v1/b/B/o/O?alt=media -> $FAKE/gcs/B/O (O url-decoded, Bearer needed)
// http://compute.test/... -> recorded only
const char* kFakeCurl = R"(#!/bin/bash
out=""; method=GET; url=""; headers=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out="$2"; shift 2 ;;
    -X) method="$2"; shift 2 ;;
    -H) headers="$headers|$2"; shift 2 ;;
    --retry|--retry-delay|--max-time) shift 2 ;;
    -*) shift ;;
    *) url="$1"; shift ;;
  esac
done
echo "$method $url" >> "$FAKE/calls.log"
serve() { if [ -n "$out" ]; then cat "$1" > "$out"; else cat "$1"; fi; }
case "$url" in
  http://md.test/computeMetadata/v1/*)
    case "$headers" in *"Metadata-Flavor: Google"*) ;; *) exit 22 ;; esac
    p="${url#http://md.test/computeMetadata/v1/}"; p="${p%%\?*}"
    [ -f "$FAKE/md/$p" ] || exit 22
    serve "$FAKE/md/$p" ;;
  http://storage.test/storage/v1/b/*)
    case "$headers" in *"Authorization: Bearer tok123"*) ;; *) exit 22 ;; esac
    p="${url#http://storage.test/storage/v1/b/}"; p="${p%%\?*}"; b="${p%%/o/*}"; o="${p#*/o/}"; o="${o//%2F//}"
    [ -f "$FAKE/gcs/$b/$o" ] || exit 22
    serve "$FAKE/gcs/$b/$o" ;;
  http://compute.test/*)
    case "$headers" in *"Authorization: Bearer tok123"*) echo '{}' ;; *) exit 22 ;; esac ;;
  *) exit 6 ;;
esac
)";

// A fake cmf binary: records how it was called, exits with $FAKE/worker-rc (default 0).
const char* kFakeCmf = R"(#!/bin/bash
if [ "$1" = "--version" ]; then echo "cmf fake"; exit 0; fi
echo "$@" > "$FAKE/worker-args"
exit $(cat "$FAKE/worker-rc" 2>/dev/null || echo 0)
)";

struct Vm {
    TempDir t;
    fs::path fake() const { return t.path(); }
    Vm(const std::string& binary, const std::string& sha) {
        fs::create_directories(t / "bin");
        write_file(t / "bin" / "curl", kFakeCurl);
        ::chmod((t / "bin" / "curl").c_str(), 0755);
        auto md = [&](const std::string& k, const std::string& v) {
            fs::create_directories((t / "md" / k).parent_path());
            write_file(t / "md" / k, v);
        };
        md("instance/attributes/cmf-binary", "gs://factory-bkt/bin/v1/cmf");
        md("instance/attributes/cmf-binary-sha256", sha);
        md("instance/attributes/factory-config", "{\"schema\":\"cmf.job/1\"}");
        md("instance/service-accounts/default/token", "{\"access_token\":\"tok123\",\"expires_in\":3599,\"token_type\":\"Bearer\"}");
        md("project/project-id", "my-proj");
        md("instance/zone", "projects/123/zones/us-central1-a");
        md("instance/name", "cmf-worker-1");
        fs::create_directories(t / "gcs" / "factory-bkt" / "bin" / "v1");
        write_file(t / "gcs" / "factory-bkt" / "bin" / "v1" / "cmf", binary);
    }
    cmf::test::RunResult boot() const {
        return run("env FAKE=" + shell_quote(fake().string()) + " PATH=" + shell_quote((fake() / "bin").string()) + ":/usr/bin:/bin" +
                   " CMF_METADATA_ROOT=http://md.test/computeMetadata/v1 CMF_STORAGE_API=http://storage.test" +
                   " CMF_COMPUTE_API=http://compute.test/compute/v1 CMF_INSTALL_DIR=" + shell_quote((fake() / "inst").string()) +
                   " bash " + shell_quote(kStartup.string()));
    }
    std::string calls() const { return read_file(fake() / "calls.log"); }
};

const char* kDelete = "DELETE http://compute.test/compute/v1/projects/my-proj/zones/us-central1-a/instances/cmf-worker-1";

}  // namespace

TEST(CloudInitScripts, ParseAndMatchTheEmbeddedCopies) {
    auto n = run("bash -n " + shell_quote(kStartup.string()));
    EXPECT_EQ(n.exit_code, 0) << n.output;
    auto s = run_cmf("cloud-init --print startup");
    ASSERT_EQ(s.exit_code, 0) << s.output;
    EXPECT_EQ(s.output, read_file(kStartup));
    auto u = run_cmf("cloud-init --print user-data");
    ASSERT_EQ(u.exit_code, 0) << u.output;
    EXPECT_EQ(u.output.rfind("#cloud-config\n", 0), 0u);
    EXPECT_EQ(u.output.find("@STARTUP_SH@"), std::string::npos);
    // the script inside the YAML block, un-indented, is startup.sh
    const std::string start = "    content: |\n";
    size_t a = u.output.find(start);
    size_t b = u.output.find("\nruncmd:");
    ASSERT_TRUE(a != std::string::npos && b != std::string::npos);
    std::string block = u.output.substr(a + start.size(), b - a - start.size() + 1), script;
    size_t i = 0;
    while (i < block.size()) {
        size_t j = block.find('\n', i);
        std::string line = block.substr(i, j - i);
        if (!line.empty()) {
            ASSERT_EQ(line.rfind("      ", 0), 0u) << "not indented: " << line;
            line = line.substr(6);
        }
        script += line + "\n";
        i = j + 1;
    }
    EXPECT_EQ(script, read_file(kStartup));
    TempDir t;
    write_file(t / "s.sh", script);
    EXPECT_EQ(run("bash -n " + shell_quote((t / "s.sh").string())).exit_code, 0);
}

TEST(CloudInitScripts, RefusesABinaryWithTheWrongSha256AndDeletesTheVm) {
    Vm vm(kFakeCmf, cmf::factory::sha256_hex("something else"));
    auto r = vm.boot();
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("sha256 mismatch"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(vm.fake() / "worker-args")) << "the bad binary ran";
    EXPECT_FALSE(fs::exists(vm.fake() / "inst" / "cmf"));
    EXPECT_NE(vm.calls().find(kDelete), std::string::npos) << vm.calls();
}

TEST(CloudInitScripts, RunsTheVerifiedWorkerThenDeletesTheVm) {
    Vm vm(kFakeCmf, cmf::factory::sha256_hex(kFakeCmf));
    auto r = vm.boot();
    EXPECT_EQ(r.exit_code, 0) << r.output;
    const std::string inst = (vm.fake() / "inst").string();
    EXPECT_EQ(read_file(vm.fake() / "worker-args"), "worker --job " + inst + "/job.json --work " + inst + "/work\n");
    EXPECT_EQ(read_file(vm.fake() / "inst" / "job.json"), "{\"schema\":\"cmf.job/1\"}");
    EXPECT_NE(vm.calls().find("GET http://storage.test/storage/v1/b/factory-bkt/o/bin%2Fv1%2Fcmf?alt=media"), std::string::npos) << vm.calls();
    EXPECT_NE(vm.calls().find(kDelete), std::string::npos) << vm.calls();
}

TEST(CloudInitScripts, WorkerCrashStillDeletesTheVmAndKeepVmIsHonoured) {
    Vm vm(kFakeCmf, cmf::factory::sha256_hex(kFakeCmf));
    write_file(vm.fake() / "worker-rc", "139");
    auto r = vm.boot();
    EXPECT_EQ(r.exit_code, 139) << r.output;
    EXPECT_NE(vm.calls().find(kDelete), std::string::npos) << vm.calls();

    Vm keep(kFakeCmf, cmf::factory::sha256_hex(kFakeCmf));
    write_file(keep.fake() / "md" / "instance" / "attributes" / "cmf-keep-vm", "TRUE");
    auto r2 = keep.boot();
    EXPECT_EQ(r2.exit_code, 0) << r2.output;
    EXPECT_EQ(keep.calls().find("DELETE"), std::string::npos) << keep.calls();
}

TEST(CloudInitScripts, MissingMetadataFailsClearlyAndDeletes) {
    Vm vm(kFakeCmf, "x");
    fs::remove(vm.fake() / "md" / "instance" / "attributes" / "cmf-binary");
    auto r = vm.boot();
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("metadata key cmf-binary is missing"), std::string::npos) << r.output;
    EXPECT_NE(vm.calls().find(kDelete), std::string::npos) << vm.calls();
}
