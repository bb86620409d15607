// The Ollama registry client against an in-process fake registry + token server + presigned
// storage (a cmf::net::HttpClient): the exact signed string, verified with OpenSSL; a tampered
// signature refused; the 307 presigned-part path with parts in flight at once; the retry of a
// failed part; skipping blobs the registry has; pull with ranged parts and SHA-256 checks;
// clear errors for an unauthorized namespace and bad key files.
#include <sys/stat.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "cmf/registry/ed25519_key.h"
#include "cmf/registry/registry_client.h"
#include "test_support.h"

namespace {

using namespace cmf;
using namespace cmf::ollama;
using cmf::test::run;
using cmf::test::shell_quote;

std::map<std::string, std::string> parse_query(const std::string& target) {
    std::map<std::string, std::string> q;
    auto qm = target.find('?');
    if (qm == std::string::npos) return q;
    std::string rest = target.substr(qm + 1);
    size_t i = 0;
    while (i <= rest.size()) {
        size_t amp = rest.find('&', i);
        if (amp == std::string::npos) amp = rest.size();
        std::string kv = rest.substr(i, amp - i);
        size_t eq = kv.find('=');
        if (!kv.empty()) q[percent_decode(kv.substr(0, eq), true).value_or("")] += (q.count(percent_decode(kv.substr(0, eq), true).value_or("")) ? " " : "") + percent_decode(kv.substr(eq + 1), true).value_or("");
        i = amp + 1;
    }
    return q;
}

// An Ollama-style registry on host reg.test with its token realm, and storage.test for the
// presigned part uploads.
class FakeRegistry : public net::HttpClient {
public:
    // registered key -> namespaces it may access
    std::map<std::string, std::set<std::string>> keys;
    bool redirect_uploads = true;
    std::string realm = "http://reg.test/v2/token";
    std::set<uint64_t> fail_storage_once, fail_patch_once, fail_get_once;  // part offsets that fail on first try
    int status_queries = 0;

    // observations
    std::mutex mu;
    int token_requests = 0, token_rejected = 0, storage_puts = 0, storage_puts_with_auth = 0, storage_failures = 0,
        patch_failures = 0, patches_following_redirects = 0, posts = 0, bad_etags = 0;
    std::atomic<int> in_flight{0}, max_in_flight{0}, gets_in_flight{0}, max_gets_in_flight{0};
    int get_failures = 0, ranged_gets = 0;
    std::map<std::string, std::string> blobs, manifests, manifest_types;
    std::vector<std::string> signed_strings;

    net::Response send(const net::Request& req, const net::BodySink& sink) override {
        std::string body = req.body;
        if (req.source) {
            net::BodySource s = *req.source;
            char buf[4096];
            while (size_t n = s.read(buf, sizeof buf)) body.append(buf, n);
            EXPECT_EQ(body.size(), *s.size);
        }
        net::Response r = handle(req, body);
        if (sink && r.status >= 200 && r.status < 300) {
            if (req.on_head && !req.on_head(r.status, r.headers)) {
                r.body_refused = true;
            } else {
                sink(r.body.data(), r.body.size());
            }
            r.body.clear();
        }
        return r;
    }

    // What the server checks: "<P>:<S>" over "GET,<url>,<Z>".
    static bool verify_authorization(const std::string& auth, const std::string& full_url, std::string* pub_out) {
        const auto colon = auth.find(':');
        if (colon == std::string::npos) return false;
        std::string blob, sig;
        auto b = base64_decode(auth.substr(0, colon)), g = base64_decode(auth.substr(colon + 1));
        if (!b || !g) return false;
        blob = *b;
        sig = *g;
        // ssh wire form: string "ssh-ed25519", string key(32)
        if (blob.size() != 51 || blob.substr(4, 11) != "ssh-ed25519" || sig.size() != 64) return false;
        const std::string pub = blob.substr(19, 32);
        if (pub_out) *pub_out = pub;
        return ed25519_verify(pub, "GET," + full_url + "," + std::string(kEmptyBodyHashB64), sig);
    }

private:
    std::map<std::string, std::map<uint64_t, std::string>> uploads_;  // session id -> offset -> bytes
    int next_upload_ = 0;
    std::map<std::string, uint64_t> upload_end_;  // bytes accepted per upload session

    static net::Response status(int s, std::string body = "") {
        net::Response r;
        r.status = s;
        r.body = std::move(body);
        return r;
    }

    net::Response handle(const net::Request& req, const std::string& body) {
        const std::string target = req.url.target;
        const std::string path = target.substr(0, target.find('?'));
        if (req.url.host == "storage.test") {
            std::unique_lock<std::mutex> l(mu);
            ++storage_puts;
            if (req.headers.has("Authorization")) ++storage_puts_with_auth;
            EXPECT_EQ(req.method, "PUT");
            EXPECT_FALSE(req.headers.has("Content-Range"));
            EXPECT_FALSE(req.headers.has("X-Redirect-Uploads"));
            // /part/<session>/<offset>
            const std::string rest = path.substr(6);
            const std::string id = rest.substr(0, rest.find('/'));
            const uint64_t off = std::stoull(rest.substr(rest.find('/') + 1));
            if (fail_storage_once.erase(off)) {
                ++storage_failures;
                return status(500, "storage hiccup");
            }
            l.unlock();
            const int now = ++in_flight;
            for (int m = max_in_flight; now > m && !max_in_flight.compare_exchange_weak(m, now);) {
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(40));
            --in_flight;
            l.lock();
            uploads_[id][off] = body;
            return status(200);
        }
        if (req.method == "GET" && req.headers.has("Range")) {
            const int now = ++gets_in_flight;
            for (int m = max_gets_in_flight; now > m && !max_gets_in_flight.compare_exchange_weak(m, now);) {
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(40));
            --gets_in_flight;
        }
        std::lock_guard<std::mutex> l(mu);
        if (path == "/v2/token") {
            ++token_requests;
            const std::string full = "http://reg.test" + target;
            auto q = parse_query(target);
            std::string pub;
            const std::string auth = req.headers.get("Authorization").value_or("");
            const bool sig_ok = verify_authorization(auth, full, &pub);
            EXPECT_EQ(q["nonce"].size(), 22u);
            EXPECT_LT(std::llabs(std::stoll(q["ts"]) - static_cast<long long>(std::time(nullptr))), 300);
            EXPECT_EQ(q["service"], "reg.test");
            if (!sig_ok || !keys.count(pub)) {
                ++token_rejected;
                return status(401, "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"unknown key or bad signature\"}]}");
            }
            signed_strings.push_back("GET," + full + "," + std::string(kEmptyBodyHashB64));
            // scope "repository:<ns>/<model>:push,pull"
            const std::string scope = q["scope"];
            const std::string ns = scope.substr(11, scope.find('/') - 11);
            return status(200, "{\"token\":\"" + std::string(keys[pub].count(ns) ? "tok-" + ns : "tok-none") + "\"}");
        }
        // /v2/<ns>/<model>/...
        if (path.rfind("/v2/", 0) != 0) return status(404);
        const std::string rest = path.substr(4);
        const std::string ns = rest.substr(0, rest.find('/'));
        const std::string after_ns = rest.substr(ns.size() + 1);
        const std::string model = after_ns.substr(0, after_ns.find('/'));
        const std::string op = after_ns.substr(model.size());  // "/blobs/..." etc.
        if (req.headers.get("Authorization").value_or("") != "Bearer tok-" + ns) {
            net::Response r = status(401, "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}");
            r.headers.set("WWW-Authenticate", "Bearer realm=\"" + realm + "\",service=\"reg.test\",scope=\"repository:" + ns + "/" + model +
                                                  ":push,pull\"");
            return r;
        }
        const std::string base = "http://reg.test/v2/" + ns + "/" + model;
        if (op == "/blobs/uploads/" && req.method == "POST") {
            ++posts;
            const std::string id = "u" + std::to_string(++next_upload_);
            net::Response r = status(202);
            r.headers.set("Location", base + "/blobs/uploads/" + id + "?_state=0");
            return r;
        }
        if (op.rfind("/blobs/uploads/", 0) == 0) {
            const std::string id = op.substr(15);
            auto q = parse_query(target);
            if (req.method == "PATCH") {
                if (req.follow_redirects) ++patches_following_redirects;
                EXPECT_EQ(req.headers.get("X-Redirect-Uploads").value_or(""), "1");
                const std::string cr = req.headers.get("Content-Range").value_or("");
                const uint64_t a = std::stoull(cr.substr(0, cr.find('-'))), b = std::stoull(cr.substr(cr.find('-') + 1));
                EXPECT_EQ(b - a + 1, body.size()) << cr;
                if (fail_patch_once.erase(a)) {
                    ++patch_failures;
                    return status(503, "try again");
                }
                net::Response r;
                upload_end_[id] = b + 1;
                const std::string next = base + "/blobs/uploads/" + id + "?_state=" + std::to_string(b + 1);
                if (redirect_uploads) {
                    r.status = 307;
                    r.headers.set("Location", "http://storage.test/part/" + id + "/" + std::to_string(a));
                    r.headers.set("Docker-Upload-Location", next);
                } else {
                    uploads_[id][a] = body;
                    r.status = 202;
                    r.headers.set("Location", next);
                }
                return r;
            }
            if (req.method == "GET") {  // upload status, as distribution answers it
                net::Response r = status(204);
                const uint64_t end = upload_end_[id];
                r.headers.set("Range", "0-" + std::to_string(end ? end - 1 : 0));
                r.headers.set("Location", base + "/blobs/uploads/" + id + "?_state=" + std::to_string(end));
                ++status_queries;
                return r;
            }
            if (req.method == "PUT") {
                std::string all, md5s;
                uint64_t expect = 0;
                for (const auto& [off, bytes] : uploads_[id]) {
                    if (off != expect) return status(400, "gap in parts");
                    all += bytes;
                    expect += bytes.size();
                    Digest h(Digest::Algo::md5);
                    h.update(bytes);
                    md5s += h.finish();
                }
                if (sha256_digest(all) != q["digest"]) return status(400, "digest mismatch");
                Digest e(Digest::Algo::md5);
                e.update(md5s);
                if (q["etag"] != e.hex() + "-" + std::to_string(uploads_[id].size())) {
                    ++bad_etags;
                    return status(400, "bad etag");
                }
                blobs[q["digest"]] = all;
                return status(201);
            }
        }
        if (op.rfind("/blobs/", 0) == 0) {
            const std::string digest = op.substr(7);
            auto it = blobs.find(digest);
            if (it == blobs.end()) return status(404);
            if (req.method == "HEAD") {
                net::Response r = status(200);
                r.headers.set("Content-Length", std::to_string(it->second.size()));
                return r;
            }
            const std::string range = req.headers.get("Range").value_or("");
            if (range.rfind("bytes=", 0) != 0) return status(200, it->second);
            const uint64_t a = std::stoull(range.substr(6)), b = std::stoull(range.substr(range.find('-') + 1));
            ++ranged_gets;
            if (fail_get_once.erase(a)) {
                ++get_failures;
                return status(503, "busy");
            }
            net::Response r = status(206, it->second.substr(a, b - a + 1));
            r.headers.set("Content-Range", "bytes " + std::to_string(a) + "-" + std::to_string(b) + "/" + std::to_string(it->second.size()));
            return r;
        }
        if (op.rfind("/manifests/", 0) == 0) {
            const std::string key = ns + "/" + model + ":" + op.substr(11);
            if (req.method == "PUT") {
                manifests[key] = body;
                manifest_types[key] = req.headers.get("Content-Type").value_or("");
                return status(201);
            }
            auto it = manifests.find(key);
            return it == manifests.end() ? status(404) : status(200, it->second);
        }
        return status(405);
    }
};

OllamaModel sample_model(size_t model_bytes) {
    OllamaModel m;
    std::string gguf(model_bytes, '\0');
    for (size_t i = 0; i < gguf.size(); ++i) gguf[i] = static_cast<char>((i * 2654435761u) >> 13);
    m.layers.push_back(OllamaBlob::from_bytes(kMediaModel, gguf));
    m.layers.push_back(OllamaBlob::from_bytes(kMediaTemplate, std::string(arch::gemma3::kOllamaTemplate)));
    m.layers.push_back(OllamaBlob::from_bytes(kMediaParams, params_bytes(family_defaults("gemma3").params)));
    m.config = OllamaBlob::from_bytes(kMediaConfig, "{\"model_format\":\"gguf\"}\n");
    return m;
}

RegistryOptions fast_options(const Ed25519Key& key, uint64_t part) {
    RegistryOptions o;
    o.min_part = o.max_part = part;
    o.backoff_unit = std::chrono::milliseconds(1);
    o.key = [key] { return key; };
    return o;
}

TEST(OllamaAuth, TokenUrlAndSignedStringExact) {
    EXPECT_EQ(token_url("https://registry.ollama.ai/v2/token", "registry.ollama.ai",
                        "repository:alice/medgemma:pull repository:alice/medgemma:push", 1700000000, "AAAAAAAAAAAAAAAAAAAAAA"),
              "https://registry.ollama.ai/v2/token?nonce=AAAAAAAAAAAAAAAAAAAAAA&scope=repository%3Aalice%2Fmedgemma%3Apull"
              "&scope=repository%3Aalice%2Fmedgemma%3Apush&service=registry.ollama.ai&ts=1700000000");
    // a realm's own query parameters are kept and sorted in
    EXPECT_EQ(token_url("http://h/t?z=1&a=x y", "s", "sc", 5, "n"), "http://h/t?a=x+y&nonce=n&scope=sc&service=s&ts=5&z=1");
    EXPECT_EQ(token_signing_string("https://r/t?ts=1"),
              "GET,https://r/t?ts=1,ZTNiMGM0NDI5OGZjMWMxNDlhZmJmNGM4OTk2ZmI5MjQyN2FlNDFlNDY0OWI5MzRjYTQ5NTk5MWI3ODUyYjg1NQ==");
    // Z is base64 of the hex SHA-256 of the empty string
    EXPECT_EQ(base64_encode(sha256_digest("").substr(7)), std::string(kEmptyBodyHashB64));
    const std::string h = "realm=\"https://registry.ollama.ai/v2/token\",service=\"registry.ollama.ai\",scope=\"repository:a/b:pull\"";
    EXPECT_EQ(challenge_value(h, "realm"), "https://registry.ollama.ai/v2/token");
    EXPECT_EQ(challenge_value(h, "service"), "registry.ollama.ai");
    EXPECT_EQ(challenge_value(h, "scope"), "repository:a/b:pull");
}

TEST(OllamaAuth, SignatureVerifiesAndTamperedOneIsRejected) {
    const Ed25519Key key = Ed25519Key::generate();
    const std::string url = token_url("http://reg.test/v2/token", "reg.test", "repository:alice/m:push,pull", 1700000000, "bm9uY2Vub25jZW5vbmNlMQ");
    const std::string sig = key.sign(token_signing_string(url));
    const std::string auth = key.public_base64() + ":" + base64_encode(sig);
    EXPECT_EQ(key.public_base64().size(), 68u);
    EXPECT_EQ(key.public_base64().rfind("AAAAC3NzaC1lZDI1NTE5AAAAI", 0), 0u);
    EXPECT_EQ(base64_encode(sig).size(), 88u);
    EXPECT_TRUE(FakeRegistry::verify_authorization(auth, url, nullptr));
    std::string bad = sig;
    bad[10] ^= 1;
    EXPECT_FALSE(FakeRegistry::verify_authorization(key.public_base64() + ":" + base64_encode(bad), url, nullptr));
    // the signature covers the exact URL: another timestamp does not verify
    EXPECT_FALSE(FakeRegistry::verify_authorization(auth, url.substr(0, url.size() - 1) + "1", nullptr));
}

TEST(OllamaPush, PresignedPartsInParallelWithRetryThenSkipThenPull) {
    const Ed25519Key key = Ed25519Key::generate();
    auto reg = std::make_shared<FakeRegistry>();
    reg->keys[std::string(key.pub_view())] = {"alice"};
    reg->fail_storage_once = {3000};  // the PUT of the 4th part fails once
    reg->fail_patch_once = {7000};    // the PATCH of the 8th part fails once
    const OllamaModel m = sample_model(10500);  // 11 parts of 1000 bytes
    RegistryClient c(reg, parse_model_name("http://reg.test/alice/m:q8"), fast_options(key, 1000));
    const PushResult r = c.push(m);
    EXPECT_EQ(r.uploaded, 4);
    EXPECT_EQ(r.skipped, 0);
    EXPECT_EQ(reg->token_requests, 1);  // one 401, one token, reused for every later request
    EXPECT_EQ(reg->token_rejected, 0);
    ASSERT_EQ(reg->signed_strings.size(), 1u);
    EXPECT_EQ(reg->signed_strings[0].rfind("GET,http://reg.test/v2/token?nonce=", 0), 0u) << reg->signed_strings[0];
    EXPECT_EQ(reg->storage_failures, 1);
    EXPECT_EQ(reg->patch_failures, 1);
    EXPECT_EQ(reg->status_queries, 1);  // after the failed PATCH: where does the session stand?
    EXPECT_EQ(c.transfer_stats().resumed, 1);
    EXPECT_EQ(reg->storage_puts, 11 + 1 + 1 + 1 + 1);  // model parts + retry + template, params, config
    EXPECT_EQ(reg->storage_puts_with_auth, 0);          // presigned storage never sees the token
    EXPECT_EQ(reg->patches_following_redirects, 0);
    EXPECT_GT(reg->max_in_flight.load(), 1) << "parts were not uploaded in parallel";
    EXPECT_EQ(reg->bad_etags, 0);
    for (const OllamaBlob* b : m.blobs()) EXPECT_EQ(reg->blobs[b->digest], b->data) << b->media_type;
    const std::string key_m = "alice/m:q8";
    EXPECT_EQ(reg->manifests[key_m], m.manifest_bytes(false));
    EXPECT_EQ(reg->manifest_types[key_m], kMediaManifest);
    EXPECT_EQ(r.manifest_digest, sha256_digest(m.manifest_bytes(false)));

    // a second push uploads nothing and gives the same manifest
    const int posts = reg->posts;
    const PushResult r2 = c.push(m);
    EXPECT_EQ(r2.uploaded, 0);
    EXPECT_EQ(r2.skipped, 4);
    EXPECT_EQ(reg->posts, posts);
    EXPECT_EQ(r2.manifest_digest, r.manifest_digest);

    // pull into an empty store with parallel ranged parts
    cmf::test::TempDir dir;
    OllamaStore store(dir.path());
    RegistryClient p(reg, parse_model_name("http://reg.test/alice/m:q8"), fast_options(key, 1000));
    reg->fail_get_once = {5000};  // one ranged part fails once and is fetched again
    const PullResult pr = p.pull(store);
    EXPECT_EQ(pr.downloaded, 4);
    EXPECT_EQ(reg->get_failures, 1);
    EXPECT_EQ(reg->ranged_gets, 11 + 1);  // the three small blobs come in one plain GET each
    EXPECT_GT(reg->max_gets_in_flight.load(), 1) << "parts were not downloaded in parallel";
    EXPECT_EQ(pr.manifest_digest, r.manifest_digest);
    for (const OllamaBlob* b : m.blobs()) EXPECT_EQ(cmf::test::read_file(store.blob_path(b->digest)), b->data);
    EXPECT_EQ(*store.read_manifest(parse_model_name("http://reg.test/alice/m:q8")), m.manifest_bytes(false));
    // pulling again downloads nothing
    EXPECT_EQ(p.pull(store).downloaded, 0);
}

TEST(OllamaPush, DirectChunkedUploadWithoutRedirect) {
    const Ed25519Key key = Ed25519Key::generate();
    auto reg = std::make_shared<FakeRegistry>();
    reg->keys[std::string(key.pub_view())] = {"alice"};
    reg->redirect_uploads = false;
    OllamaModel m = sample_model(4096);
    m.layers.push_back(OllamaBlob::from_bytes(kMediaLicense, ""));  // an empty blob: commit only
    RegistryClient c(reg, parse_model_name("http://reg.test/alice/m"), fast_options(key, 1024));
    EXPECT_EQ(c.push(m).uploaded, 5);
    EXPECT_EQ(reg->storage_puts, 0);
    for (const OllamaBlob* b : m.blobs()) EXPECT_EQ(reg->blobs[b->digest], b->data);
}

TEST(OllamaPush, UnauthorizedNamespaceAndUnknownKey) {
    const Ed25519Key key = Ed25519Key::generate(), stranger = Ed25519Key::generate();
    auto reg = std::make_shared<FakeRegistry>();
    reg->keys[std::string(key.pub_view())] = {"alice"};
    try {
        RegistryClient(reg, parse_model_name("http://reg.test/bob/m"), fast_options(key, 1000)).push(sample_model(100));
        FAIL() << "push to a foreign namespace succeeded";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::auth);
        EXPECT_NE(std::string(e.what()).find("namespace 'bob'"), std::string::npos) << e.what();
    }
    try {
        RegistryClient(reg, parse_model_name("http://reg.test/alice/m"), fast_options(stranger, 1000)).push(sample_model(100));
        FAIL() << "an unregistered key got a token";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::auth);
        EXPECT_NE(std::string(e.what()).find("refused a token"), std::string::npos) << e.what();
    }
    EXPECT_EQ(reg->token_rejected, 1);
    EXPECT_TRUE(reg->blobs.empty());
}

TEST(OllamaPush, RealmOnAnotherHostIsRefused) {
    const Ed25519Key key = Ed25519Key::generate();
    auto reg = std::make_shared<FakeRegistry>();
    reg->keys[std::string(key.pub_view())] = {"alice"};
    reg->realm = "http://evil.test/v2/token";
    try {
        RegistryClient(reg, parse_model_name("http://reg.test/alice/m"), fast_options(key, 1000)).push(sample_model(100));
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("different host"), std::string::npos) << e.what();
    }
    EXPECT_EQ(reg->token_requests, 0);
}

TEST(OllamaPull, CorruptBlobIsDiscarded) {
    const Ed25519Key key = Ed25519Key::generate();
    auto reg = std::make_shared<FakeRegistry>();
    reg->keys[std::string(key.pub_view())] = {"alice"};
    const OllamaModel m = sample_model(3000);
    RegistryClient c(reg, parse_model_name("http://reg.test/alice/m"), fast_options(key, 1000));
    c.push(m);
    reg->blobs[m.layers[0].digest][1500] ^= 0x40;
    cmf::test::TempDir dir;
    OllamaStore store(dir.path());
    try {
        c.pull(store);
        FAIL() << "a corrupt blob was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("discarded"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(store.blob_path(m.layers[0].digest)));
    EXPECT_FALSE(store.read_manifest(parse_model_name("http://reg.test/alice/m")).has_value());
    for (const auto& e : fs::directory_iterator(dir / "blobs")) EXPECT_EQ(e.path().filename().string().find("partial"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Key files

TEST(OllamaKey, RoundTripAndOpenSshInterop) {
    cmf::test::TempDir d;
    const Ed25519Key k = Ed25519Key::generate();
    const fs::path p = d / "id_ed25519";
    cmf::test::write_file(p, k.to_openssh());
    ::chmod(p.c_str(), 0600);
    const Ed25519Key l = Ed25519Key::load(p);
    EXPECT_EQ(l.public_base64(), k.public_base64());
    EXPECT_TRUE(ed25519_verify(k.pub_view(), "msg", l.sign("msg")));
    if (run("command -v ssh-keygen").exit_code != 0) GTEST_SKIP() << "SKIPPED (interop half): ssh-keygen is not installed";
    // OpenSSH reads our file and derives the same public key ...
    auto r = run("ssh-keygen -y -f " + shell_quote(p.string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.substr(0, 12 + 68), "ssh-ed25519 " + k.public_base64());
    // ... and we read a key OpenSSH wrote
    const fs::path q = d / "ssh_key";
    r = run("ssh-keygen -q -t ed25519 -N '' -C '' -f " + shell_quote(q.string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const Ed25519Key s = Ed25519Key::load(q);
    EXPECT_EQ(s.authorized_key_line().substr(0, 80), cmf::test::read_file(q.string() + ".pub").substr(0, 80));
}

TEST(OllamaKey, BadFilesGiveClearErrorsWithoutSecrets) {
    cmf::test::TempDir d;
    const Ed25519Key k = Ed25519Key::generate();
    const std::string pem = k.to_openssh();
    const fs::path p = d / "id_ed25519";
    cmf::test::write_file(p, pem);
    ::chmod(p.c_str(), 0644);
    auto msg = [](const fs::path& f) {
        try {
            Ed25519Key::load(f);
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::auth);
            return std::string(e.what());
        }
        return std::string("loaded");
    };
    const std::string m1 = msg(p);
    EXPECT_NE(m1.find("group or others"), std::string::npos) << m1;
    EXPECT_NE(m1.find("chmod 600"), std::string::npos) << m1;
    EXPECT_EQ(m1.find(pem.substr(40, 30)), std::string::npos);
    ::chmod(p.c_str(), 0640);
    EXPECT_NE(msg(p).find("mode 0640"), std::string::npos);

    const fs::path g = d / "garbage";
    cmf::test::write_file(g, "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n");
    ::chmod(g.c_str(), 0600);
    EXPECT_NE(msg(g).find("not a usable Ollama key"), std::string::npos) << msg(g);
    EXPECT_NE(msg(d / "missing").find("no Ollama key"), std::string::npos);
    // a truncated key
    std::string cut = pem.substr(0, pem.size() / 2) + "\n-----END OPENSSH PRIVATE KEY-----\n";
    cmf::test::write_file(g, cut);
    EXPECT_NE(msg(g).find("not a usable Ollama key"), std::string::npos) << msg(g);
    if (run("command -v ssh-keygen").exit_code == 0) {
        const fs::path e = d / "enc";
        ASSERT_EQ(run("ssh-keygen -q -t ed25519 -N secretpass -f " + shell_quote(e.string())).exit_code, 0);
        EXPECT_NE(msg(e).find("passphrase"), std::string::npos) << msg(e);
    }
}

TEST(OllamaKey, ClientReportsBadKeyFileOnChallenge) {
    cmf::test::TempDir d;
    const fs::path p = d / "id_ed25519";
    cmf::test::write_file(p, Ed25519Key::generate().to_openssh());
    ::chmod(p.c_str(), 0644);
    auto reg = std::make_shared<FakeRegistry>();
    RegistryOptions o;
    o.key = [p] { return Ed25519Key::load(p); };
    try {
        RegistryClient(reg, parse_model_name("http://reg.test/alice/m"), o).push(sample_model(10));
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::auth);
        EXPECT_NE(std::string(e.what()).find("chmod 600"), std::string::npos) << e.what();
    }
}

}  // namespace
