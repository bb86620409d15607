// Generation for the degeneration smoke and the image-conditioned KLD: llama.cpp's context and
// sampler chain, libmtmd for the image (its own preprocessing, encoder and decode helper).
#include <cmath>
#include <limits>

#include "cmf/engine/smoke.h"

#include "mtmd-helper.h"
#include "mtmd.h"
#include "orchestrate/engine/llama_common.h"

namespace cmf::engine {
using namespace detail;

namespace {

// cmf's test image when none is given: 96x96 RGB, a light background with a red disc, a blue
// bar and a diagonal of dark squares, so a vision tower sees shapes and colours.
std::vector<unsigned char> builtin_image(uint32_t& nx, uint32_t& ny) {
    nx = ny = 96;
    std::vector<unsigned char> px(static_cast<size_t>(nx) * ny * 3);
    for (uint32_t y = 0; y < ny; ++y)
        for (uint32_t x = 0; x < nx; ++x) {
            unsigned char r = 235, g = 232, b = 220;
            const int dx = static_cast<int>(x) - 30, dy = static_cast<int>(y) - 32;
            if (dx * dx + dy * dy < 18 * 18) r = 200, g = 30, b = 40;
            if (x >= 58 && x < 88 && y >= 60 && y < 74) r = 30, g = 60, b = 190;
            if ((x / 8) == (y / 8) && ((x / 8) % 2 == 0)) r = g = b = 40;
            unsigned char* p = &px[(static_cast<size_t>(y) * nx + x) * 3];
            p[0] = r, p[1] = g, p[2] = b;
        }
    return px;
}

struct Vision {
    mtmd_context* ctx = nullptr;
    mtmd_bitmap* bitmap = nullptr;
    Vision(const std::filesystem::path& mmproj, const llama_model* text, const std::filesystem::path& image, int threads) {
        static std::once_flag once;
        std::call_once(once, [] { mtmd_helper_log_set(log_to_buffer, nullptr); });
        auto p = mtmd_context_params_default();
        p.use_gpu = false;
        p.print_timings = false;
        p.n_threads = threads;
        p.warmup = false;
        ctx = mtmd_init_from_file(mmproj.c_str(), text, p);
        if (!ctx) fail_input(mmproj.string() + ": llama.cpp cannot load it as a projector for this model: " + last_error());
        if (!mtmd_support_vision(ctx)) fail_input(mmproj.string() + ": this projector has no vision encoder");
        if (image.empty()) {
            uint32_t nx, ny;
            const auto px = builtin_image(nx, ny);
            bitmap = mtmd_bitmap_init(nx, ny, px.data());
        } else {
            bitmap = mtmd_helper_bitmap_init_from_file(ctx, image.c_str(), false, mtmd_helper_init_opt_default()).bitmap;
            if (!bitmap) fail_input(image.string() + ": llama.cpp cannot read it as an image");
        }
    }
    ~Vision() {
        if (bitmap) mtmd_bitmap_free(bitmap);
        if (ctx) mtmd_free(ctx);
    }
    Vision(const Vision&) = delete;
    Vision& operator=(const Vision&) = delete;
};

struct Session {
    std::unique_ptr<ThreadPool> pool;  // before ctx: it outlives the context
    llama_context* ctx = nullptr;
    llama_pos n_past = 0;
    int prompt_tokens = 0;
    ~Session() {
        if (ctx) llama_free(ctx);
    }
};

// A context for prompt + answer, and the prompt evaluated (logits of its last token ready).
void start(Session& s, const Model& m, Vision* v, const std::string& prompt_text, int max_tokens, int threads, const std::string& what) {
    Conversation conv{{"user", v ? std::string(mtmd_default_marker()) + "\n" + prompt_text : prompt_text}};
    const std::string rendered = render_conversation(m.m, conv, true);
    const llama_vocab* vocab = llama_model_get_vocab(m.m);
    auto cp = llama_context_default_params();
    cp.n_ctx = 4096;
    cp.n_batch = 2048;
    cp.n_ubatch = 512;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    if (!v) {
        const int32_t len = static_cast<int32_t>(rendered.size());
        const int n = -llama_tokenize(vocab, rendered.c_str(), len, nullptr, 0, true, true);
        std::vector<llama_token> toks(static_cast<size_t>(std::max(n, 0)));
        if (n <= 0 || llama_tokenize(vocab, rendered.c_str(), len, toks.data(), n, true, true) < 0) fail_input(what + ": cannot tokenize the prompt");
        cp.n_ctx = static_cast<uint32_t>(toks.size() + static_cast<size_t>(max_tokens) + 8);
        cp.n_batch = std::max<uint32_t>(cp.n_ctx, 32);
        s.ctx = llama_init_from_model(m.m, cp);
        if (!s.ctx) fail_input(what + ": llama.cpp cannot make a context: " + last_error());
        s.pool = std::make_unique<ThreadPool>(threads);
        s.pool->attach(s.ctx);
        if (llama_decode(s.ctx, llama_batch_get_one(toks.data(), static_cast<int32_t>(toks.size()))) != 0)
            fail_input(what + ": llama.cpp cannot evaluate the prompt: " + last_error());
        s.n_past = static_cast<llama_pos>(toks.size());
        s.prompt_tokens = static_cast<int>(toks.size());
        return;
    }
    mtmd_input_text in{rendered.c_str(), rendered.size(), true, true};
    mtmd_input_chunks* chunks = mtmd_input_chunks_init();
    const mtmd_bitmap* bm = v->bitmap;
    if (mtmd_tokenize(v->ctx, chunks, &in, &bm, 1) != 0) {
        mtmd_input_chunks_free(chunks);
        fail_input(what + ": llama.cpp cannot prepare the image and prompt: " + last_error());
    }
    const size_t n_tokens = mtmd_helper_get_n_tokens(chunks);
    cp.n_ctx = static_cast<uint32_t>(n_tokens + static_cast<size_t>(max_tokens) + 8);
    cp.n_batch = std::max<uint32_t>(cp.n_ctx, 32);
    cp.n_ubatch = cp.n_batch;  // Gemma 3's image tokens attend to each other: one ubatch
    s.ctx = llama_init_from_model(m.m, cp);
    if (!s.ctx) {
        mtmd_input_chunks_free(chunks);
        fail_input(what + ": llama.cpp cannot make a context: " + last_error());
    }
    s.pool = std::make_unique<ThreadPool>(threads);
    s.pool->attach(s.ctx);
    llama_pos new_past = 0;
    const int32_t rc = mtmd_helper_eval_chunks(v->ctx, s.ctx, chunks, 0, 0, static_cast<int32_t>(cp.n_batch), true, &new_past);
    mtmd_input_chunks_free(chunks);
    if (rc != 0) fail_input(what + ": llama.cpp cannot evaluate the image and prompt: " + last_error());
    s.n_past = new_past;
    s.prompt_tokens = static_cast<int>(n_tokens);
}

std::vector<double> log_softmax(const float* logits, int n) {
    double mx = logits[0];
    for (int i = 1; i < n; ++i) mx = std::max<double>(mx, logits[i]);
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += std::exp(logits[i] - mx);
    const double lse = mx + std::log(sum);
    std::vector<double> out(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) out[static_cast<size_t>(i)] = logits[i] - lse;
    return out;
}

}  // namespace

Generation generate(const GenRequest& r) {
    Model m(r.model);
    const int threads = r.threads > 0 ? r.threads : default_threads();
    std::unique_ptr<Vision> v;
    if (!r.mmproj.empty()) v = std::make_unique<Vision>(r.mmproj, m.m, r.image, threads);
    Session s;
    start(s, m, v.get(), r.prompt, r.max_tokens, threads, r.model.string());
    const llama_vocab* vocab = llama_model_get_vocab(m.m);
    llama_sampler* chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
    if (r.greedy) {
        llama_sampler_chain_add(chain, llama_sampler_init_greedy());
    } else {
        llama_sampler_chain_add(chain, llama_sampler_init_top_k(64));
        llama_sampler_chain_add(chain, llama_sampler_init_top_p(0.95f, 1));
        llama_sampler_chain_add(chain, llama_sampler_init_temp(1.0f));
        llama_sampler_chain_add(chain, llama_sampler_init_dist(r.seed));
    }
    Generation g;
    g.prompt_tokens = s.prompt_tokens;
    for (int i = 0; i < r.max_tokens; ++i) {
        llama_token t = llama_sampler_sample(chain, s.ctx, -1);
        if (llama_vocab_is_eog(vocab, t)) {
            g.ended = true;
            break;
        }
        g.pieces.push_back(piece(vocab, t));
        if (r.stop_on_loop && g.pieces.size() % 8 == 0 && check_generation(g.pieces, false, std::numeric_limits<int>::max()).looping) break;
        llama_batch b = llama_batch_get_one(&t, 1);
        if (llama_decode(s.ctx, b) != 0) {
            llama_sampler_free(chain);
            fail_input(r.model.string() + ": llama.cpp failed while generating: " + last_error());
        }
    }
    llama_sampler_free(chain);
    return g;
}

ImageKld image_kld(const std::filesystem::path& model, const std::filesystem::path& ref_mmproj, const std::filesystem::path& mmproj,
                   const std::filesystem::path& image, const std::string& prompt, int n_tokens, int threads_in) {
    Model m(model);
    const int threads = threads_in > 0 ? threads_in : default_threads();
    const llama_vocab* vocab = llama_model_get_vocab(m.m);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    // the lossless path: the greedy answer and its distributions
    std::vector<llama_token> answer;
    std::vector<std::vector<float>> ref_logits;
    {
        Vision v(ref_mmproj, m.m, image, threads);
        Session s;
        start(s, m, &v, prompt, n_tokens, threads, ref_mmproj.string());
        for (int i = 0; i < n_tokens; ++i) {
            const float* l = llama_get_logits_ith(s.ctx, -1);
            ref_logits.emplace_back(l, l + n_vocab);
            llama_token t = static_cast<llama_token>(std::max_element(l, l + n_vocab) - l);
            if (llama_vocab_is_eog(vocab, t)) break;
            answer.push_back(t);
            if (llama_decode(s.ctx, llama_batch_get_one(&t, 1)) != 0) fail_input(model.string() + ": llama.cpp failed while generating: " + last_error());
        }
    }
    // the variant path, teacher-forced on the same answer
    Vision v(mmproj, m.m, image, threads);
    Session s;
    start(s, m, &v, prompt, n_tokens, threads, mmproj.string());
    ImageKld k;
    size_t same = 0;
    for (size_t i = 0; i < ref_logits.size(); ++i) {
        const float* l = llama_get_logits_ith(s.ctx, -1);
        const auto lp = log_softmax(ref_logits[i].data(), n_vocab), lq = log_softmax(l, n_vocab);
        double kl = 0;
        for (int j = 0; j < n_vocab; ++j) kl += std::exp(lp[static_cast<size_t>(j)]) * (lp[static_cast<size_t>(j)] - lq[static_cast<size_t>(j)]);
        k.mean_kld += kl;
        k.max_kld = std::max(k.max_kld, kl);
        same += (std::max_element(l, l + n_vocab) - l) == (std::max_element(ref_logits[i].begin(), ref_logits[i].end()) - ref_logits[i].begin());
        if (i < answer.size()) {
            llama_token t = answer[i];
            if (llama_decode(s.ctx, llama_batch_get_one(&t, 1)) != 0) fail_input(model.string() + ": llama.cpp failed while scoring: " + last_error());
        }
    }
    k.tokens = static_cast<int>(ref_logits.size());
    if (k.tokens > 0) {
        k.mean_kld /= k.tokens;
        k.same_top_p = 100.0 * static_cast<double>(same) / k.tokens;
    }
    return k;
}

}  // namespace cmf::engine
