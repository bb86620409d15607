// Per-tensor value transforms an architecture asks for, as data: the plan records one per tensor
// and execution applies it to the widened F32 values before they are encoded.
//
// The arithmetic must be the converter's to the last bit. llama.cpp's convert_hf_to_gguf.py
// (ModelBase.prepare_tensors) first widens every source dtype other than float16/float32 to
// float32 ("convert any unsupported data types to float32"), then calls the architecture's
// modify_tensors, which for Gemma does `data_torch = data_torch + 1` in the tensor's dtype at
// that point. So the sum is
//   - BF16 source: a float32 add (bf16 was widened first, exactly);
//   - F32 source:  a float32 add;
//   - F16 source:  a float16 add: torch computes in float and rounds the result to half
//                  (nearest even), and only the writer widens that half to float32.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cmf/format/safetensors.h"
#include "cmf/quant/half.h"

namespace cmf {

struct TensorTransform {
    enum class Kind : uint8_t {
        none,
        norm_shift,  // w + value in the source dtype's arithmetic (Gemma RMSNorm stores 1 + w)
        // each row of P*P*3 values, (ky, kx, c) innermost-last, rewritten as (c, ky, kx): a patch
        // embedding reshaped (D, P, P, 3) and permuted (0, 3, 1, 2) (Gemma 4 vision)
        patch_hwc_to_chw,
    };
    Kind kind = Kind::none;
    float value = 0.0f;
    uint32_t patch = 0;  // patch_hwc_to_chw: P

    static TensorTransform norm_shift_by(float v) { return {Kind::norm_shift, v, 0}; }
    static TensorTransform patch_hwc_to_chw_rows() { return {Kind::patch_hwc_to_chw, 0.0f, 0}; }
    bool is_none() const { return kind == Kind::none; }
    bool operator==(const TensorTransform&) const = default;
};

// The dtype torch holds the tensor in when modify_tensors runs (prepare_tensors keeps float16
// and float32, widens everything else to float32).
inline StDtype converter_compute_dtype(StDtype source) { return source == StDtype::F16 ? StDtype::F16 : StDtype::F32; }

// Applies t to n values (whole rows of row_len) widened (exactly) from a source tensor of dtype
// `source`.
inline void apply(const TensorTransform& t, StDtype source, float* data, uint64_t n, uint64_t row_len) {
    switch (t.kind) {
        case TensorTransform::Kind::none: return;
        case TensorTransform::Kind::patch_hwc_to_chw: {
            const uint64_t pp = t.patch * t.patch;
            if (pp == 0 || pp * 3 != row_len || n % row_len != 0) fail_input("patch embedding rows do not hold P*P*3 values");
            std::vector<float> row(row_len);
            for (uint64_t r = 0; r < n; r += row_len) {
                float* x = data + r;
                for (uint64_t k = 0; k < pp; ++k)
                    for (uint64_t c = 0; c < 3; ++c) row[c * pp + k] = x[k * 3 + c];
                std::copy(row.begin(), row.end(), x);
            }
            return;
        }
        case TensorTransform::Kind::norm_shift:
            if (converter_compute_dtype(source) == StDtype::F16) {
                // c10::Half + int: float(a) + 1.0f, rounded once to half
                for (uint64_t k = 0; k < n; ++k) data[k] = round_to_f16(data[k] + t.value);
            } else {
                for (uint64_t k = 0; k < n; ++k) data[k] = data[k] + t.value;
            }
            return;
    }
}

}  // namespace cmf
