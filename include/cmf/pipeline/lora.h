// PEFT LoRA adapters: adapter_config.json + adapter_model.safetensors, checked and mapped onto
// the base family's GGUF tensor names through its ArchSpec rows (the same map its checkpoint
// tensors take, so both transformers key layouts of Gemma 3 multimodal land on the same GGUF
// names). Used twice: as a GGUF adapter (pipeline/adapter_gguf.h) and merged into the base
// weights while they stream (pipeline/convert.h, arithmetic in pipeline/lora_merge.h).
//
// PEFT facts (peft/tuners/lora): state-dict keys are "base_model.model.<module>.lora_A.weight"
// ([r, in]) and ".lora_B.weight" ([out, r]); scaling = lora_alpha / r, or lora_alpha / sqrt(r)
// with use_rslora, per module r and alpha from rank_pattern / alpha_pattern.
#pragma once

#include <algorithm>
#include <cmath>
#include <fstream>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cmf/arch/spec.h"
#include "cmf/core/error.h"
#include "cmf/format/safetensors.h"

namespace cmf {

// --lora DIR[:SCALE]: an adapter directory and a multiplier of its PEFT scale.
struct LoraRef {
    fs::path dir;
    double multiplier = 1.0;
};

// "DIR" or "DIR:SCALE" (the suffix after the last ':' when it is a number).
inline LoraRef parse_lora_ref(const std::string& s) {
    LoraRef r;
    r.dir = s;
    const auto colon = s.rfind(':');
    if (colon != std::string::npos && colon + 1 < s.size()) {
        const std::string tail = s.substr(colon + 1);
        char* end = nullptr;
        const double v = std::strtod(tail.c_str(), &end);
        if (end && *end == '\0') {
            if (!std::isfinite(v)) fail(ErrorKind::usage, "--lora " + s + ": the scale must be a finite number");
            r.dir = s.substr(0, colon);
            r.multiplier = v;
        }
    }
    if (r.dir.empty()) fail(ErrorKind::usage, "--lora wants ADAPTER_DIR[:SCALE]");
    return r;
}

struct LoraPair {
    std::string module;  // PEFT module path: "model.layers.0.self_attn.q_proj"
    const StTensor* a = nullptr;  // [r, in]
    const StTensor* b = nullptr;  // [out, r]
    uint32_t rank = 0;
    uint64_t in = 0, out = 0;
    arch::PartKind part = arch::PartKind::text;
    std::string gguf_name;  // the base tensor's GGUF name: "blk.0.attn_q.weight"
};

struct LoraAdapter {
    fs::path dir, file;
    nlohmann::json config;  // adapter_config.json as read
    uint32_t r = 0;
    double alpha = 0;
    bool rslora = false;
    std::vector<StTensor> tensors;  // adapter_model.safetensors, sorted by name (the library's order)
    std::vector<LoraPair> pairs;    // in order of first appearance among `tensors`

    std::string label() const { return dir.filename().empty() ? dir.parent_path().filename().string() : dir.filename().string(); }
    // PEFT's scaling for a module of rank `rank` (a python float)
    double peft_scale(uint32_t rank) const { return rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / rank; }
    std::vector<std::string> targets() const {
        std::vector<std::string> t;
        if (auto it = config.find("target_modules"); it != config.end()) {
            if (it->is_string()) t.push_back(it->get<std::string>());
            else if (it->is_array())
                for (const auto& x : *it)
                    if (x.is_string()) t.push_back(x.get<std::string>());
        }
        std::sort(t.begin(), t.end());
        return t;
    }
};

namespace detail {

inline std::string lora_list(const std::vector<std::string>& names) {
    std::string s;
    for (size_t i = 0; i < names.size() && i < 3; ++i) s += (i ? ", " : "") + names[i];
    if (names.size() > 3) s += " and " + std::to_string(names.size() - 3) + " more";
    return s;
}

inline bool json_truthy(const nlohmann::json& c, const char* k) {
    auto it = c.find(k);
    if (it == c.end() || it->is_null()) return false;
    if (it->is_boolean()) return it->get<bool>();
    if (it->is_array() || it->is_object() || it->is_string()) return !it->empty();
    return true;
}

}  // namespace detail

// Reads and checks a PEFT LoRA adapter directory. Everything cmf cannot apply exactly is refused
// with one line naming it; a pickle is never opened.
inline std::shared_ptr<LoraAdapter> load_lora_adapter(const fs::path& dir) {
    auto ad = std::make_shared<LoraAdapter>();
    ad->dir = dir;
    const std::string where = dir.string();
    if (!fs::is_directory(dir)) fail_input(where + ": not a directory (a LoRA adapter is a directory with adapter_config.json)");
    const fs::path cfg_path = dir / "adapter_config.json";
    if (!fs::is_regular_file(cfg_path)) fail_input(where + ": no adapter_config.json (is this a PEFT LoRA adapter?)");
    try {
        std::ifstream in(cfg_path);
        ad->config = nlohmann::json::parse(in);
    } catch (const std::exception&) {
        fail_input(cfg_path.string() + ": not valid JSON");
    }
    const auto& c = ad->config;
    if (!c.is_object()) fail_input(cfg_path.string() + ": not a JSON object");
    const std::string peft_type = c.contains("peft_type") && c["peft_type"].is_string() ? c["peft_type"].get<std::string>() : "LORA";
    if (peft_type != "LORA") fail_input(where + ": peft_type " + peft_type + " is not LORA; cmf applies LoRA adapters only");
    // what a GGUF adapter and a plain merge cannot express
    std::vector<std::string> unsupported;
    if (detail::json_truthy(c, "use_dora")) unsupported.push_back("DoRA (use_dora)");
    if (c.contains("bias") && c["bias"].is_string() && c["bias"].get<std::string>() != "none")
        unsupported.push_back("bias terms (bias=" + c["bias"].get<std::string>() + ")");
    if (detail::json_truthy(c, "lora_bias")) unsupported.push_back("bias terms (lora_bias)");
    if (detail::json_truthy(c, "modules_to_save")) unsupported.push_back("modules_to_save " + c["modules_to_save"].dump());
    if (detail::json_truthy(c, "trainable_token_indices")) unsupported.push_back("trainable_token_indices (new token embeddings)");
    if (detail::json_truthy(c, "fan_in_fan_out")) unsupported.push_back("fan_in_fan_out (Conv1D layers)");
    if (detail::json_truthy(c, "alpha_pattern")) unsupported.push_back("alpha_pattern (per-module alpha)");
    if (detail::json_truthy(c, "layer_replication")) unsupported.push_back("layer_replication");
    if (detail::json_truthy(c, "target_parameters")) unsupported.push_back("target_parameters (parameter targets)");
    if (detail::json_truthy(c, "use_qalora")) unsupported.push_back("QA-LoRA (use_qalora)");
    if (detail::json_truthy(c, "alora_invocation_tokens") || detail::json_truthy(c, "invocation_string"))
        unsupported.push_back("aLoRA (alora_invocation_tokens)");
    if (!unsupported.empty()) fail_input(where + ": adapter uses " + detail::lora_list(unsupported) + ", which cmf cannot apply");
    auto num = [&](const char* k) -> double {
        auto it = c.find(k);
        if (it == c.end() || !it->is_number()) fail_input(cfg_path.string() + ": missing or non-numeric \"" + k + "\"");
        return it->get<double>();
    };
    const double r = num("r");
    if (r < 1 || r > 65536 || r != std::floor(r)) fail_input(cfg_path.string() + ": r must be a positive integer");
    ad->r = static_cast<uint32_t>(r);
    ad->alpha = num("lora_alpha");
    if (!std::isfinite(ad->alpha)) fail_input(cfg_path.string() + ": lora_alpha is not finite");
    ad->rslora = detail::json_truthy(c, "use_rslora");

    ad->file = dir / "adapter_model.safetensors";
    if (!fs::is_regular_file(ad->file)) {
        if (fs::exists(dir / "adapter_model.bin"))
            fail_input(where + ": adapter_model.bin is a Python pickle, which cmf never loads; save the adapter as "
                       "safetensors (PEFT save_pretrained(dir, safe_serialization=True), the default since PEFT 0.6)");
        fail_input(where + ": no adapter_model.safetensors");
    }
    ad->tensors = read_safetensors_file(ad->file);

    // keys -> pairs; anything that is not a LoRA A/B matrix is named and refused
    static const std::string prefix = "base_model.model.";
    std::vector<std::string> embed, dora, bias, full, other;
    std::map<std::string, size_t> index;
    for (const auto& t : ad->tensors) {
        const std::string& n = t.name;
        auto ends = [&](const std::string& s) { return n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0; };
        if (n.find("lora_embedding_") != std::string::npos) embed.push_back(n);
        else if (n.find("lora_magnitude_vector") != std::string::npos) dora.push_back(n);
        else if (n.find(".lora_") != std::string::npos && ends(".bias")) bias.push_back(n);
        else if (n.rfind(prefix, 0) != 0) other.push_back(n);
        else if (ends(".lora_A.weight") || ends(".lora_B.weight")) {
            const bool is_a = ends(".lora_A.weight");
            const std::string module = n.substr(prefix.size(), n.size() - prefix.size() - 14);
            auto [it, fresh] = index.emplace(module, ad->pairs.size());
            if (fresh) {
                ad->pairs.emplace_back();
                ad->pairs.back().module = module;
            }
            (is_a ? ad->pairs[it->second].a : ad->pairs[it->second].b) = &t;
        } else full.push_back(n);
    }
    if (!embed.empty()) fail_input(where + ": adapter trains embeddings (" + detail::lora_list(embed) + "), which cmf does not apply");
    if (!dora.empty()) fail_input(where + ": adapter is DoRA (" + detail::lora_list(dora) + "), which cmf does not apply");
    if (!bias.empty()) fail_input(where + ": adapter has bias terms (" + detail::lora_list(bias) + "), which cmf does not apply");
    if (!full.empty())
        fail_input(where + ": adapter holds full weights, not LoRA matrices (" + detail::lora_list(full) +
                   "; modules_to_save?), which cmf does not apply");
    if (!other.empty()) fail_input(where + ": adapter_model.safetensors has keys PEFT does not write (" + detail::lora_list(other) + ")");
    if (ad->pairs.empty()) fail_input(where + ": adapter_model.safetensors holds no lora_A/lora_B tensors");
    for (auto& p : ad->pairs) {
        if (!p.a || !p.b) fail_input(where + ": " + p.module + " has lora_" + (p.a ? "A" : "B") + " but no lora_" + (p.a ? "B" : "A"));
        for (const StTensor* t : {p.a, p.b})
            if (!st_dtype_is_float_source(t->dtype))
                fail_input(where + ": " + t->name + " has dtype " + st_dtype_info(t->dtype).name + "; adapters must be F32, F16 or BF16");
        if (p.a->shape.size() != 2 || p.b->shape.size() != 2)
            fail_input(where + ": " + p.module + " is not a linear layer (LoRA on a convolution is not supported)");
        p.rank = static_cast<uint32_t>(p.a->shape[0]);
        p.in = static_cast<uint64_t>(p.a->shape[1]);
        p.out = static_cast<uint64_t>(p.b->shape[0]);
        if (p.rank == 0 || p.in == 0 || p.out == 0 || static_cast<uint64_t>(p.b->shape[1]) != p.rank)
            fail_input(where + ": " + p.module + ": lora_A " + std::to_string(p.a->shape[0]) + "x" + std::to_string(p.a->shape[1]) +
                       " and lora_B " + std::to_string(p.b->shape[0]) + "x" + std::to_string(p.b->shape[1]) + " do not share a rank");
    }
    return ad;
}

// Maps every pair onto the base family's GGUF tensor names; a target the family's converter
// drops or cannot name is refused with its module path.
inline void map_lora_targets(LoraAdapter& ad, const arch::ArchSpec& spec) {
    const std::string where = ad.dir.string();
    for (auto& p : ad.pairs) {
        const std::string weight = p.module + ".weight";
        const arch::PartSpec* part = spec.text.takes(weight)                      ? &spec.text
                                     : spec.mmproj && spec.mmproj->takes(weight) ? &*spec.mmproj
                                                                                 : nullptr;
        if (!part) fail_input(where + ": adapter targets " + p.module + ", which the " + std::string(spec.display) + " converter drops");
        const std::string n = arch::apply_renames(weight, part->renames);
        int member = -1;
        if (arch::stack_member(*part, n, &member))
            fail_input(where + ": adapter targets " + p.module + ", which the converter stacks with its siblings; cmf cannot apply it");
        p.part = part->kind;
        p.gguf_name = arch::map_part_name(*part, n);
        if (p.gguf_name.empty() || std::any_of(part->ignore.begin(), part->ignore.end(), [&](std::string_view x) { return arch::contains(n, x); }))
            fail_input(where + ": adapter targets " + p.module + ", which has no " + std::string(spec.display) + " GGUF tensor");
    }
}

}  // namespace cmf
