// The factory's Hugging Face target end to end: `cmf build --backend local` with CMF_HF_REPO
// against the emulated Hub (tests/emulator/hf_write.h). The variants that pass the quality gate
// are published in one commit with the projector, their quality reports and the model card; the
// one whose scales were scrambled (CMF_TEST_DAMAGE) fails the gate and is not published, and the
// card says so. A read-only token stops the job before anything is built.
// Skips with a message without the engine (the gate needs it).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cmf/hub/hf.h"
#include "emulator_process.h"
#include "test_support.h"

namespace fs = std::filesystem;
using cmf::test::read_file;
using cmf::test::run;
using cmf::test::run_cmf;
using cmf::test::shell_quote;
using cmf::test::TempDir;

namespace {

const char* kWrite = "hf_FAKE-factory-alice-write";
const char* kRead = "hf_FAKE-factory-alice-read";
const char* kConfig = R"({"hf": {"tokens": {"hf_FAKE-factory-alice-write": "alice",
  "hf_FAKE-factory-alice-read": {"user": "alice", "role": "read"}},
  "lfs": {"multipart_threshold": 1048576, "chunk_size": 1048576}}})";

using cmf::test::has_engine;
using cmf::test::job_status;

}  // namespace

TEST(FactoryHub, PublishesTheVariantsThatPassedAndNotTheOneThatFailed) {
    if (!has_engine()) GTEST_SKIP() << "SKIPPED: this cmf has no engine (cmf --version)";
    cmf::test::EmulatorProcess emu(kConfig);
    TempDir d;
    const fs::path ck = d / "ck", bucket = d / "bucket";
    auto r = run_cmf("synth " + shell_quote(ck.string()) + " --preset tiny-mm");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ofstream(ck / "README.md") << "---\nlicense: gemma\nbase_model: google/gemma-3-4b-it\ntags:\n- medical\n---\n# tiny\n";
    const std::string env = "env -u HF_TOKEN HF_HOME=" + shell_quote((d / "hf").string()) + " SSL_CERT_FILE=" + shell_quote(emu.ca_file()) +
                            " HF_ENDPOINT=" + shell_quote(emu.https_base()) + " CMF_HF_REPO=alice/tiny-GGUF ";
    const std::string build = shell_quote(CMF_BINARY) + " build q8,q4s --backend local --threads 2 --source " + shell_quote(ck.string()) +
                              " --bucket " + shell_quote(bucket.string()) + " --work " + shell_quote((d / "work").string()) + " --name-prefix tiny";

    // A read-only token: refused at the start, nothing built, the token in no line.
    r = run(env + "HF_TOKEN=" + kRead + " " + build);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("read-only"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find(kRead), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(bucket / "status" / "q8.built"));
    EXPECT_TRUE(fs::exists(bucket / "status" / "q8-error.fail"));
    EXPECT_EQ(read_file(bucket / "status" / "q8-error.fail").find(kRead), std::string::npos);
    fs::remove_all(bucket);

    // A write token, Q4_K_S damaged: q8 is published with the projector, q4s is held back.
    r = run(env + "CMF_TEST_DAMAGE=Q4_K_S:scales HF_TOKEN=" + kWrite + " " + build);
    EXPECT_EQ(r.exit_code, 1) << r.output;  // q4s failed the gate
    EXPECT_EQ(r.output.find(kWrite), std::string::npos) << "the token is in the output";
    for (const auto& e : fs::recursive_directory_iterator(bucket))
        if (e.is_regular_file()) EXPECT_EQ(read_file(e.path()).find(kWrite), std::string::npos) << e.path();
    const auto st = job_status(bucket);
    ASSERT_TRUE(st.contains("hub")) << st.dump(1);
    EXPECT_EQ(st["hub"]["state"], "published") << st.dump(1);

    cmf::hub::HfEnv he;
    he.endpoint = emu.https_base();
    he.token = kWrite;
    he.token_origin = "HF_TOKEN";
    cmf::hub::HfClient c(cmf::net::make_http_client(emu.client_options()), he);
    const std::string commit = c.resolve_commit(cmf::hub::HfSource::parse("hf://alice/tiny-GGUF"));
    EXPECT_EQ(commit, st["hub"]["commit"].get<std::string>());
    std::vector<std::string> names;
    for (const auto& f : c.list_files("alice/tiny-GGUF", commit)) names.push_back(f.path);
    auto has = [&](const std::string& part) {
        return std::any_of(names.begin(), names.end(), [&](const std::string& n) { return n.find(part) != std::string::npos; });
    };
    EXPECT_TRUE(has("-Q8_0.gguf")) << testing::PrintToString(names);
    EXPECT_TRUE(has("-Q8_0.quality.json"));
    EXPECT_TRUE(has("mmproj-")) << "the projector goes with the text model";
    EXPECT_FALSE(has("Q4_K_S")) << "the variant that failed the gate is not published: " << testing::PrintToString(names);
    EXPECT_FALSE(has("-F16.gguf") && !has("mmproj-")) << "the gate's lossless reference stays local";
    EXPECT_TRUE(has("README.md"));
    EXPECT_TRUE(has("NOTICE")) << "the Gemma terms ask for a NOTICE file";
    const fs::path card = d / "README.md";
    for (const auto& f : c.list_files("alice/tiny-GGUF", commit))
        if (f.path == "README.md") c.download_to("alice/tiny-GGUF", commit, f, card);
    const std::string text = read_file(card);
    EXPECT_NE(text.find("base_model: google/gemma-3-4b-it"), std::string::npos) << text;
    EXPECT_NE(text.find("base_model_relation: quantized"), std::string::npos);
    EXPECT_NE(text.find("license: gemma"), std::string::npos);
    EXPECT_NE(text.find("Not published, failed the quality gate"), std::string::npos) << text;
    EXPECT_NE(text.find("Q4_K_S (q4s)"), std::string::npos);
    EXPECT_NE(text.find("| mean KLD |"), std::string::npos) << "the gate's figures are in the table";
}
