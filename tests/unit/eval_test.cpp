// `cmf eval` and `cmf imatrix` against the tools users trust: llama.cpp's own llama-perplexity
// --kl-divergence and llama-imatrix, built from the pinned source with the engine's CPU flags
// (tests/rig/build_engine_tools.sh), on the golden checkpoints converted by cmf (F16 reference;
// Q8_0, Q4_K_M, Q2_K variants). Skips with a message without the engine, ../shared or the rig.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <regex>

#include "cmf/engine/texts.h"
#include "rig_ref.h"
#include "test_support.h"

namespace cmf::test {
namespace {

using cmf::test::has_engine;

#define REQUIRE_ENGINE_AND_RIG()                                                                             \
    do {                                                                                                     \
        if (!has_engine()) GTEST_SKIP() << "SKIPPED: this cmf has no engine (cmf --version)";              \
        CMF_REQUIRE_SHARED();                                                                                \
        if (!rig::rig_dir()) GTEST_SKIP() << "SKIPPED: no reference rig (set REF_RIG, see ../shared/tools/llama-ref/setup.sh)"; \
    } while (0)

// llama-perplexity / llama-imatrix with the engine's kernels (built once, ~2 min)
const fs::path& tools_bin() {
    static const fs::path bin = [] {
        auto r = run("bash " + shell_quote(std::string(CMF_SOURCE_DIR) + "/tests/rig/build_engine_tools.sh") + " " + shell_quote(rig::rig_dir()->string()));
        if (r.exit_code != 0) return fs::path();
        std::string s = r.output;
        while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
        return fs::path(s.substr(s.rfind('\n') == std::string::npos ? 0 : s.rfind('\n') + 1));
    }();
    return bin;
}

// A plain text of a few thousand tokens: the built-in evaluation conversations' words.
std::string plain_text() {
    std::string t;
    for (const auto& c : engine::texts::evaluation())
        for (const auto& turn : c) t += std::string(turn.content) + "\n\n";
    return t;
}

// The summary block llama-perplexity prints (from "====== Perplexity statistics").
std::string summary_of(const std::string& out) {
    const size_t a = out.find("====== Perplexity statistics ======");
    if (a == std::string::npos) return "";
    const size_t b = out.find("Same top p:", a);
    if (b == std::string::npos) return "";
    return out.substr(a, out.find('\n', b) - a + 1);
}

// Equal to the printed precision: the same lines, each number within one unit of its last printed
// digit (the sums are merged from threads in whatever order they finish, so llama-perplexity's own
// last digit can differ between runs).
void expect_same_print(const std::string& ours, const std::string& theirs) {
    ASSERT_FALSE(theirs.empty());
    if (ours == theirs) return;
    const std::regex num(R"(-?\d+\.\d+)");
    std::string a = std::regex_replace(ours, num, "#"), b = std::regex_replace(theirs, num, "#");
    ASSERT_EQ(a, b) << "different lines:\n" << ours << "\nvs\n" << theirs;
    auto it = std::sregex_iterator(ours.begin(), ours.end(), num), jt = std::sregex_iterator(theirs.begin(), theirs.end(), num);
    for (; it != std::sregex_iterator(); ++it, ++jt) {
        const std::string x = it->str(), y = jt->str();
        const size_t decimals = x.size() - x.find('.') - 1;
        EXPECT_LE(std::fabs(std::stod(x) - std::stod(y)), 1.01 * std::pow(10.0, -static_cast<double>(decimals))) << x << " vs " << y << "\n" << ours << "\nvs\n" << theirs;
    }
}

// A summary as llama-perplexity prints it when its log works: present, no line twice in a row.
bool whole_summary(const std::string& s) {
    if (s.empty()) return false;
    std::string prev, line;
    for (size_t i = 0; i < s.size(); i = s.find('\n', i) + 1) {
        line = s.substr(i, s.find('\n', i) - i);
        if (!line.empty() && line == prev) return false;
        prev = line;
    }
    return true;
}

// llama-perplexity v0.5.0 sometimes exits 0 without its summary, or with one of its lines twice
// (its asynchronous log): retried.
RunResult perplexity(const std::string& args, bool want_summary) {
    RunResult r;
    for (int i = 0; i < 4; ++i) {
        r = run(shell_quote((tools_bin() / "llama-perplexity").string()) + " " + args);
        if (r.exit_code != 0 || !want_summary || whole_summary(summary_of(r.output))) break;
    }
    return r;
}

struct Model {
    const char* ckpt;
    const char* name;
};

class EvalEqualsLlamaPerplexity : public ::testing::TestWithParam<Model> {};

TEST_P(EvalEqualsLlamaPerplexity, F16ReferenceAgainstQ8Q4KMQ2K) {
    REQUIRE_ENGINE_AND_RIG();
    ASSERT_FALSE(tools_bin().empty()) << "tests/rig/build_engine_tools.sh failed";
    TempDir d;
    const auto m = GetParam();
    auto q = run_cmf("quantize " + shell_quote((golden_dir() / m.ckpt).string()) + " --quant f16,q8_0,q4_k_m,q2_k --quiet --out " + shell_quote(d.path().string()));
    ASSERT_EQ(q.exit_code, 0) << q.output;
    write_file(d / "text.txt", plain_text());
    const std::string ref = (d / (std::string(m.name) + "-F16.gguf")).string();
    auto base = perplexity("-m " + shell_quote(ref) + " -f " + shell_quote((d / "text.txt").string()) + " --kl-divergence-base " +
                               shell_quote((d / "base.kld").string()) + " -c 256",
                           false);
    ASSERT_EQ(base.exit_code, 0) << rig::tail(base.output);
    std::string variants;
    for (const char* t : {"Q8_0", "Q4_K_M", "Q2_K"}) variants += " " + shell_quote((d / (std::string(m.name) + "-" + t + ".gguf")).string());
    auto ours = run_cmf("eval --ref " + shell_quote(ref) + variants + " --text " + shell_quote((d / "text.txt").string()) + " --ctx 256");
    ASSERT_EQ(ours.exit_code, 0) << ours.output;
    auto js = run("(" + shell_quote(CMF_BINARY) + " eval --ref " + shell_quote(ref) + variants + " --text " + shell_quote((d / "text.txt").string()) +
                  " --ctx 256 --json 2>/dev/null)");
    ASSERT_EQ(js.exit_code, 0) << js.output;
    const auto j = nlohmann::json::parse(js.output);
    ASSERT_EQ(j["variants"].size(), 3u);
    size_t at = 0;
    int vi = 0;
    for (const char* t : {"Q8_0", "Q4_K_M", "Q2_K"}) {
        SCOPED_TRACE(t);
        const std::string v = (d / (std::string(m.name) + "-" + t + ".gguf")).string();
        auto theirs = perplexity("-m " + shell_quote(v) + " --kl-divergence-base " + shell_quote((d / "base.kld").string()) + " --kl-divergence -c 256", true);
        ASSERT_EQ(theirs.exit_code, 0) << rig::tail(theirs.output);
        const std::string ts = summary_of(theirs.output);
        const size_t here = ours.output.find("====== Perplexity statistics ======", at);
        ASSERT_NE(here, std::string::npos);
        const std::string os = summary_of(ours.output.substr(here));
        at = here + 1;
        expect_same_print(os, ts);
        // --json carries the same figures
        const auto& jv = j["variants"][vi++];
        auto printed = [&](const char* label) {
            const size_t p = ts.find(label);
            return std::stod(ts.substr(ts.find(':', p) + 1));
        };
        EXPECT_NEAR(jv["mean_kld"].get<double>(), printed("Mean    KLD"), 1.01e-6);
        EXPECT_NEAR(jv["p99_kld"].get<double>(), printed("99.0%   KLD"), 1.01e-6);
        EXPECT_NEAR(jv["max_kld"].get<double>(), printed("Maximum KLD"), 1.01e-6);
        EXPECT_NEAR(jv["ppl_ratio"].get<double>(), printed("Mean PPL(Q)/PPL(base)"), 1.01e-6);
        EXPECT_NEAR(jv["same_top_p"].get<double>(), printed("Same top p"), 1.01e-3);
        EXPECT_NEAR(jv["rms_dp"].get<double>(), printed("RMS Δp"), 1.01e-3);
        EXPECT_GT(jv["tokens"].get<int>(), 100);
    }
    // quantization costs what it should: Q8_0 < Q4_K_M < Q2_K in mean KLD
    EXPECT_LT(j["variants"][0]["mean_kld"].get<double>(), j["variants"][1]["mean_kld"].get<double>());
    EXPECT_LT(j["variants"][1]["mean_kld"].get<double>(), j["variants"][2]["mean_kld"].get<double>());
}

INSTANTIATE_TEST_SUITE_P(Golden, EvalEqualsLlamaPerplexity,
                         ::testing::Values(Model{"tiny-text", "tiny-text"}, Model{"tiny-mm", "tiny-mm"}),
                         [](const auto& i) { return std::string(i.param.name == std::string("tiny-text") ? "TinyText" : "TinyMm"); });

// Tensor for tensor (and byte for byte with the same -f argument) llama-imatrix's file, on a
// plain text and on the built-in calibration text (rendered by cmf, llama-imatrix --parse-special).
TEST(ImatrixEqualsLlamaImatrix, PlainAndBuiltinText) {
    REQUIRE_ENGINE_AND_RIG();
    ASSERT_FALSE(tools_bin().empty());
    TempDir d;
    for (const char* m : {"tiny-text", "tiny-mm"}) {
        SCOPED_TRACE(m);
        auto q = run_cmf("quantize " + shell_quote((golden_dir() / m).string()) + " --quant f16 --quiet --out " + shell_quote(d.path().string()));
        ASSERT_EQ(q.exit_code, 0) << q.output;
        const std::string f16 = (d / (std::string(m) + "-F16.gguf")).string();
        write_file(d / "text.txt", plain_text());
        const std::string tool = shell_quote((tools_bin() / "llama-imatrix").string());
        // same -f argument: the files are identical
        auto theirs = run("cd " + shell_quote(d.path().string()) + " && " + tool + " -m " + shell_quote(f16) + " -f text.txt -o ref.gguf -c 128");
        ASSERT_EQ(theirs.exit_code, 0) << rig::tail(theirs.output);
        auto ours = run("cd " + shell_quote(d.path().string()) + " && " + shell_quote(CMF_BINARY) + " imatrix " + shell_quote(f16) + " --text text.txt -o ours.gguf --ctx 128");
        ASSERT_EQ(ours.exit_code, 0) << ours.output;
        EXPECT_EQ(read_file(d / "ours.gguf"), read_file(d / "ref.gguf"));
        // the built-in calibration text, from the checkpoint directory (converted to F16 on the way)
        auto txt = run_cmf("imatrix " + shell_quote((golden_dir() / m).string()) + " --print-text -o " + shell_quote((d / "x.gguf").string()) + " > " +
                           shell_quote((d / "calib.txt").string()));
        ASSERT_EQ(txt.exit_code, 0) << txt.output;
        EXPECT_NE(read_file(d / "calib.txt").find("<start_of_turn>user\n"), std::string::npos);
        auto theirs2 = run(tool + " -m " + shell_quote(f16) + " -f " + shell_quote((d / "calib.txt").string()) + " --parse-special -o " +
                           shell_quote((d / "ref2.gguf").string()) + " -c 128");
        ASSERT_EQ(theirs2.exit_code, 0) << rig::tail(theirs2.output);
        auto ours2 = run_cmf("imatrix " + shell_quote((golden_dir() / m).string()) + " -o " + shell_quote((d / "ours2.gguf").string()) + " --ctx 128");
        ASSERT_EQ(ours2.exit_code, 0) << ours2.output;
        auto a = run_cmf("inspect --json --sha256 " + shell_quote((d / "ours2.gguf").string()));
        auto b = run_cmf("inspect --json --sha256 " + shell_quote((d / "ref2.gguf").string()));
        const auto ja = nlohmann::json::parse(a.output), jb = nlohmann::json::parse(b.output);
        EXPECT_EQ(ja["tensors"], jb["tensors"]);
        ASSERT_EQ(ja["metadata"].size(), 4u);
        for (int k : {0, 2, 3}) EXPECT_EQ(ja["metadata"][k], jb["metadata"][k]);  // all but the dataset's name
        // no temporary conversion left behind
        for (const auto& e : fs::directory_iterator(d.path())) EXPECT_EQ(e.path().filename().string().find(".cmf"), std::string::npos) << e.path();
        for (const char* f : {"ref.gguf", "ours.gguf", "ref2.gguf", "ours2.gguf", "calib.txt"}) fs::remove(d / f);
    }
}

TEST(EvalRefuses, DifferentModelsVocabulariesAndBrokenFiles) {
    if (!has_engine()) GTEST_SKIP() << "SKIPPED: this cmf has no engine (cmf --version)";
    CMF_REQUIRE_SHARED();
    TempDir d;
    const fs::path g = golden_dir() / "gguf";
    write_file(d / "text.txt", plain_text());
    const std::string text = " --text " + shell_quote((d / "text.txt").string()) + " --ctx 128";
    // tiny-mm's text model: other sizes
    auto r = run_cmf("eval --ref " + shell_quote((g / "tiny-text-f16.gguf").string()) + " " + shell_quote((g / "tiny-mm-q8_0.gguf").string()) + text);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("is a different model than the reference"), std::string::npos) << r.output;
    // a different vocabulary (a golden-next Gemma 3n, whose vocabulary differs)
    const fs::path next = *shared_dir() / "golden-next" / "ckpt" / "tiny-gemma3n";
    if (fs::is_directory(next)) {
        auto q = run_cmf("quantize " + shell_quote(next.string()) + " --quant f16 --quiet --out " + shell_quote(d.path().string()));
        ASSERT_EQ(q.exit_code, 0) << q.output;
        r = run_cmf("eval --ref " + shell_quote((g / "tiny-text-f16.gguf").string()) + " " + shell_quote((d / "tiny-gemma3n-F16.gguf").string()) + text);
        EXPECT_NE(r.exit_code, 0);
        EXPECT_TRUE(r.output.find("different vocabulary") != std::string::npos || r.output.find("different model") != std::string::npos) << r.output;
    }
    // the same sizes, another vocabulary: a token's text changed in a copy of the reference
    std::string bytes = read_file(g / "tiny-text-f16.gguf");
    const size_t p = bytes.find("<start_of_turn>");
    ASSERT_NE(p, std::string::npos);
    bytes.replace(p, 15, "<start_of_tune>");
    write_file(d / "other-vocab.gguf", bytes);
    r = run_cmf("eval --ref " + shell_quote((g / "tiny-text-f16.gguf").string()) + " " + shell_quote((d / "other-vocab.gguf").string()) + text);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("has a different vocabulary than the reference"), std::string::npos) << r.output;
    // a truncated variant: llama.cpp's own reason, one line
    write_file(d / "cut.gguf", read_file(g / "tiny-text-q8_0.gguf").substr(0, 100000));
    r = run_cmf("eval --ref " + shell_quote((g / "tiny-text-f16.gguf").string()) + " " + shell_quote((d / "cut.gguf").string()) + text);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("llama.cpp cannot load it"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("Segmentation"), std::string::npos);
    // too short a text for the context
    write_file(d / "short.txt", "A few words only.");
    r = run_cmf("eval --ref " + shell_quote((g / "tiny-text-f16.gguf").string()) + " " + shell_quote((g / "tiny-text-q8_0.gguf").string()) +
                " --text " + shell_quote((d / "short.txt").string()));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("needs at least 1024"), std::string::npos) << r.output;
    // nothing of the reference's log-probabilities is left in TMPDIR
    fs::create_directories(d / "tmp");
    r = run("TMPDIR=" + shell_quote((d / "tmp").string()) + " " + shell_quote(CMF_BINARY) + " eval --ref " + shell_quote((g / "tiny-text-f16.gguf").string()) + " " +
            shell_quote((g / "tiny-text-q8_0.gguf").string()) + text);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(fs::is_empty(d / "tmp"));
}

// The built-in evaluation text is chat-formatted through the model's template: Gemma 3's through
// llama.cpp's template support, Gemma 4's (whose GGUF carries no template) through its family row.
TEST(EvalText, BuiltinTextIsChatFormatted) {
    if (!has_engine()) GTEST_SKIP() << "SKIPPED: this cmf has no engine (cmf --version)";
    CMF_REQUIRE_SHARED();
    auto r = run_cmf("eval --ref " + shell_quote((golden_dir() / "gguf" / "tiny-text-f16.gguf").string()) + " --print-text");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.rfind("<start_of_turn>user\nYou are a careful", 0), 0u) << r.output.substr(0, 200);  // system folded into user
    EXPECT_NE(r.output.find("<end_of_turn>\n<start_of_turn>model\n"), std::string::npos);
    EXPECT_GT(r.output.size(), 15000u);
    const fs::path g4 = *shared_dir() / "golden-next" / "ckpt" / "tiny-gemma4";
    if (!fs::is_directory(g4)) return;
    TempDir d;
    auto q = run_cmf("quantize " + shell_quote(g4.string()) + " --quant f16 --quiet --out " + shell_quote(d.path().string()));
    ASSERT_EQ(q.exit_code, 0) << q.output;
    r = run_cmf("eval --ref " + shell_quote((d / "tiny-gemma4-F16.gguf").string()) + " --print-text");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.rfind("<|turn>system\n", 0), 0u) << r.output.substr(0, 200);  // Gemma 4 has a system role
    EXPECT_NE(r.output.find("<turn|>\n<|turn>user\n"), std::string::npos);
    EXPECT_NE(r.output.find("<turn|>\n<|turn>model\n"), std::string::npos);
}

}  // namespace
}  // namespace cmf::test

namespace cmf::test {
namespace {

// `cmf quantize --imatrix auto` is `cmf imatrix CKPT` then `cmf quantize --imatrix FILE`: the same
// importance matrix (from the checkpoint's F16, on the built-in calibration text) and the same
// quantized tensors; the file records it as llama-quantize records an imatrix.
TEST(ImatrixAuto, QuantizeWithAutoIsImatrixThenQuantize) {
    if (!has_engine()) GTEST_SKIP() << "SKIPPED: this cmf has no engine (cmf --version)";
    CMF_REQUIRE_SHARED();
    TempDir d;
    const std::string ck = shell_quote((golden_dir() / "tiny-text").string());
    auto r = run_cmf("quantize " + ck + " --quant q4_k_m,q8_0 --imatrix auto --quiet --out " + shell_quote((d / "auto").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ASSERT_TRUE(fs::exists(d / "auto" / "tiny-text.imatrix.gguf")) << r.output;
    r = run_cmf("imatrix " + ck + " -o " + shell_quote((d / "two" / "tiny-text.imatrix.gguf").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(read_file(d / "auto" / "tiny-text.imatrix.gguf"), read_file(d / "two" / "tiny-text.imatrix.gguf"));
    r = run("cd " + shell_quote((d / "two").string()) + " && " + shell_quote(CMF_BINARY) + " quantize " + ck + " --quant q4_k_m,q8_0 --imatrix " +
            shell_quote((d / "auto" / "tiny-text.imatrix.gguf").string()) + " --quiet --out .");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const char* t : {"Q4_K_M", "Q8_0"}) {
        SCOPED_TRACE(t);
        const auto a = nlohmann::json::parse(run_cmf("inspect --json --sha256 " + shell_quote((d / "auto" / (std::string("tiny-text-") + t + ".gguf")).string())).output);
        const auto b = nlohmann::json::parse(run_cmf("inspect --json --sha256 " + shell_quote((d / "two" / (std::string("tiny-text-") + t + ".gguf")).string())).output);
        EXPECT_EQ(a["tensors"], b["tensors"]);
        std::map<std::string, nlohmann::json> kv;
        for (const auto& e : a["metadata"]) kv[e["key"]] = e["value"];
        EXPECT_EQ(kv["quantize.imatrix.dataset"], "cmf built-in calibration text");
        EXPECT_GT(kv["quantize.imatrix.chunks_count"].get<int>(), 0);
        EXPECT_NE(kv["quantize.imatrix.file"].get<std::string>().find("tiny-text.imatrix.gguf"), std::string::npos);
    }
    // the importance matrix changed the Q4_K_M (it does not touch Q8_0)
    r = run_cmf("quantize " + ck + " --quant q4_k_m --quiet --out " + shell_quote((d / "plain").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(read_file(d / "plain" / "tiny-text-Q4_K_M.gguf"), read_file(d / "auto" / "tiny-text-Q4_K_M.gguf"));
    // no temporary F16 left behind
    for (const auto& e : fs::directory_iterator(d / "auto")) EXPECT_NE(e.path().filename().string().rfind(".", 0), 0u) << e.path();
}

}  // namespace
}  // namespace cmf::test
