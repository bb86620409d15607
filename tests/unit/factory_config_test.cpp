// .env parsing (strict, FILE:LINE errors), configuration precedence and validation, and the
// `cmf config` command (masking, origins, exit codes).
#include <gtest/gtest.h>

#include "cmf/factory/config.h"
#include "cmf/factory/dotenv.h"
#include "test_support.h"

using namespace cmf::factory;
using cmf::test::run_cmf;
using cmf::test::shell_quote;
using cmf::test::TempDir;
using cmf::test::write_file;

namespace {

std::string parse_error(const std::string& text) {
    try {
        parse_dotenv(text, "my.env");
    } catch (const cmf::Error& e) {
        return e.what();
    }
    return "";
}

std::optional<std::string> no_env(const std::string&) { return std::nullopt; }

}  // namespace

TEST(Dotenv, AcceptsTheDocumentedForms) {
    auto e = parse_dotenv(
        "# comment\n"
        "\n"
        "HF_TOKEN=hf_abc\r\n"
        "export GCS_BUCKET=my-bucket   # trailing comment\n"
        "  GCE_ZONE='us-central1-b'\n"
        "OLLAMA_REGISTRY_NS=\"coheara\" # c\n"
        "EMPTY=\n"
        "LIT='a $b \"c\" #d'\n"
        "ESC=\"tab\\there \\\"q\\\" \\\\\"\n"
        "URL=https://x.example/a#frag\n",
        "f");
    ASSERT_EQ(e.size(), 8u);
    EXPECT_EQ(e[0].key, "HF_TOKEN");
    EXPECT_EQ(e[0].value, "hf_abc");
    EXPECT_EQ(e[0].line, 3u);
    EXPECT_EQ(e[1].key, "GCS_BUCKET");
    EXPECT_EQ(e[1].value, "my-bucket");
    EXPECT_EQ(e[2].value, "us-central1-b");
    EXPECT_EQ(e[3].value, "coheara");
    EXPECT_EQ(e[4].value, "");
    EXPECT_EQ(e[5].value, "a $b \"c\" #d");
    EXPECT_EQ(e[6].value, "tab\there \"q\" \\");
    EXPECT_EQ(e[7].value, "https://x.example/a#frag");  // '#' starts a comment only after a blank
}

TEST(Dotenv, EveryBadLineNamesFileAndLine) {
    const std::pair<const char*, const char*> cases[] = {
        {"A=1\nnot an assignment\n", "my.env:2: "},
        {"A = 1\n", "my.env:1: blank between"},
        {"A=two words\n", "my.env:1: the value of A contains a blank"},
        {"A='open\n", "my.env:1: unterminated '"},
        {"A=\"open\n", "my.env:1: unterminated \""},
        {"A=$HOME\n", "my.env:1: '$' in the value of A"},
        {"A=\"x${B}\"\n", "my.env:1: '$' in the value of A"},
        {"A='x' y\n", "my.env:1: unexpected text after the closing quote"},
        {"A=1\n\nA=2\n", "my.env:3: A is set twice (first on line 1)"},
        {"1A=x\n", "my.env:1: expected KEY=VALUE"},
        {"A-B=x\n", "my.env:1: invalid character '-'"},
        {"A\n", "my.env:1: 'A' has no '='"},
        {"A=\"\\q\"\n", "my.env:1: unknown escape"},
        {"A=a\"b\n", "my.env:1: quote inside"},
    };
    for (const auto& [text, want] : cases) {
        const std::string err = parse_error(text);
        EXPECT_EQ(err.rfind(want, 0), 0u) << "input: " << text << "\nerror: " << err;
    }
    EXPECT_NE(parse_error(std::string("A=x\0y\n", 6)).find("my.env:1: control character"), std::string::npos);
}

TEST(Config, PrecedenceIsFlagThenEnvThenDotenvThenDefault) {
    auto file = parse_dotenv("GCE_ZONE=europe-west4-a\nGCE_MACHINE_TYPE=n2-standard-4\nGCE_DISK_TYPE=pd-balanced\n", "/x/.env");
    auto env = [](const std::string& n) -> std::optional<std::string> {
        if (n == "GCE_ZONE" || n == "GCE_MACHINE_TYPE") return std::string(n == "GCE_ZONE" ? "asia-east1-b" : "c3-standard-8");
        return std::nullopt;
    };
    FactoryConfig c = resolve_config({{"zone", "us-east1-c"}}, env, file, std::string("/x/.env"));
    EXPECT_EQ(c.get("GCE_ZONE"), "us-east1-c");
    EXPECT_EQ(c.at("GCE_ZONE").source, ConfigSource::flag);
    EXPECT_EQ(c.get("GCE_MACHINE_TYPE"), "c3-standard-8");
    EXPECT_EQ(c.at("GCE_MACHINE_TYPE").origin, "$GCE_MACHINE_TYPE");
    EXPECT_EQ(c.get("GCE_DISK_TYPE"), "pd-balanced");
    EXPECT_EQ(c.at("GCE_DISK_TYPE").origin, "/x/.env:3");
    EXPECT_EQ(c.get("GCE_DISK_SIZE"), "100GB");
    EXPECT_EQ(c.at("GCE_DISK_SIZE").source, ConfigSource::default_value);
    EXPECT_EQ(c.get("GCE_MAX_RUN"), "3600s");
    EXPECT_EQ(c.get("CMF_MODEL"), "google/medgemma-1.5-4b-it");
    EXPECT_EQ(c.at("HF_TOKEN").source, ConfigSource::unset);
}

TEST(Config, ValuesAreCheckedWithTheirOrigin) {
    auto err = [](const std::map<std::string, std::string>& flags, const std::string& dotenv) {
        try {
            resolve_config(flags, no_env, parse_dotenv(dotenv, "/p/.env"), std::string("/p/.env"));
        } catch (const cmf::Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    EXPECT_NE(err({{"disk-size", "5GB"}}, "").find("from --disk-size"), std::string::npos);
    EXPECT_NE(err({}, "GCE_MAX_RUN=forever\n").find("from /p/.env:1"), std::string::npos);
    EXPECT_NE(err({}, "GCS_BUCKET=Bad_Bucket!\n").find("GCS_BUCKET"), std::string::npos);
    EXPECT_NE(err({{"model", "not-a-repo"}}, "").find("CMF_MODEL"), std::string::npos);
    EXPECT_NE(err({{"zone", "us-central1"}}, "").find("GCE_ZONE"), std::string::npos);
    EXPECT_NE(err({}, "GCE_ZONES=us-central1-a\n").find("/p/.env:1: unknown key GCE_ZONES"), std::string::npos);
    EXPECT_EQ(parse_disk_size_gb("100GB"), 100u);
    EXPECT_EQ(parse_disk_size_gb("250"), 250u);
    EXPECT_EQ(parse_duration_seconds("3600s"), 3600u);
    EXPECT_EQ(parse_duration_seconds("2h"), 7200u);
    EXPECT_EQ(normalize_bucket_name("gs://my-bucket/"), "my-bucket");
}

// CMF_LORA: hf://ORG/NAME[@REV], gs://BUCKET/PATH or a PATH in GCS_BUCKET; names the variants
// after the adapter unless CMF_NAME_PREFIX is given; CMF_PUBLISH_ADAPTER needs it.
TEST(Config, LoraLocationsAndNames) {
    auto l = parse_lora_location("hf://coheara/triage-lora@v2", "bkt");
    EXPECT_EQ(l.uri, "hf://coheara/triage-lora");
    EXPECT_EQ(l.revision, "v2");
    EXPECT_EQ(l.name(), "triage-lora");
    EXPECT_EQ(parse_lora_location("hf://coheara/triage-lora", "bkt").revision, "main");
    EXPECT_EQ(parse_lora_location("adapters/triage", "bkt").uri, "gs://bkt/adapters/triage/");
    EXPECT_EQ(parse_lora_location("gs://other/a/b/", "bkt").uri, "gs://other/a/b/");
    EXPECT_EQ(parse_lora_location("gs://other/a/b/", "bkt").name(), "b");
    for (const char* bad : {"hf://nope", "hf://a/b@", "gs://bucket-only", "s3://x/y", "../up", "a/../b"})
        EXPECT_THROW(parse_lora_location(bad, "bkt"), cmf::Error) << bad;
    auto cfg = resolve_config({{"lora", "hf://coheara/Triage-LoRA"}}, no_env, {}, std::nullopt);
    EXPECT_EQ(cfg.get("CMF_NAME_PREFIX"), "triage-lora");
    cfg = resolve_config({{"lora", "hf://coheara/triage-lora"}, {"name-prefix", "mine"}}, no_env, {}, std::nullopt);
    EXPECT_EQ(cfg.get("CMF_NAME_PREFIX"), "mine");
    try {
        resolve_config({{"publish-adapter", "1"}}, no_env, {}, std::nullopt);
        ADD_FAILURE() << "CMF_PUBLISH_ADAPTER=1 without CMF_LORA was accepted";
    } catch (const cmf::Error& e) {
        EXPECT_NE(std::string(e.what()).find("CMF_PUBLISH_ADAPTER=1 needs CMF_LORA"), std::string::npos) << e.what();
    }
    EXPECT_THROW(resolve_config({{"publish-adapter", "yes"}}, no_env, {}, std::nullopt), cmf::Error);
}

TEST(Config, MaskShowsNoCharacterOfTheSecret) {
    const std::string m = mask_secret("hf_abcdefghij");
    for (const char* part : {"hf_", "abc", "hij"}) EXPECT_EQ(m.find(part), std::string::npos) << m;
    EXPECT_NE(m.find("13 characters"), std::string::npos);
}

TEST(ConfigCommand, PrintsOriginsAndMasksTheToken) {
    TempDir d;
    const std::string token = "hf_FAKE-planted-config-test-token";
    write_file(d / "f.env", "HF_TOKEN=" + token + "\nGCE_ZONE=europe-west4-a\nGCE_MACHINE_TYPE=n2-standard-4\n");
    auto r = run_cmf("config --env-file " + shell_quote((d / "f.env").string()) + " --machine-type e2-standard-16");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.find(token), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("****** (set, " + std::to_string(token.size()) + " characters)"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("europe-west4-a"), std::string::npos);
    EXPECT_NE(r.output.find("f.env:2"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("e2-standard-16"), std::string::npos);
    EXPECT_NE(r.output.find("--machine-type"), std::string::npos);
    EXPECT_NE(r.output.find("pd-ssd"), std::string::npos);
    // the environment beats the file, the flag beats the environment
    auto r2 = cmf::test::run("GCE_ZONE=asia-east1-b " + shell_quote(CMF_BINARY) + " config --json --env-file " + shell_quote((d / "f.env").string()));
    ASSERT_EQ(r2.exit_code, 0) << r2.output;
    EXPECT_NE(r2.output.find("asia-east1-b"), std::string::npos);
    EXPECT_NE(r2.output.find("$GCE_ZONE"), std::string::npos);
    EXPECT_EQ(r2.output.find(token), std::string::npos);
}

TEST(ConfigCommand, BadDotenvLineIsOneLineAndNonZero) {
    TempDir d;
    write_file(d / "bad.env", "GCE_ZONE=us-central1-a\nGCE_DISK_SIZE = 100GB\n");
    auto r = run_cmf("config --env-file " + shell_quote((d / "bad.env").string()));
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find("bad.env:2: blank between 'GCE_DISK_SIZE' and '='"), std::string::npos) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    auto r2 = run_cmf("config --env-file " + shell_quote((d / "missing.env").string()));
    EXPECT_EQ(r2.exit_code, 4) << r2.output;
}
