// Merging a LoRA term into base weights while they stream: the arithmetic of PEFT's
// merge_and_unload() (safe_merge=False), row by row, so the merged rows are what the merged
// checkpoint would hold and the rest of the pipeline cannot tell the difference.
//
// For a base weight W (BF16, F16 or F32) and an adapter pair A [r, in], B [out, r]:
//   delta = f32(B @ A) * f32(scale)        the GEMM in float32 (PEFT casts A and B to float32 on
//                                          CPU), one float32 multiply by the python-double scale
//                                          rounded to float32
//   delta = round_to(adapter dtype, delta) PEFT's get_delta_weight returns delta in the adapter's
//                                          dtype (no-op for the usual F32 adapter)
//   W'    = round_to(W dtype, f32(W) + delta)  "W.data += delta": one float32 add, one rounding
// Several terms (several --lora) apply in order, each rounding to W's dtype, as successive
// merge_and_unload() calls do.
//
// The GEMM sums k = 0..r-1 in order with separate multiply and add (no FMA: the numeric build
// flags forbid contraction). Where every product and partial sum is exact in float32 (the
// golden adapters' grid values) this is bit-identical to any BLAS; elsewhere it can differ from
// torch's GEMM in the last bit of delta before the rounding to W's dtype.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/format/safetensors.h"
#include "cmf/quant/half.h"
#include "cmf/quant/kernels_dispatch.h"

namespace cmf {

// float -> the nearest value of dtype, widened back (F32: unchanged).
inline float round_to_dtype(StDtype d, float x) {
    if (d == StDtype::BF16) return bf16_to_f32(f32_to_bf16(x));
    if (d == StDtype::F16) return f16_to_f32(f32_to_f16(x));
    return x;
}

// Widens n elements of a BF16/F16/F32 buffer to float32 (exact).
inline void lora_widen(StDtype dt, const void* src, float* dst, uint64_t n) {
    if (dt == StDtype::F32) {
        std::memcpy(dst, src, n * 4);
        return;
    }
    const auto* s = static_cast<const uint16_t*>(src);
    for (uint64_t i = 0; i < n; ++i) dst[i] = dt == StDtype::BF16 ? bf16_to_f32(s[i]) : f16_to_f32(s[i]);
}

// One adapter pair applied to one base tensor. A and B are read (widened to float32) the first
// time a chunk of the base tensor needs them and kept until the plan goes: an adapter is small
// next to the model (r * (in + out) per target).
struct LoraTerm {
    const StTensor* a = nullptr;  // [r, in]
    const StTensor* b = nullptr;  // [out, r]
    uint32_t rank = 0;
    uint64_t in = 0, out = 0;
    float scale = 1.0f;  // PEFT's scaling (alpha/r or alpha/sqrt(r), times the user's :SCALE)
    std::string what;    // "adapter-dir: model.layers.0.self_attn.q_proj", for errors

    const float* A() const {
        load();
        return a_.data();
    }
    const float* B() const {
        load();
        return b_.data();
    }

private:
    void load() const {
        std::call_once(once_, [this] {
            auto read = [&](const StTensor& t, std::vector<float>& dst) {
                std::vector<char> raw(t.nbytes);
                FileHandle(t.file).read_at(raw.data(), raw.size(), t.offset);
                dst.resize(t.n_elements());
                lora_widen(t.dtype, raw.data(), dst.data(), dst.size());
            };
            read(*a, a_);
            read(*b, b_);
        });
    }
    mutable std::once_flag once_;
    mutable std::vector<float> a_, b_;
};

using LoraTerms = std::vector<const LoraTerm*>;

namespace detail {
// d[0..in) = sum_k b[k] * A[k, 0..in), k in order, multiply then add.
template <int>
inline void lora_row_delta(const float* b, const float* A, uint32_t r, uint64_t in, float* d) {
    std::fill(d, d + in, 0.0f);
    for (uint32_t k = 0; k < r; ++k) {
        const float bk = b[k];
        const float* a = A + static_cast<uint64_t>(k) * in;
        for (uint64_t j = 0; j < in; ++j) d[j] += bk * a[j];
    }
}
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// the same loop compiled for AVX2 (wider vectors, same operations per element)
template <>
__attribute__((target("avx2"))) inline void lora_row_delta<1>(const float* b, const float* A, uint32_t r, uint64_t in, float* d) {
    std::fill(d, d + in, 0.0f);
    for (uint32_t k = 0; k < r; ++k) {
        const float bk = b[k];
        const float* a = A + static_cast<uint64_t>(k) * in;
        for (uint64_t j = 0; j < in; ++j) d[j] += bk * a[j];
    }
}
#endif
}  // namespace detail

// Merges every term into `nrows` rows of W (already widened to float32 in w), whose first row is
// row `row0` of the base tensor, of dtype `wdtype`. `tmp` is scratch.
inline void lora_merge_rows(const LoraTerms& terms, StDtype wdtype, uint64_t row0, uint64_t nrows, uint64_t row_len, float* w,
                            std::vector<float>& tmp) {
    tmp.resize(row_len);
    float* d = tmp.data();
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    const bool avx2 = quant::simd_level() >= quant::SimdLevel::avx2;
#else
    const bool avx2 = false;
#endif
    for (const LoraTerm* t : terms) {
        if (t->in != row_len) fail_input(t->what + ": adapter width " + std::to_string(t->in) + " does not match the base tensor's " +
                                         std::to_string(row_len));
        const float* A = t->A();
        const float* B = t->B();
        const StDtype adt = t->b->dtype;
        for (uint64_t r = 0; r < nrows; ++r) {
            const float* b = B + (row0 + r) * t->rank;
            if (avx2) detail::lora_row_delta<1>(b, A, t->rank, row_len, d);
            else detail::lora_row_delta<0>(b, A, t->rank, row_len, d);
            float* wr = w + r * row_len;
            for (uint64_t j = 0; j < row_len; ++j) {
                const float dj = round_to_dtype(adt, d[j] * t->scale);
                wr[j] = round_to_dtype(wdtype, wr[j] + dj);
            }
        }
    }
}

}  // namespace cmf
