// One entry point for turning f32 rows into any tensor type cmf writes, with the semantics of
// ggml_quantize_chunk (ggml.c, llama.cpp v0.5.0), and the matching dequantizer.
//
//   - F32 is copied, F16 uses ggml-base's portable fp32->fp16 (round to nearest even, every
//     NaN becomes sign|0x7e00), BF16 uses ggml_fp32_to_bf16_row_ref (round to nearest even,
//     NaN forced quiet).
//   - Q4_0/Q4_1/Q5_0/Q5_1 and all k-quants take the importance-weighted path exactly when
//     an importance matrix is given; Q8_0 ignores it.
//   - Rows are independent: quantizing rows one call at a time or all at once gives the same
//     bytes, so callers may split a tensor across threads by rows.
//   - Q4_K/Q5_K/Q6_K (without imatrix), Q8_0 and F16 run SSE4.2 / AVX2 / AVX-512 kernels when
//     the CPU has them (kernels_dispatch.h: chosen once per process, CMF_SIMD / CMF_NO_SIMD
//     override); every level gives the same bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "cmf/core/error.h"
#include "cmf/quant/half.h"
#include "cmf/quant/kernels_dispatch.h"
#include "cmf/quant/kquants.h"
#include "cmf/quant/legacy.h"
#include "cmf/quant/types.h"

namespace cmf {

// True for the types quantize_rows / dequantize_row handle.
inline bool quantize_supported(GgmlType type) {
    switch (type) {
        case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16:
        case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1: case GgmlType::Q8_0:
        case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K:
            return true;
        default:
            return false;
    }
}

namespace quant::detail {

inline const GgmlTypeInfo& checked_type(GgmlType type, int64_t n_per_row, const char* what) {
    if (!quantize_supported(type))
        fail_input(std::string(what) + ": unsupported tensor type " + type_display_name(type) + " (id " +
                   std::to_string(static_cast<uint32_t>(type)) + ")");
    const auto& info = type_info(type);
    if (n_per_row <= 0 || n_per_row % info.block_size != 0)
        fail_input(std::string(what) + ": row length " + std::to_string(n_per_row) + " is not a positive multiple of " +
                   std::to_string(info.block_size) + " as " + type_display_name(type) + " requires");
    return info;
}

using QuantizeRowFn = void (*)(const float*, uint8_t*, int64_t, const float*);
using DequantizeRowFn = void (*)(const uint8_t*, float*, int64_t);

inline QuantizeRowFn quantizer(GgmlType type) {
    switch (type) {
        case GgmlType::Q4_0: return quantize_row_q4_0;
        case GgmlType::Q4_1: return quantize_row_q4_1;
        case GgmlType::Q5_0: return quantize_row_q5_0;
        case GgmlType::Q5_1: return quantize_row_q5_1;
        case GgmlType::Q8_0: return quantize_row_q8_0;
        case GgmlType::Q2_K: return quantize_row_q2_K;
        case GgmlType::Q3_K: return quantize_row_q3_K;
        case GgmlType::Q4_K: return quantize_row_q4_K;
        case GgmlType::Q5_K: return quantize_row_q5_K;
        case GgmlType::Q6_K: return quantize_row_q6_K;
        default: return nullptr;
    }
}

inline DequantizeRowFn dequantizer(GgmlType type) {
    switch (type) {
        case GgmlType::Q4_0: return dequantize_row_q4_0;
        case GgmlType::Q4_1: return dequantize_row_q4_1;
        case GgmlType::Q5_0: return dequantize_row_q5_0;
        case GgmlType::Q5_1: return dequantize_row_q5_1;
        case GgmlType::Q8_0: return dequantize_row_q8_0;
        case GgmlType::Q2_K: return dequantize_row_q2_K;
        case GgmlType::Q3_K: return dequantize_row_q3_K;
        case GgmlType::Q4_K: return dequantize_row_q4_K;
        case GgmlType::Q5_K: return dequantize_row_q5_K;
        case GgmlType::Q6_K: return dequantize_row_q6_K;
        default: return nullptr;
    }
}

}  // namespace quant::detail

// Quantizes nrows rows of n_per_row floats from src into dst (nrows * row_bytes(type,
// n_per_row) bytes, rows back to back) and returns the number of bytes written. imatrix is
// null or holds n_per_row importance values shared by all rows. Throws cmf::Error (input) for
// an unsupported type or a row length that is not a multiple of the type's block size.
inline size_t quantize_rows(GgmlType type, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                            const float* imatrix) {
    quant::detail::checked_type(type, n_per_row, "quantize");
    if (nrows < 0) fail_input("quantize: negative row count " + std::to_string(nrows));
    const size_t rb = row_bytes(type, static_cast<uint64_t>(n_per_row));
    auto* out = static_cast<uint8_t*>(dst);
    const int64_t n = nrows * n_per_row;
    switch (type) {
        case GgmlType::F32:
            if (n > 0) std::memcpy(out, src, static_cast<size_t>(n) * sizeof(float));
            break;
        case GgmlType::F16:
            if (const auto fn = quant::active_kernels().f32_to_f16) {
                fn(src, out, n);
                break;
            }
            for (int64_t i = 0; i < n; ++i) quant::detail::store_u16(out + 2 * i, quant::detail::to_f16(src[i]));
            break;
        case GgmlType::BF16:
            for (int64_t i = 0; i < n; ++i) quant::detail::store_u16(out + 2 * i, f32_to_bf16(src[i]));
            break;
        default: {
            // bit-identical SIMD kernels (kernels_simd.inc) for Q8_0 (which ignores the
            // importance matrix) and the reference (no imatrix) Q4_K/Q5_K/Q6_K paths
            const auto& ks = quant::active_kernels();
            const auto kfn = type == GgmlType::Q8_0   ? ks.q8_0
                             : imatrix                ? nullptr
                             : type == GgmlType::Q4_K ? ks.q4_K
                             : type == GgmlType::Q5_K ? ks.q5_K
                             : type == GgmlType::Q6_K ? ks.q6_K
                                                      : nullptr;
            if (kfn) {
                for (int64_t r = 0; r < nrows; ++r) kfn(src + r * n_per_row, out + r * rb, n_per_row);
                break;
            }
            const auto fn = quant::detail::quantizer(type);
            for (int64_t r = 0; r < nrows; ++r) fn(src + r * n_per_row, out + r * rb, n_per_row, imatrix);
        }
    }
    return static_cast<size_t>(nrows) * rb;
}

// Dequantizes one row of n values (n a multiple of the block size) exactly as ggml's
// dequantize_row_* / ggml_fp16_to_fp32_row / ggml_bf16_to_fp32_row do.
inline void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
    quant::detail::checked_type(type, n, "dequantize");
    const auto* in = static_cast<const uint8_t*>(src);
    switch (type) {
        case GgmlType::F32:
            std::memcpy(dst, in, static_cast<size_t>(n) * sizeof(float));
            break;
        case GgmlType::F16:
            if (const auto fn = quant::active_kernels().f16_to_f32) {
                fn(in, dst, n);
                break;
            }
            for (int64_t i = 0; i < n; ++i) dst[i] = quant::detail::load_f16(in + 2 * i);
            break;
        case GgmlType::BF16:
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(quant::detail::load_u16(in + 2 * i));
            break;
        default:
            quant::detail::dequantizer(type)(in, dst, n);
    }
}

}  // namespace cmf
