// The factory worker end to end through the cmf binary: `cmf build --backend local`, markers,
// model cards, status, idempotent restarts (including a real kill -9 in the middle of the
// quantization pass), failure reports, and that no secret reaches any file the worker writes.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <nlohmann/json.hpp>

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

// One synthetic multimodal checkpoint for the whole suite, with a base-model card to pass through.
class FactoryWorker : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new TempDir();
        auto r = run_cmf("synth " + shell_quote((src() ).string()) + " --preset tiny-mm");
        ASSERT_EQ(r.exit_code, 0) << r.output;
        write_file(src() / "README.md", "---\nlicense: other\nlicense_name: health-ai-developer-foundations\n"
                                        "license_link: https://developers.google.com/health-ai-developer-foundations/terms\n---\n# base\n");
    }
    static void TearDownTestSuite() {
        delete dir_;
        dir_ = nullptr;
    }
    static fs::path src() { return dir_->path() / "tiny-medgemma"; }
    static TempDir* dir_;
};
TempDir* FactoryWorker::dir_ = nullptr;

std::string job_json(const std::string& id, const std::string& source_uri, const std::string& bucket, const std::string& variants_csv,
                     const std::string& token_ref = "") {
    nlohmann::json v = nlohmann::json::array();
    std::map<std::string, std::string> types = {{"q4s", "Q4_K_S"}, {"q4", "Q4_K_M"}, {"q8", "Q8_0"}, {"f16", "F16"}};
    size_t i = 0;
    while (i <= variants_csv.size()) {
        size_t j = variants_csv.find(',', i);
        if (j == std::string::npos) j = variants_csv.size();
        std::string n = variants_csv.substr(i, j - i);
        v.push_back({{"name", n}, {"type", types.at(n)}, {"model_name", "tiny-" + n}});
        i = j + 1;
    }
    nlohmann::json d = {{"schema", "cmf.job/1"},
                        {"job_id", id},
                        {"source", {{"uri", source_uri}}},
                        {"variants", v},
                        {"output", {{"bucket", "file://" + bucket}}},
                        {"secrets", {{"hf_token_ref", token_ref}}},
                        {"flags", {{"threads", 1}}}};
    return d.dump(1);
}

std::vector<fs::path> all_files(const fs::path& root) {
    std::vector<fs::path> out;
    std::error_code ec;
    if (!fs::exists(root)) return out;
    for (auto& e : fs::recursive_directory_iterator(root, ec))
        if (e.is_regular_file()) out.push_back(e.path());
    return out;
}

bool has_temp_gguf(const fs::path& dir) {
    for (const auto& p : all_files(dir))
        if (p.filename().string().find(".tmp-") != std::string::npos || p.filename().string().starts_with(".cmf-tmp-")) return true;
    return false;
}

}  // namespace

TEST_F(FactoryWorker, BuildLocalWritesModelsMarkersCardsAndStatus) {
    TempDir t;
    const fs::path bucket = t / "bucket";
    auto r = run_cmf("build q4,q8,f16 --backend local --source " + shell_quote(src().string()) + " --bucket " + shell_quote(bucket.string()) +
                     " --name-prefix tiny --threads 2 --work " + shell_quote((t / "work").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const char* v : {"q4", "q8", "f16"}) {
        const fs::path built = bucket / "status" / (std::string(v) + ".built");
        ASSERT_TRUE(fs::exists(built)) << v << "\n" << r.output;
        auto info = nlohmann::json::parse(read_file(built));
        EXPECT_EQ(info["model_name"], std::string("tiny-") + v);
        ASSERT_EQ(info["files"].size(), 2u);  // the GGUF and the mmproj of the vision tower
        for (const auto& f : info["files"]) {
            const fs::path obj = bucket / f["object"].get<std::string>();
            ASSERT_TRUE(fs::exists(obj)) << obj;
            EXPECT_EQ(fs::file_size(obj), f["size"].get<uint64_t>());
            EXPECT_EQ(cmf::factory::sha256_file(obj), f["sha256"].get<std::string>());
            EXPECT_EQ(obj.parent_path(), bucket / "models" / (std::string("tiny-") + v));
        }
        const std::string card = read_file(bucket / "models" / (std::string("tiny-") + v) / "README.md");
        EXPECT_NE(card.find("license: other"), std::string::npos) << card;
        EXPECT_NE(card.find("https://developers.google.com/health-ai-developer-foundations/terms"), std::string::npos);
        EXPECT_NE(card.find(cmf::factory::sha256_file(src() / "model.safetensors")), std::string::npos) << "input sha256 in the card";
        EXPECT_NE(card.find(info["files"][0]["sha256"].get<std::string>()), std::string::npos) << "output sha256 in the card";
        EXPECT_NE(card.find("built by cmf " CMF_VERSION), std::string::npos);
        EXPECT_TRUE(fs::exists(bucket / "status" / (std::string(v) + "-build.log")));
        EXPECT_FALSE(fs::exists(bucket / "status" / (std::string(v) + "-error.fail")));
    }
    // the GGUF the factory uploads is the one `cmf quantize` writes
    auto q = run_cmf("quantize " + shell_quote(src().string()) + " --quant q8_0 --mmproj --quiet --out " + shell_quote((t / "q").string()));
    ASSERT_EQ(q.exit_code, 0) << q.output;
    EXPECT_EQ(cmf::factory::sha256_file(t / "q" / "tiny-medgemma-Q8_0.gguf"),
              cmf::factory::sha256_file(bucket / "models" / "tiny-q8" / "tiny-medgemma-Q8_0.gguf"));
    // status JSON: succeeded, push skipped with a reason
    const auto jobs = all_files(bucket / "status");
    bool found = false;
    for (const auto& p : jobs) {
        if (p.extension() != ".json" || p.filename() == "heartbeat.json") continue;
        auto s = nlohmann::json::parse(read_file(p));
        found = true;
        EXPECT_EQ(s["state"], "succeeded");
        EXPECT_EQ(s["variants"]["q8"]["push"]["state"], "skipped");
        EXPECT_NE(s["variants"]["q8"]["push"]["reason"].get<std::string>().find("OLLAMA_REGISTRY_NS"), std::string::npos);
    }
    EXPECT_TRUE(found);
    auto hb = nlohmann::json::parse(read_file(bucket / "status" / "heartbeat.json"));
    EXPECT_EQ(hb["phase"], "done");
    // status table
    auto st = run_cmf("status --backend local --bucket " + shell_quote(bucket.string()));
    ASSERT_EQ(st.exit_code, 0) << st.output;
    for (const char* v : {"q4 ", "q8 ", "f16 "}) EXPECT_NE(st.output.find(v), std::string::npos) << st.output;
    EXPECT_NE(st.output.find("tiny-q8"), std::string::npos) << st.output;
    EXPECT_NE(st.output.find("push skipped"), std::string::npos) << st.output;
    // no temporaries left in the bucket or the work dir
    for (const auto& p : all_files(bucket)) EXPECT_EQ(p.filename().string().find(".cmf-tmp"), std::string::npos) << p;
    EXPECT_FALSE(has_temp_gguf(t / "work"));

    // a second build of an overlapping set rebuilds nothing that is built
    const std::string q8_marker = read_file(bucket / "status" / "q8.built");
    auto r2 = run_cmf("build q8,q4s --backend local --source " + shell_quote(src().string()) + " --bucket " + shell_quote(bucket.string()) +
                      " --name-prefix tiny");
    ASSERT_EQ(r2.exit_code, 0) << r2.output;
    EXPECT_NE(r2.output.find("q8: already built, not rebuilt"), std::string::npos) << r2.output;
    EXPECT_EQ(read_file(bucket / "status" / "q8.built"), q8_marker);
    EXPECT_TRUE(fs::exists(bucket / "status" / "q4s.built"));
}

TEST_F(FactoryWorker, KillDashNineMidQuantizeThenRestartFinishesWithoutRedoing) {
    TempDir t;
    const fs::path bucket = t / "bucket", work = t / "work";
    const std::string uri = "file://" + src().string();
    // q8 is built by an earlier run
    write_file(t / "job1.json", job_json("job-one", uri, bucket.string(), "q8"));
    auto r1 = run_cmf("worker --job " + shell_quote((t / "job1.json").string()) + " --work " + shell_quote(work.string()));
    ASSERT_EQ(r1.exit_code, 0) << r1.output;
    const std::string q8_marker = read_file(bucket / "status" / "q8.built");
    const auto q8_gguf_time = fs::last_write_time(bucket / "models" / "tiny-q8" / "tiny-medgemma-Q8_0.gguf");

    // the next run stops dead inside the quantization pass (partial outputs on disk) and is killed
    write_file(t / "job2.json", job_json("job-two", uri, bucket.string(), "q8,f16,q4s"));
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::setenv("CMF_TEST_STALL_AT", "quantize", 1);
        const std::string job = (t / "job2.json").string(), w = work.string();
        ::execl(CMF_BINARY, "cmf", "worker", "--job", job.c_str(), "--work", w.c_str(), "--quiet", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    bool mid = false;
    for (int i = 0; i < 1200 && !mid; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        mid = has_temp_gguf(work / "out");
        int st;
        if (::waitpid(pid, &st, WNOHANG) == pid) FAIL() << "worker exited before it was killed";
    }
    ASSERT_TRUE(mid) << "the worker never reached the quantization pass";
    auto hb = nlohmann::json::parse(read_file(bucket / "status" / "heartbeat.json"));
    EXPECT_EQ(hb["phase"], "quantize");
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int st = 0;
    ASSERT_EQ(::waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    EXPECT_FALSE(fs::exists(bucket / "status" / "f16.built"));
    EXPECT_FALSE(fs::exists(bucket / "status" / "q4s.built"));

    // restart: finishes f16 and q4s, leaves q8 alone, cleans the dead run's temporaries
    auto r3 = run_cmf("worker --job " + shell_quote((t / "job2.json").string()) + " --work " + shell_quote(work.string()));
    ASSERT_EQ(r3.exit_code, 0) << r3.output;
    EXPECT_NE(r3.output.find("q8: already built, not rebuilt"), std::string::npos) << r3.output;
    EXPECT_NE(r3.output.find("for F16,Q4_K_S"), std::string::npos) << r3.output;
    EXPECT_EQ(read_file(bucket / "status" / "q8.built"), q8_marker);
    EXPECT_EQ(fs::last_write_time(bucket / "models" / "tiny-q8" / "tiny-medgemma-Q8_0.gguf"), q8_gguf_time);
    EXPECT_TRUE(fs::exists(bucket / "status" / "f16.built"));
    EXPECT_TRUE(fs::exists(bucket / "status" / "q4s.built"));
    EXPECT_FALSE(has_temp_gguf(work));
    auto s = nlohmann::json::parse(read_file(bucket / "status" / "job-two.json"));
    EXPECT_EQ(s["state"], "succeeded");
    EXPECT_EQ(s["variants"]["q8"]["state"], "built");
}

TEST_F(FactoryWorker, FailureWritesFailMarkerLogAndStatusShowsTheTail) {
    TempDir t;
    const fs::path bad = t / "broken";
    fs::create_directories(bad);
    for (const auto& e : fs::directory_iterator(src())) fs::copy_file(e.path(), bad / e.path().filename());
    // a shard cut short: the header promises more bytes than there are
    fs::resize_file(bad / "model.safetensors", fs::file_size(bad / "model.safetensors") - 1000);
    const fs::path bucket = t / "bucket";
    auto r = run_cmf("build q8,f16 --backend local --source " + shell_quote(bad.string()) + " --bucket " + shell_quote(bucket.string()) +
                     " --name-prefix tiny");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    for (const char* v : {"q8", "f16"}) {
        ASSERT_TRUE(fs::exists(bucket / "status" / (std::string(v) + "-error.fail"))) << r.output;
        EXPECT_FALSE(fs::exists(bucket / "status" / (std::string(v) + ".built")));
        const std::string fail = read_file(bucket / "status" / (std::string(v) + "-error.fail"));
        EXPECT_NE(fail.find("model.safetensors"), std::string::npos) << fail;
        const std::string log = read_file(bucket / "status" / (std::string(v) + "-build.log"));
        EXPECT_NE(log.find("FAILED: "), std::string::npos) << log;
    }
    auto st = run_cmf("status --backend local --bucket " + shell_quote(bucket.string()));
    EXPECT_EQ(st.exit_code, 0);
    EXPECT_NE(st.output.find("q8 failed: "), std::string::npos) << st.output;
    EXPECT_NE(st.output.find("last 30 lines of status/q8-build.log"), std::string::npos) << st.output;
    EXPECT_NE(st.output.find("hashing the input files"), std::string::npos) << st.output;

    // fixed source: the retry clears the failure and builds
    auto r2 = run_cmf("build q8 --backend local --source " + shell_quote(src().string()) + " --bucket " + shell_quote(bucket.string()) +
                      " --name-prefix tiny");
    // the bucket holds no built q8 from the broken dir, so the fixed source may build it
    ASSERT_EQ(r2.exit_code, 0) << r2.output;
    EXPECT_TRUE(fs::exists(bucket / "status" / "q8.built"));
    EXPECT_FALSE(fs::exists(bucket / "status" / "q8-error.fail"));
    EXPECT_NE(read_file(bucket / "status" / "q8-build.log").find("retrying; the previous attempt failed"), std::string::npos);
}

TEST_F(FactoryWorker, NoFileTheWorkerWritesContainsTheToken) {
    const std::string token = "hf_FAKE-planted-secret-test-token";
    TempDir t;
    // 1. a successful build with the token in .env (the worker gets it through its environment)
    write_file(t / "f.env", "HF_TOKEN='" + token + "'\n");
    const fs::path bucket = t / "bucket";
    auto r = run_cmf("build q8 --backend local --env-file " + shell_quote((t / "f.env").string()) + " --source " + shell_quote(src().string()) +
                     " --bucket " + shell_quote(bucket.string()) + " --name-prefix tiny --work " + shell_quote((t / "work").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.find(token), std::string::npos);
    auto job = nlohmann::json::parse(read_file(all_files(bucket / "jobs").at(0)));
    EXPECT_EQ(job["secrets"]["hf_token_ref"], "env:HF_TOKEN");
    // 2. a failing job whose error message would contain the token (it is in the source path)
    const fs::path trap = t / token / "missing";
    write_file(t / "job.json", job_json("job-leak", "file://" + trap.string(), (t / "bucket2").string(), "q8,f16", "env:HF_TOKEN"));
    auto r2 = run("HF_TOKEN=" + token + " " + shell_quote(CMF_BINARY) + " worker --job " + shell_quote((t / "job.json").string()) + " --work " +
                  shell_quote((t / "work2").string()));
    EXPECT_EQ(r2.exit_code, 1) << r2.output;
    EXPECT_EQ(r2.output.find(token), std::string::npos) << r2.output;
    const std::string fail = read_file(t / "bucket2" / "status" / "q8-error.fail");
    EXPECT_NE(fail.find("<redacted>"), std::string::npos) << fail;  // redacted, not dropped
    size_t n = 0;
    for (const fs::path root : {bucket, t / "bucket2", t / "work", t / "work2"})
        for (const auto& p : all_files(root)) {
            ++n;
            EXPECT_EQ(read_file(p).find(token), std::string::npos) << "token found in " << p;
        }
    EXPECT_GT(n, 10u);
    // 3. a job that carries a token instead of a reference is refused
    std::string inl = job_json("job-inline", "file://" + src().string(), (t / "bucket3").string(), "q8", token);
    write_file(t / "inline.json", inl);
    auto r3 = run_cmf("worker --job " + shell_quote((t / "inline.json").string()));
    EXPECT_EQ(r3.exit_code, 3) << r3.output;
    EXPECT_NE(r3.output.find("never the secret itself"), std::string::npos) << r3.output;
}

TEST_F(FactoryWorker, BadInvocationsAreOneLineNonZero) {
    TempDir t;
    const std::pair<std::string, std::string> cases[] = {
        {"build q9 --backend local --source " + shell_quote(src().string()), "unknown variant 'q9'"},
        {"build q8 --backend gce", "needs GCS_BUCKET"},
        {"build q8 --backend local", "--source DIR is required"},
        {"build q8,q8_0 --backend local --source " + shell_quote(src().string()), "same type Q8_0"},
        {"worker", "--job FILE is required"},
        {"status --backend local --bucket " + shell_quote((t / "none").string()), "does not exist"},
        {"cloud-init --print windows", "--print must be startup or user-data"},
    };
    for (const auto& [args, want] : cases) {
        auto r = run_cmf(args);
        EXPECT_NE(r.exit_code, 0) << args;
        EXPECT_NE(r.output.find(want), std::string::npos) << args << "\n" << r.output;
        EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << args << "\n" << r.output;
    }
}
