// Streaming execution of a conversion: every source tensor is read once, in bounded row chunks,
// widened to F32 (with its transform), and encoded into every output file that holds it, written
// with pwrite at offsets the layout fixed in advance. Workers take chunks from a shared counter,
// so the bytes written never depend on the number of threads or their timing.
//
// Memory: each worker holds one chunk of F32 rows plus one encoded copy at a time
// (kChunkElements floats), so peak memory is threads x ~(4 + 4) x kChunkElements bytes, whatever
// the model size.
#pragma once

#include <algorithm>
#include <cmath>
#include <atomic>
#include <chrono>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "cmf/arch/transform.h"
#include "cmf/format/gguf.h"
#include "cmf/format/safetensors.h"
#include "cmf/pipeline/lora_merge.h"
#include "cmf/quant/half.h"
#include "cmf/quant/quantize.h"
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

namespace cmf {

// 1 Mi elements per chunk: 4 MiB of F32, large enough for sequential reads to stream at disk
// speed, small enough that two workers stay far below the 512 MiB budget.
inline constexpr uint64_t kChunkElements = 1ull << 20;

// Error of the encoded values against the F32 source (accumulated over rows).
struct ErrorStat {
    double sum_sq_err = 0, sum_sq_ref = 0, max_abs = 0;
    uint64_t n = 0;
    void merge(const ErrorStat& o) {
        sum_sq_err += o.sum_sq_err;
        sum_sq_ref += o.sum_sq_ref;
        max_abs = std::max(max_abs, o.max_abs);
        n += o.n;
    }
    // sqrt(sum (q - x)^2 / sum x^2): 0 for a lossless copy
    double relative_rms() const { return sum_sq_ref > 0 ? std::sqrt(sum_sq_err / sum_sq_ref) : (sum_sq_err > 0 ? INFINITY : 0.0); }
};

// One place a source tensor goes: a tensor of one output file.
struct TensorSink {
    GgufOutput* file = nullptr;
    uint64_t data_offset = 0;  // absolute offset of the tensor's first byte
    GgmlType type = GgmlType::F32;
    const float* imatrix = nullptr;  // per-column importance, or null
    ErrorStat* stats = nullptr;      // if set, receives the error of this tensor (merged in row order)
    bool without_lora = false;       // the base weights: the task's LoRA terms are not merged here
};

// Where a task's rows come from, in output row order: rows of a checkpoint tensor (from row
// src_row0), zero rows (padding), or values generated from the config. Checkpoint rows may have
// LoRA terms merged into them first (pipeline/lora_merge.h), before the transform.
struct TaskSegment {
    const StTensor* src = nullptr;  // null: zeros, or `values` when set
    uint64_t src_row0 = 0;
    uint64_t rows = 0;
    const std::vector<float>* values = nullptr;  // generated: rows * row_len values
    const LoraTerms* lora = nullptr;  // adapters merged into the src rows (--lora), in order
};

// One output tensor and what to do with it: its rows, segment by segment (most tensors are one
// segment of one checkpoint tensor; stacked tensors are several; padded ones end in zeros).
struct TensorTask {
    std::vector<TaskSegment> segments;
    uint64_t row_len = 0;       // elements per row (innermost dimension)
    TensorTransform transform;  // applied after widening, in the source dtype's arithmetic
    std::vector<TensorSink> sinks;

    uint64_t rows() const {
        uint64_t n = 0;
        for (const auto& s : segments) n += s.rows;
        return n;
    }
    // single-segment task over `rows` rows of `src`
    static TensorTask of(const StTensor* src, uint64_t rows, uint64_t row_len, TensorTransform t = {}) {
        TensorTask k;
        k.segments.push_back({src, 0, rows, nullptr});
        k.row_len = row_len;
        k.transform = t;
        return k;
    }
};

// Widens n source elements to F32, exactly (BF16 and F16 are subsets of F32).
inline void widen_to_f32(StDtype dt, const void* src, float* dst, uint64_t n) {
    switch (dt) {
        case StDtype::F32: std::memcpy(dst, src, n * 4); return;
        case StDtype::BF16: {
            const auto* s = static_cast<const uint16_t*>(src);
            for (uint64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
            return;
        }
        case StDtype::F16: {
            const auto* s = static_cast<const uint16_t*>(src);
            for (uint64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
            return;
        }
        default: fail_input(std::string("tensor dtype ") + st_dtype_info(dt).name + " cannot be converted (cmf reads BF16, F16 and F32)");
    }
}

namespace detail {
// Error sums of one row in a fixed order: 8 interleaved partial sums (element k goes to lane
// k % 8), reduced lane 0..7 at the end. The order is the same whatever the compiler makes of
// it, so the quality report is identical on every machine, and the independent lanes let the
// compiler vectorize the loop (a single running sum could not be, under IEEE rules).
// Scalar tail (elements k..n-1 continue the lane pattern) and the fixed lane 0..7 reduction.
template <int Lanes>
inline void finish_error_lanes(const float* x, const float* q, uint64_t k, uint64_t n, double* err, double* ref,
                               double* mx, ErrorStat& st) {
    for (int l = 0; k < n; ++k, ++l) {
        const double xv = static_cast<double>(x[k]);
        const double e = static_cast<double>(q[k]) - xv;
        err[l] += e * e;
        ref[l] += xv * xv;
        const double a = e < 0 ? -e : e;
        mx[l] = a > mx[l] ? a : mx[l];
    }
    double se = 0, sr = 0;
    for (int l = 0; l < Lanes; ++l) {
        se += err[l];
        sr += ref[l];
        st.max_abs = std::max(st.max_abs, mx[l]);
    }
    st.sum_sq_err += se;
    st.sum_sq_ref += sr;
    st.n += n;
}

template <int Lanes = 8>
inline void accumulate_error_lanes(const float* x, const float* q, uint64_t n, ErrorStat& st) {
    double err[Lanes] = {}, ref[Lanes] = {}, mx[Lanes] = {};
    uint64_t k = 0;
    for (; k + Lanes <= n; k += Lanes)
        for (int l = 0; l < Lanes; ++l) {
            const double xv = static_cast<double>(x[k + l]);
            const double e = static_cast<double>(q[k + l]) - xv;
            err[l] += e * e;
            ref[l] += xv * xv;
            const double a = e < 0 ? -e : e;
            mx[l] = a > mx[l] ? a : mx[l];
        }
    finish_error_lanes<Lanes>(x, q, k, n, err, ref, mx, st);
}
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// The lanes above with intrinsics: lanes 0-3 and 4-7 in two vectors of doubles, the same
// operations per lane (sub, mul, add; max as `a > m ? a : m`, which maxpd implements), then
// the shared scalar tail and reduction.
__attribute__((target("avx2"))) inline void accumulate_error_avx2(const float* x, const float* q, uint64_t n,
                                                                  ErrorStat& st) {
    __m256d err0 = _mm256_setzero_pd(), err1 = err0, ref0 = err0, ref1 = err0, mx0 = err0, mx1 = err0;
    const __m256d sign = _mm256_set1_pd(-0.0);
    uint64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        const __m256 xv = _mm256_loadu_ps(x + k), qv = _mm256_loadu_ps(q + k);
        const __m256d x0 = _mm256_cvtps_pd(_mm256_castps256_ps128(xv)), x1 = _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1));
        const __m256d e0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(qv)), x0);
        const __m256d e1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(qv, 1)), x1);
        err0 = _mm256_add_pd(err0, _mm256_mul_pd(e0, e0));
        err1 = _mm256_add_pd(err1, _mm256_mul_pd(e1, e1));
        ref0 = _mm256_add_pd(ref0, _mm256_mul_pd(x0, x0));
        ref1 = _mm256_add_pd(ref1, _mm256_mul_pd(x1, x1));
        mx0 = _mm256_max_pd(_mm256_andnot_pd(sign, e0), mx0);
        mx1 = _mm256_max_pd(_mm256_andnot_pd(sign, e1), mx1);
    }
    alignas(32) double err[8], ref[8], mx[8];
    _mm256_store_pd(err, err0);
    _mm256_store_pd(err + 4, err1);
    _mm256_store_pd(ref, ref0);
    _mm256_store_pd(ref + 4, ref1);
    _mm256_store_pd(mx, mx0);
    _mm256_store_pd(mx + 4, mx1);
    finish_error_lanes<8>(x, q, k, n, err, ref, mx, st);
}
#endif
}  // namespace detail

// Adds the error of one encoded row (q) against its source (x) to st. Same result with or
// without AVX2: only the instruction selection differs, not the operation order. (No FMA:
// the numeric flags forbid contraction.)
inline void accumulate_error(const float* x, const float* q, uint64_t n, ErrorStat& st) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (quant::simd_level() >= quant::SimdLevel::avx2) return detail::accumulate_error_avx2(x, q, n, st);
#endif
    detail::accumulate_error_lanes<8>(x, q, n, st);
}

struct ExecuteStats {
    uint64_t bytes_read = 0;
    double seconds = 0;
};

// Runs every task on `threads` workers. The first error stops all workers and is rethrown.
inline ExecuteStats execute_tasks(const std::vector<TensorTask>& tasks, unsigned threads,
                                  const std::function<void(uint64_t done, uint64_t total)>& progress = {}) {
    struct Chunk {
        const TensorTask* task;
        const TaskSegment* seg;
        uint64_t src_row, row0, nrows;  // source row (in seg->src), output row, row count
    };
    std::vector<Chunk> chunks;
    uint64_t total_bytes = 0;
    for (const auto& t : tasks) {
        const uint64_t per = std::max<uint64_t>(1, kChunkElements / std::max<uint64_t>(1, t.row_len));
        uint64_t out_row = 0;
        for (const auto& sg : t.segments) {
            for (uint64_t r = 0; r < sg.rows; r += per) chunks.push_back({&t, &sg, sg.src_row0 + r, out_row + r, std::min(per, sg.rows - r)});
            out_row += sg.rows;
            if (sg.src) total_bytes += sg.rows * t.row_len * st_dtype_info(sg.src->dtype).size;
        }
    }
    // one open descriptor per shard, shared by the workers (pread is thread-safe)
    std::vector<std::pair<fs::path, std::unique_ptr<FileHandle>>> handles;
    auto handle_for = [&](const fs::path& p) -> FileHandle& {
        for (auto& h : handles)
            if (h.first == p) return *h.second;
        handles.emplace_back(p, std::make_unique<FileHandle>(p));
        return *handles.back().second;
    };
    std::vector<FileHandle*> chunk_handle(chunks.size(), nullptr);
    for (size_t i = 0; i < chunks.size(); ++i)
        if (chunks[i].seg->src) chunk_handle[i] = &handle_for(chunks[i].seg->src->file);

    // per chunk, per sink partial error sums; merged in chunk order at the end so the report
    // does not depend on thread timing
    std::vector<std::vector<ErrorStat>> chunk_stats(chunks.size());
    std::atomic<size_t> next{0};
    std::atomic<uint64_t> done_bytes{0};
    std::atomic<bool> stop{false};
    std::exception_ptr first_error;
    std::mutex err_mu;
    const auto t0 = std::chrono::steady_clock::now();

    auto worker = [&]() {
        std::vector<char> raw;
        std::vector<float> f32;
        std::vector<std::vector<char>> enc;  // one encoded chunk per sink (shared when types agree)
        std::vector<float> deq, lora_tmp, base;  // base: the unmerged rows, when a sink wants them
        try {
            for (;;) {
                if (stop.load(std::memory_order_relaxed)) return;
                const size_t i = next.fetch_add(1);
                if (i >= chunks.size()) return;
                const Chunk& c = chunks[i];
                const TensorTask& t = *c.task;
                const TaskSegment& sg = *c.seg;
                const uint64_t n = c.nrows * t.row_len;
                f32.resize(n);
                raw.clear();
                base.clear();
                if (sg.src) {
                    const uint32_t esz = st_dtype_info(sg.src->dtype).size;
                    raw.resize(n * esz);
                    chunk_handle[i]->read_at(raw.data(), raw.size(), sg.src->offset + c.src_row * t.row_len * esz);
                    widen_to_f32(sg.src->dtype, raw.data(), f32.data(), n);
                    if (sg.lora) {
                        if (std::any_of(t.sinks.begin(), t.sinks.end(), [](const TensorSink& s) { return s.without_lora; })) {
                            base.assign(f32.begin(), f32.end());
                            apply(t.transform, sg.src->dtype, base.data(), n, t.row_len);
                        }
                        lora_merge_rows(*sg.lora, sg.src->dtype, c.src_row, c.nrows, t.row_len, f32.data(), lora_tmp);
                    }
                    apply(t.transform, sg.src->dtype, f32.data(), n, t.row_len);
                } else if (sg.values) {
                    std::memcpy(f32.data(), sg.values->data() + (c.src_row * t.row_len), n * sizeof(float));
                } else {
                    std::fill(f32.begin(), f32.end(), 0.0f);
                }
                chunk_stats[i].assign(t.sinks.size(), ErrorStat{});
                if (enc.size() < t.sinks.size()) enc.resize(t.sinks.size());
                const bool two = sg.src && sg.lora && !base.empty();  // merged and unmerged rows this chunk
                for (size_t si = 0; si < t.sinks.size(); ++si) {
                    const auto& s = t.sinks[si];
                    const float* x = two && s.without_lora ? base.data() : f32.data();
                    const uint64_t rb = row_bytes(s.type, t.row_len);
                    // Variants often agree on a tensor's type (Q4_K_S and Q4_K_M share most of
                    // theirs): encode once, write the same bytes to every file that wants them.
                    size_t same = si;
                    for (size_t sj = 0; sj < si; ++sj)
                        if (t.sinks[sj].type == s.type && t.sinks[sj].imatrix == s.imatrix &&
                            (!two || t.sinks[sj].without_lora == s.without_lora)) {
                            same = sj;
                            break;
                        }
                    if (same == si) {
                        enc[si].resize(rb * c.nrows);
                        quantize_rows(s.type, x, enc[si].data(), static_cast<int64_t>(c.nrows),
                                      static_cast<int64_t>(t.row_len), s.imatrix);
                    }
                    const std::vector<char>& bytes = enc[same];
                    s.file->write_at(bytes.data(), rb * c.nrows, s.data_offset + c.row0 * rb);
                    if (!s.stats) continue;
                    if (same != si && t.sinks[same].stats) {
                        chunk_stats[i][si] = chunk_stats[i][same];
                        continue;
                    }
                    ErrorStat& st = chunk_stats[i][si];
                    deq.resize(t.row_len);
                    for (uint64_t r = 0; r < c.nrows; ++r) {
                        dequantize_row(s.type, bytes.data() + r * rb, deq.data(), static_cast<int64_t>(t.row_len));
                        accumulate_error(x + r * t.row_len, deq.data(), t.row_len, st);
                    }
                }
                const uint64_t d = done_bytes.fetch_add(raw.size()) + raw.size();
                if (progress && threads <= 1) progress(d, total_bytes);
            }
        } catch (...) {
            std::lock_guard<std::mutex> lk(err_mu);
            if (!first_error) first_error = std::current_exception();
            stop = true;
        }
    };
    threads = std::max(1u, threads);
    std::vector<std::thread> pool;
    for (unsigned k = 1; k < threads; ++k) pool.emplace_back(worker);
    if (progress && threads > 1) {
        // the calling thread reports progress while the others work, then joins in
        std::thread reporter([&] {
            while (!stop && done_bytes.load() < total_bytes) {
                progress(done_bytes.load(), total_bytes);
                std::this_thread::sleep_for(std::chrono::milliseconds(500));
            }
        });
        worker();
        for (auto& th : pool) th.join();
        stop = true;
        reporter.join();
    } else {
        worker();
        for (auto& th : pool) th.join();
    }
    if (first_error) std::rethrow_exception(first_error);
    for (size_t i = 0; i < chunks.size(); ++i)
        for (size_t si = 0; si < chunks[i].task->sinks.size(); ++si)
            if (ErrorStat* out = chunks[i].task->sinks[si].stats) out->merge(chunk_stats[i][si]);
    ExecuteStats st;
    st.bytes_read = total_bytes;
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return st;
}

}  // namespace cmf
