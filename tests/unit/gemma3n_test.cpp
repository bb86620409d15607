// Gemma 3n facts that golden files cannot pin by themselves: torch's float32 Normal.icdf for
// every activation_sparsity_pattern value (the golden checkpoint only has 0.95 and 0.0).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "cmf/arch/gemma3n.h"
#include "test_support.h"

namespace cmf::test {
namespace {

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

// tests/data/icdf/normal_icdf_f32.txt: p = i/1000, i = 0..1000, as torch 1.13 computes it
TEST(Gemma3n, SparsityScaleIsTorchsFloat32Icdf) {
    std::ifstream in(fs::path(CMF_SOURCE_DIR) / "tests/data/icdf/normal_icdf_f32.txt");
    ASSERT_TRUE(in) << "missing tests/data/icdf/normal_icdf_f32.txt";
    std::string line;
    int rows = 0, wrong = 0;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream f(line);
        double p;
        std::string hex;
        f >> p >> hex;
        const uint32_t want = static_cast<uint32_t>(std::stoul(hex, nullptr, 16));
        const uint32_t got = bits(arch::gemma3n::normal_icdf_f32(static_cast<float>(p)));
        if (got != want && ++wrong <= 10) ADD_FAILURE() << "p=" << p << ": " << std::hex << got << " vs torch " << want;
        ++rows;
    }
    EXPECT_EQ(rows, 1001);
    EXPECT_EQ(wrong, 0);
    // the values in the golden checkpoint
    EXPECT_EQ(arch::gemma3n::normal_icdf_f32(0.95f), 1.6448533535003662f);
    EXPECT_TRUE(std::isinf(arch::gemma3n::normal_icdf_f32(0.0f)) && arch::gemma3n::normal_icdf_f32(0.0f) < 0);
}

}  // namespace
}  // namespace cmf::test
