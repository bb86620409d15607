// `cmf eval`'s measurement: llama-perplexity --kl-divergence (tools/perplexity/perplexity.cpp of
// the pinned llama.cpp, read for its definitions; written here anew) on the engine. The same
// context, chunking, BOS handling, uint16 compression of the reference's log-probabilities and
// statistics, so the figures equal llama-perplexity's on the same inputs. What differs is only
// the plumbing: the reference's log-probabilities go to an anonymous temporary file, and the
// text can be conversations rendered through the model's chat template.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>

#include "cmf/arch/registry.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "orchestrate/engine/llama_common.h"

namespace cmf::engine {
using namespace detail;

namespace {

// ---------------------------------------------------------------------------------------------
// The text

std::string trim_ws(const std::string& s) {
    size_t a = 0, b = s.size();
    while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
    while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
    return s.substr(a, b - a);
}

// A conversation through the model's chat template as llama.cpp applies it
// (llama_chat_apply_template recognises Gemma's); else through the family's turn rows.
}  // namespace

std::string detail::render_conversation(const llama_model* model, const Conversation& conv, bool add_ass) {
    std::vector<llama_chat_message> msgs;
    for (const auto& t : conv) msgs.push_back({t.role.c_str(), t.content.c_str()});
    if (const char* tmpl = llama_model_chat_template(model, nullptr)) {
        const int32_t n = llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), add_ass, nullptr, 0);
        if (n >= 0) {
            std::string out(static_cast<size_t>(n) + 1, '\0');
            llama_chat_apply_template(tmpl, msgs.data(), msgs.size(), add_ass, out.data(), n + 1);
            out.resize(static_cast<size_t>(n));
            return out;
        }
    }
    char arch[64] = {};
    llama_model_meta_val_str(model, "general.architecture", arch, sizeof arch);
    const arch::ArchSpec* spec = arch::find_spec_by_gguf(arch);
    if (!spec || spec->chat.empty())
        fail_input(std::string("the model (") + arch + ") has no chat template llama.cpp knows and cmf has no turn markup for its family; pass --text FILE");
    const auto& c = spec->chat;
    std::string out, system;
    for (const auto& t : conv) {
        if (t.role == "system" && c.system_into_first_user) {
            system += trim_ws(t.content);
            continue;
        }
        const std::string role = t.role == "assistant" ? std::string(c.assistant_role) : t.role;
        out += std::string(c.turn_open) + role + "\n";
        if (!system.empty() && t.role == "user") {
            out += system + "\n\n";
            system.clear();
        }
        out += trim_ws(t.content) + std::string(c.turn_close);
    }
    if (add_ass) out += std::string(c.turn_open) + std::string(c.assistant_role) + "\n";
    return out;
}

namespace {

std::vector<llama_token> tokenize(const llama_vocab* vocab, const std::string& text, bool add_special, bool parse_special) {
    const int32_t len = static_cast<int32_t>(text.size());
    int32_t n = llama_tokenize(vocab, text.c_str(), len, nullptr, 0, add_special, parse_special);
    if (n == std::numeric_limits<int32_t>::min()) fail_input("the evaluation text is too long to tokenize");
    std::vector<llama_token> toks(static_cast<size_t>(n < 0 ? -n : n));
    n = llama_tokenize(vocab, text.c_str(), len, toks.data(), static_cast<int32_t>(toks.size()), add_special, parse_special);
    if (n < 0) fail_input("llama.cpp cannot tokenize the evaluation text");
    toks.resize(static_cast<size_t>(n));
    return toks;
}

// The text's tokens as llama-perplexity and llama-imatrix tokenize -f FILE (BOS added), or the
// conversations rendered and tokenized with their control tokens.
std::vector<llama_token> tokens_of(const llama_model* m, const EvalText& text) {
    const llama_vocab* vocab = llama_model_get_vocab(m);
    if (text.chat.empty()) return tokenize(vocab, text.raw, true, text.parse_special);
    std::string all;
    for (const auto& c : text.chat) all += render_conversation(m, c, false);
    return tokenize(vocab, all, true, true);
}

// How many chunks of ctx tokens: all the text gives, at most --chunks; at least two chunks'
// worth of tokens (llama-perplexity's and llama-imatrix's rule).
int chunk_count(const std::vector<llama_token>& tokens, const EvalText& text, const EvalSettings& s) {
    if (tokens.size() < 2 * static_cast<size_t>(s.ctx))
        fail(ErrorKind::usage, "the " + text.label + " text is " + std::to_string(tokens.size()) + " tokens; --ctx " + std::to_string(s.ctx) +
                                   " needs at least " + std::to_string(2 * s.ctx) + " (a longer --text or a smaller --ctx)");
    const int n_chunk_max = static_cast<int>(tokens.size() / static_cast<size_t>(s.ctx));
    return s.chunks < 0 ? n_chunk_max : std::min(s.chunks, n_chunk_max);
}

// ---------------------------------------------------------------------------------------------
// The model's identity: a variant must be the same model with the same vocabulary

struct Identity {
    std::string arch;
    int32_t n_embd = 0, n_layer = 0, n_vocab = 0;
    uint64_t vocab_hash = 1469598103934665603ull;  // FNV-1a over every token's text and attributes
};

Identity identity(const llama_model* m) {
    Identity id;
    char buf[64] = {};
    llama_model_meta_val_str(m, "general.architecture", buf, sizeof buf);
    id.arch = buf;
    id.n_embd = llama_model_n_embd(m);
    id.n_layer = llama_model_n_layer(m);
    const llama_vocab* v = llama_model_get_vocab(m);
    id.n_vocab = llama_vocab_n_tokens(v);
    auto mix = [&](const void* p, size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        for (size_t i = 0; i < n; ++i) id.vocab_hash = (id.vocab_hash ^ b[i]) * 1099511628211ull;
    };
    for (llama_token t = 0; t < id.n_vocab; ++t) {
        const char* s = llama_vocab_get_text(v, t);
        mix(s, std::strlen(s) + 1);
        const int a = llama_vocab_get_attr(v, t);
        mix(&a, sizeof a);
    }
    return id;
}

// ---------------------------------------------------------------------------------------------
// Contexts as llama-perplexity makes them: n_seq = max(1, batch/ctx) sequences of ctx tokens,
// the context n_seq*ctx, n_batch min(batch, that), n_ubatch 512, flash attention AUTO, F16 KV
// cache, one KV stream per sequence (common_params' defaults through common_context_params_to_llama).

struct Context {
    ThreadPool pool;
    llama_context* c = nullptr;
    int n_seq = 1, n_batch = 0;
    Context(const Model& m, const std::filesystem::path& path, const EvalSettings& s, ggml_backend_sched_eval_callback cb = nullptr,
            void* cb_data = nullptr)
        : pool(s.threads > 0 ? s.threads : default_threads()) {
        n_seq = std::max(1, s.batch / s.ctx);
        auto cp = llama_context_default_params();
        cp.n_ctx = static_cast<uint32_t>(n_seq * s.ctx);
        cp.n_seq_max = static_cast<uint32_t>(n_seq);
        n_batch = std::min(s.batch, n_seq * s.ctx);
        cp.n_batch = static_cast<uint32_t>(n_batch);
        cp.n_ubatch = 512;
        cp.n_outputs_max = 0;
        cp.n_outputs_max_per_seq = 1;
        const int threads = s.threads > 0 ? s.threads : default_threads();
        cp.n_threads = threads;
        cp.n_threads_batch = threads;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
        cp.type_k = GGML_TYPE_F16;
        cp.type_v = GGML_TYPE_F16;
        cp.kv_unified = false;
        cp.swa_full = false;
        cp.no_perf = true;
        cp.cb_eval = cb;
        cp.cb_eval_user_data = cb_data;
        c = llama_init_from_model(m.m, cp);
        if (!c) fail_input(path.string() + ": llama.cpp cannot make a context: " + last_error());
        pool.attach(c);
    }
    ~Context() {
        if (c) llama_free(c);
    }
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;
};

struct Batch {
    llama_batch b;
    explicit Batch(int n) : b(llama_batch_init(n, 0, 1)) {}
    ~Batch() { llama_batch_free(b); }
    void add(llama_token t, llama_pos pos, llama_seq_id seq, bool logits) {
        const int i = b.n_tokens++;
        b.token[i] = t;
        b.pos[i] = pos;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = seq;
        b.logits[i] = logits;
    }
};

// Runs chunk group i (n_seq_batch sequences from chunk i) and hands `use(seq, logits)` the
// logits of positions first..ctx-1 of each sequence, row after row.
// With all_outputs (llama-imatrix) every position's logits are requested, so the last layer
// computes every row, and `use` is not called.
template <class Use>
void run_chunks(Context& cx, const llama_vocab* vocab, std::vector<llama_token>& tokens, int ctx, int i, int n_seq_batch,
                size_t n_vocab, std::vector<float>& gathered, const std::string& what, Use&& use, bool all_outputs = false) {
    const bool add_bos = llama_vocab_get_add_bos(vocab);
    const int first = ctx / 2;
    const int num_batches = (ctx + cx.n_batch - 1) / cx.n_batch;
    const int start = i * ctx, end = start + ctx;
    Batch batch(std::min(cx.n_batch, ctx * cx.n_seq));
    llama_memory_clear(llama_get_memory(cx.c), true);
    gathered.clear();
    for (int j = 0; j < num_batches; ++j) {
        const int batch_start = start + j * cx.n_batch;
        const int batch_size = std::min(end - batch_start, cx.n_batch);
        int n_outputs = 0;
        batch.b.n_tokens = 0;
        for (int seq = 0; seq < n_seq_batch; ++seq) {
            const int seq_start = batch_start + seq * ctx;
            const llama_token org = tokens[static_cast<size_t>(seq_start)];
            if (add_bos && j == 0) tokens[static_cast<size_t>(seq_start)] = llama_vocab_bos(vocab);
            for (int k = 0; k < batch_size; ++k) {
                const int pos = j * cx.n_batch + k;
                batch.add(tokens[static_cast<size_t>(seq_start + k)], pos, seq, all_outputs || pos >= first);
                n_outputs += pos >= first;
            }
            tokens[static_cast<size_t>(seq_start)] = org;
        }
        if (llama_decode(cx.c, batch.b) != 0) fail_input(what + ": llama.cpp failed to evaluate a chunk: " + last_error());
        if (num_batches > 1 && n_outputs > 0 && !all_outputs) {
            const float* l = llama_get_logits(cx.c);
            gathered.insert(gathered.end(), l, l + static_cast<size_t>(n_outputs) * n_vocab);
        }
    }
    if (all_outputs) return;
    for (int seq = 0; seq < n_seq_batch; ++seq) {
        const float* logits = num_batches > 1 ? gathered.data() : llama_get_logits_ith(cx.c, seq * ctx + first);
        use(seq, logits);
    }
}

// Work items 0..n-1 shared by hardware_concurrency threads, as llama-perplexity spreads a
// chunk's tokens; `merge` folds each thread's partial result in under the lock.
template <class Local, class Item, class Merge>
void parallel_tokens(int n, Item&& item, Merge&& merge) {
    std::mutex mu;
    int counter = 0;
    auto work = [&] {
        Local local;
        while (true) {
            std::unique_lock<std::mutex> lock(mu);
            const int i = counter++;
            if (i >= n) {
                merge(local);
                break;
            }
            lock.unlock();
            item(i, local);
        }
    };
    std::vector<std::thread> workers(std::max(1u, std::thread::hardware_concurrency()) - 1);
    for (auto& w : workers) w = std::thread(work);
    work();
    for (auto& w : workers) w.join();
}

inline int nearest_int(float fval) {
    const float val = fval + 12582912.f;
    int i;
    std::memcpy(&i, &val, sizeof(int));
    return (i & 0x007fffff) - 0x00400000;
}

// The reference's row: the log-probabilities compressed to uint16 after a header of two floats
// (scale, min_log_prob), the logits below max-16 clamped; returns the token's negative log-likelihood.
double compress_log_probs(int n_vocab, const float* logits, uint16_t* out, int tok) {
    float max_logit = logits[0], min_logit = logits[0];
    for (int i = 1; i < n_vocab; ++i) {
        max_logit = std::max(max_logit, logits[i]);
        min_logit = std::min(min_logit, logits[i]);
    }
    min_logit = std::max(min_logit, max_logit - 16);
    double sum_exp = 0.0;
    for (int i = 0; i < n_vocab; ++i) sum_exp += expf(logits[i] - max_logit);
    const float log_sum_exp = static_cast<float>(std::log(sum_exp));
    const float min_log_prob = min_logit - max_logit - log_sum_exp;
    const float scale = (max_logit - min_logit) / 65535.f;
    std::memcpy(out, &scale, sizeof(float));
    std::memcpy(out + 2, &min_log_prob, sizeof(float));
    uint16_t* q = out + 4;
    if (scale != 0.f) {
        const float inv_scale = 1 / scale;
        for (int i = 0; i < n_vocab; ++i)
            q[i] = logits[i] > min_logit ? static_cast<uint16_t>(nearest_int(inv_scale * (logits[i] - min_logit))) : 0;
    } else {
        std::memset(q, 0, static_cast<size_t>(n_vocab) * sizeof(uint16_t));
    }
    return max_logit + log_sum_exp - logits[tok];
}

struct Sums {
    double sum_nll = 0, sum_nll2 = 0, sum_nll_base = 0, sum_nll_base2 = 0, sum_nll_nll_base = 0;
    double sum_kld = 0, sum_kld2 = 0, sum_p_diff = 0, sum_p_diff2 = 0, sum_p_diff4 = 0;
    float max_p_diff = 0;
    size_t n_same_top = 0, count = 0;
    void add(const Sums& o) {
        sum_nll += o.sum_nll;
        sum_nll2 += o.sum_nll2;
        sum_nll_base += o.sum_nll_base;
        sum_nll_base2 += o.sum_nll_base2;
        sum_nll_nll_base += o.sum_nll_nll_base;
        sum_kld += o.sum_kld;
        sum_kld2 += o.sum_kld2;
        sum_p_diff += o.sum_p_diff;
        sum_p_diff2 += o.sum_p_diff2;
        sum_p_diff4 += o.sum_p_diff4;
        n_same_top += o.n_same_top;
        max_p_diff = std::max(max_p_diff, o.max_p_diff);
        count += o.count;
    }
};

// One token of the variant against the reference's compressed row: its KLD and Δp, with the
// float/double mix of llama-perplexity's arithmetic.
std::pair<double, float> kld_token(int n_vocab, const float* logits, const uint16_t* base, int tok, Sums& k) {
    float max_logit = logits[0];
    int imax = 0;
    for (int i = 1; i < n_vocab; ++i)
        if (logits[i] > max_logit) {
            max_logit = logits[i];
            imax = i;
        }
    double sum_exp = 0.0;
    for (int i = 0; i < n_vocab; ++i) sum_exp += expf(logits[i] - max_logit);
    const float log_sum_exp = static_cast<float>(std::log(sum_exp));
    float scale, min_log_prob;
    std::memcpy(&scale, base, sizeof(float));
    std::memcpy(&min_log_prob, base + 2, sizeof(float));
    base += 4;
    const float nll = max_logit + log_sum_exp - logits[tok];
    k.sum_nll += nll;
    k.sum_nll2 += nll * nll;
    const float nll_base = -(scale * base[tok] + min_log_prob);
    k.sum_nll_base += nll_base;
    k.sum_nll_base2 += nll_base * nll_base;
    k.sum_nll_nll_base += nll * nll_base;
    max_logit += log_sum_exp;
    double sum = 0;
    int imax_base = -1;
    float p_log_base_max = 0;
    for (int i = 0; i < n_vocab; ++i) {
        const float p_log_base = scale * base[i] + min_log_prob;
        if (i == 0 || p_log_base > p_log_base_max) {
            p_log_base_max = p_log_base;
            imax_base = i;
        }
        if (p_log_base > -16.f) {
            const float p_base = expf(p_log_base);
            sum += p_base * (p_log_base - logits[i] + max_logit);
        }
    }
    k.sum_kld += sum;
    k.sum_kld2 += sum * sum;
    ++k.count;
    if (imax == imax_base) ++k.n_same_top;
    const float p_base = expf(-nll_base);
    const float p = expf(-nll);
    const float p_diff = p - p_base;
    k.sum_p_diff += p_diff;
    const double p_diff2 = p_diff * p_diff;
    k.sum_p_diff2 += p_diff2;
    k.sum_p_diff4 += p_diff2 * p_diff2;
    k.max_p_diff = std::max(k.max_p_diff, std::fabs(p_diff));
    return {sum, p_diff};
}

std::pair<double, double> mean_and_uncertainty(double sum, double sum2, size_t count) {
    if (count < 1) return {0., 0.};
    const double f = sum / count;
    double df = sum2 / count - f * f;
    df = df > 0 && count > 10 ? std::sqrt(df / (count - 1)) : 0.;
    return {f, df};
}

double covariance(double suma, double sumb, double sumab, size_t count) {
    if (count < 10) return 0.0;
    double var = sumab / count - (suma / count) * (sumb / count);
    return var / (count - 1);
}

float percentile(const std::vector<float>& v, float fraction) {
    if (fraction <= 0) return v.front();
    if (fraction >= 1) return v.back();
    float p = fraction * (v.size() - 1);
    const size_t ip = static_cast<size_t>(p);
    p -= ip;
    return (1 - p) * v[ip] + p * v[std::min(ip + 1, v.size() - 1)];
}

float median(const std::vector<float>& v) {
    return v.size() % 2 == 0 ? 0.5f * (v[v.size() / 2] + v[v.size() / 2 - 1]) : v[v.size() / 2];
}

// An anonymous file for the reference's rows: O_TMPFILE in $TMPDIR (else /tmp, /var/tmp, or the
// working directory where there is neither, as in an empty chroot), else a name unlinked at once.
// Nothing to clean up, whatever ends the process.
int anonymous_file() {
    const char* d = std::getenv("TMPDIR");
    std::string dir = d && *d ? d : "";
    for (const char* c : {"/tmp", "/var/tmp", "."})
        if (dir.empty() && ::access(c, W_OK) == 0) dir = c;
    if (dir.empty()) dir = ".";
    int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0) return fd;
    std::string tmpl = dir + "/cmf-eval-XXXXXX";
    fd = ::mkstemp(tmpl.data());
    if (fd < 0) fail(ErrorKind::io, "cannot make a temporary file in " + dir + ": " + std::strerror(errno));
    ::unlink(tmpl.c_str());
    return fd;
}

void write_all(int fd, const void* p, size_t n, off_t at) {
    const char* b = static_cast<const char*>(p);
    while (n > 0) {
        const ssize_t w = ::pwrite(fd, b, n, at);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) fail(ErrorKind::io, std::string("cannot keep the reference's log-probabilities in the temporary directory: ") + std::strerror(errno));
        b += w;
        n -= static_cast<size_t>(w);
        at += w;
    }
}

void read_all(int fd, void* p, size_t n, off_t at) {
    char* b = static_cast<char*>(p);
    while (n > 0) {
        const ssize_t r = ::pread(fd, b, n, at);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) fail(ErrorKind::io, "cannot read back the reference's log-probabilities");
        b += r;
        n -= static_cast<size_t>(r);
        at += r;
    }
}

}  // namespace

std::string render_text(const std::filesystem::path& gguf, const EvalText& text) {
    if (text.chat.empty()) return text.raw;
    Model m(gguf);
    std::string all;
    for (const auto& c : text.chat) all += render_conversation(m.m, c, false);
    return all;
}

struct Reference::Impl {
    std::filesystem::path ref;
    EvalSettings settings;
    Identity id;
    std::vector<llama_token> tokens;  // the whole text's tokens
    int n_chunk = 0;
    int fd = -1;
    size_t nv = 0;  // uint16 per scored token
    double nll = 0;
    size_t count = 0;
    ~Impl() {
        if (fd >= 0) ::close(fd);
    }
};

Reference::Reference(const std::filesystem::path& ref_gguf, const EvalText& text, const EvalSettings& settings)
    : impl_(std::make_unique<Impl>()) {
    auto& I = *impl_;
    I.ref = ref_gguf;
    I.settings = settings;
    if (settings.ctx < 4) fail(ErrorKind::usage, "--ctx must be at least 4");
    if (settings.batch < 1 || (settings.batch >= settings.ctx && settings.batch % settings.ctx != 0))
        fail(ErrorKind::usage, "the batch size must be below --ctx or a multiple of it (llama-perplexity's rule)");
    Model m(ref_gguf);
    const llama_vocab* vocab = llama_model_get_vocab(m.m);
    if (llama_vocab_get_add_eos(vocab)) fail_input(ref_gguf.string() + ": its vocabulary appends EOS to every text, which llama-perplexity refuses");
    I.id = identity(m.m);
    I.tokens = tokens_of(m.m, text);
    const int ctx = settings.ctx;
    I.n_chunk = chunk_count(I.tokens, text, settings);
    const int first = ctx / 2;
    if (static_cast<size_t>(I.n_chunk) * static_cast<size_t>(ctx - 1 - first) < 100)
        fail(ErrorKind::usage, "too few scored tokens for statistics (llama-perplexity needs 100): more --chunks or a larger --ctx");
    const int n_vocab = I.id.n_vocab;
    I.nv = static_cast<size_t>(2 * ((n_vocab + 1) / 2) + 4);
    I.fd = anonymous_file();
    Context cx(m, ref_gguf, settings);
    std::vector<float> gathered;
    std::vector<uint16_t> rows(static_cast<size_t>(ctx - 1 - first) * I.nv);
    off_t at = 0;
    for (int i = 0; i < I.n_chunk; i += cx.n_seq) {
        const int n_seq_batch = std::min(cx.n_seq, I.n_chunk - i);
        run_chunks(cx, vocab, I.tokens, ctx, i, n_seq_batch, static_cast<size_t>(n_vocab), gathered, ref_gguf.string(),
                   [&](int seq, const float* logits) {
                       const llama_token* toks = I.tokens.data() + static_cast<size_t>((i + seq) * ctx + first);
                       struct Local {
                           double nll = 0;
                       };
                       parallel_tokens<Local>(
                           ctx - 1 - first,
                           [&](int k, Local& l) {
                               l.nll += compress_log_probs(n_vocab, logits + static_cast<size_t>(k) * n_vocab,
                                                           rows.data() + static_cast<size_t>(k) * I.nv, toks[k + 1]);
                           },
                           [&](const Local& l) { I.nll += l.nll; });
                       I.count += static_cast<size_t>(ctx - 1 - first);
                       write_all(I.fd, rows.data(), rows.size() * sizeof(uint16_t), at);
                       at += static_cast<off_t>(rows.size() * sizeof(uint16_t));
                   });
    }
}

Reference::~Reference() = default;

size_t Reference::text_tokens() const { return impl_->tokens.size(); }
int Reference::chunks() const { return impl_->n_chunk; }
double Reference::ppl() const { return impl_->count ? std::exp(impl_->nll / impl_->count) : 0.0; }

KldStats Reference::compare(const std::filesystem::path& variant_gguf) const {
    const auto& I = *impl_;
    Model m(variant_gguf);
    const Identity id = identity(m.m);
    const std::string v = variant_gguf.string(), r = I.ref.string();
    if (id.arch != I.id.arch || id.n_embd != I.id.n_embd || id.n_layer != I.id.n_layer)
        fail_input(v + " is a different model than the reference " + r + " (" + id.arch + ", " + std::to_string(id.n_layer) + " layers, width " +
                   std::to_string(id.n_embd) + " vs " + I.id.arch + ", " + std::to_string(I.id.n_layer) + " layers, width " + std::to_string(I.id.n_embd) + ")");
    if (id.n_vocab != I.id.n_vocab || id.vocab_hash != I.id.vocab_hash)
        fail_input(v + " has a different vocabulary than the reference " + r + " (" + std::to_string(id.n_vocab) + " vs " +
                   std::to_string(I.id.n_vocab) + " tokens" + (id.n_vocab == I.id.n_vocab ? ", different token texts" : "") + ")");
    const llama_vocab* vocab = llama_model_get_vocab(m.m);
    const int ctx = I.settings.ctx, first = ctx / 2, n_vocab = id.n_vocab;
    Context cx(m, variant_gguf, I.settings);
    std::vector<llama_token> tokens = I.tokens;
    std::vector<float> gathered, kld_values, p_diff_values;
    const size_t per = static_cast<size_t>(ctx - 1 - first);
    kld_values.resize(per * static_cast<size_t>(I.n_chunk));
    p_diff_values.resize(kld_values.size());
    std::vector<uint16_t> rows(per * I.nv);
    Sums k;
    off_t at = 0;
    for (int i = 0; i < I.n_chunk; i += cx.n_seq) {
        const int n_seq_batch = std::min(cx.n_seq, I.n_chunk - i);
        run_chunks(cx, vocab, tokens, ctx, i, n_seq_batch, static_cast<size_t>(n_vocab), gathered, v, [&](int seq, const float* logits) {
            read_all(I.fd, rows.data(), rows.size() * sizeof(uint16_t), at);
            at += static_cast<off_t>(rows.size() * sizeof(uint16_t));
            const size_t chunk = static_cast<size_t>(i + seq);
            const llama_token* toks = tokens.data() + chunk * static_cast<size_t>(ctx) + static_cast<size_t>(first);
            float* kv = kld_values.data() + chunk * per;
            float* pv = p_diff_values.data() + chunk * per;
            parallel_tokens<Sums>(
                static_cast<int>(per),
                [&](int t, Sums& l) {
                    const auto r2 = kld_token(n_vocab, logits + static_cast<size_t>(t) * n_vocab, rows.data() + static_cast<size_t>(t) * I.nv,
                                              toks[t + 1], l);
                    kv[t] = static_cast<float>(r2.first);
                    pv[t] = r2.second;
                },
                [&](const Sums& l) { k.add(l); });
        });
    }
    std::sort(kld_values.begin(), kld_values.end());
    std::sort(p_diff_values.begin(), p_diff_values.end());

    KldStats s;
    s.tokens = k.count;
    s.chunks = I.n_chunk;
    const auto log_ppl = mean_and_uncertainty(k.sum_nll, k.sum_nll2, k.count);
    s.ppl = std::exp(log_ppl.first);
    s.ppl_unc = s.ppl * log_ppl.second;
    const auto log_ppl_base = mean_and_uncertainty(k.sum_nll_base, k.sum_nll_base2, k.count);
    s.ppl_base = std::exp(log_ppl_base.first);
    s.ppl_base_unc = s.ppl_base * log_ppl_base.second;
    const double cov = covariance(k.sum_nll, k.sum_nll_base, k.sum_nll_nll_base, k.count);
    s.cor = 100.0 * cov / (log_ppl.second * log_ppl_base.second);
    s.ln_ratio = log_ppl.first - log_ppl_base.first;
    s.ln_ratio_unc = std::sqrt(log_ppl.second * log_ppl.second + log_ppl_base.second * log_ppl_base.second - 2.0 * cov);
    s.ppl_ratio = std::exp(s.ln_ratio);
    s.ppl_ratio_unc = s.ppl_ratio * s.ln_ratio_unc;
    const double ppl_cov = s.ppl * s.ppl_base * cov;
    s.ppl_diff = s.ppl - s.ppl_base;
    s.ppl_diff_unc = std::sqrt(s.ppl_unc * s.ppl_unc + s.ppl_base_unc * s.ppl_base_unc - 2.0 * ppl_cov);
    const auto kl = mean_and_uncertainty(k.sum_kld, k.sum_kld2, k.count);
    s.mean_kld = kl.first;
    s.mean_kld_unc = kl.second;
    s.max_kld = kld_values.back();
    s.p999_kld = percentile(kld_values, 0.999f);
    s.p99_kld = percentile(kld_values, 0.990f);
    s.p95_kld = percentile(kld_values, 0.950f);
    s.p90_kld = percentile(kld_values, 0.900f);
    s.median_kld = median(kld_values);
    s.p10_kld = percentile(kld_values, 0.100f);
    s.p5_kld = percentile(kld_values, 0.050f);
    s.p1_kld = percentile(kld_values, 0.010f);
    s.p01_kld = percentile(kld_values, 0.001f);
    s.min_kld = kld_values.front();
    const auto dp = mean_and_uncertainty(k.sum_p_diff, k.sum_p_diff2, k.count);
    s.mean_dp = 100.0 * dp.first;
    s.mean_dp_unc = 100.0 * dp.second;
    s.max_dp = 100.0 * p_diff_values.back();
    s.p999_dp = 100.0 * percentile(p_diff_values, 0.999f);
    s.p99_dp = 100.0 * percentile(p_diff_values, 0.990f);
    s.p95_dp = 100.0 * percentile(p_diff_values, 0.950f);
    s.p90_dp = 100.0 * percentile(p_diff_values, 0.900f);
    s.p75_dp = 100.0 * percentile(p_diff_values, 0.750f);
    s.median_dp = 100.0 * median(p_diff_values);
    s.p25_dp = 100.0 * percentile(p_diff_values, 0.250f);
    s.p10_dp = 100.0 * percentile(p_diff_values, 0.100f);
    s.p5_dp = 100.0 * percentile(p_diff_values, 0.050f);
    s.p1_dp = 100.0 * percentile(p_diff_values, 0.010f);
    s.p01_dp = 100.0 * percentile(p_diff_values, 0.001f);
    s.min_dp = 100.0 * p_diff_values.front();
    const auto mse = mean_and_uncertainty(k.sum_p_diff2, k.sum_p_diff4, k.count);
    const double rms = std::sqrt(mse.first);
    s.rms_dp = 100.0 * rms;
    s.rms_dp_unc = 100.0 * (0.5 / rms * mse.second);
    const double top = 1.0 * k.n_same_top / k.count;
    s.same_top_p = 100.0 * top;
    s.same_top_p_unc = 100.0 * std::sqrt(top * (1.0 - top) / (k.count - 1));
    return s;
}

// ---------------------------------------------------------------------------------------------
// llama-imatrix's collector: the scheduler asks about every node; matrix multiplications of a
// block weight (or output.weight) with at least 16 F32 rows are collected.

namespace {

struct Collector {
    Imatrix out;
    bool process_output = false;
    int chunk_size = 0;
    int last_chunk = 0;
    std::vector<char> src1_copy, ids_copy;
    std::string error;

    static std::string weight_name(const char* name) {  // "CUDA0#blk.0.attn_k.weight#0" -> "blk.0.attn_k.weight"
        const char* p = std::strchr(name, '#');
        if (!p) return name;
        ++p;
        const char* q = std::strchr(p, '#');
        return q ? std::string(p, static_cast<size_t>(q - p)) : std::string(p);
    }
    void note_chunks(int64_t count) {
        const int n = static_cast<int>(count / chunk_size);
        if (n > last_chunk) last_chunk = n;
    }
    bool collect(ggml_tensor* t, bool ask) {
        const ggml_tensor* src0 = t->src[0];
        const ggml_tensor* src1 = t->src[1];
        const std::string wname = weight_name(src0 ? src0->name : "");
        if (ask) {
            if (t->op == GGML_OP_MUL_MAT_ID) return true;
            if (t->op != GGML_OP_MUL_MAT) return false;
            if (src1->ne[1] < 16 || src1->type != GGML_TYPE_F32) return false;
            return wname.compare(0, 4, "blk.") == 0 || (process_output && wname == "output.weight");
        }
        if (!error.empty()) return false;
        const char* data = static_cast<const char*>(src1->data);
        if (!ggml_backend_buffer_is_host(src1->buffer)) {
            src1_copy.resize(ggml_nbytes(src1));
            ggml_backend_tensor_get(src1, src1_copy.data(), 0, src1_copy.size());
            data = src1_copy.data();
        }
        auto& e = out.entries[wname];
        if (t->op == GGML_OP_MUL_MAT_ID) {
            const ggml_tensor* ids = t->src[2];
            const int64_t n_as = src0->ne[2], n_ids = ids->ne[0];
            if (ggml_nrows(src1) != src1->ne[1] * src1->ne[2]) {
                error = wname + ": activations of more than 3 dimensions";
                return false;
            }
            ids_copy.resize(ggml_nbytes(ids));
            ggml_backend_tensor_get(ids, ids_copy.data(), 0, ids_copy.size());
            if (e.counts.size() == 1 && n_as > 1) e.counts.resize(static_cast<size_t>(n_as), e.counts[0]);
            if (e.in_sum2.empty()) {
                e.in_sum2.assign(static_cast<size_t>(src1->ne[0] * n_as), 0.f);
                e.counts.assign(static_cast<size_t>(n_as), 0);
            } else if (e.in_sum2.size() != static_cast<size_t>(src1->ne[0] * n_as) || e.counts.size() != static_cast<size_t>(n_as)) {
                error = wname + ": inconsistent sizes between calls";
                return false;
            }
            const int64_t ne0 = src1->ne[0], n_tokens = src1->ne[2];
            for (int64_t idx = 0; idx < n_ids; ++idx)
                for (int64_t row = 0; row < n_tokens; ++row) {
                    int32_t ex;
                    std::memcpy(&ex, ids_copy.data() + row * ids->nb[1] + idx * ids->nb[0], sizeof ex);
                    if (ex < 0 || ex >= n_as) {
                        error = wname + ": expert id out of range";
                        return false;
                    }
                    const int64_t i11 = idx % src1->ne[1];
                    const float* x = reinterpret_cast<const float*>(data + i11 * src1->nb[1] + row * src1->nb[2]);
                    float* acc = e.in_sum2.data() + ex * ne0;
                    e.counts[static_cast<size_t>(ex)]++;
                    for (int64_t j = 0; j < ne0; ++j) acc[j] += x[j] * x[j];
                }
            for (float v : e.in_sum2)
                if (!std::isfinite(v)) {
                    error = "non-finite activations in " + wname;
                    return false;
                }
            for (int64_t c : e.counts) note_chunks(c);
        } else {
            const int64_t n_mat = src0->ne[2] * src0->ne[3];
            if (e.counts.size() > 1 && std::all_of(e.counts.begin(), e.counts.end(), [&](int64_t c) { return c == e.counts[0]; }))
                e.counts.resize(1);
            if (e.in_sum2.empty()) {
                e.in_sum2.assign(static_cast<size_t>(src1->ne[0] * n_mat), 0.f);
                e.counts.assign(1, 0);
            } else if (e.in_sum2.size() != static_cast<size_t>(src1->ne[0] * n_mat)) {
                error = wname + ": inconsistent sizes between calls";
                return false;
            }
            const int64_t ne0 = src1->ne[0];
            for (int64_t i3 = 0; i3 < src1->ne[3]; ++i3)
                for (int64_t i2 = 0; i2 < src1->ne[2]; ++i2) {
                    const int64_t mat_id = (i3 % src0->ne[3]) * src0->ne[2] + (i2 % src0->ne[2]);
                    float* acc = e.in_sum2.data() + mat_id * ne0;
                    for (int64_t row = 0; row < src1->ne[1]; ++row) {
                        const float* x = reinterpret_cast<const float*>(data + row * src1->nb[1] + i2 * src1->nb[2] + i3 * src1->nb[3]);
                        for (int64_t j = 0; j < ne0; ++j) acc[j] += x[j] * x[j];
                    }
                }
            for (float v : e.in_sum2)
                if (!std::isfinite(v)) {
                    error = "non-finite activations in " + wname;
                    return false;
                }
            for (auto& c : e.counts) {
                c += ggml_nrows(src1) / n_mat;
                note_chunks(c);
            }
        }
        return true;
    }
    static bool callback(ggml_tensor* t, bool ask, void* self) { return static_cast<Collector*>(self)->collect(t, ask); }
};

}  // namespace

Imatrix collect_imatrix(const std::filesystem::path& gguf, const EvalText& text, const EvalSettings& settings, bool process_output) {
    if (settings.ctx < 4) fail(ErrorKind::usage, "--ctx must be at least 4");
    if (settings.batch < 1 || (settings.batch >= settings.ctx && settings.batch % settings.ctx != 0))
        fail(ErrorKind::usage, "the batch size must be below --ctx or a multiple of it (llama-imatrix's rule)");
    Model m(gguf);
    const llama_vocab* vocab = llama_model_get_vocab(m.m);
    if (llama_vocab_get_add_eos(vocab)) fail_input(gguf.string() + ": its vocabulary appends EOS to every text, which llama-imatrix refuses");
    std::vector<llama_token> tokens = tokens_of(m.m, text);
    const int n_chunk = chunk_count(tokens, text, settings);
    Collector col;
    col.process_output = process_output;
    col.chunk_size = settings.ctx;
    Context cx(m, gguf, settings, Collector::callback, &col);
    std::vector<float> gathered;
    const size_t n_vocab = static_cast<size_t>(llama_vocab_n_tokens(vocab));
    for (int i = 0; i < n_chunk; i += cx.n_seq) {
        const int n_seq_batch = std::min(cx.n_seq, n_chunk - i);
        run_chunks(cx, vocab, tokens, settings.ctx, i, n_seq_batch, n_vocab, gathered, gguf.string(), [](int, const float*) {}, true);
        if (!col.error.empty()) fail_input(gguf.string() + ": " + col.error);
    }
    llama_synchronize(cx.c);
    if (!col.error.empty()) fail_input(gguf.string() + ": " + col.error);
    col.out.chunk_count = static_cast<uint32_t>(col.last_chunk);
    col.out.chunk_size = static_cast<uint32_t>(settings.ctx);
    return std::move(col.out);
}

}  // namespace cmf::engine
