// Google auth: JWT grant structure and signature, token caching/refresh, the ADC precedence
// chain, the metadata server, and that no secret ever reaches an error message. Runs over the
// emulator's google_auth/gcs services in-process (inproc_http.h).
#include <gtest/gtest.h>

// Designated initializers that leave members at their defaults are the point here.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <atomic>
#include <map>
#include <thread>

#include "../emulator/gcs_service.h"
#include "../emulator/google_auth_service.h"
#include "cmf/cloud/auth.h"
#include "cmf/cloud/gcs.h"
#include "inproc_http.h"
#include "test_keys.h"
#include "test_support.h"

using namespace cmf;
using namespace cmf::cloud;
using cmf::test::InprocFault;
using cmf::test::InprocHttpClient;
using cmf::test::TempDir;

namespace {

using TestKey = cmf::test::RsaTestKey;
inline TestKey make_key() { return cmf::test::make_rsa_test_key(); }

const TestKey& key_a() {
    static TestKey k = make_key();
    return k;
}
const TestKey& key_b() {
    static TestKey k = make_key();
    return k;
}

constexpr const char* kEmail = "factory@emu-project.iam.gserviceaccount.com";
constexpr const char* kClientId = "client-123.apps.googleusercontent.com";
constexpr const char* kClientSecret = "FAKE-client-secret-for-tests";
constexpr const char* kRefreshToken = "FAKE-refresh-token-for-tests";

// An emulator (google_auth + gcs) in-process.
struct Emu {
    emu::Context ctx;
    std::shared_ptr<InprocHttpClient> http;
    std::shared_ptr<emu::GoogleAuthState> auth;

    explicit Emu(nlohmann::json extra = nlohmann::json::object()) {
        ctx.https_base = "https://127.0.0.1:9443";
        ctx.http_base = "http://127.0.0.1:9080";
        ctx.config = {{"google_auth",
                       {{"service_accounts", {{{"client_email", kEmail}, {"public_key_pem", key_a().public_pem}}}},
                        {"authorized_users",
                         {{{"client_id", kClientId}, {"client_secret", kClientSecret}, {"refresh_token", kRefreshToken}}}},
                        {"metadata",
                         {{"project_id", "proj-x"},
                          {"numeric_project_id", "98765"},
                          {"zone", "europe-west4-b"},
                          {"instance_name", "cmf-worker-1"},
                          {"attributes", {{"factory-config", R"({"job":"q8"})"}}}}}}},
                      {"gcs", {{"buckets", {"bkt"}}}}};
        ctx.config.merge_patch(extra);
        http = std::make_shared<InprocHttpClient>(
            std::vector<emu::Handler>{emu::make_google_auth_service(ctx), emu::make_gcs_service(ctx)});
        auth = emu::google_auth_state(ctx);
    }
    std::string token_uri() const { return ctx.https_base + "/token"; }
};

ServiceAccountKey sa_key(const Emu& e, const TestKey& k = key_a()) {
    ServiceAccountKey key;
    key.client_email = kEmail;
    key.private_key = k.private_pem;
    key.private_key_id = "kid-0001";
    key.token_uri = e.token_uri();
    key.project_id = "proj-x";
    return key;
}

nlohmann::json sa_json(const Emu& e, const TestKey& k = key_a()) {
    return {{"type", "service_account"}, {"project_id", "proj-x"}, {"private_key_id", "kid-0001"},
            {"private_key", k.private_pem}, {"client_email", kEmail}, {"token_uri", e.token_uri()}};
}

nlohmann::json user_json(const Emu& e, const std::string& refresh = kRefreshToken) {
    return {{"type", "authorized_user"}, {"client_id", kClientId}, {"client_secret", kClientSecret},
            {"refresh_token", refresh}, {"token_uri", e.token_uri()}};
}

Env env_of(std::map<std::string, std::string> m) {
    return [m](const std::string& k) -> std::optional<std::string> {
        auto it = m.find(k);
        if (it == m.end()) return std::nullopt;
        return it->second;
    };
}

// The base64 body lines of a PEM: any of them in a message would be a leak.
std::vector<std::string> pem_lines(const std::string& pem) {
    std::vector<std::string> v;
    std::stringstream ss(pem);
    for (std::string l; std::getline(ss, l);)
        if (l.rfind("-----", 0) != 0 && l.size() > 16) v.push_back(l);
    return v;
}

}  // namespace

TEST(Encoding, Base64urlHasNoPaddingAndRoundTrips) {
    for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\xfd"}) {
        std::string e = base64url_encode(s);
        EXPECT_EQ(e.find('='), std::string::npos);
        EXPECT_EQ(e.find('+'), std::string::npos);
        EXPECT_EQ(e.find('/'), std::string::npos);
        EXPECT_EQ(base64_decode(e), s);
    }
    EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
    EXPECT_EQ(base64_encode("fo"), "Zm8=");
    EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
    EXPECT_EQ(form_encode({{"grant_type", kJwtBearerGrant}}), "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer");
}

TEST(Jwt, AssertionStructureAndSignature) {
    Emu e;
    auto now = Clock::time_point(std::chrono::seconds(1'800'000'000));
    std::string jwt = make_service_account_assertion(sa_key(e), {"https://www.googleapis.com/auth/cloud-platform",
                                                                 "https://www.googleapis.com/auth/devstorage.read_write"},
                                                     now);
    EXPECT_EQ(std::count(jwt.begin(), jwt.end(), '.'), 2);
    EXPECT_EQ(jwt.find('='), std::string::npos) << "base64url must be unpadded";
    auto d = decode_jwt(jwt);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->header["alg"], "RS256");
    EXPECT_EQ(d->header["typ"], "JWT");
    EXPECT_EQ(d->header["kid"], "kid-0001");
    EXPECT_EQ(d->claims["iss"], kEmail);
    EXPECT_EQ(d->claims["aud"], e.token_uri());
    EXPECT_EQ(d->claims["scope"],
              "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/devstorage.read_write");
    EXPECT_EQ(d->claims["iat"].get<long long>(), 1'800'000'000LL);
    EXPECT_EQ(d->claims["exp"].get<long long>() - d->claims["iat"].get<long long>(), 3600);
    EXPECT_FALSE(d->claims.contains("sub"));
    ASSERT_EQ(d->signature.size(), 256u);  // RSA-2048

    // Verify with OpenSSL directly (independent of cmf's rs256_verify).
    BIO* bio = BIO_new_mem_buf(key_a().public_pem.data(), static_cast<int>(key_a().public_pem.size()));
    EVP_PKEY* pub = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    ASSERT_NE(pub, nullptr);
    auto verify = [&](const std::string& input, const std::string& sig) {
        EVP_MD_CTX* c = EVP_MD_CTX_new();
        EVP_DigestVerifyInit(c, nullptr, EVP_sha256(), nullptr, pub);
        int ok = EVP_DigestVerify(c, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                                  reinterpret_cast<const unsigned char*>(input.data()), input.size());
        EVP_MD_CTX_free(c);
        return ok == 1;
    };
    EXPECT_TRUE(verify(jwt.substr(0, jwt.rfind('.')), d->signature));
    std::string tampered = d->signing_input;
    tampered[tampered.size() / 2] ^= 1;
    EXPECT_FALSE(verify(tampered, d->signature));
    EVP_PKEY_free(pub);
    EXPECT_TRUE(rs256_verify(key_a().public_pem, d->signing_input, d->signature));
    EXPECT_FALSE(rs256_verify(key_b().public_pem, d->signing_input, d->signature));
}

TEST(Jwt, TokenEndpointChecksSignatureLifetimeAndAudience) {
    Emu e;
    auto post = [&](const std::string& assertion) {
        net::Request r;
        r.method = "POST";
        r.url = net::Url::parse(e.token_uri());
        r.headers.set("Content-Type", "application/x-www-form-urlencoded");
        r.body = form_encode({{"grant_type", kJwtBearerGrant}, {"assertion", assertion}});
        return e.http->send(r);
    };
    long long now = std::chrono::duration_cast<std::chrono::seconds>(Clock::now().time_since_epoch()).count();
    nlohmann::json h = {{"alg", "RS256"}, {"typ", "JWT"}};
    nlohmann::json c = {{"iss", kEmail}, {"scope", "s"}, {"aud", e.token_uri()}, {"iat", now}, {"exp", now + 3600}};
    EXPECT_EQ(post(make_rs256_jwt(h, c, key_a().private_pem)).status, 200);
    EXPECT_EQ(post(make_rs256_jwt(h, c, key_b().private_pem)).status, 400);  // wrong key
    auto c2 = c;
    c2["exp"] = now + 3601;
    EXPECT_EQ(post(make_rs256_jwt(h, c2, key_a().private_pem)).status, 400);  // > 60 minutes
    c2 = c;
    c2["aud"] = "https://example.com/token";
    EXPECT_EQ(post(make_rs256_jwt(h, c2, key_a().private_pem)).status, 400);
    c2 = c;
    c2.erase("scope");
    EXPECT_EQ(post(make_rs256_jwt(h, c2, key_a().private_pem)).status, 400);
    std::string good = make_rs256_jwt(h, c, key_a().private_pem);
    EXPECT_EQ(post(good + "=").status, 400);  // padded base64 is not base64url JWT
    EXPECT_EQ(e.auth->jwt_grants.load(), 1u);
    EXPECT_EQ(e.auth->rejected.load(), 5u);
}

TEST(TokenSource, ServiceAccountCachesAndRefreshesBeforeExpiry) {
    Emu e;
    ServiceAccountTokenSource ts(e.http, sa_key(e), {std::string(kCloudPlatformScope)});
    // The fake clock starts in the past so every JWT it stamps stays within the token
    // endpoint's clock-skew window while the test moves it forward by most of an hour.
    Clock::time_point now = Clock::now() - std::chrono::seconds(3400);
    ts.set_clock([&] { return now; });
    std::string t1 = ts.access_token();
    EXPECT_EQ(t1.rfind("ya29.emu-", 0), 0u);
    EXPECT_EQ(ts.access_token(), t1);
    EXPECT_EQ(e.auth->jwt_grants.load(), 1u);
    now += std::chrono::seconds(3599 - 360);  // 6 min left: still cached
    EXPECT_EQ(ts.access_token(), t1);
    EXPECT_EQ(e.auth->jwt_grants.load(), 1u);
    now += std::chrono::seconds(120);  // 4 min left: refresh
    std::string t2 = ts.access_token();
    EXPECT_NE(t2, t1);
    EXPECT_EQ(e.auth->jwt_grants.load(), 2u);
    ts.invalidate();
    EXPECT_NE(ts.access_token(), t2);
    EXPECT_EQ(e.auth->jwt_grants.load(), 3u);
}

TEST(TokenSource, ConcurrentCallersShareOneFetch) {
    Emu e;
    ServiceAccountTokenSource ts(e.http, sa_key(e), {std::string(kCloudPlatformScope)});
    std::vector<std::thread> th;
    std::vector<std::string> got(8);
    for (int i = 0; i < 8; ++i) th.emplace_back([&, i] { got[i] = ts.access_token(); });
    for (auto& t : th) t.join();
    for (auto& g : got) EXPECT_EQ(g, got[0]);
    EXPECT_EQ(e.auth->jwt_grants.load(), 1u);
}

TEST(TokenSource, AuthorizedUserRefreshGrant) {
    Emu e;
    AuthorizedUser u = parse_authorized_user(user_json(e), "test");
    AuthorizedUserTokenSource ts(e.http, u);
    EXPECT_FALSE(ts.access_token().empty());
    EXPECT_EQ(e.auth->refresh_grants.load(), 1u);
    // The request is the documented form body.
    auto log = e.http->log();
    ASSERT_FALSE(log.empty());
    EXPECT_EQ(log.back().method, "POST");
    EXPECT_EQ(log.back().headers.get("Content-Type"), "application/x-www-form-urlencoded");
}

TEST(Adc, PrecedenceEnvThenGcloudFileThenMetadata) {
    Emu e;
    TempDir dir;
    auto sa_path = dir / "sa.json";
    cmf::test::write_file(sa_path, sa_json(e).dump());
    auto home = dir / "home";
    std::filesystem::create_directories(home / ".config" / "gcloud");
    cmf::test::write_file(home / ".config" / "gcloud" / "application_default_credentials.json", user_json(e).dump());

    // 1. GOOGLE_APPLICATION_CREDENTIALS wins over the gcloud file.
    auto c = default_credentials(e.http, {std::string(kCloudPlatformScope)},
                                 env_of({{"GOOGLE_APPLICATION_CREDENTIALS", sa_path.string()}, {"HOME", home.string()}}));
    EXPECT_EQ(c.origin, "GOOGLE_APPLICATION_CREDENTIALS");
    EXPECT_EQ(c.project_id, "proj-x");
    c.tokens->access_token();
    EXPECT_EQ(e.auth->jwt_grants.load(), 1u);

    // Set but missing: an error, no fallback to the gcloud file.
    try {
        default_credentials(e.http, {std::string(kCloudPlatformScope)},
                            env_of({{"GOOGLE_APPLICATION_CREDENTIALS", (dir / "nope.json").string()}, {"HOME", home.string()}}));
        FAIL() << "expected an error";
    } catch (const Error& err) {
        EXPECT_EQ(err.kind(), ErrorKind::auth);
        EXPECT_NE(std::string(err.what()).find("nope.json"), std::string::npos);
        EXPECT_NE(std::string(err.what()).find("does not exist"), std::string::npos);
    }

    // 2. The gcloud well-known file under HOME.
    c = default_credentials(e.http, {std::string(kCloudPlatformScope)}, env_of({{"HOME", home.string()}}));
    EXPECT_EQ(c.origin, "gcloud application-default credentials");
    c.tokens->access_token();
    EXPECT_EQ(e.auth->refresh_grants.load(), 1u);

    // CLOUDSDK_CONFIG overrides the directory (here: an empty one -> falls to the metadata server).
    auto other = dir / "cloudsdk";
    std::filesystem::create_directories(other);
    c = default_credentials(e.http, {std::string(kCloudPlatformScope)},
                            env_of({{"HOME", home.string()}, {"CLOUDSDK_CONFIG", other.string()},
                                    {"GCE_METADATA_HOST", "127.0.0.1:9080"}}));
    EXPECT_EQ(c.origin, "metadata server");
    cmf::test::write_file(other / "application_default_credentials.json", user_json(e).dump());
    c = default_credentials(e.http, {std::string(kCloudPlatformScope)},
                            env_of({{"HOME", home.string()}, {"CLOUDSDK_CONFIG", other.string()}}));
    EXPECT_EQ(c.origin, "gcloud application-default credentials");

    // 3. The metadata server, at GCE_METADATA_HOST.
    c = default_credentials(e.http, {std::string(kCloudPlatformScope)},
                            env_of({{"HOME", (dir / "empty-home").string()}, {"GCE_METADATA_HOST", "127.0.0.1:9080"}}));
    EXPECT_EQ(c.origin, "metadata server");
    EXPECT_FALSE(c.tokens->access_token().empty());
    EXPECT_EQ(e.auth->metadata_tokens.load(), 1u);
    auto log = e.http->log();
    EXPECT_EQ(log.back().url.str(), "http://127.0.0.1:9080/computeMetadata/v1/instance/service-accounts/default/token");
    EXPECT_EQ(log.back().headers.get("Metadata-Flavor"), "Google");

    // GOOGLE_CLOUD_PROJECT beats the key file's project.
    EXPECT_EQ(default_project_id(c, env_of({{"GOOGLE_CLOUD_PROJECT", "p2"}})), "p2");
}

TEST(Adc, UnsupportedAndMalformedFiles) {
    Emu e;
    TempDir dir;
    auto p = dir / "x.json";
    cmf::test::write_file(p, R"({"type":"external_account","audience":"x"})");
    try {
        default_credentials(e.http, {"s"}, env_of({{"GOOGLE_APPLICATION_CREDENTIALS", p.string()}}));
        FAIL();
    } catch (const Error& err) {
        EXPECT_EQ(err.kind(), ErrorKind::auth);
        EXPECT_NE(std::string(err.what()).find("not supported"), std::string::npos);
    }
    cmf::test::write_file(p, R"({"type":"service_account","client_email":"a@b"})");
    EXPECT_THROW(default_credentials(e.http, {"s"}, env_of({{"GOOGLE_APPLICATION_CREDENTIALS", p.string()}})), Error);
    // token_uri must be https (or loopback): a key file cannot send the assertion in clear text.
    auto j = sa_json(e);
    j["token_uri"] = "http://evil.example.com/token";
    cmf::test::write_file(p, j.dump());
    EXPECT_THROW(default_credentials(e.http, {"s"}, env_of({{"GOOGLE_APPLICATION_CREDENTIALS", p.string()}})), Error);
}

TEST(Metadata, FlavorHeaderRequiredAndValues) {
    Emu e;
    net::Request r;
    r.url = net::Url::parse("http://127.0.0.1:9080/computeMetadata/v1/project/project-id");
    EXPECT_EQ(e.http->send(r).status, 403);
    r.headers.set("Metadata-Flavor", "Google");
    auto ok = e.http->send(r);
    EXPECT_EQ(ok.status, 200);
    EXPECT_EQ(ok.body, "proj-x");
    EXPECT_EQ(ok.headers.get("Metadata-Flavor"), "Google");

    MetadataServer mds(e.http, env_of({{"GCE_METADATA_HOST", "127.0.0.1:9080"}}));
    EXPECT_EQ(mds.project_id(), "proj-x");
    EXPECT_EQ(mds.zone(), "europe-west4-b");
    EXPECT_EQ(mds.get("instance/zone"), "projects/98765/zones/europe-west4-b");
    EXPECT_EQ(mds.instance_name(), "cmf-worker-1");
    EXPECT_EQ(mds.attribute("factory-config"), R"({"job":"q8"})");
    EXPECT_EQ(mds.attribute("absent"), std::nullopt);

    // Default host is the link-local IP, not a name that needs a resolver.
    EXPECT_EQ(MetadataServer(e.http, env_of({})).root(), "http://169.254.169.254/computeMetadata/v1/");

    // Attributes set while running (the orchestrator changes them).
    net::Request set;
    set.method = "POST";
    set.url = net::Url::parse("http://127.0.0.1:9080/_emu/google_auth/metadata");
    set.body = R"({"attributes":{"stop":"1"}})";
    EXPECT_EQ(e.http->send(set).status, 200);
    EXPECT_EQ(mds.attribute("stop"), "1");
}

TEST(Metadata, UnreachableIsAnAuthErrorNamingTheChain) {
    Emu e;
    e.http->fault = [](const net::Request&) { return InprocFault{.fail_before = true}; };
    MetadataTokenSource ts(e.http, env_of({{"GCE_METADATA_HOST", "127.0.0.1:9"}}));
    try {
        ts.access_token();
        FAIL();
    } catch (const Error& err) {
        EXPECT_EQ(err.kind(), ErrorKind::auth);
        EXPECT_NE(std::string(err.what()).find("GOOGLE_APPLICATION_CREDENTIALS"), std::string::npos);
    }
}

// Every failure path: the message never carries a private key, client secret, refresh token,
// assertion or access token, even when the server echoes them back.
TEST(Secrets, NeverInErrorMessages) {
    Emu e;
    std::vector<std::string> messages;
    auto capture = [&](auto&& f) {
        try {
            f();
            messages.push_back("<no error>");
        } catch (const Error& err) {
            EXPECT_EQ(err.kind(), ErrorKind::auth) << err.what();
            messages.push_back(err.what());
        }
    };
    // Key not registered with the token endpoint (signature check fails).
    capture([&] { ServiceAccountTokenSource(e.http, sa_key(e, key_b()), {"s"}).access_token(); });
    // Revoked refresh token; wrong client secret.
    capture([&] { AuthorizedUserTokenSource(e.http, parse_authorized_user(user_json(e, "FAKE-revoked-refresh-token"), "t")).access_token(); });
    auto bad_secret = parse_authorized_user(user_json(e), "t");
    bad_secret.client_secret = "FAKE-wrong-client-secret";
    capture([&] { AuthorizedUserTokenSource(e.http, bad_secret).access_token(); });
    // Garbage private key.
    auto garbage = sa_key(e);
    garbage.private_key = "-----BEGIN PRIVATE KEY-----\nRkFLRS1ub3QtYS1wcml2YXRlLWtleS1qdXN0LXRlc3QtZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n";
    capture([&] { ServiceAccountTokenSource(e.http, garbage, {"s"}).access_token(); });
    // A token endpoint that echoes the whole request in its error (a hostile or buggy server).
    emu::Handler echo = [](const emu::Request& r) -> std::optional<emu::Response> {
        emu::Response out;
        out.status = 400;
        out.body = nlohmann::json{{"error", "invalid_grant"}, {"error_description", "got: " + r.body}}.dump();
        return out;
    };
    auto echo_http = std::make_shared<InprocHttpClient>(std::vector<emu::Handler>{echo});
    capture([&] { ServiceAccountTokenSource(echo_http, sa_key(e), {"s"}).access_token(); });
    capture([&] { AuthorizedUserTokenSource(echo_http, parse_authorized_user(user_json(e), "t")).access_token(); });
    // A malformed credentials file holding secrets.
    TempDir dir;
    auto p = dir / "k.json";
    cmf::test::write_file(p, "{\"type\":\"authorized_user\",\"refresh_token\":\"" + std::string(kRefreshToken) + "\",");
    capture([&] { default_credentials(e.http, {"s"}, env_of({{"GOOGLE_APPLICATION_CREDENTIALS", p.string()}})); });
    // GCS answering 403 with a valid token in use.
    {
        Emu g(nlohmann::json{{"gcs", {{"require_auth", true}}}});
        auto ts = std::make_shared<StaticTokenSource>("FAKE-oauth-token-never-issued");
        GcsClient gcs(g.http, ts, GcsOptions{.endpoint = "https://127.0.0.1:9443"});
        capture([&] { gcs.stat("bkt", "x"); });
    }

    ASSERT_EQ(messages.size(), 8u);
    std::vector<std::string> secrets = {kClientSecret, kRefreshToken, "FAKE-wrong-client-secret", "FAKE-revoked-refresh-token",
                                        "ya29.", "RkFLRS1ub3QtYS1wcml2YXRlLWtleS1qdXN0LXRlc3QtZ2FyYmFnZQ==",
                                        "eyJ"};
    // ... and their form-encoded spellings (a server echoing the request body).
    for (std::size_t i = 0, n = secrets.size(); i < n; ++i) secrets.push_back(percent_encode(secrets[i]));
    for (auto& l : pem_lines(key_a().private_pem)) secrets.push_back(l);
    for (auto& l : pem_lines(key_b().private_pem)) secrets.push_back(l);
    for (const auto& m : messages) {
        EXPECT_NE(m, "<no error>");
        EXPECT_EQ(m.find('\n'), std::string::npos) << "one line: " << m;
        for (const auto& s : secrets) EXPECT_EQ(m.find(s), std::string::npos) << "secret leaked into: " << m;
    }
}

TEST(GcsAuth, BearerTokenFromTheTokenSourceAndRetryOn401) {
    Emu e(nlohmann::json{{"gcs", {{"require_auth", true}}}});
    auto ts = std::make_shared<ServiceAccountTokenSource>(e.http, sa_key(e), std::vector<std::string>{"s"});
    GcsClient gcs(e.http, ts, GcsOptions{.endpoint = "https://127.0.0.1:9443"});
    EXPECT_TRUE(gcs.upload("bkt", "a", "data").created);
    EXPECT_EQ(gcs.read_all("bkt", "a"), "data");
    EXPECT_EQ(e.auth->jwt_grants.load(), 1u);
    // The server forgets the token (revoked): one 401, a fresh token, success.
    {
        auto& reg = emu::token_registry(e.ctx);
        std::lock_guard lock(reg.mu);
        reg.tokens.clear();
    }
    EXPECT_TRUE(gcs.stat("bkt", "a").has_value());
    EXPECT_EQ(e.auth->jwt_grants.load(), 2u);
    // Anonymous requests are refused.
    GcsClient anon(e.http, nullptr, GcsOptions{.endpoint = "https://127.0.0.1:9443", .anonymous = true});
    try {
        anon.stat("bkt", "a");
        FAIL();
    } catch (const Error& err) {
        EXPECT_EQ(err.kind(), ErrorKind::auth);
    }
}
