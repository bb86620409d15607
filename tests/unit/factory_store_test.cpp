// The local bucket (atomic put, create-only put_if_absent, list/stat/remove, name checks), the
// job spec (round trip, validation) and the status reading of markers.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "cmf/factory/bucket.h"
#include "cmf/factory/cloud_init.h"
#include "cmf/factory/job.h"
#include "cmf/factory/status.h"
#include "test_support.h"

using namespace cmf::factory;
using cmf::test::TempDir;

namespace {

Job sample_job() {
    Job j;
    j.job_id = "coheara-medgemma-4b-20261122-130000-1a2b";
    j.created = "2026-11-22T13:00:00Z";
    j.source_uri = "hf://google/medgemma-1.5-4b-it";
    j.variants = {{"q4s", "Q4_K_S", "coheara-medgemma-4b-q4s"}, {"q8", "Q8_0", "coheara-medgemma-4b-q8"}};
    j.bucket = "gs://my-bucket";
    j.prefix = "runs/a/";
    j.registry_namespace = "coheara";
    j.hf_token_ref = "gs://my-bucket/secrets/hf_token";
    return j;
}

std::string job_error(const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json d = job_to_json(sample_job());
    edit(d);
    try {
        job_from_json_text(d.dump(), "job.json");
    } catch (const cmf::Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(LocalBucket, PutGetStatListRemove) {
    TempDir d;
    LocalBucket b(d.path());
    b.put("status/q8.built", "one");
    b.put("status/q8.built", "two");  // put replaces
    EXPECT_EQ(b.get("status/q8.built").value(), "two");
    EXPECT_FALSE(b.get("status/none").has_value());
    EXPECT_EQ(b.stat("status/q8.built")->size, 3u);
    EXPECT_FALSE(b.stat("status").has_value());  // a "directory" is not an object
    b.put("models/m/a.gguf", "xx");
    b.put("status/q4.built", "y");
    auto all = b.list("");
    ASSERT_EQ(all.size(), 3u);
    EXPECT_EQ(all[0].name, "models/m/a.gguf");
    EXPECT_EQ(all[1].name, "status/q4.built");
    EXPECT_EQ(b.list("status/").size(), 2u);
    EXPECT_EQ(b.list("status/q8").size(), 1u);
    EXPECT_TRUE(b.remove("status/q4.built"));
    EXPECT_FALSE(b.remove("status/q4.built"));
    // no temporary left behind anywhere
    for (auto& e : std::filesystem::recursive_directory_iterator(d.path()))
        EXPECT_EQ(e.path().filename().string().find(".cmf-tmp"), std::string::npos) << e.path();
}

TEST(LocalBucket, PutFileCopiesTheBytes) {
    TempDir d;
    std::string big(3 << 20, '\0');
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
    cmf::test::write_file(d / "src.bin", big);
    LocalBucket b(d / "bucket");
    b.put_file("models/x/x.gguf", d / "src.bin");
    EXPECT_EQ(b.get("models/x/x.gguf").value(), big);
}

TEST(LocalBucket, PutIfAbsentIsCreateOnlyAndFirstWriterWins) {
    TempDir d;
    LocalBucket b(d.path());
    EXPECT_TRUE(b.put_if_absent("status/q8.built", "first"));
    EXPECT_FALSE(b.put_if_absent("status/q8.built", "second"));
    EXPECT_EQ(b.get("status/q8.built").value(), "first");
    std::atomic<int> wins{0};
    std::vector<std::thread> ts;
    for (int i = 0; i < 8; ++i)
        ts.emplace_back([&, i] {
            if (b.put_if_absent("status/race.fail", "writer " + std::to_string(i))) ++wins;
        });
    for (auto& t : ts) t.join();
    EXPECT_EQ(wins.load(), 1);
    EXPECT_EQ(b.list("status/").size(), 2u);
}

TEST(LocalBucket, RejectsNamesThatEscapeOrAreReserved) {
    TempDir d;
    LocalBucket b(d / "bucket");
    for (const char* n : {"../x", "a/../../x", "/etc/passwd", "a//b", "a/", "", "a/./b", ".cmf-tmp-1", "a\nb"}) {
        EXPECT_THROW(b.put(n, "x"), cmf::Error) << n;
        EXPECT_THROW(b.get(n), cmf::Error) << n;
    }
    EXPECT_FALSE(std::filesystem::exists(d / "x"));
}

TEST(Job, RoundTripsThroughJson) {
    const Job j = sample_job();
    const Job k = job_from_json_text(job_to_json(j).dump(), "job.json");
    EXPECT_EQ(job_to_json(k), job_to_json(j));
    EXPECT_EQ(k.hf_repo(), "google/medgemma-1.5-4b-it");
    EXPECT_TRUE(k.mmproj);
}

// A job with a LoRA adapter: lora {uri, revision} and flags.publish_adapter round-trip; bad ones
// are one clear line.
TEST(Job, LoraRoundTripsAndIsChecked) {
    Job j = sample_job();
    j.lora_uri = "hf://coheara/triage-lora";
    j.lora_revision = "v2";
    j.publish_adapter = true;
    const Job k = job_from_json_text(job_to_json(j).dump(), "job.json");
    EXPECT_EQ(k.lora_uri, "hf://coheara/triage-lora");
    EXPECT_EQ(k.lora_revision, "v2");
    EXPECT_TRUE(k.publish_adapter);
    EXPECT_EQ(job_to_json(k), job_to_json(j));
    EXPECT_FALSE(job_to_json(sample_job()).contains("lora"));  // absent when there is none
    EXPECT_NE(job_error([](auto& d) { d["lora"] = {{"uri", "s3://x/y"}}; }).find("lora.uri"), std::string::npos);
    EXPECT_NE(job_error([](auto& d) { d["lora"] = {{"uri", "hf://only-one-part"}}; }).find("lora.uri"), std::string::npos);
    EXPECT_NE(job_error([](auto& d) { d["lora"] = {{"uri", "hf://a/b"}, {"rev", "x"}}; }).find("unknown key 'lora.rev'"), std::string::npos);
    EXPECT_NE(job_error([](auto& d) { d["flags"]["publish_adapter"] = true; }).find("publish_adapter needs a lora"), std::string::npos);
}

TEST(Job, ValidationErrorsAreClear) {
    EXPECT_NE(job_error([](auto& d) { d["secrets"]["hf_token_ref"] = "hf_FAKE-looks-like-a-token"; }).find("never the secret itself"), std::string::npos);
    EXPECT_NE(job_error([](auto& d) { d["registry"]["key_ref"] = "-----BEGIN OPENSSH PRIVATE KEY-----"; }).find("registry.key_ref"),
              std::string::npos);
    EXPECT_NE(job_error([](auto& d) { d["flags"]["mmprj"] = true; }).find("unknown key 'flags.mmprj'"), std::string::npos);
    EXPECT_NE(job_error([](auto& d) { d["varients"] = 1; }).find("unknown key 'varients'"), std::string::npos);
    EXPECT_NE(job_error([](auto& d) { d["variants"][1]["type"] = "Q4_K_M"; }).find("expected Q8_0"), std::string::npos);
    EXPECT_NE(job_error([](auto& d) { d["variants"][1]["name"] = "q9"; }).find("unknown variant 'q9'"), std::string::npos);
    EXPECT_NE(job_error([](auto& d) { d["variants"][1] = d["variants"][0]; }).find("listed twice"), std::string::npos);
    EXPECT_NE(job_error([](auto& d) { d["source"]["uri"] = "/rel/dir"; }).find("source.uri"), std::string::npos);
    EXPECT_NE(job_error([](auto& d) { d["output"]["prefix"] = "../up/"; }).find("output.prefix"), std::string::npos);
    EXPECT_NE(job_error([](auto& d) { d["output"]["bucket"] = "s3://x"; }).find("output.bucket"), std::string::npos);
    EXPECT_NE(job_error([](auto& d) { d["schema"] = "cmf.job/2"; }).find("schema"), std::string::npos);
    EXPECT_NE(job_error([](auto& d) { d["flags"]["threads"] = -1; }).find("flags.threads"), std::string::npos);
    EXPECT_EQ(job_error([](auto&) {}), "");
    try {
        job_from_json_text("{not json", "j.json");
        FAIL();
    } catch (const cmf::Error& e) {
        EXPECT_EQ(std::string(e.what()).rfind("j.json: not valid JSON", 0), 0u);
    }
}

TEST(Variants, OldNamesAndAnyType) {
    auto v = parse_factory_variants("q4s, q4,q8,f16,q6_k");
    ASSERT_EQ(v.size(), 5u);
    EXPECT_EQ(v[0].type, "Q4_K_S");
    EXPECT_EQ(v[1].type, "Q4_K_M");
    EXPECT_EQ(v[2].type, "Q8_0");
    EXPECT_EQ(v[3].type, "F16");
    EXPECT_EQ(v[4].type, "Q6_K");
    EXPECT_THROW(parse_factory_variants("q8,q8_0"), cmf::Error);
    EXPECT_THROW(parse_factory_variants("q7"), cmf::Error);
    EXPECT_THROW(parse_factory_variants(","), cmf::Error);
}

TEST(Status, ReadsMarkersAndLogTail) {
    TempDir d;
    LocalBucket b(d.path());
    b.put_if_absent(marker_built("p/", "q8"), R"({"model_name":"m-q8","files":[{"size":10},{"size":5}]})");
    b.put_if_absent(marker_pushed("p/", "q8"), "{}");
    b.put_if_absent(marker_failed("p/", "q4"), "quantizing: boom\n");
    std::string log;
    for (int i = 1; i <= 40; ++i) log += "line " + std::to_string(i) + "\n";
    b.put(build_log_object("p/", "q4"), log);
    b.put(marker_built("other/", "f16"), "{}");
    BucketStatus s = read_bucket_status(b, "p/");
    ASSERT_EQ(s.variants.size(), 2u);
    EXPECT_TRUE(s.variants["q8"].built && s.variants["q8"].pushed && !s.variants["q8"].failed);
    EXPECT_TRUE(s.variants["q4"].failed && s.variants["q4"].has_log);
    EXPECT_EQ(s.variants["q4"].fail_line, "quantizing: boom");
    const std::string tail = last_lines(log, 30);
    EXPECT_EQ(tail.rfind("line 11\n", 0), 0u);
    EXPECT_EQ(std::count(tail.begin(), tail.end(), '\n'), 30);
}

TEST(CloudInit, UserDataInlinesTheScriptIndented) {
    const std::string t = "#cloud-config\nwrite_files:\n  - content: |\n      @STARTUP_SH@\nruncmd: []\n";
    const std::string r = render_user_data(t, "#!/bin/bash\n\necho hi\n");
    EXPECT_EQ(r, "#cloud-config\nwrite_files:\n  - content: |\n      #!/bin/bash\n\n      echo hi\nruncmd: []\n");
}
