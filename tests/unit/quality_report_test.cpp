// The quality report next to each GGUF: one entry per tensor, and numbers that an independent
// recomputation (read the file back, dequantize, compare with the source) agrees with.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "cmf/format/gguf.h"
#include "cmf/format/safetensors.h"
#include "cmf/quant/half.h"
#include "cmf/quant/quantize.h"
#include "golden_dump.h"
#include "test_support.h"

namespace cmf::test {
namespace {

TEST(QualityReport, MatchesAnIndependentRecomputation) {
    TempDir d;
    const fs::path ck = d.path() / "tiny";
    ASSERT_EQ(run_cmf("synth " + shell_quote(ck.string()) + " --preset tiny").exit_code, 0);
    auto r = run_cmf("quantize " + shell_quote(ck.string()) + " --quant q4_k_m,q8_0,bf16 --quiet --out " + shell_quote((d.path() / "out").string()));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("relative RMS error"), std::string::npos) << r.output;

    auto src = open_safetensors_checkpoint(ck);
    const StTensor* q = src.find("model.layers.0.self_attn.q_proj.weight");
    ASSERT_TRUE(q);
    const std::string raw = read_range(q->file.string(), q->offset, q->nbytes);
    std::vector<float> x(q->nbytes / 2);
    for (size_t i = 0; i < x.size(); ++i) x[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(raw.data())[i]);

    double rel_q4 = 0, rel_q8 = 0;
    for (const char* t : {"Q4_K_M", "Q8_0", "BF16"}) {
        SCOPED_TRACE(t);
        const std::string gg = (d.path() / "out" / (std::string("tiny-") + t + ".gguf")).string();
        std::ifstream in(d.path() / "out" / (std::string("tiny-") + t + ".quality.json"));
        ASSERT_TRUE(in.good());
        auto j = nlohmann::json::parse(in);
        GgufContents g = read_gguf(gg);
        ASSERT_EQ(j["tensors"].size(), g.tensors.size());
        const GgufTensorInfo* ti = g.find("blk.0.attn_q.weight");
        ASSERT_TRUE(ti);
        const std::string data = read_range(gg, g.data_start + ti->offset, ti->nbytes);
        std::vector<float> y(x.size());
        const uint64_t rb = row_bytes(ti->type, ti->ne[0]);
        for (uint64_t row = 0; row < ti->ne[1]; ++row)
            dequantize_row(ti->type, data.data() + row * rb, y.data() + row * ti->ne[0], static_cast<int64_t>(ti->ne[0]));
        double se = 0, sr = 0, mx = 0;
        for (size_t i = 0; i < x.size(); ++i) {
            double e = static_cast<double>(y[i]) - x[i];
            se += e * e;
            sr += static_cast<double>(x[i]) * x[i];
            mx = std::max(mx, std::fabs(e));
        }
        const double rel = std::sqrt(se / sr);
        bool found = false;
        for (const auto& e : j["tensors"])
            if (e["name"] == "blk.0.attn_q.weight") {
                found = true;
                EXPECT_NEAR(e["relative_rms"].get<double>(), rel, 1e-9 + rel * 1e-9);
                EXPECT_DOUBLE_EQ(e["max_abs_error"].get<double>(), mx);
                EXPECT_EQ(e["type"], type_display_name(ti->type));
            }
        EXPECT_TRUE(found);
        if (std::string(t) == "Q4_K_M") rel_q4 = rel;
        if (std::string(t) == "Q8_0") rel_q8 = rel;
        if (std::string(t) == "BF16") EXPECT_EQ(j["overall"]["relative_rms"].get<double>(), 0.0);  // lossless copy
    }
    EXPECT_GT(rel_q4, rel_q8 * 4);  // 4-bit is much coarser than 8-bit
    EXPECT_GT(rel_q8, 0.0);
}

}  // namespace
}  // namespace cmf::test
