// Publishing to the Hub (hub/hf_publish.h, `cmf publish`) against the emulated Hub's write API
// (tests/emulator/hf_write.h): one commit, LFS basic and multipart uploads, nothing sent twice,
// resumption after cut connections and after a failed run, the token checked before any byte.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cmf/format/gguf.h"
#include "cmf/hub/hf.h"
#include "cmf/hub/hf_publish.h"
#include "emulator_process.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace cmf;
using namespace cmf::hub;

namespace {

const char* kWrite = "hf_FAKE-pub-alice-write-token";
const char* kRead = "hf_FAKE-pub-alice-read-token";
const char* kFine = "hf_FAKE-pub-alice-fine-token";
const char* kBob = "hf_FAKE-pub-bob-write-token";

// Multipart from 1 MiB in 256 KiB parts, so small files exercise every path.
const char* kConfig = R"({"hf": {
  "tokens": {"hf_FAKE-pub-alice-write-token": "alice",
             "hf_FAKE-pub-alice-read-token": {"user": "alice", "role": "read"},
             "hf_FAKE-pub-alice-fine-token": {"user": "alice", "role": "fineGrained",
                "scoped": [{"entity": {"type": "user", "name": "alice"}, "permissions": ["repo.content.read"]}]},
             "hf_FAKE-pub-bob-write-token": "bob"},
  "orgs": {"medteam": {"alice": "write", "bob": "read"}},
  "lfs": {"multipart_threshold": 1048576, "chunk_size": 262144}}})";

std::string bytes(std::size_t n, unsigned seed) {
    std::string s(n, '\0');
    std::uint32_t x = seed * 2654435761u + 1;
    for (auto& c : s) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c = static_cast<char>(x);
    }
    return s;
}

std::string slurp(const fs::path& p) { return test::read_file(p); }

class HubPublishTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() { emu = new test::EmulatorProcess(kConfig); }
    static void TearDownTestSuite() {
        delete emu;
        emu = nullptr;
    }
    void SetUp() override { emu->clear_faults(); }

    HfEnv env(const std::string& token) {
        HfEnv e;
        e.endpoint = emu->https_base();
        e.token = token;
        e.token_origin = "HF_TOKEN";
        e.hf_home = tmp.path() / "hf";
        e.hub_cache = tmp.path() / "hf" / "hub";
        return e;
    }
    std::shared_ptr<net::HttpClient> http() {
        auto o = emu->client_options();
        o.retry.initial_backoff = std::chrono::milliseconds(5);
        o.retry.max_backoff = std::chrono::milliseconds(50);
        return net::make_http_client(o);
    }
    nlohmann::json counters() {
        auto r = http()->send([&] {
            net::Request q;
            q.url = net::Url::parse(emu->https_base() + "/_emu/hf/uploads");
            return q;
        }());
        return nlohmann::json::parse(r.body);
    }
    fs::path write(const std::string& name, const std::string& data) {
        const fs::path p = tmp.path() / "build" / name;
        fs::create_directories(p.parent_path());
        std::ofstream(p, std::ios::binary) << data;
        return p;
    }
    PublishRequest request(const std::string& target) {
        PublishRequest r;
        r.target = HfSource::parse(target);
        r.message = "Upload GGUF files made by cmf";
        r.files.push_back(HubFile::from_disk("model-Q8_0.gguf", write("model-Q8_0.gguf", "GGUF" + bytes(3 * 1048576 + 1234, 1))));
        r.files.push_back(HubFile::from_disk("mmproj-model-F16.gguf", write("mmproj-model-F16.gguf", "GGUF" + bytes(300000, 2))));
        r.files.push_back(HubFile::from_disk("model-Q8_0.quality.json", write("model-Q8_0.quality.json", R"({"type": "Q8_0"})")));
        r.files.push_back(HubFile::from_memory("README.md", "---\nbase_model: google/medgemma-1.5-4b-it\n---\n# card\n"));
        return r;
    }
    // The file as the Hub serves it now, through cmf's own download path.
    std::string read_back(const std::string& repo, const std::string& path, const std::string& token = kWrite) {
        HfClient c(http(), env(token));
        const std::string commit = c.resolve_commit(HfSource::parse("hf://" + repo));
        for (const auto& f : c.list_files(repo, commit))
            if (f.path == path) {
                const fs::path dest = tmp.path() / "back" / repo / path;
                fs::create_directories(dest.parent_path());
                c.download_to(repo, commit, f, dest);
                return slurp(dest);
            }
        return "<missing>";
    }

    static test::EmulatorProcess* emu;
    test::TempDir tmp;
};
test::EmulatorProcess* HubPublishTest::emu = nullptr;

std::string content_of(const HubFile& f) { return f.local.empty() ? f.content : slurp(f.local); }

}  // namespace

TEST_F(HubPublishTest, OneCommitWithMultipartAndBasicUploadsThenNothingTwice) {
    HfClient c(http(), env(kWrite));
    std::vector<std::string> lines;
    HfPublisher pub(c, [&](const std::string& l) { lines.push_back(l); });
    const auto before = counters();
    PublishRequest req = request("hf://alice/tiny-mm-GGUF");
    const PublishRequest copy = req;
    const PublishResult r = pub.publish(req);
    const auto after = counters();
    EXPECT_TRUE(r.created_repo);
    EXPECT_EQ(r.committed.size(), 4u);
    EXPECT_EQ(r.lfs_sent.size(), 2u);  // the two GGUFs; the JSON and the card are regular files
    EXPECT_EQ(after.value("commits", 0) - before.value("commits", 0), 1);
    EXPECT_EQ(after.value("completions", 0) - before.value("completions", 0), 1);  // the 3 MiB file: multipart
    EXPECT_EQ(after.value("part_puts", 0) - before.value("part_puts", 0), 13);     // ceil((3 MiB + 1238) / 256 KiB)
    EXPECT_EQ(after.value("basic_puts", 0) - before.value("basic_puts", 0), 1);    // the projector: one PUT
    for (const auto& f : copy.files) EXPECT_EQ(read_back("alice/tiny-mm-GGUF", f.path), content_of(f)) << f.path;

    // Again: the preupload answer names every file with the same oid: no byte, no commit.
    const PublishResult again = pub.publish(request("hf://alice/tiny-mm-GGUF"));
    const auto third = counters();
    EXPECT_TRUE(again.committed.empty());
    EXPECT_EQ(again.unchanged.size(), 4u);
    EXPECT_EQ(again.commit, r.commit);
    EXPECT_EQ(third.value("commits", 0), after.value("commits", 0));
    EXPECT_EQ(third.value("part_puts", 0), after.value("part_puts", 0));
    EXPECT_EQ(third.value("basic_puts", 0), after.value("basic_puts", 0));
    EXPECT_EQ(third.value("batches", 0), after.value("batches", 0));  // not even asked
}

TEST_F(HubPublishTest, ChangedCardOnlyCommitsTheCard) {
    HfClient c(http(), env(kWrite));
    HfPublisher pub(c);
    pub.publish(request("hf://alice/card-only"));
    const auto before = counters();
    PublishRequest req = request("hf://alice/card-only");
    req.files.back().content += "\nmore\n";
    const PublishResult r = pub.publish(req);
    const auto after = counters();
    ASSERT_EQ(r.committed, std::vector<std::string>{"README.md"});
    EXPECT_EQ(after.value("commits", 0) - before.value("commits", 0), 1);
    EXPECT_EQ(after.value("part_puts", 0), before.value("part_puts", 0));
    EXPECT_EQ(read_back("alice/card-only", "README.md"), req.files.back().content);
}

TEST_F(HubPublishTest, DroppedConnectionsMidPartAreRetriedAndTheFilesAreIdentical) {
    emu->set_faults(R"({"seed": 3, "rules": [
        {"kind": "drop_request", "path": "/lfs-s3/mpu/", "method": "PUT", "count": 4, "random": true},
        {"kind": "drop_request", "path": "/lfs-s3/obj/", "method": "PUT", "count": 1, "random": true},
        {"kind": "reset", "path": "/lfs-s3/mpu/", "method": "PUT", "count": 1}]})");
    HfClient c(http(), env(kWrite));
    HfPublisher pub(c);
    PublishRequest req = request("hf://alice/flaky");
    const PublishRequest copy = req;
    pub.publish(req);
    const auto st = emu->stats();
    EXPECT_GE(st["fired"].value("drop_request", 0), 5) << st.dump();
    for (const auto& f : copy.files) EXPECT_EQ(read_back("alice/flaky", f.path), content_of(f)) << f.path;
}

TEST_F(HubPublishTest, ARunCutOffBeforeItsCommitResumesWithoutResendingStoredObjects) {
    HfClient c(http(), env(kWrite));
    HfPublisher pub(c);
    // A run whose big file's parts all fail for good ends with one line, no URL in it.
    emu->set_faults(R"({"rules": [{"kind": "status", "path": "/lfs-s3/mpu/", "method": "PUT", "count": -1, "status": 403}]})");
    try {
        pub.publish(request("hf://alice/resumed"));
        FAIL() << "the publish should have failed";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("model-Q8_0.gguf (part"), std::string::npos) << e.what();
        EXPECT_EQ(std::string(e.what()).find("X-Amz"), std::string::npos) << "no presigned URL in messages: " << e.what();
    }
    // A run cut off after its uploads, at the commit (not retried: a POST): the objects stay stored.
    emu->set_faults(R"({"clear": true, "rules": [{"kind": "status", "path": "/commit/", "method": "POST", "count": 1, "status": 503}]})");
    EXPECT_THROW(pub.publish(request("hf://alice/resumed")), Error);
    emu->clear_faults();
    const auto before = counters();
    PublishRequest req = request("hf://alice/resumed");
    const PublishRequest copy = req;
    const PublishResult r = pub.publish(req);
    const auto after = counters();
    EXPECT_EQ(r.lfs_stored, (std::vector<std::string>{"model-Q8_0.gguf", "mmproj-model-F16.gguf"}));
    EXPECT_TRUE(r.lfs_sent.empty());
    EXPECT_EQ(after.value("basic_puts", 0), before.value("basic_puts", 0));
    EXPECT_EQ(after.value("part_puts", 0), before.value("part_puts", 0));
    EXPECT_EQ(after.value("commits", 0) - before.value("commits", 0), 1);
    for (const auto& f : copy.files) EXPECT_EQ(read_back("alice/resumed", f.path), content_of(f)) << f.path;
}

TEST_F(HubPublishTest, AReadOnlyTokenIsRefusedBeforeAnyByteAndNeverShown) {
    const auto before = counters();
    HfClient c(http(), env(kRead));
    HfPublisher pub(c);
    try {
        pub.publish(request("hf://alice/never"));
        FAIL() << "a read token must not publish";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::auth);
        EXPECT_NE(std::string(e.what()).find("read-only"), std::string::npos) << e.what();
        EXPECT_EQ(std::string(e.what()).find(kRead), std::string::npos);
    }
    const auto after = counters();
    EXPECT_EQ(after.value("preuploads", 0), before.value("preuploads", 0));  // not even a 512-byte sample
    EXPECT_EQ(after.value("batches", 0), before.value("batches", 0));
    EXPECT_EQ(after.value("repos_created", 0), before.value("repos_created", 0));
}

TEST_F(HubPublishTest, WritePermissionOnTheNamespaceIsCheckedFirst) {
    auto refused = [&](const char* token, const std::string& target, const std::string& says) {
        HfClient c(http(), env(token));
        HfPublisher pub(c);
        try {
            pub.publish(request(target));
            ADD_FAILURE() << target << " should be refused";
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::auth) << e.what();
            EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
            EXPECT_EQ(std::string(e.what()).find(token), std::string::npos);
        }
    };
    refused(kFine, "hf://alice/x", "repo.write");         // fine-grained without write access to contents
    refused(kBob, "hf://medteam/x", "read role");          // a reader of the organization
    refused(kBob, "hf://alice/x", "not a member");          // someone else's namespace
    HfClient none(http(), env(""));
    try {
        HfPublisher(none).publish(request("hf://alice/x"));
        ADD_FAILURE() << "no token";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("HF_TOKEN"), std::string::npos) << e.what();
    }
    // alice writes into the organization she has the write role in, on a new branch
    HfClient c(http(), env(kWrite));
    const PublishResult r = HfPublisher(c).publish(request("hf://medteam/tiny-GGUF@q8"));
    EXPECT_TRUE(r.created_repo);
    EXPECT_TRUE(r.created_branch);
}

TEST_F(HubPublishTest, PrivateReposStayPrivate) {
    HfClient c(http(), env(kWrite));
    PublishRequest req = request("hf://alice/private-GGUF");
    req.private_repo = true;
    HfPublisher(c).publish(req);
    HfClient anon(http(), env(""));
    EXPECT_THROW(anon.resolve_commit(HfSource::parse("hf://alice/private-GGUF")), Error);
    EXPECT_EQ(read_back("alice/private-GGUF", "README.md"), req.files.back().content);
}

TEST_F(HubPublishTest, FilesOverTheHubLimitAreRefusedByTheBatchApi) {
    // The emulator's limit is the Hub's 50 GB; a lowered one is covered by `cmf publish` (it
    // splits before uploading). Here: an object error of the batch API becomes one line.
    HfClient c(http(), env(kWrite));
    PublishRequest req = request("hf://alice/bad-path");
    req.files.push_back(HubFile::from_memory("../escape.txt", "x"));
    EXPECT_THROW(HfPublisher(c).publish(req), Error);
}

// `cmf publish` of a tiny-mm build: the card from the files' metadata, a file over a lowered
// per-file limit split in llama.cpp's format (the same parts `cmf split` writes), one commit.
TEST_F(HubPublishTest, PublishCommandSplitsWhatIsOverTheLimitAndWritesTheCard) {
    const fs::path ck = tmp.path() / "ck", out = tmp.path() / "gguf";
    auto r = test::run_cmf("synth " + test::shell_quote(ck.string()) + " --preset tiny-mm");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ofstream(ck / "README.md") << "---\nlicense: other\nlicense_name: health-ai-developer-foundations\n"
                                       "license_link: https://developers.google.com/health-ai-developer-foundations/terms\n"
                                       "base_model: google/medgemma-1.5-4b-it\ntags:\n- medical\n---\n# tiny\n";
    r = test::run_cmf("quantize " + test::shell_quote(ck.string()) + " --quant f16 --mmproj --name tiny-mm --quiet --out " + test::shell_quote(out.string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // a limit between the projector's size and the text model's: only the text model is split
    const std::uint64_t text = fs::file_size(out / "tiny-mm-F16.gguf"), proj = fs::file_size(out / "mmproj-tiny-mm-F16.gguf");
    ASSERT_GT(text, proj + 2);
    const std::uint64_t lim = (text + proj) / 2;
    const std::string limit = std::to_string(lim);
    const std::string env = "env -u HF_TOKEN HF_HOME=" + test::shell_quote((tmp.path() / "hf").string()) + " SSL_CERT_FILE=" +
                            test::shell_quote(emu->ca_file()) + " HF_ENDPOINT=" + test::shell_quote(emu->https_base()) + " ";
    const std::string publish = test::shell_quote(CMF_BINARY) + " publish " + test::shell_quote(out.string()) + " hf://alice/split-GGUF --max-file-size " + limit;
    r = test::run(env + publish + " --dry-run");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("tiny-mm-F16-00001-of-0000"), std::string::npos) << r.output;
    EXPECT_EQ(("\n" + r.output).find("\ntiny-mm-F16.gguf "), std::string::npos) << "the whole file is not published: " << r.output;
    EXPECT_NE(r.output.find("mmproj-tiny-mm-F16.gguf"), std::string::npos);
    EXPECT_NE(r.output.find("base_model: google/medgemma-1.5-4b-it\nbase_model_relation: quantized\n"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("license_name: health-ai-developer-foundations"), std::string::npos);
    EXPECT_NE(r.output.find("Notice of modification"), std::string::npos);
    EXPECT_NE(r.output.find("NOTICE"), std::string::npos);
    EXPECT_FALSE(fs::exists(out / ".cmf-publish-parts-")) << "no parts are left behind";
    for (const auto& e : fs::directory_iterator(out)) EXPECT_NE(e.path().filename().string().rfind(".cmf-publish", 0), 0u) << e.path();

    const auto before = counters();
    r = test::run(env + "HF_TOKEN=" + kWrite + " " + publish);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.find(kWrite), std::string::npos);
    EXPECT_EQ(counters().value("commits", 0) - before.value("commits", 0), 1);
    // the published parts are the parts `cmf split` writes, which llama.cpp loads (gguf_split tests)
    const fs::path ref = tmp.path() / "ref";
    fs::create_directories(ref);
    r = test::run_cmf("split " + test::shell_quote((out / "tiny-mm-F16.gguf").string()) + " " + test::shell_quote((ref / "tiny-mm-F16").string()) +
                      " --max-size " + std::to_string(lim - read_gguf(out / "tiny-mm-F16.gguf").data_start - kGgufDefaultAlignment));
    std::vector<fs::path> parts;
    for (const auto& e : fs::directory_iterator(ref)) parts.push_back(e.path());
    std::sort(parts.begin(), parts.end());
    ASSERT_GE(parts.size(), 2u) << r.output;
    for (const auto& p : parts) EXPECT_EQ(read_back("alice/split-GGUF", p.filename().string()), slurp(p)) << p;
}
