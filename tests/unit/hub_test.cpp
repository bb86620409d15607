// cmf::hub against the emulated Hugging Face Hub (tests/emulator/hf_service.h), in process:
// source parsing, environment, the Hub's JSON, huggingface_hub's cache layout on disk, access
// errors (gated, rejected token, not found), checksum failures, revisions, and the source cache
// (object store + manifest).
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "../emulator/hf_service.h"
#include "cmf/hub/hf.h"
#include "cmf/hub/source_cache.h"
#include "inproc_hf_http.h"

namespace fs = std::filesystem;
using namespace cmf;
using namespace cmf::hub;

namespace {

const std::string kEndpoint = "https://127.0.0.1:9443";
const std::string kGoodToken = "hf_FAKE-alice-test-token";
const std::string kBobToken = "hf_FAKE-bob-test-token";

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct TempDir {
    fs::path path;
    TempDir() {
        path = fs::temp_directory_path() / ("cmf-hub-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    static int& counter() {
        static int n = 0;
        return n;
    }
};

class HubTest : public ::testing::Test {
protected:
    void SetUp() override {
        st.tokens[kGoodToken] = "alice";
        st.tokens[kBobToken] = "bob";
        files = {
            {"config.json", emu::HfEmuState::file(R"({"architectures":["Gemma3ForCausalLM"]})", false)},
            {"tokenizer_config.json", emu::HfEmuState::file("{}", false)},
            {"model-00001-of-00002.safetensors", emu::HfEmuState::file(emu::hfemu::generate(300000, 1), true)},
            {"model-00002-of-00002.safetensors", emu::HfEmuState::file(emu::hfemu::generate(200001, 2), true)},
            {"original/params/extra.json", emu::HfEmuState::file("{\"x\":1}", false)},
        };
        commit = st.add_commit("google/tiny", files);
        files = st.repos["google/tiny"].commits[commit];  // with sha256 / blob ids filled in
        ASSERT_EQ(files["config.json"].blob_id.size(), 40u);
        st.add_commit("google/gated", files);
        st.repos["google/gated"].gated = "manual";
        st.repos["google/gated"].granted = {"alice"};
        st.add_commit("alice/private", {{"config.json", emu::HfEmuState::file("{}", false)}});
        st.repos["alice/private"].is_private = true;
        st.repos["alice/private"].granted = {"alice"};
        st.tree_page_size = 2;  // exercise Link pagination
        http = std::make_shared<test::InprocHfHttp>(std::vector<emu::Handler>{emu::make_hf_service(st)});
    }

    HfEnv env(const std::string& token = "") {
        HfEnv e;
        e.endpoint = kEndpoint;
        e.token = token;
        e.token_origin = token.empty() ? "" : "HF_TOKEN";
        e.hf_home = tmp.path / "hf";
        e.hub_cache = tmp.path / "hf" / "hub";
        return e;
    }

    FetchResult fetch(const std::string& source, const std::string& token = "", FetchOptions opt = {}) {
        HfClient c(http, env(token));
        HfCache cache(env(token).hub_cache);
        return fetch_snapshot(c, cache, HfSource::parse(source), opt);
    }

    int cdn_gets() {
        int n = 0;
        for (const auto& s : st.seen)
            if (s.target.rfind("/cdn/", 0) == 0 && s.method == "GET") ++n;
        return n;
    }

    emu::HfEmuState st;
    std::map<std::string, emu::HfEmuFile> files;
    std::string commit;
    std::shared_ptr<test::InprocHfHttp> http;
    TempDir tmp;
};

Error expect_error(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e;
    }
    ADD_FAILURE() << "expected a cmf::Error";
    return Error(ErrorKind::internal, "none");
}

}  // namespace

TEST(HfSourceTest, Parses) {
    auto s = HfSource::parse("hf://google/medgemma-1.5-4b-it");
    EXPECT_EQ(s.org, "google");
    EXPECT_EQ(s.repo, "medgemma-1.5-4b-it");
    EXPECT_EQ(s.revision, "main");
    EXPECT_FALSE(s.revision_given);
    EXPECT_EQ(s.repo_id(), "google/medgemma-1.5-4b-it");
    auto r = HfSource::parse("hf://org/Repo_1.x@refs/pr/3");
    EXPECT_EQ(r.revision, "refs/pr/3");
    EXPECT_TRUE(r.revision_given);
    EXPECT_EQ(r.str(), "hf://org/Repo_1.x@refs/pr/3");
    EXPECT_TRUE(HfSource::parse("hf://a/b@0123456789abcdef0123456789abcdef01234567").revision_is_commit());
    EXPECT_FALSE(HfSource::parse("hf://a/b@v1.0").revision_is_commit());
    for (const char* bad : {"google/x", "hf://google", "hf://google/", "hf://a/b/c", "hf://a--b/c", "hf://a/b..c", "hf://-a/b",
                            "hf://a/b@", "hf://a/b@x y", "hf://a/b@../x", "gs://a/b", "hf:///b"}) {
        auto e = expect_error([&] { HfSource::parse(bad); });
        EXPECT_EQ(e.kind(), ErrorKind::usage) << bad;
    }
    EXPECT_EQ(url_quote("refs/pr/1"), "refs%2Fpr%2F1");
    EXPECT_EQ(url_quote("a b/c.json", "/"), "a%20b/c.json");
}

TEST(HfEnvTest, DefaultsAndOverrides) {
    TempDir t;
    std::map<std::string, std::string> vars{{"HOME", "/home/u"}};
    auto get = [&](const std::string& k) -> std::optional<std::string> {
        auto it = vars.find(k);
        return it == vars.end() ? std::nullopt : std::optional(it->second);
    };
    auto e = HfEnv::from_environment(get);
    EXPECT_EQ(e.endpoint, "https://huggingface.co");
    EXPECT_EQ(e.hf_home, fs::path("/home/u/.cache/huggingface"));
    EXPECT_EQ(e.hub_cache, fs::path("/home/u/.cache/huggingface/hub"));
    EXPECT_EQ(e.token, "");
    EXPECT_EQ(e.repo_page("google/x"), "https://huggingface.co/google/x");

    vars["HF_HOME"] = t.path.string();
    std::ofstream(t.path / "token") << "hf_fromfile\n";
    e = HfEnv::from_environment(get);
    EXPECT_EQ(e.token, "hf_fromfile");
    EXPECT_EQ(e.token_origin, (t.path / "token").string());
    EXPECT_EQ(e.hub_cache, t.path / "hub");

    vars["HF_TOKEN"] = "hf_fromenv";
    vars["HF_HUB_CACHE"] = "/x/cache";
    vars["HF_ENDPOINT"] = "http://127.0.0.1:1234/";
    e = HfEnv::from_environment(get);
    EXPECT_EQ(e.token, "hf_fromenv");
    EXPECT_EQ(e.token_origin, "HF_TOKEN");
    EXPECT_EQ(e.hub_cache, fs::path("/x/cache"));
    EXPECT_EQ(e.endpoint, "http://127.0.0.1:1234");
    EXPECT_EQ(e.repo_page("o/r"), "http://127.0.0.1:1234/o/r");
}

TEST(HfJsonTest, TreeModelInfoLink) {
    auto t = parse_tree_page(R"([{"type":"directory","oid":"0000000000000000000000000000000000000000","size":0,"path":"d"},
      {"type":"file","oid":"1111111111111111111111111111111111111111","size":5,"path":"d/a.json"},
      {"type":"file","oid":"2222222222222222222222222222222222222222","size":9,"path":"m.safetensors",
       "lfs":{"oid":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":9,"pointerSize":130}}])");
    ASSERT_EQ(t.size(), 2u);
    EXPECT_EQ(t[0].etag(), "1111111111111111111111111111111111111111");
    EXPECT_FALSE(t[0].lfs());
    EXPECT_EQ(t[1].etag(), std::string(64, 'a'));
    for (const char* bad : {"{}", "[1]", R"([{"type":"file","path":"../x","size":1,"oid":"1111111111111111111111111111111111111111"}])",
                            R"([{"type":"file","path":"/x","size":1,"oid":"1111111111111111111111111111111111111111"}])",
                            R"([{"type":"file","path":"a//b","size":1,"oid":"1111111111111111111111111111111111111111"}])",
                            R"([{"type":"file","path":"x","size":-1,"oid":"1111111111111111111111111111111111111111"}])",
                            R"([{"type":"file","path":"x","size":1,"lfs":{"oid":"zz","size":1}}])", "not json"}) {
        auto e = expect_error([&] { parse_tree_page(bad); });
        EXPECT_EQ(e.kind(), ErrorKind::remote) << bad;
    }
    auto m = parse_model_info(R"({"id":"a/b","sha":"0123456789abcdef0123456789abcdef01234567","gated":"manual",
      "siblings":[{"rfilename":"config.json"},{"rfilename":"w.safetensors","size":4,
      "lfs":{"sha256":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","size":4,"pointerSize":1}}]})");
    EXPECT_EQ(m.gated, "manual");
    EXPECT_EQ(m.siblings.size(), 2u);
    EXPECT_EQ(*m.siblings[1].sha256, std::string(64, 'b'));
    EXPECT_EQ(parse_model_info(R"({"sha":"0123456789abcdef0123456789abcdef01234567","gated":false})").gated, "");
    EXPECT_THROW(parse_model_info(R"({"sha":"xyz"})"), Error);

    EXPECT_EQ(link_next(R"(<https://h/api/x?cursor=2>; rel="next")"), "https://h/api/x?cursor=2");
    EXPECT_EQ(link_next(R"(<https://h/p>; rel="prev", <https://h/n?a=1,2>; rel="next")"), "https://h/n?a=1,2");
    EXPECT_EQ(link_next(R"(<https://h/p>; rel="prev")"), std::nullopt);
    EXPECT_EQ(normalize_etag("W/\"abc\""), "abc");
}

TEST_F(HubTest, CacheLayoutMatchesHuggingfaceHub) {
    auto r = fetch("hf://google/tiny");
    EXPECT_EQ(r.commit, commit);
    EXPECT_EQ(r.files.size(), files.size());
    const fs::path repo = tmp.path / "hf" / "hub" / "models--google--tiny";
    EXPECT_EQ(r.snapshot, repo / "snapshots" / commit);
    EXPECT_EQ(slurp(repo / "refs" / "main"), commit);  // no newline, as huggingface_hub writes it
    for (const auto& [path, f] : files) {
        const std::string etag = f.lfs ? f.sha256 : f.blob_id;
        const fs::path link = repo / "snapshots" / commit / path;
        ASSERT_TRUE(fs::is_symlink(fs::symlink_status(link))) << path;
        std::string up;
        for (auto n = std::count(path.begin(), path.end(), '/') + 2; n > 0; --n) up += "../";
        EXPECT_EQ(fs::read_symlink(link).string(), up + "blobs/" + etag) << path;
        EXPECT_EQ(slurp(link), f.content) << path;
        EXPECT_TRUE(fs::is_regular_file(repo / "blobs" / etag));
    }
    for (const auto& e : fs::recursive_directory_iterator(repo))
        EXPECT_EQ(e.path().extension(), e.path().extension() == ".incomplete" ? ".never" : e.path().extension()) << e.path();
    // Authorization never goes to the CDN host, and the CDN host differs from the Hub's.
    int cdn = 0;
    for (const auto& s : st.seen)
        if (s.target.rfind("/cdn/", 0) == 0) {
            ++cdn;
            EXPECT_EQ(s.host, "localhost");
        }
    EXPECT_EQ(cdn, 2);

    // A second fetch reuses every blob: no file bytes are transferred again.
    const int before = cdn_gets();
    auto again = fetch("hf://google/tiny");
    EXPECT_EQ(again.reused, files.size());
    EXPECT_EQ(again.bytes_downloaded, 0u);
    EXPECT_EQ(cdn_gets(), before);
}

TEST_F(HubTest, TokenIsSentToHubButNeverToCdn) {
    auto r = fetch("hf://alice/private", kGoodToken);
    EXPECT_EQ(r.files.size(), 1u);
    auto g = fetch("hf://google/gated", kGoodToken);
    EXPECT_EQ(g.files.size(), files.size());
    bool hub_auth = false;
    for (const auto& s : st.seen) {
        if (s.target.rfind("/cdn/", 0) == 0) {
            EXPECT_FALSE(s.auth) << s.target;
        }
        if (s.target.find("/resolve/") != std::string::npos) hub_auth |= s.auth;
    }
    EXPECT_TRUE(hub_auth);
}

TEST_F(HubTest, GatedWithoutTokenFailsFastNamingTheLicensePage) {
    const auto t0 = std::chrono::steady_clock::now();
    auto e = expect_error([&] { fetch("hf://google/gated"); });
    const auto dt = std::chrono::steady_clock::now() - t0;
    EXPECT_LT(dt, std::chrono::seconds(2));
    EXPECT_EQ(e.kind(), ErrorKind::auth);
    const std::string m = e.what();
    EXPECT_NE(m.find(kEndpoint + "/google/gated"), std::string::npos) << m;
    EXPECT_NE(m.find("accept the license"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos);

    HfClient c(http, env());
    auto a = expect_error([&] { c.auth_check(HfSource::parse("hf://google/gated")); });
    EXPECT_EQ(a.kind(), ErrorKind::auth);
    EXPECT_NO_THROW(c.auth_check(HfSource::parse("hf://google/tiny")));
}

TEST_F(HubTest, GatedWithUngrantedTokenNamesLicensePageNotToken) {
    auto e = expect_error([&] { fetch("hf://google/gated", kBobToken); });
    EXPECT_EQ(e.kind(), ErrorKind::auth);
    const std::string m = e.what();
    EXPECT_NE(m.find(kEndpoint + "/google/gated"), std::string::npos) << m;
    EXPECT_EQ(m.find(kBobToken), std::string::npos) << m;
    HfClient c(http, env(kBobToken));
    auto a = expect_error([&] { c.auth_check(HfSource::parse("hf://google/gated")); });
    EXPECT_EQ(a.kind(), ErrorKind::auth);
    EXPECT_NO_THROW(HfClient(http, env(kGoodToken)).auth_check(HfSource::parse("hf://google/gated")));
}

TEST_F(HubTest, RejectedTokenIsReported) {
    const std::string bad = "hf_FAKE-invalid-test-token";
    auto e = expect_error([&] { fetch("hf://google/tiny", bad); });
    EXPECT_EQ(e.kind(), ErrorKind::auth);
    const std::string m = e.what();
    EXPECT_NE(m.find("the Hugging Face token was rejected"), std::string::npos) << m;
    EXPECT_EQ(m.find(bad), std::string::npos) << m;
}

TEST_F(HubTest, NotFoundRepoRevisionAndPrivate) {
    auto e = expect_error([&] { fetch("hf://google/nope"); });
    EXPECT_EQ(e.kind(), ErrorKind::input);
    EXPECT_NE(std::string(e.what()).find("not found"), std::string::npos) << e.what();
    auto p = expect_error([&] { fetch("hf://alice/private", kBobToken); });
    EXPECT_EQ(p.kind(), ErrorKind::input);
    EXPECT_EQ(std::string(p.what()).find(kBobToken), std::string::npos);
    auto r = expect_error([&] { fetch("hf://google/tiny@no-such-branch"); });
    EXPECT_EQ(r.kind(), ErrorKind::input);
    EXPECT_NE(std::string(r.what()).find("revision 'no-such-branch' not found"), std::string::npos) << r.what();
    HfClient c(http, env());
    auto f = expect_error([&] { c.file_metadata("google/tiny", commit, "missing.bin"); });
    EXPECT_EQ(f.kind(), ErrorKind::input);
}

TEST_F(HubTest, RevisionResolution) {
    const std::string v1 = commit;
    std::map<std::string, emu::HfEmuFile> v2files = files;
    v2files["config.json"] = emu::HfEmuState::file(R"({"v":2})", false);
    const std::string v2 = st.add_commit("google/tiny", v2files, "main");
    st.repos["google/tiny"].refs["v1.0"] = v1;
    ASSERT_NE(v1, v2);
    HfClient c(http, env());
    EXPECT_EQ(c.resolve_commit(HfSource::parse("hf://google/tiny")), v2);
    EXPECT_EQ(c.resolve_commit(HfSource::parse("hf://google/tiny@v1.0")), v1);
    auto r = fetch("hf://google/tiny@v1.0");
    EXPECT_EQ(r.commit, v1);
    EXPECT_EQ(slurp(r.snapshot / "config.json"), files["config.json"].content);
    EXPECT_EQ(slurp(tmp.path / "hf/hub/models--google--tiny/refs/v1.0"), v1);
    // A commit needs no resolution request and writes no ref.
    const auto before = st.seen.size();
    auto rc = fetch("hf://google/tiny@" + v2);
    EXPECT_EQ(rc.commit, v2);
    for (auto i = before; i < st.seen.size(); ++i) EXPECT_EQ(st.seen[i].target.find("/revision/"), std::string::npos);
    EXPECT_FALSE(fs::exists(tmp.path / "hf/hub/models--google--tiny/refs" / v2));
    EXPECT_EQ(slurp(rc.snapshot / "config.json"), R"({"v":2})");
}

TEST_F(HubTest, IncludeSelectsFiles) {
    FetchOptions o;
    o.include = {"*.json"};
    auto r = fetch("hf://google/tiny", "", o);
    EXPECT_EQ(r.files.size(), 3u);  // '*' crosses '/' as in huggingface_hub's allow_patterns
    EXPECT_FALSE(fs::exists(r.snapshot / "model-00001-of-00002.safetensors"));
    EXPECT_TRUE(fs::exists(r.snapshot / "original/params/extra.json"));
    o.include = {"*.gguf"};
    EXPECT_EQ(expect_error([&] { fetch("hf://google/tiny", "", o); }).kind(), ErrorKind::usage);
}

TEST_F(HubTest, CorruptTransferIsRefetchedThenRejected) {
    const std::string sha = files["model-00001-of-00002.safetensors"].sha256;
    st.corrupt_cdn[sha] = 1;
    std::vector<std::string> refetched;
    FetchOptions o;
    o.on_event = [&](const FetchEvent& e) {
        if (e.kind == FetchEvent::Kind::refetching) refetched.push_back(e.path);
    };
    auto r = fetch("hf://google/tiny", "", o);
    ASSERT_EQ(refetched.size(), 1u);
    EXPECT_EQ(refetched[0], "model-00001-of-00002.safetensors");
    EXPECT_EQ(slurp(r.snapshot / "model-00001-of-00002.safetensors"), files["model-00001-of-00002.safetensors"].content);

    TempDir other;
    st.corrupt_cdn[sha] = 100;
    HfEnv e2 = env();
    e2.hub_cache = other.path;
    HfClient c(http, e2);
    HfCache cache(other.path);
    auto e = expect_error([&] { fetch_snapshot(c, cache, HfSource::parse("hf://google/tiny"), {}); });
    EXPECT_EQ(e.kind(), ErrorKind::remote);
    EXPECT_NE(std::string(e.what()).find("sha256 mismatch"), std::string::npos) << e.what();
    EXPECT_FALSE(fs::exists(cache.blob_path("google/tiny", sha)));
    EXPECT_FALSE(fs::exists(cache.incomplete_path("google/tiny", sha)));
}

TEST_F(HubTest, SourceCacheRoundTripAndTamperDetection) {
    TempDir bucket;
    LocalDirStore store(bucket.path);
    SourceCache sc(store, "cache/v1");
    HfClient c(http, env());
    {
        HfCache cache(tmp.path / "first");
        auto r = sc.fetch(c, cache, HfSource::parse("hf://google/tiny"), {});
        EXPECT_FALSE(r.manifest_existed);
        EXPECT_EQ(r.to_store, files.size());
        EXPECT_EQ(r.fetch.commit, commit);
    }
    const fs::path base = bucket.path / "cache/v1/hf/google/tiny" / commit;
    ASSERT_TRUE(fs::exists(base / "manifest.json"));
    auto m = SourceManifest::parse(slurp(base / "manifest.json"), "test");
    EXPECT_EQ(m.commit, commit);
    EXPECT_EQ(m.files.size(), files.size());
    for (const auto& e : m.files) {
        EXPECT_TRUE(e.stored);
        EXPECT_EQ(e.sha256, files[e.path].sha256) << e.path;
        EXPECT_EQ(slurp(base / e.path), files[e.path].content);
    }
    EXPECT_EQ(slurp(bucket.path / "cache/v1/hf/google/tiny/refs/main"), commit);

    // Second fetch, fresh HF cache, Hub unreachable: everything comes from the store.
    http->unreachable = true;
    {
        HfCache cache(tmp.path / "second");
        auto r = sc.fetch(c, cache, HfSource::parse("hf://google/tiny"), {});
        EXPECT_TRUE(r.manifest_existed);
        EXPECT_EQ(r.from_store, files.size());
        EXPECT_EQ(r.mismatched, 0u);
        for (const auto& [path, f] : files) EXPECT_EQ(slurp(r.fetch.snapshot / path), f.content) << path;
        EXPECT_EQ(fs::read_symlink(r.fetch.snapshot / "config.json").string(), "../../blobs/" + files["config.json"].blob_id);
    }

    // A tampered object is detected; with the Hub unreachable that is an error, not silent use.
    {
        std::ofstream(base / "model-00002-of-00002.safetensors", std::ios::binary | std::ios::trunc) << "evil";
        HfCache cache(tmp.path / "third");
        auto e = expect_error([&] { sc.fetch(c, cache, HfSource::parse("hf://google/tiny"), {}); });
        EXPECT_EQ(e.kind(), ErrorKind::network);
        EXPECT_FALSE(fs::exists(cache.blob_path("google/tiny", files["model-00002-of-00002.safetensors"].sha256)));
    }
    // Same size, different bytes: caught by sha256; with the Hub back it is refetched and repaired.
    http->unreachable = false;
    {
        std::string evil = files["model-00002-of-00002.safetensors"].content;
        evil[7] ^= 1;
        std::ofstream(base / "model-00002-of-00002.safetensors", std::ios::binary | std::ios::trunc) << evil;
        HfCache cache(tmp.path / "fourth");
        auto r = sc.fetch(c, cache, HfSource::parse("hf://google/tiny"), {});
        EXPECT_EQ(r.mismatched, 1u);
        EXPECT_EQ(r.from_store, files.size() - 1);
        EXPECT_EQ(slurp(r.fetch.snapshot / "model-00002-of-00002.safetensors"), files["model-00002-of-00002.safetensors"].content);
        EXPECT_EQ(slurp(base / "model-00002-of-00002.safetensors"), files["model-00002-of-00002.safetensors"].content);
    }
}

TEST_F(HubTest, SourceCacheIncludeThenMore) {
    TempDir bucket;
    LocalDirStore store(bucket.path);
    SourceCache sc(store, "");
    HfClient c(http, env());
    FetchOptions o;
    o.include = {"config.json"};
    HfCache cache(tmp.path / "a");
    auto r1 = sc.fetch(c, cache, HfSource::parse("hf://google/tiny@" + commit), o);
    EXPECT_EQ(r1.to_store, 1u);
    auto m = SourceManifest::parse(slurp(bucket.path / "hf/google/tiny" / commit / "manifest.json"), "t");
    EXPECT_EQ(m.files.size(), files.size());
    EXPECT_EQ(std::count_if(m.files.begin(), m.files.end(), [](auto& e) { return e.stored; }), 1);
    // Everything now: config.json comes from the store, the rest from the Hub, then stored.
    HfCache cache2(tmp.path / "b");
    auto r2 = sc.fetch(c, cache2, HfSource::parse("hf://google/tiny@" + commit), {});
    EXPECT_EQ(r2.from_store, 1u);
    EXPECT_EQ(r2.to_store, files.size() - 1);
    m = SourceManifest::parse(slurp(bucket.path / "hf/google/tiny" / commit / "manifest.json"), "t");
    for (const auto& e : m.files) {
        EXPECT_TRUE(e.stored) << e.path;
        EXPECT_EQ(e.sha256, files[e.path].sha256) << e.path;
    }
    EXPECT_FALSE(store.put_if_absent("hf/google/tiny/" + commit + "/manifest.json", bucket.path / "hf/google/tiny" / commit / "manifest.json"));
}

TEST_F(HubTest, EmulatorGeneratesReposOnDemand) {
    auto r = fetch("hf://gen/model-64k");
    ASSERT_EQ(r.files.size(), 2u);
    EXPECT_EQ(fs::file_size(r.snapshot / "model.safetensors"), 64u * 1024);
}

TEST_F(HubTest, LargeFilesUseParallelRangesAndAreChecked) {
    HfClient c(http, env());
    c.connections = 4;
    c.ranged_threshold = 100000;  // both safetensors shards (300000, 200001 bytes)
    HfCache cache(tmp.path / "ranged");
    const std::string sha = files["model-00001-of-00002.safetensors"].sha256;
    st.corrupt_cdn[sha] = 1;  // first whole-file pass is corrupt: refetched, then good
    auto r = fetch_snapshot(c, cache, HfSource::parse("hf://google/tiny"), {});
    for (const auto& [path, f] : files) EXPECT_EQ(slurp(r.snapshot / path), f.content) << path;
    int ranged = 0;
    for (const auto& s : st.seen)
        if (s.target.rfind("/cdn/", 0) == 0 && s.method == "GET") ++ranged;
    EXPECT_GT(ranged, 2);  // more than one GET per large file
    for (const auto& e : fs::recursive_directory_iterator(cache.root()))
        EXPECT_EQ(e.path().string().find(".incomplete"), std::string::npos) << e.path();

    TempDir other;
    HfCache bad(other.path);
    st.corrupt_cdn[sha] = 1000;
    auto e = expect_error([&] { fetch_snapshot(c, bad, HfSource::parse("hf://google/tiny"), {}); });
    EXPECT_NE(std::string(e.what()).find("sha256 mismatch"), std::string::npos) << e.what();
    EXPECT_FALSE(fs::exists(bad.blob_path("google/tiny", sha)));
}

TEST(HfEmulatorConfigTest, SeedsReposFromConfig) {
    emu::HfEmuState st;
    st.load_config(nlohmann::json::parse(R"({"tokens":{"hf_x":"alice"},"tree_page_size":3,"repos":[
      {"id":"o/r","gated":"manual","granted":["alice"],"files":{"config.json":{"text":"{}"},"w.safetensors":{"size":1000,"seed":3}}}]})"));
    ASSERT_EQ(st.repos.count("o/r"), 1u);
    const auto& repo = st.repos["o/r"];
    EXPECT_EQ(repo.gated, "manual");
    EXPECT_EQ(repo.granted.count("alice"), 1u);
    const auto& files = repo.commits.at(repo.refs.at("main"));
    ASSERT_EQ(files.size(), 2u);
    EXPECT_EQ(files.at("config.json").content, "{}");
    EXPECT_FALSE(files.at("config.json").lfs);
    EXPECT_TRUE(files.at("w.safetensors").lfs);
    EXPECT_EQ(files.at("w.safetensors").content.size(), 1000u);
    EXPECT_EQ(st.tokens.at("hf_x"), "alice");
    EXPECT_EQ(st.tree_page_size, 3u);
}

TEST_F(HubTest, EmulatorResolveHonorsRangeLikeTheHub) {
    // @huggingface/hub learns a file's size from GET Range: bytes=0-0 -> 206 Content-Range.
    net::Request q;
    q.url = net::Url::parse(kEndpoint + "/google/tiny/resolve/main/config.json");
    q.headers.set("Range", "bytes=0-0");
    auto r = http->send(q);
    EXPECT_EQ(r.status, 206);
    EXPECT_EQ(r.headers.get("Content-Range"), "bytes 0-0/" + std::to_string(files["config.json"].content.size()));
    EXPECT_EQ(r.headers.get("ETag"), "\"" + files["config.json"].blob_id + "\"");
    q.url = net::Url::parse(kEndpoint + "/google/tiny/resolve/main/model-00002-of-00002.safetensors");
    r = http->send(q);  // follows the CDN redirect (Authorization would be dropped)
    EXPECT_EQ(r.status, 206);
    EXPECT_EQ(r.headers.get("Content-Range"), "bytes 0-0/200001");
}
