// The factory's quality gate end to end: `cmf build --backend local` with pushes to Debian's
// docker-registry on loopback. Each variant is evaluated with the engine (llama.cpp) against the
// lossless file of the same pass, with the degeneration smoke and, for a checkpoint with a vision
// tower, the image through the mmproj. A variant with one tensor's scales scrambled, and one whose
// norms lack Gemma's +1 (CMF_TEST_DAMAGE, factory/fault_injection.h), are failed with the reason
// (marker, status JSON, `cmf status`) and not pushed; the sound Q8_0 and Q4_K_M are pushed, with
// the figures in the status, the quality JSON and the model card. --no-gate publishes unmeasured.
// Skips with a message without the engine or docker-registry.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "docker_registry.h"
#include "test_support.h"

namespace fs = std::filesystem;
using cmf::test::read_file;
using cmf::test::run;
using cmf::test::run_cmf;
using cmf::test::shell_quote;
using cmf::test::TempDir;

namespace {

using cmf::test::has_engine;
using cmf::test::job_status;

struct Case {
    const char* preset;
    const char* damage;      // CMF_TEST_DAMAGE
    const char* damaged;     // the variant it hits
    const char* reason;      // what its failure line says
};

class FactoryGate : public ::testing::TestWithParam<Case> {};

TEST_P(FactoryGate, BrokenVariantFailsAndIsNotPushedSoundOnesArePushed) {
    if (!has_engine()) GTEST_SKIP() << "SKIPPED: this cmf has no engine (cmf --version)";
    const std::string bin = cmf::test::docker_registry_binary();
    if (bin.empty()) GTEST_SKIP() << "SKIPPED: docker-registry is not installed (apt-get install docker-registry, or `make deps`)";
    const Case c = GetParam();
    TempDir d;
    const int port = cmf::test::free_loopback_port();
    cmf::test::DockerRegistry reg(bin, d.path(), port);
    const fs::path ck = d / "ck", bucket = d / "bucket", key = d / "id_ed25519";
    auto r = run_cmf("synth " + shell_quote(ck.string()) + " --preset " + c.preset);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run("ssh-keygen -q -t ed25519 -N '' -f " + shell_quote(key.string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    reg.start();
    ASSERT_TRUE(reg.ready()) << reg.log();
    const std::string cmd = "CMF_TEST_DAMAGE=" + std::string(c.damage) + " CMF_OLLAMA_REGISTRY=http://127.0.0.1:" + std::to_string(port) + " " +
                            shell_quote(CMF_BINARY) + " build q8,q4,q4s --backend local --threads 2 --source " + shell_quote(ck.string()) +
                            " --bucket " + shell_quote(bucket.string()) + " --work " + shell_quote((d / "work").string()) +
                            " --registry-ns clinic --ollama-key-file " + shell_quote(key.string()) + " --name-prefix tiny";
    r = run(cmd);
    EXPECT_EQ(r.exit_code, 1) << r.output;  // one variant failed
    const std::string damaged = c.damaged;
    // the broken one: failed with the gate's reason, no .built, nothing uploaded, nothing pushed
    const std::string fail = read_file(bucket / "status" / (damaged + "-error.fail"));
    EXPECT_EQ(fail.rfind("quality gate: ", 0), 0u) << fail;
    EXPECT_NE(fail.find(c.reason), std::string::npos) << fail;
    EXPECT_FALSE(fs::exists(bucket / "status" / (damaged + ".built")));
    EXPECT_FALSE(fs::exists(bucket / "status" / (damaged + ".pushed")));
    EXPECT_FALSE(fs::exists(bucket / "models" / ("tiny-" + damaged)));
    EXPECT_NE(read_file(bucket / "status" / (damaged + "-build.log")).find("CMF_TEST_DAMAGE"), std::string::npos);
    // the sound ones: measured, passed, published and pushed
    const auto st = job_status(bucket);
    for (const char* v : {"q8", "q4", "q4s"}) {
        if (v == damaged) continue;
        SCOPED_TRACE(v);
        EXPECT_TRUE(fs::exists(bucket / "status" / (std::string(v) + ".pushed"))) << r.output;
        const auto g = st["variants"][v]["gate"];
        ASSERT_TRUE(g.is_object()) << st.dump(1);
        EXPECT_TRUE(g["pass"].get<bool>());
        EXPECT_LT(g["mean_kld"].get<double>(), g["limits"]["max_kld"].get<double>());
        EXPECT_GT(g["tokens"].get<int>(), 1000);
        const auto built = nlohmann::json::parse(read_file(bucket / "status" / (std::string(v) + ".built")));
        EXPECT_EQ(built["gate"]["mean_kld"], g["mean_kld"]);
        const std::string card = read_file(bucket / "models" / ("tiny-" + std::string(v)) / "README.md");
        EXPECT_NE(card.find("## Quality (measured before publishing)"), std::string::npos) << card;
        EXPECT_NE(card.find("| mean KL divergence |"), std::string::npos);
        // the quality JSON carries the smoke's generations, the image ones through the mmproj among them
        bool found = false;
        for (const auto& e : fs::directory_iterator(bucket / "models" / ("tiny-" + std::string(v))))
            if (e.path().filename().string().find(".quality.json") != std::string::npos && e.path().filename().string().rfind("mmproj", 0) != 0) {
                const auto q = nlohmann::json::parse(read_file(e.path()));
                ASSERT_TRUE(q.contains("gate")) << e.path();
                // the image questions went through the mmproj: the lossless model's answers always,
                // the variant's when the lossless model answers cleanly enough to judge them
                // (this synthetic model has random weights: it rambles, so it is not judged)
                size_t image = 0;
                for (const auto& s : q["gate"]["reference_smoke"]) image += s["prompt"] == "image" && s["tokens"].get<int>() > 0;
                EXPECT_EQ(image, 2u) << "greedy and seeded generation about the image";
                EXPECT_FALSE(q["gate"]["smoke_judged"].get<bool>());
                EXPECT_TRUE(q["gate"]["smoke"].empty());
                found = true;
            }
        EXPECT_TRUE(found);
    }
    EXPECT_FALSE(st["variants"][damaged]["gate"]["pass"].get<bool>());
    // cmf status: the figures table and the failure with its reason
    auto s = run_cmf("status --backend local --bucket " + shell_quote(bucket.string()));
    EXPECT_NE(s.output.find("quality gate (llama.cpp"), std::string::npos) << s.output;
    EXPECT_NE(s.output.find(damaged + " failed: quality gate: "), std::string::npos) << s.output;
    EXPECT_NE(s.output.find("FAIL: "), std::string::npos) << s.output;
    // the lossless reference stayed local: no F16 anywhere in the bucket (F16 was not asked for)
    for (const auto& e : fs::recursive_directory_iterator(bucket))
        if (e.path().filename().string().rfind("mmproj-", 0) != 0)  // the vision tower is F16 in every variant
            EXPECT_EQ(e.path().filename().string().find("-F16.gguf"), std::string::npos) << e.path();
    // --no-gate: the same broken file is published unmeasured
    const fs::path bucket2 = d / "bucket2";
    r = run("CMF_TEST_DAMAGE=" + std::string(c.damage) + " " + shell_quote(CMF_BINARY) + " build " + damaged + " --no-gate --backend local --threads 2 --source " +
            shell_quote(ck.string()) + " --bucket " + shell_quote(bucket2.string()) + " --work " + shell_quote((d / "work2").string()) + " --name-prefix tiny");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(fs::exists(bucket2 / "status" / (damaged + ".built")));
    EXPECT_FALSE(job_status(bucket2)["variants"][damaged].contains("gate"));
}

INSTANTIATE_TEST_SUITE_P(Damage, FactoryGate,
                         ::testing::Values(Case{"tiny-mm", "Q4_K_S:scales", "q4s", "mean KLD "},
                                           Case{"tiny-mm", "Q8_0:norms", "q8", "mean KLD "}),
                         [](const auto& i) { return std::string(i.param.damaged) == "q4s" ? "ScrambledScales" : "NoNormShift"; });

// `cmf build --imatrix auto`: a first lossless pass, the engine's importance matrix on the built-in
// calibration text (uploaded under imatrix/), every quantized variant made with it, recorded in
// the file's metadata and in the card; the gate measures the result.
TEST(FactoryImatrix, AutoImatrixIsComputedUsedAndRecorded) {
    if (!has_engine()) GTEST_SKIP() << "SKIPPED: this cmf has no engine (cmf --version)";
    TempDir d;
    const fs::path ck = d / "ck", bucket = d / "bucket";
    auto r = run_cmf("synth " + shell_quote(ck.string()) + " --preset tiny");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cmf("build q4 --imatrix auto --backend local --threads 2 --source " + shell_quote(ck.string()) + " --bucket " + shell_quote(bucket.string()) +
                " --work " + shell_quote((d / "work").string()) + " --name-prefix tiny");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ASSERT_TRUE(fs::exists(bucket / "imatrix" / "ck.imatrix.gguf")) << r.output;
    const auto st = job_status(bucket);
    EXPECT_GT(st["imatrix"]["chunks"].get<int>(), 0);
    EXPECT_TRUE(st["variants"]["q4"]["gate"]["pass"].get<bool>());
    const auto info = run_cmf("inspect --json " + shell_quote((bucket / "models" / "tiny-q4" / "ck-Q4_K_M.gguf").string()));
    ASSERT_EQ(info.exit_code, 0) << info.output;
    EXPECT_NE(info.output.find("\"cmf built-in calibration text\""), std::string::npos);
    EXPECT_NE(info.output.find("\"ck.imatrix.gguf\""), std::string::npos);
    const std::string card = read_file(bucket / "models" / "tiny-q4" / "README.md");
    EXPECT_NE(card.find("## Importance matrix"), std::string::npos) << card;
    // the same file as quantizing by hand with `cmf imatrix` of the F16
    r = run_cmf("imatrix " + shell_quote(ck.string()) + " -o " + shell_quote((d / "ck.imatrix.gguf").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(read_file(d / "ck.imatrix.gguf"), read_file(bucket / "imatrix" / "ck.imatrix.gguf"));
}

// The degeneration smoke through llama.cpp's multimodal path on both Gemma 3 checkpoint key
// layouts (old and transformers v5), and the image-conditioned KLD of a quantized mmproj.
TEST(EvalVision, SmokeAndImageKldOnBothKeyLayouts) {
    if (!has_engine()) GTEST_SKIP() << "SKIPPED: this cmf has no engine (cmf --version)";
    for (const char* v5 : {"", " --v5"}) {
        SCOPED_TRACE(v5);
        TempDir d;
        auto r = run_cmf("synth " + shell_quote((d / "ck").string()) + " --preset tiny-mm" + v5);
        ASSERT_EQ(r.exit_code, 0) << r.output;
        r = run_cmf("quantize " + shell_quote((d / "ck").string()) + " --quant f16,q4_k_m --mmproj --quiet --out " + shell_quote(d.path().string()));
        ASSERT_EQ(r.exit_code, 0) << r.output;
        r = run_cmf("quantize " + shell_quote((d / "ck").string()) + " --quant f16 --mmproj --mmproj-type q8_0 --name q --quiet --out " + shell_quote(d.path().string()));
        ASSERT_EQ(r.exit_code, 0) << r.output;
        r = run("(" + shell_quote(CMF_BINARY) + " eval --ref " + shell_quote((d / "ck-F16.gguf").string()) + " " + shell_quote((d / "ck-Q4_K_M.gguf").string()) +
                " --smoke --mmproj " + shell_quote((d / "mmproj-ck-F16.gguf").string()) + " --mmproj-variant " + shell_quote((d / "mmproj-q-Q8_0.gguf").string()) +
                " --json 2>/dev/null)");
        ASSERT_EQ(r.exit_code, 0) << r.output;
        const auto j = nlohmann::json::parse(r.output);
        size_t image = 0;
        for (const auto& c : j["variants"][0]["smoke"]["cases"])
            if (c["prompt"] == "image") {
                ++image;
                EXPECT_GT(c["tokens"].get<int>(), 0);
            }
        EXPECT_EQ(image, 2u);
        ASSERT_EQ(j["image_kld"].size(), 1u);
        const double k = j["image_kld"][0]["mean_kld"].get<double>();
        EXPECT_GT(k, 0.0);  // a Q8_0 projector changes the image's embedding a little
        EXPECT_LT(k, 0.5);
        EXPECT_GT(j["image_kld"][0]["tokens"].get<int>(), 0);
    }
}

}  // namespace
