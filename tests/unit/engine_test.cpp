// The engine linked into cmf is llama.cpp itself (the pinned v0.5.0 source built by
// scripts/build_engine.sh): it loads cmf's files and greedily continues the golden-next prompt
// exactly as llama.cpp's own llama-simple did (golden-next/smoke/simple-*-f16.txt), and a file it
// refuses is one line with llama.cpp's reason. Skips with a message in a build without the engine.
#include <gtest/gtest.h>

#include "cmf/core/error.h"
#include "cmf/engine/engine.h"
#include "test_support.h"

namespace cmf::test {
namespace {

#define REQUIRE_ENGINE()                                                                                              \
    do {                                                                                                              \
        if (!engine::info().available) GTEST_SKIP() << "SKIPPED: this build has no engine (" << engine::info().description << ")"; \
    } while (0)

TEST(Engine, VersionSaysWhichEngine) {
    auto r = run_cmf("--version");
    ASSERT_EQ(r.exit_code, 0);
    EXPECT_NE(r.output.find("engine: " + engine::info().description), std::string::npos) << r.output;
}

TEST(Engine, LoadsTheGoldenFileAndKnowsItsVocabulary) {
    REQUIRE_ENGINE();
    CMF_REQUIRE_SHARED();
    const auto s = engine::load_summary(golden_dir() / "gguf" / "tiny-text-f16.gguf");
    EXPECT_EQ(s.architecture, "gemma3");
    EXPECT_EQ(s.n_vocab, 1088);
    EXPECT_GT(s.n_params, 0u);
}

// cmf's F16 files of the golden-next checkpoints, continued greedily for 8 tokens
TEST(Engine, GreedyTextIsLlamaSimples) {
    REQUIRE_ENGINE();
    CMF_REQUIRE_SHARED();
    const fs::path next = *shared_dir() / "golden-next";
    if (!fs::is_directory(next / "ckpt")) GTEST_SKIP() << "SKIPPED: ../shared/golden-next is not present";
    TempDir d;
    for (const char* m : {"tiny-gemma3n", "tiny-gemma4"}) {
        SCOPED_TRACE(m);
        auto r = run_cmf("quantize " + shell_quote((next / "ckpt" / m).string()) + " --quant f16 --quiet --out " + shell_quote(d.path().string()));
        ASSERT_EQ(r.exit_code, 0) << r.output;
        std::string text;
        for (const auto& p : engine::greedy_pieces(d.path() / (std::string(m) + "-F16.gguf"), "The patient presented with", 8)) text += p;
        EXPECT_EQ(text + "\n", read_file(next / "smoke" / ("simple-" + std::string(m) + "-f16.txt")));
    }
}

TEST(Engine, RefusedFileIsLlamaCppsReasonInOneLine) {
    REQUIRE_ENGINE();
    CMF_REQUIRE_SHARED();
    TempDir d;
    const std::string full = read_file(golden_dir() / "gguf" / "tiny-text-f16.gguf");
    write_file(d / "cut.gguf", full.substr(0, full.size() / 2));
    try {
        engine::load_summary(d / "cut.gguf");
        ADD_FAILURE() << "a truncated GGUF was loaded";
    } catch (const Error& e) {
        const std::string w = e.what();
        EXPECT_NE(w.find("cut.gguf: llama.cpp cannot load it: "), std::string::npos) << w;
        EXPECT_EQ(w.find('\n'), std::string::npos) << w;
    }
}

}  // namespace
}  // namespace cmf::test
