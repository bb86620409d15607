// The engine: llama.cpp v0.5.0 linked into cmf (cmake/engine.cmake, scripts/build_engine.sh), the
// engine users run, for what needs a model run: evaluation against the lossless file, the
// degeneration smoke, importance matrices (docs/plan-engine.md). This header does not include
// llama.h: everything else in cmf builds the same with or without the engine, and a build
// without it (-DCMF_ENGINE=OFF) answers every call with one line saying so.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace cmf::engine {

struct EngineInfo {
    bool available = false;
    std::string description;  // "llama.cpp from node-llama-cpp@3.22.1, commit de3ff81, ..." or why there is none
};
EngineInfo info();

// Throws a one-line Error when this build has no engine, or when this CPU lacks an instruction
// the engine was compiled for (x86-64-v3: AVX2, FMA, F16C, BMI2).
void require();

struct ModelSummary {
    std::string architecture;  // general.architecture
    int32_t n_vocab = 0;
    int32_t n_ctx_train = 0;
    uint64_t n_params = 0;
};
// Loads a GGUF with the engine; a file llama.cpp refuses is one line with llama.cpp's own reason.
ModelSummary load_summary(const std::filesystem::path& gguf);

// The prompt (BOS added when the vocabulary asks for it) and `n` greedily chosen tokens, each as
// its piece with special tokens rendered, as llama.cpp's llama-simple prints them; stops after an
// end-of-generation token.
std::vector<std::string> greedy_pieces(const std::filesystem::path& gguf, const std::string& prompt, int n);

}  // namespace cmf::engine
