// arch/transform.h: the Gemma norm shift in each source dtype's arithmetic.
#include "cmf/arch/transform.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace {

using cmf::StDtype;
using cmf::TensorTransform;

// F16 source: every half w gives the half nearest to the exact w + 1 (ties to even), widened.
// Checked against the exact sum in double and the two neighbouring halves, not against the
// implementation's own rounding.
TEST(TensorTransform, NormShiftOnF16IsTheHalfNearestToTheExactSum) {
    for (uint32_t h = 0; h < 0x10000; ++h) {
        const float w = cmf::f16_to_f32(static_cast<uint16_t>(h));
        if (!std::isfinite(w)) continue;
        float v = w;
        cmf::apply(TensorTransform::norm_shift_by(1.0f), StDtype::F16, &v, 1, 1);
        const uint16_t r = cmf::f32_to_f16(v);
        ASSERT_EQ(cmf::f32_bits(cmf::f16_to_f32(r)), cmf::f32_bits(v)) << h << ": not a half";
        const double exact = static_cast<double>(w) + 1.0;
        if (std::isinf(v)) {
            ASSERT_GE(std::fabs(exact), 65520.0) << h;
            continue;
        }
        const double err = std::fabs(static_cast<double>(v) - exact);
        // neighbours of r in magnitude order (same sign; r != 0 except for w = -1)
        for (int d : {-1, 1}) {
            const uint16_t n = static_cast<uint16_t>(r + d);
            if ((n & 0x7c00u) == 0x7c00u || (n ^ r) & 0x8000u) continue;
            const double ne = std::fabs(static_cast<double>(cmf::f16_to_f32(n)) - exact);
            ASSERT_LE(err, ne) << h;
            if (err == ne) ASSERT_EQ(r & 1u, 0u) << h << ": tie not to even";
        }
    }
}

// BF16 sources are widened to F32 before the add (llama.cpp's prepare_tensors), F32 ones are F32:
// a plain float add, no rounding to 16 bits.
TEST(TensorTransform, NormShiftOnBf16AndF32IsAFloatAdd) {
    const std::vector<float> w = {0.0f, -1.0f, 1e-8f, 0.123456789f, -3.3f, 1000.25f, 7.0e-3f};
    for (StDtype dt : {StDtype::BF16, StDtype::F32}) {
        std::vector<float> v = w;
        cmf::apply(TensorTransform::norm_shift_by(1.0f), dt, v.data(), v.size(), v.size());
        for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(cmf::f32_bits(v[i]), cmf::f32_bits(w[i] + 1.0f)) << i;
    }
    // the F16 rule really differs: 0.123456789f + 1 is not a half
    float v = 0.123456789f;
    cmf::apply(TensorTransform::norm_shift_by(1.0f), StDtype::F16, &v, 1, 1);
    EXPECT_NE(v, 0.123456789f + 1.0f);
}

TEST(TensorTransform, NoneLeavesValuesAlone) {
    float v[2] = {0.5f, -2.0f};
    cmf::apply(TensorTransform{}, StDtype::F16, v, 2, 2);
    EXPECT_EQ(v[0], 0.5f);
    EXPECT_EQ(v[1], -2.0f);
    EXPECT_TRUE(TensorTransform{}.is_none());
}

}  // namespace
