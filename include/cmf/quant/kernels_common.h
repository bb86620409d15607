// Scalar pieces shared by every SIMD level's kernels (kernels_simd.inc): the per-super-block
// steps that follow the vectorized group searches. They are the scalar code of kquants.h /
// legacy.h split into callable steps, so each level runs exactly the same operation sequence.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "cmf/quant/kquants.h"
#include "cmf/quant/legacy.h"

namespace cmf::quant::kernels {

using detail::finish_k4_ref_scales;  // kquants.h: the scalar tail of search_k4_ref

// Q4_K nibble packing (quantize_block_q4_K's last loop).
inline void pack_q4_K(const uint8_t* L, uint8_t* y) {
    uint8_t* q = y + 16;
    for (int j = 0; j < kQK_Kq; j += 64, q += 32)
        for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
}

// Q6_K: the 16 group scales -> int8 scales and f16 d, exactly as quantize_q6_K_common.
// Returns false (and zeroes the block) when the whole super-block is below GROUP_MAX_EPS.
inline bool finish_q6_K_scales(const float* scales, uint8_t* y, float* dd) {
    using namespace cmf::quant::detail;
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
        const float abs_scale = std::fabs(scales[ib]);
        if (abs_scale > max_abs_scale) {
            max_abs_scale = abs_scale;
            max_scale = scales[ib];
        }
    }
    if (max_abs_scale < kGroupMaxEps) {
        std::memset(y, 0, kQ6_KBytes);
        return false;
    }
    auto* sc = reinterpret_cast<int8_t*>(y + 192);
    const float iscale = -128.f / max_scale;
    store_f16(y + 208, 1 / iscale);
    for (int ib = 0; ib < 16; ++ib) sc[ib] = static_cast<int8_t>(imin(127, nearest_int(iscale * scales[ib])));
    *dd = load_f16(y + 208);
    return true;
}

using detail::pack_q6_K;  // kquants.h

}  // namespace cmf::quant::kernels
