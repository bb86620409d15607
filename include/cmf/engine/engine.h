// The engine: llama.cpp v0.5.0 linked into cmf (cmake/engine.cmake, scripts/build_engine.sh), the
// engine users run, for what needs a model run: evaluation against the lossless file, the
// degeneration smoke, importance matrices (docs/plan-engine.md). This header does not include
// llama.h: everything else in cmf builds the same with or without the engine, and a build
// without it (-DCMF_ENGINE=OFF) answers every call with one line saying so.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
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

// ---------------------------------------------------------------------------------------------
// Evaluation against the lossless file: what `llama-perplexity --kl-divergence` computes
// (tools/perplexity/perplexity.cpp of the pinned source), with its chunking, its uint16
// compression of the reference's log-probabilities and its statistics, so the numbers are equal
// on the same inputs.

// One turn of a chat-formatted text; rendered through the model's chat template.
struct ChatTurn {
    std::string role;  // "system", "user", "assistant"
    std::string content;
};
using Conversation = std::vector<ChatTurn>;

// What is evaluated: a raw text tokenized as llama-perplexity tokenizes `-f FILE` (BOS added,
// special tokens not parsed), or conversations rendered through the reference's chat template
// and tokenized with their control tokens parsed.
struct EvalText {
    std::string raw;                          // used when `chat` is empty
    std::vector<Conversation> chat;
    bool parse_special = false;               // for `raw`: parse "<start_of_turn>" as control tokens
    std::string label = "built-in";           // for messages: "built-in" or the file name
};

// The conversations as the model's chat template renders them (what is tokenized, with its
// control tokens parsed): for running llama.cpp's tools on the same text
// (llama-imatrix --parse-special -f FILE).
std::string render_text(const std::filesystem::path& gguf, const EvalText& text);

struct EvalSettings {
    int ctx = 512;     // -c: tokens per chunk; the second half of each chunk is scored
    int chunks = -1;   // --chunks: at most this many chunks (-1: all the text gives)
    int batch = 2048;  // -b: llama-perplexity's default; sequences per batch = max(1, batch / ctx)
    int threads = 0;   // 0: llama.cpp's default (physical cores)
};

// llama-perplexity's printed statistics (percent figures as printed: rms_dp, same_top_p, the
// Δp percentiles are in %; the rest as they are).
struct KldStats {
    size_t tokens = 0;  // scored tokens (llama-perplexity's count)
    int chunks = 0;
    double ppl = 0, ppl_unc = 0, ppl_base = 0, ppl_base_unc = 0, cor = 0;
    double ln_ratio = 0, ln_ratio_unc = 0, ppl_ratio = 0, ppl_ratio_unc = 0, ppl_diff = 0, ppl_diff_unc = 0;
    double mean_kld = 0, mean_kld_unc = 0;
    double max_kld = 0, p999_kld = 0, p99_kld = 0, p95_kld = 0, p90_kld = 0, median_kld = 0, p10_kld = 0, p5_kld = 0,
           p1_kld = 0, p01_kld = 0, min_kld = 0;
    double mean_dp = 0, mean_dp_unc = 0;
    double max_dp = 0, p999_dp = 0, p99_dp = 0, p95_dp = 0, p90_dp = 0, p75_dp = 0, median_dp = 0, p25_dp = 0,
           p10_dp = 0, p5_dp = 0, p1_dp = 0, p01_dp = 0, min_dp = 0;
    double rms_dp = 0, rms_dp_unc = 0, same_top_p = 0, same_top_p_unc = 0;
};

// The reference pass: the lossless model's compressed log-probabilities over the text, kept in
// an anonymous temporary file (nothing is left behind, whatever happens), then each variant
// against them. Variants must be the same model (architecture, sizes, vocabulary).
class Reference {
public:
    Reference(const std::filesystem::path& ref_gguf, const EvalText& text, const EvalSettings& settings);
    ~Reference();
    Reference(const Reference&) = delete;
    Reference& operator=(const Reference&) = delete;
    KldStats compare(const std::filesystem::path& variant_gguf) const;
    size_t text_tokens() const;  // tokens of the whole text
    int chunks() const;
    double ppl() const;          // the reference's own perplexity over the scored tokens
    struct Impl;
private:
    std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// Importance matrix: what `llama-imatrix` collects (tools/imatrix/imatrix.cpp): per weight of
// the blocks ("blk.*", and "output.weight" with process_output) the sums of squared input
// activations of every matrix multiplication of at least 16 rows, and how many rows they hold,
// over chunks as llama-perplexity makes them (every position's logits requested).
struct ImatrixEntry {
    std::vector<float> in_sum2;  // ne0 * n_mat sums (float accumulation, as llama-imatrix)
    std::vector<int64_t> counts; // n_mat
};
struct Imatrix {
    std::map<std::string, ImatrixEntry> entries;  // by weight name (sorted: the file's order)
    uint32_t chunk_count = 0;  // llama-imatrix's imatrix.chunk_count
    uint32_t chunk_size = 0;   // imatrix.chunk_size (= ctx)
};
Imatrix collect_imatrix(const std::filesystem::path& gguf, const EvalText& text, const EvalSettings& settings, bool process_output = false);

// ---------------------------------------------------------------------------------------------
// Generation, for the degeneration smoke: one user turn through the model's chat template (with
// the generation prompt), greedy or seeded sampling (Gemma's recommended top-k 64, top-p 0.95,
// temperature 1.0, then llama.cpp's dist sampler with the seed), until an end-of-generation token
// or max_tokens. With an mmproj, the image goes through llama.cpp's multimodal path (libmtmd)
// before the prompt's text.
struct GenRequest {
    std::filesystem::path model;
    std::filesystem::path mmproj;   // empty: text only
    std::filesystem::path image;    // with mmproj: this file, or empty for cmf's built-in test image
    std::string prompt;
    int max_tokens = 128;
    bool greedy = true;
    uint32_t seed = 42;
    int threads = 0;
    bool stop_on_loop = false;  // end early once the answer loops (smoke.h's detector)
};
struct Generation {
    std::vector<std::string> pieces;  // the answer, token by token (special tokens rendered)
    bool ended = false;               // an end-of-generation token came within max_tokens
    int prompt_tokens = 0;
    std::string text() const {
        std::string t;
        for (const auto& p : pieces) t += p;
        return t;
    }
};
Generation generate(const GenRequest& r);

// The image-conditioned KL divergence of a quantized mmproj against the lossless one: the same
// text model, image and prompt; the lossless path's greedy answer of n tokens is scored by both
// (teacher forcing), and the per-token KLD(lossless || variant) of the next-token distributions
// is averaged (natural log, full vocabulary, in double).
struct ImageKld {
    double mean_kld = 0, max_kld = 0, same_top_p = 0;  // same_top_p in percent
    int tokens = 0;
};
ImageKld image_kld(const std::filesystem::path& model, const std::filesystem::path& ref_mmproj, const std::filesystem::path& mmproj,
                   const std::filesystem::path& image, const std::string& prompt, int n_tokens, int threads = 0);

}  // namespace cmf::engine
