// Synthetic PEFT LoRA adapters for a checkpoint (`cmf synth OUT --adapter-for BASE`): the files
// PEFT's save_pretrained writes (adapter_config.json, adapter_model.safetensors) with targets
// picked from the base checkpoint's own tensors, for tests and benchmarks of every family.
//
// Values lie on the grid of ../shared/golden-next's adapters: A = k * 2^-11 (0 < |k| <= 90),
// B = m * 2^-12 (0 < |m| <= 40). Every product k*m*2^-23 and every partial sum of up to 4096 of
// them is exact in float32, so B @ A is the same whatever order a GEMM sums in: PEFT's torch
// merge and cmf's agree bit for bit and tests can compare merged files byte for byte. The
// values are exact in F16 and BF16 too. They depend on (seed, base tensor name) only, so the
// adapter for the other transformers key layout (--keys) holds the same numbers.
#pragma once

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "cmf/arch/registry.h"
#include "cmf/core/error.h"
#include "cmf/format/safetensors.h"
#include "cmf/format/safetensors_writer.h"
#include "cmf/quant/half.h"
#include "cmf/synth/values.h"

namespace cmf::arch {

struct LoraSynthSpec {
    fs::path base;
    uint32_t r = 8;
    double alpha = 8;
    bool rslora = false;
    std::vector<std::string> targets = {"down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"};
    StDtype dtype = StDtype::F32;
    uint64_t seed = synth::kSynthDefaultSeed;
    std::string keys = "base";  // base (the checkpoint's names), v5 (model.language_model.*), old (language_model.model.*)
    bool vision = false;        // also target the vision tower's modules
};

// A base tensor name in the other transformers layout of Gemma 3 multimodal.
inline std::string lora_synth_key(std::string n, const std::string& keys) {
    auto swap = [&](const std::string& from, const std::string& to) {
        if (n.rfind(from, 0) == 0) n = to + n.substr(from.size());
    };
    if (keys == "v5") {
        swap("language_model.model.", "model.language_model.");
        swap("vision_tower.", "model.vision_tower.");
        swap("multi_modal_projector.", "model.multi_modal_projector.");
    } else if (keys == "old") {
        swap("model.language_model.", "language_model.model.");
        swap("model.vision_tower.", "vision_tower.");
        swap("model.multi_modal_projector.", "multi_modal_projector.");
    } else if (keys != "base") {
        fail(ErrorKind::usage, "synth: --keys must be base, v5 or old");
    }
    return n;
}

// Writes the adapter; returns the number of targeted modules.
inline size_t write_synthetic_adapter(const fs::path& out, const LoraSynthSpec& s) {
    const HfConfig cfg = load_hf_config(s.base);
    const ArchSpec* spec = find_spec(cfg.architecture);
    if (!spec) fail_input("synth: unsupported base architecture '" + cfg.architecture + "'");
    if (s.r == 0 || s.r > 4096) fail(ErrorKind::usage, "synth: --r must be 1 to 4096");
    const SafetensorsCheckpoint ck = open_safetensors_checkpoint(s.base);
    std::vector<const StTensor*> picked;
    for (const auto& t : ck.tensors) {
        const std::string& n = t.name;
        if (t.shape.size() != 2 || n.size() < 8 || n.compare(n.size() - 7, 7, ".weight") != 0) continue;
        const std::string module = n.substr(0, n.size() - 7);
        const std::string leaf = module.substr(module.rfind('.') + 1);
        if (std::find(s.targets.begin(), s.targets.end(), leaf) == s.targets.end()) continue;
        const PartSpec* part = spec->text.takes(n) ? &spec->text : s.vision && spec->mmproj && spec->mmproj->takes(n) ? &*spec->mmproj : nullptr;
        if (!part) continue;
        const std::string renamed = apply_renames(n, part->renames);
        int member = -1;
        if (stack_member(*part, renamed, &member) || map_part_name(*part, renamed).empty()) continue;
        picked.push_back(&t);
    }
    if (picked.empty()) fail_input("synth: no base tensor matches the targets");
    std::sort(picked.begin(), picked.end(), [](const StTensor* a, const StTensor* b) { return a->name < b->name; });

    std::vector<StTensorSpec> tensors;
    const StDtype dt = s.dtype;
    const uint32_t r = s.r;
    for (const StTensor* t : picked) {
        const std::string module = lora_synth_key(t->name.substr(0, t->name.size() - 7), s.keys);
        const uint64_t key = synth::detail::stream_key(s.seed, t->name);
        auto grid = [dt](uint64_t k, uint64_t i, int lim, float unit, const std::function<void(const void*, size_t)>& write) {
            const uint64_t z = synth::detail::mix64(k ^ (i * synth::detail::kGolden));
            int v = static_cast<int>(z % static_cast<uint64_t>(2 * lim)) - lim;  // -lim .. lim-1
            if (v >= 0) ++v;                                                      // skip 0: -lim..-1, 1..lim
            const float f = static_cast<float>(v) * unit;
            if (dt == StDtype::F32) write(&f, 4);
            else {
                const uint16_t h = dt == StDtype::BF16 ? f32_to_bf16(f) : f32_to_f16(f);
                write(&h, 2);
            }
        };
        const int64_t in = t->shape[1], outd = t->shape[0];
        StTensorSpec a;
        a.name = "base_model.model." + module + ".lora_A.weight";
        a.dtype = dt;
        a.shape = {static_cast<int64_t>(r), in};
        a.fill = [=](const std::function<void(const void*, size_t)>& write) {
            for (uint64_t i = 0; i < r * static_cast<uint64_t>(in); ++i) grid(key, i, 90, 1.0f / 2048, write);
        };
        StTensorSpec b;
        b.name = "base_model.model." + module + ".lora_B.weight";
        b.dtype = dt;
        b.shape = {outd, static_cast<int64_t>(r)};
        b.fill = [=](const std::function<void(const void*, size_t)>& write) {
            for (uint64_t i = 0; i < static_cast<uint64_t>(outd) * r; ++i) grid(key ^ 0xb, i, 40, 1.0f / 4096, write);
        };
        tensors.push_back(std::move(a));
        tensors.push_back(std::move(b));
    }
    fs::create_directories(out);
    std::sort(tensors.begin(), tensors.end(), [](const StTensorSpec& x, const StTensorSpec& y) { return x.name < y.name; });
    write_safetensors(out / "adapter_model.safetensors", tensors);

    std::vector<std::string> targets = s.targets;
    std::sort(targets.begin(), targets.end());
    nlohmann::json c = {
        {"alpha_pattern", nlohmann::json::object()}, {"auto_mapping", nullptr}, {"base_model_name_or_path", s.base.filename().string()},
        {"bias", "none"}, {"fan_in_fan_out", false}, {"inference_mode", true}, {"init_lora_weights", true},
        {"layers_pattern", nullptr}, {"layers_to_transform", nullptr}, {"lora_alpha", s.alpha}, {"lora_bias", false},
        {"lora_dropout", 0.0}, {"modules_to_save", nullptr}, {"peft_type", "LORA"}, {"r", s.r},
        {"rank_pattern", nlohmann::json::object()}, {"revision", nullptr}, {"target_modules", targets},
        {"task_type", "CAUSAL_LM"}, {"use_dora", false}, {"use_rslora", s.rslora}};
    if (s.alpha == static_cast<double>(static_cast<int64_t>(s.alpha))) c["lora_alpha"] = static_cast<int64_t>(s.alpha);
    TempFile f(out / "adapter_config.json");
    f.write(c.dump(2) + "\n");
    f.commit();
    return picked.size();
}

}  // namespace cmf::arch
