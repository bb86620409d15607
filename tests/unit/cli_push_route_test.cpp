// `cmf push` has two meanings: the Ollama registry push (NAME, or BUILD NAME) and the
// factory's push step of the old scripts (`cmf push q4,q8`). A variant list goes to the
// factory (build+push), anything that is a path or a model name stays a registry push.
#include <gtest/gtest.h>

#include "test_support.h"

namespace cmf::test {
namespace {

TEST(CliPushRoute, VariantListRunsTheFactoryPush) {
    // without a GCS bucket/project the factory says which backend it needs: proof of the route
    auto r = run_cmf("push q4,q8 --env-file /dev/null");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("build+push"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("GCS_BUCKET"), std::string::npos) << r.output;
}

TEST(CliPushRoute, ModelNamesStayRegistryPushes) {
    TempDir d;
    // a namespaced name is a registry push from the store: the store has no such model
    auto r = run_cmf("push alice/coheara-medgemma-4b-q8 --store " + shell_quote((d.path() / "store").string()));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("no model"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("build+push"), std::string::npos) << r.output;
    // an existing path named like a variant is a build directory, not a variant list
    const fs::path q8 = d.path() / "q8";
    fs::create_directories(q8);
    auto r2 = run("cd " + shell_quote(d.path().string()) + " && " + shell_quote(CMF_BINARY) + " push q8 alice/x 2>&1");
    EXPECT_NE(r2.exit_code, 0);
    EXPECT_EQ(r2.output.find("build+push"), std::string::npos) << r2.output;
}

}  // namespace
}  // namespace cmf::test
