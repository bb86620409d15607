// `cmf worker` as it runs on a GCE VM, against cmf_emulator: the job comes from instance
// metadata (factory-config of an instance inserted through the emulated Compute API), the HF
// token from a gs:// object read with the metadata-server token, the checkpoint from the
// emulated Hub (gated repo: only the token opens it), outputs go to an emulated GCS bucket
// that demands tokens; at the end the worker deletes its own instance.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cmf/cloud/gce.h"
#include "cmf/cloud/gcs.h"
#include "cmf/cloud/metadata.h"
#include "cmf/factory/digest.h"
#include "emulator_process.h"
#include "test_support.h"

namespace fs = std::filesystem;
using cmf::test::read_file;
using cmf::test::run;
using cmf::test::run_cmf;
using cmf::test::shell_quote;
using cmf::test::TempDir;
using cmf::test::write_file;

namespace {

const std::string kToken = "hf_FAKE-worker-secret-test-token";
const std::string kRepo = "google/tiny-medgemma";
const std::string kProject = "emu-proj";
const std::string kZone = "us-east1-c";

std::string job_json(const std::string& id) {
    nlohmann::json d = {{"schema", "cmf.job/1"},
                        {"job_id", id},
                        {"source", {{"uri", "hf://" + kRepo}, {"revision", "main"}}},
                        {"variants",
                         {{{"name", "q8"}, {"type", "Q8_0"}, {"model_name", "tiny-q8"}},
                          {{"name", "q4s"}, {"type", "Q4_K_S"}, {"model_name", "tiny-q4s"}}}},
                        {"output", {{"bucket", "gs://factory-bkt"}, {"prefix", ""}}},
                        {"secrets", {{"hf_token_ref", "gs://secrets-bkt/hf-token"}}},
                        {"flags", {{"threads", 2}, {"delete_vm", true}}}};
    return d.dump();
}

class GceWorker : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new TempDir();
        // The emulated Hub takes file contents as JSON text, so the checkpoint must be valid
        // UTF-8: the synthetic checkpoint with every tensor byte's top bit cleared (finite
        // values, no NaN/Inf possible) and without the binary tokenizer.model (tokenizer.json
        // carries the vocabulary). The reference GGUFs are made from the very same directory.
        const fs::path raw = dir_->path() / "raw";
        auto r = run_cmf("synth " + shell_quote(raw.string()) + " --preset tiny-mm");
        ASSERT_EQ(r.exit_code, 0) << r.output;
        ckpt_ = new fs::path(dir_->path() / "tiny-medgemma");
        fs::create_directories(*ckpt_);
        nlohmann::json files = nlohmann::json::object();
        for (const auto& e : fs::directory_iterator(raw)) {
            const std::string n = e.path().filename().string();
            if (n == "tokenizer.model") continue;
            std::string data = read_file(e.path());
            if (n == "model.safetensors") {
                uint64_t hlen = 0;
                std::memcpy(&hlen, data.data(), 8);
                for (size_t i = 8 + hlen; i < data.size(); ++i) data[i] = static_cast<char>(data[i] & 0x7f);
            }
            for (unsigned char c : data.substr(0, 8)) ASSERT_LT(c, 0x80) << n;
            write_file(*ckpt_ / n, data);
            files[n] = {{"text", data}};
        }
        write_file(*ckpt_ / "LICENSE", "Gemma Terms of Use (test copy)\n");
        files["LICENSE"] = {{"text", "Gemma Terms of Use (test copy)\n"}};
        for (const char* q : {"q8_0", "q4_k_s"}) {
            auto qr = run_cmf("quantize " + shell_quote(ckpt_->string()) + " --quant " + q + " --mmproj --quiet --out " +
                              shell_quote((dir_->path() / "ref").string()));
            ASSERT_EQ(qr.exit_code, 0) << qr.output;
        }
        nlohmann::json cfg = {
            {"hf", {{"tokens", {{kToken, "alice"}}}, {"repos", {{{"id", kRepo}, {"gated", "manual"}, {"granted", {"alice"}}, {"files", files}}}}}},
            {"gcs", {{"buckets", {"factory-bkt", "secrets-bkt"}}, {"require_auth", true}}},
            {"google_auth", {{"metadata", {{"project_id", kProject}, {"zone", kZone}}}}},
            {"compute", {{"guest", "none"}, {"launch", false}, {"project", kProject}, {"require_auth", true}}}};
        emu_ = new cmf::test::EmulatorProcess(cfg.dump());
    }
    static void TearDownTestSuite() {
        delete emu_;
        delete ckpt_;
        delete dir_;
    }

    void SetUp() override {
        http_ = cmf::net::make_http_client(emu_->client_options());
        const std::string mds_host = "127.0.0.1:" + std::to_string(emu_->http_port());
        env_ = [mds_host](const std::string& k) -> std::optional<std::string> {
            if (k == "GCE_METADATA_HOST") return mds_host;
            return std::nullopt;
        };
        tokens_ = std::make_shared<cmf::cloud::MetadataTokenSource>(http_, env_);
        cmf::cloud::GcsOptions go;
        go.endpoint = emu_->https_base();
        gcs_ = std::make_unique<cmf::cloud::GcsClient>(http_, tokens_, go);
    }

    // A VM whose metadata holds the job (the emulated Compute API publishes it on the metadata server).
    void insert_instance(const std::string& name, const std::string& job) {
        cmf::cloud::GceOptions o;
        o.endpoint = emu_->https_base() + "/compute/v1";
        cmf::cloud::GceClient gce(http_, tokens_, o);
        cmf::cloud::InstanceSpec s;
        s.name = name;
        s.zone = kZone;
        s.machine_type = "e2-standard-8";
        s.metadata = {{"factory-config", job}};
        auto r = gce.insert_instance(kProject, s, std::chrono::seconds(30));
        ASSERT_TRUE(r.ok()) << r.error;
    }

    cmf::test::RunResult run_worker(const fs::path& work, const std::string& extra = "") {
        const std::string env = "env -u HF_TOKEN -u GOOGLE_APPLICATION_CREDENTIALS HOME=" + shell_quote(work.string()) +
                                " GCE_METADATA_HOST=127.0.0.1:" + std::to_string(emu_->http_port()) +
                                " STORAGE_EMULATOR_HOST=" + emu_->https_base() + " HF_ENDPOINT=" + emu_->https_base() +
                                " SSL_CERT_FILE=" + shell_quote(emu_->ca_file()) + " CMF_COMPUTE_API=" + emu_->https_base() +
                                "/compute/v1 NO_PROXY='*' ";
        return run(env + shell_quote(CMF_BINARY) + " worker --work " + shell_quote((work / "w").string()) + " --heartbeat 0.2 " + extra);
    }

    std::string object(const std::string& name) {
        auto v = gcs_->read_all("factory-bkt", name);
        EXPECT_TRUE(v.has_value()) << name;
        return v.value_or("");
    }
    nlohmann::json compute_stats() { return nlohmann::json::parse(emu_->control("GET", "/_emu/compute/stats").body); }

    static TempDir* dir_;
    static fs::path* ckpt_;
    static cmf::test::EmulatorProcess* emu_;
    std::shared_ptr<cmf::net::HttpClient> http_;
    cmf::cloud::Env env_;
    std::shared_ptr<cmf::cloud::TokenSource> tokens_;
    std::unique_ptr<cmf::cloud::GcsClient> gcs_;
};
TempDir* GceWorker::dir_ = nullptr;
fs::path* GceWorker::ckpt_ = nullptr;
cmf::test::EmulatorProcess* GceWorker::emu_ = nullptr;

TEST_F(GceWorker, JobFromMetadataBuildsFromTheHubIntoGcsAndDeletesItsVm) {
    TempDir t;
    cmf::cloud::UploadOptions uo;
    gcs_->upload("secrets-bkt", "hf-token", kToken + "\n", uo);
    insert_instance("cmf-worker-1", job_json("gce-job-1"));
    const auto deletes_before = compute_stats().value("deletes", 0);

    auto r = run_worker(t.path());
    if (std::getenv("CMF_TEST_VERBOSE")) std::fprintf(stderr, "%s\n", r.output.c_str());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("built 2, already built 0"), std::string::npos) << r.output;

    // markers, status, model cards, heartbeat
    for (const std::string v : {"q8", "q4s"}) {
        auto built = nlohmann::json::parse(object("status/" + v + ".built"));
        EXPECT_EQ(built["model_name"], "tiny-" + v);
        EXPECT_EQ(built["source"], "hf://" + kRepo);
        EXPECT_EQ(built["revision"].get<std::string>().size(), 40u) << "the resolved commit";
        ASSERT_EQ(built["files"].size(), 2u);  // GGUF + mmproj
        const std::string card = object("models/tiny-" + v + "/README.md");
        EXPECT_NE(card.find(kRepo), std::string::npos) << card;
        EXPECT_FALSE(gcs_->stat("factory-bkt", "status/" + v + "-error.fail").has_value());
        EXPECT_TRUE(gcs_->stat("factory-bkt", "status/" + v + "-build.log").has_value());
        ASSERT_TRUE(built.contains("ollama_export")) << built.dump(1);
        EXPECT_EQ(built["ollama_export"]["object"], "models/tiny-" + v + "/tiny-" + v + ".ollama.tar.zst");
        EXPECT_TRUE(built["ollama_export"]["single_file"].get<bool>());
    }
    auto status = nlohmann::json::parse(object("status/gce-job-1.json"));
    EXPECT_EQ(status["state"], "succeeded");
    EXPECT_EQ(status["bucket"], "gs://factory-bkt");
    auto hb = nlohmann::json::parse(object("status/heartbeat.json"));
    EXPECT_EQ(hb["phase"], "done");
    ASSERT_TRUE(hb.contains("beats")) << hb.dump();
    EXPECT_GE(hb["beats"].get<int>(), 1) << "the background heartbeat thread never wrote";

    // GGUFs are byte-identical to `cmf quantize` of the same checkpoint
    const fs::path ref = dir_->path() / "ref";
    for (const auto& [obj, local] : std::vector<std::pair<std::string, std::string>>{
             {"models/tiny-q8/tiny-medgemma-Q8_0.gguf", "tiny-medgemma-Q8_0.gguf"},
             {"models/tiny-q4s/tiny-medgemma-Q4_K_S.gguf", "tiny-medgemma-Q4_K_S.gguf"},
             {"models/tiny-q8/mmproj-tiny-medgemma-F16.gguf", "mmproj-tiny-medgemma-F16.gguf"}}) {
        ASSERT_TRUE(fs::exists(ref / local)) << local;
        EXPECT_EQ(object(obj), read_file(ref / local)) << obj;
    }

    // the Ollama export: zstd + tar of the store layout, readable by the system tools
    const fs::path ex = t / "export";
    fs::create_directories(ex);
    write_file(t / "x.tar.zst", object("models/tiny-q8/tiny-q8.ollama.tar.zst"));
    auto un = run("zstd -dc " + shell_quote((t / "x.tar.zst").string()) + " | tar -x -C " + shell_quote(ex.string()));
    ASSERT_EQ(un.exit_code, 0) << un.output;
    const fs::path mf = ex / "manifests" / "registry.ollama.ai" / "library" / "tiny-q8" / "latest";
    ASSERT_TRUE(fs::exists(mf));
    auto manifest = nlohmann::json::parse(read_file(mf));
    ASSERT_GE(manifest["layers"].size(), 4u);  // model, template, licenses, params
    EXPECT_EQ(manifest["layers"][0]["mediaType"], "application/vnd.ollama.image.model");
    size_t blobs = 0;
    for (const auto& e : fs::directory_iterator(ex / "blobs")) {
        ++blobs;
        EXPECT_EQ("sha256-" + cmf::factory::sha256_file(e.path()), e.path().filename().string()) << "blob content matches its name";
    }
    EXPECT_EQ(blobs, manifest["layers"].size() + 1);
    const std::string model_blob = manifest["layers"][0]["digest"].get<std::string>().substr(7);
    const std::string mb = read_file(ex / "blobs" / ("sha256-" + model_blob));
    EXPECT_NE(mb.find("v.patch_embedding.weight"), std::string::npos) << "the single-file layout holds the vision tower";
    bool license = false;
    for (const auto& l : manifest["layers"])
        if (l["mediaType"] == "application/vnd.ollama.image.license" &&
            read_file(ex / "blobs" / ("sha256-" + l["digest"].get<std::string>().substr(7))).find("Gemma Terms of Use (test copy)") != std::string::npos)
            license = true;
    EXPECT_TRUE(license);

    // the source cache holds the commit with its manifest
    bool cached = false;
    for (const auto& o : gcs_->list("factory-bkt", "hf/" + kRepo + "/").items)
        if (o.name.size() > 14 && o.name.compare(o.name.size() - 14, 14, "/manifest.json") == 0) cached = true;
    EXPECT_TRUE(cached);

    // the HF token is in no object, status or log, nor in the worker's output
    EXPECT_EQ(r.output.find(kToken), std::string::npos);
    size_t n = 0;
    for (const auto& o : gcs_->list("factory-bkt").items) {
        ++n;
        EXPECT_EQ(object(o.name).find(kToken), std::string::npos) << o.name;
    }
    EXPECT_GT(n, 10u);

    // the worker deleted its own VM through the Compute API
    auto cs = compute_stats();
    EXPECT_EQ(cs.value("deletes", 0), deletes_before + 1) << cs.dump(1);
    EXPECT_NE(r.output.find("deleting instance cmf-worker-1 in " + kZone), std::string::npos) << r.output;

    // second run against the same bucket (a new VM, same job): nothing is rebuilt
    const std::string q8_marker = object("status/q8.built");
    insert_instance("cmf-worker-2", job_json("gce-job-2"));
    TempDir t2;
    auto r2 = run_worker(t2.path());
    ASSERT_EQ(r2.exit_code, 0) << r2.output;
    EXPECT_NE(r2.output.find("built 0, already built 2"), std::string::npos) << r2.output;
    EXPECT_EQ(object("status/q8.built"), q8_marker);
    EXPECT_EQ(compute_stats().value("deletes", 0), deletes_before + 2);
}

TEST_F(GceWorker, KeepVmAttributeSkipsTheDeleteAndAMissingTokenObjectFailsTheVariants) {
    TempDir t;
    nlohmann::json job = nlohmann::json::parse(job_json("gce-job-3"));
    job["secrets"]["hf_token_ref"] = "gs://secrets-bkt/missing-token";
    job["output"]["prefix"] = "run3/";
    insert_instance("cmf-worker-3", job.dump());
    auto md = emu_->control("POST", "/_emu/google_auth/metadata", R"({"attributes":{"cmf-keep-vm":"TRUE"}})");
    ASSERT_EQ(md.status, 200) << md.body;
    const auto deletes_before = compute_stats().value("deletes", 0);
    auto r = run_worker(t.path());
    EXPECT_EQ(r.exit_code, 1) << r.output;
    const std::string fail = object("run3/status/q8-error.fail");
    EXPECT_NE(fail.find("gs://secrets-bkt/missing-token"), std::string::npos) << fail;
    EXPECT_NE(r.output.find("cmf-keep-vm=TRUE"), std::string::npos) << r.output;
    EXPECT_EQ(compute_stats().value("deletes", 0), deletes_before);
    emu_->control("POST", "/_emu/google_auth/metadata", R"({"attributes":{"cmf-keep-vm":"FALSE"}})");
}

}  // namespace
