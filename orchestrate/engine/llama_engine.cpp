// The engine calls, on llama.cpp's C API (llama.h of the pinned source). llama.cpp's log goes to
// a buffer, not the terminal: its last error line is what a refusal says.
#include <algorithm>
#include <cstring>
#include <thread>
#include <mutex>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/engine/engine.h"
#include "llama.h"
#include "orchestrate/engine/llama_common.h"

namespace cmf::engine {
using namespace detail;

EngineInfo info() { return {true, CMF_ENGINE_DESCRIPTION}; }

void require() {
#if defined(__x86_64__)
    __builtin_cpu_init();
    std::string missing;
    if (!__builtin_cpu_supports("avx2")) missing += " AVX2";
    if (!__builtin_cpu_supports("fma")) missing += " FMA";
    if (!__builtin_cpu_supports("f16c")) missing += " F16C";
    if (!__builtin_cpu_supports("bmi2")) missing += " BMI2";
    if (!missing.empty())
        fail(ErrorKind::usage, "this CPU lacks" + missing + ", which cmf's engine (llama.cpp built for x86-64-v3) needs; quantizing works, evaluating does not");
#endif
}

ModelSummary load_summary(const std::filesystem::path& gguf) {
    Model m(gguf);
    ModelSummary s;
    char buf[128] = {};
    if (llama_model_meta_val_str(m.m, "general.architecture", buf, sizeof buf) > 0) s.architecture = buf;
    s.n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(m.m));
    s.n_ctx_train = llama_model_n_ctx_train(m.m);
    s.n_params = llama_model_n_params(m.m);
    return s;
}

std::vector<std::string> greedy_pieces(const std::filesystem::path& gguf, const std::string& prompt, int n) {
    Model m(gguf);
    const llama_vocab* vocab = llama_model_get_vocab(m.m);
    // llama-simple: tokenize with add_special, parse_special
    const int need = -llama_tokenize(vocab, prompt.c_str(), static_cast<int32_t>(prompt.size()), nullptr, 0, true, true);
    std::vector<llama_token> toks(static_cast<size_t>(need));
    if (llama_tokenize(vocab, prompt.c_str(), static_cast<int32_t>(prompt.size()), toks.data(), need, true, true) < 0)
        fail_input(gguf.string() + ": llama.cpp cannot tokenize the prompt");
    auto cp = llama_context_default_params();
    cp.n_ctx = static_cast<uint32_t>(toks.size()) + static_cast<uint32_t>(n) - 1;  // llama-simple's sizes
    cp.n_batch = static_cast<uint32_t>(toks.size());
    cp.no_perf = true;
    const int threads = default_threads();
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    ThreadPool pool(threads);
    llama_context* ctx = llama_init_from_model(m.m, cp);
    if (!ctx) fail_input(gguf.string() + ": llama.cpp cannot make a context: " + last_error());
    pool.attach(ctx);
    auto sp = llama_sampler_chain_default_params();
    llama_sampler* smpl = llama_sampler_chain_init(sp);
    llama_sampler_chain_add(smpl, llama_sampler_init_greedy());
    std::vector<std::string> out;
    for (llama_token t : toks) out.push_back(piece(vocab, t));
    llama_batch batch = llama_batch_get_one(toks.data(), static_cast<int32_t>(toks.size()));
    llama_token next = 0;
    for (int i = 0; i < n; ++i) {
        if (llama_decode(ctx, batch) != 0) {
            llama_sampler_free(smpl);
            llama_free(ctx);
            fail_input(gguf.string() + ": llama.cpp cannot evaluate it: " + last_error());
        }
        next = llama_sampler_sample(smpl, ctx, -1);
        if (llama_vocab_is_eog(vocab, next)) break;
        out.push_back(piece(vocab, next));
        batch = llama_batch_get_one(&next, 1);
    }
    llama_sampler_free(smpl);
    llama_free(ctx);
    return out;
}

}  // namespace cmf::engine
