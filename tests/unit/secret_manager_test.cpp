// cloud/secret_manager.h against the emulated Secret Manager (tests/emulator/secret_manager_service.h)
// with IAM enforced per secret: the principals are the emulated OAuth server's (an owner through
// a refresh-token grant, the VM's service account through the metadata server, a second account
// that must be refused).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <map>
#include <set>
#include <thread>

#include "cmf/cloud/secret_manager.h"
#include "cmf/factory/gce_worker.h"
#include "cmf/factory/job.h"
#include "cmf/factory/job_secrets.h"
#include "emulator_process.h"

using namespace cmf;

namespace {

const char* kConfig = R"({
  "google_auth": {"authorized_users": [
      {"client_id": "owner-client", "client_secret": "s1", "refresh_token": "r1"},
      {"client_id": "intruder", "client_secret": "s2", "refresh_token": "r2"}],
    "metadata": {"project_id": "emu-project", "service_account_email": "vm-sa@emu-project.iam.gserviceaccount.com"}},
  "secret_manager": {"owners": ["user:owner-client"]}})";
const char* kDisabled = R"({"google_auth": {"authorized_users": [{"client_id": "owner-client", "client_secret": "s1", "refresh_token": "r1"}]},
  "secret_manager": {"enabled": false}})";

struct FixedToken : cloud::TokenSource {
    std::string t;
    explicit FixedToken(std::string tok) : t(std::move(tok)) {}
    std::string access_token() override { return t; }
    std::string describe() const override { return "a test token"; }
};

std::string user_token(test::EmulatorProcess& emu, const std::string& id, const std::string& secret, const std::string& refresh) {
    auto http = net::make_http_client(emu.client_options());
    net::Request q;
    q.method = "POST";
    q.url = net::Url::parse(emu.https_base() + "/token");
    q.headers.set("Content-Type", "application/x-www-form-urlencoded");
    q.body = "grant_type=refresh_token&client_id=" + id + "&client_secret=" + secret + "&refresh_token=" + refresh;
    return nlohmann::json::parse(http->send(q).body).at("access_token").get<std::string>();
}

std::string vm_token(test::EmulatorProcess& emu) {
    auto http = net::make_http_client(emu.client_options());
    net::Request q;
    q.url = net::Url::parse(emu.http_base() + "/computeMetadata/v1/instance/service-accounts/default/token");
    q.headers.set("Metadata-Flavor", "Google");
    return nlohmann::json::parse(http->send(q).body).at("access_token").get<std::string>();
}

cloud::SecretManagerClient client(test::EmulatorProcess& emu, const std::string& token, std::chrono::seconds wait = std::chrono::seconds(0)) {
    cloud::SecretManagerOptions o;
    o.endpoint = emu.https_base();
    o.propagation_wait = wait;
    o.poll = std::chrono::milliseconds(20);
    return cloud::SecretManagerClient(net::make_http_client(emu.client_options()), std::make_shared<FixedToken>(token), "emu-project", o);
}

}  // namespace

TEST(SecretManager, OnlyTheGrantedServiceAccountReadsTheSecretAndItIsGoneAfterwards) {
    test::EmulatorProcess emu(kConfig);
    auto owner = client(emu, user_token(emu, "owner-client", "s1", "r1"));
    const std::string value = "hf_FAKE-secret-manager-token\n\x01binary";
    owner.create("cmf-job-1", {{"managed-by", "cmf"}, {"cmf-job", "job-1"}}, 7200);
    const std::string version = owner.add_version("cmf-job-1", value);
    EXPECT_EQ(version, "projects/emu-project/secrets/cmf-job-1/versions/1");

    auto vm = client(emu, vm_token(emu));
    EXPECT_THROW(vm.access(version), Error) << "no binding yet";
    owner.grant_accessor("cmf-job-1", "serviceAccount:vm-sa@emu-project.iam.gserviceaccount.com");
    EXPECT_EQ(vm.access(version), value);
    auto intruder = client(emu, user_token(emu, "intruder", "s2", "r2"));
    try {
        intruder.access(version);
        FAIL() << "another principal must get 403";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::auth);
        EXPECT_NE(std::string(e.what()).find("HTTP 403"), std::string::npos) << e.what();
        EXPECT_EQ(std::string(e.what()).find("hf_FAKE"), std::string::npos) << "no payload in messages";
    }
    EXPECT_THROW(vm.destroy("cmf-job-1"), Error) << "the VM may read, not delete";
    const auto listed = owner.list("managed-by", "cmf");
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0].id, "cmf-job-1");
    EXPECT_EQ(listed[0].labels.at("managed-by"), "cmf");
    EXPECT_TRUE(owner.exists("cmf-job-1"));
    EXPECT_FALSE(owner.exists("cmf-no-such"));
    EXPECT_TRUE(owner.destroy("cmf-job-1"));
    EXPECT_FALSE(owner.destroy("cmf-job-1"));
    EXPECT_TRUE(owner.list("managed-by", "cmf").empty());
    EXPECT_THROW(vm.access(version), Error);
}

TEST(SecretManager, AReaderWaitsForTheGrantToPropagate) {
    test::EmulatorProcess emu(kConfig);
    auto owner = client(emu, user_token(emu, "owner-client", "s1", "r1"));
    owner.create("cmf-job-2", {{"managed-by", "cmf"}});
    const std::string version = owner.add_version("cmf-job-2", "v");
    auto vm = client(emu, vm_token(emu), std::chrono::seconds(30));
    std::thread later([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        owner.grant_accessor("cmf-job-2", "serviceAccount:vm-sa@emu-project.iam.gserviceaccount.com");
    });
    EXPECT_EQ(vm.access(version), "v");  // 403 until the binding exists, then the value
    later.join();
}

TEST(SecretManager, ADisabledApiIsOneLineSayingHowToEnableIt) {
    test::EmulatorProcess emu(kDisabled);
    auto owner = client(emu, user_token(emu, "owner-client", "s1", "r1"), std::chrono::seconds(30));
    try {
        owner.create("x", {});
        FAIL();
    } catch (const Error& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("gcloud services enable secretmanager.googleapis.com --project emu-project"), std::string::npos) << m;
        EXPECT_EQ(m.find('\n'), std::string::npos);
    }
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_THROW(owner.access("projects/emu-project/secrets/x/versions/1"), Error);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10)) << "SERVICE_DISABLED is not waited on";
}

// The worker's secret reference "sm:projects/P/secrets/ID/versions/N" (factory/gce_worker.h),
// read with the VM's own token; the job accepts it as a reference, never as a value.
TEST(SecretManager, TheWorkerReadsAnSmReferenceWithTheVmsToken) {
    test::EmulatorProcess emu(kConfig);
    auto owner = client(emu, user_token(emu, "owner-client", "s1", "r1"));
    owner.create("cmf-job-3", {{"managed-by", "cmf"}, {"cmf-job", "job-3"}});
    const std::string version = owner.add_version("cmf-job-3", "hf_FAKE-worker-token\n");
    owner.grant_accessor("cmf-job-3", "serviceAccount:vm-sa@emu-project.iam.gserviceaccount.com");
    auto vm = client(emu, vm_token(emu));
    auto access = [&](const std::string& v) { return vm.access(v); };
    EXPECT_EQ(factory::resolve_cloud_secret("sm:" + version, nullptr, nullptr, access), "hf_FAKE-worker-token");
    EXPECT_THROW(factory::resolve_cloud_secret("sm:projects/emu-project/secrets/cmf-job-3", nullptr, nullptr, access), Error);
    EXPECT_THROW(factory::resolve_cloud_secret("sm:" + version, nullptr, nullptr, {}), Error);
    factory::Job j;
    j.hf_token_ref = "sm:" + version;
    EXPECT_NO_THROW(factory::check_secret_ref("secrets.hf_token_ref", j.hf_token_ref));
    EXPECT_THROW(factory::check_secret_ref("secrets.hf_token_ref", "hf_FAKE-worker-token"), Error);
}

// The emulator's watch (tests/emulator/watch.h), which the factory simulation trusts to say that
// the user's Ollama key reached no request: it finds a needle in a body, a target and a header,
// in binary too, and does not count its own control requests.
TEST(EmulatorWatch, FindsNeedlesInBodiesTargetsAndHeadersButNotInControlRequests) {
    test::EmulatorProcess emu("{}");
    const std::string binary("\x01\x00\xff-seed", 8);
    auto r = emu.control("POST", "/_emu/watch",
                         nlohmann::json{{"needles_b64", {base64_encode("needle-xyz"), base64_encode(binary)}}}.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    auto http = net::make_http_client(emu.client_options());
    auto send = [&](const std::string& method, const std::string& target, const std::string& body, const std::string& header = "") {
        net::Request q;
        q.method = method;
        q.url = net::Url::parse(emu.https_base() + target);
        if (!header.empty()) q.headers.set("X-Test", header);
        q.body = body;
        q.idempotent = false;
        http->send(q);
    };
    send("PUT", "/upload/storage/v1/b/x/o", "abc" + binary + "def");
    send("GET", "/some/path?q=needle-xyz", "");
    send("GET", "/other", "", "prefix needle-xyz");
    send("POST", "/_emu/echo", "needle-xyz");  // a control request: not scanned
    send("POST", "/clean", "nothing here");
    const auto w = nlohmann::json::parse(emu.control("GET", "/_emu/watch").body);
    EXPECT_EQ(w["requests"], 4) << w.dump();
    ASSERT_EQ(w["hits"].size(), 3u) << w.dump();
    EXPECT_EQ(w["hits"][0]["needle"], 1);
    EXPECT_EQ(w["hits"][0]["where"], "body");
    EXPECT_EQ(w["hits"][1]["where"], "target");
    EXPECT_EQ(w["hits"][2]["where"], "header");
}

// factory/job_secrets.h: a put that fails half-way (the grant refused) still leaves the secret to
// destroy_all; the leftover sweep deletes job secrets only, never the push key, and asks the
// caller about each job with its age.
TEST(JobSecrets, AHalfMadeSecretIsDestroyedAndTheSweepSparesThePushKey) {
    test::EmulatorProcess emu(kConfig);
    auto owner = client(emu, user_token(emu, "owner-client", "s1", "r1"));
    {
        factory::JobSecrets js(owner, "Job.A", "serviceAccount:vm-sa@emu-project.iam.gserviceaccount.com", std::chrono::seconds(3600));
        const std::string ref = js.put("hf-token", "hf_FAKE-a");
        EXPECT_EQ(ref, "sm:projects/emu-project/secrets/cmf-job-a-hf-token/versions/1");
        emu.set_faults(R"({"rules":[{"kind":"status","path":":setIamPolicy","count":-1,"status":400}]})");
        EXPECT_THROW(js.put("push-key", "key"), Error);
        emu.clear_faults();
        EXPECT_EQ(js.ids(), (std::vector<std::string>{"cmf-job-a-hf-token", "cmf-job-a-push-key"}));
        EXPECT_TRUE(js.destroy_all().empty());
        EXPECT_TRUE(owner.list("managed-by", "cmf").empty());
    }
    owner.create(factory::kPushKeySecretId, {{"managed-by", "cmf"}, {"cmf-role", "push-key"}});
    factory::JobSecrets b(owner, "job-b", "serviceAccount:vm-sa@emu-project.iam.gserviceaccount.com", std::chrono::seconds(3600));
    b.put("hf-token", "hf_FAKE-b");
    factory::JobSecrets c(owner, "job-c", "serviceAccount:vm-sa@emu-project.iam.gserviceaccount.com", std::chrono::seconds(3600));
    c.put("hf-token", "hf_FAKE-c");
    std::map<std::string, long long> asked;
    const auto lines = factory::destroy_job_secrets(owner, [&](const std::string& job, std::chrono::seconds age) {
        asked[job] = age.count();
        return job == "job-b";
    });
    EXPECT_EQ(lines, std::vector<std::string>{"deleted secret cmf-job-b-hf-token (job job-b)"});
    EXPECT_EQ(asked.size(), 2u) << "the push key is never a candidate";
    EXPECT_LT(asked["job-c"], 60) << "the age comes from createTime";
    std::set<std::string> left;
    for (const auto& s : owner.list("managed-by", "cmf")) left.insert(s.id);
    EXPECT_EQ(left, (std::set<std::string>{factory::kPushKeySecretId, "cmf-job-c-hf-token"}));
}
