// A PEFT LoRA adapter as llama.cpp's GGUF adapter (general.type = adapter), what
// convert_lora_to_gguf.py --base BASE writes (facts in ../shared/golden-next/README.md):
//   - six KVs: general.architecture (the base family's), general.type "adapter", adapter.type
//     "lora", general.name (and the other name parts gguf-py derives from the adapter directory
//     name), adapter.lora.alpha (FLOAT32), general.quantization_version;
//   - per target, in the adapter file's order: "<base GGUF name>.lora_a" ne [in, r] and ".lora_b"
//     ne [r, out], PEFT's matrices with no transpose;
//   - the converter's type rule: --outtype for both, Q8_0 falling back to F16 for a row that is
//     not whole Q8_0 blocks (lora_b: r values per row).
// One intentional difference: for an rsLoRA adapter (use_rslora) llama.cpp writes lora_alpha and
// then runs it at alpha/r; cmf writes the alpha for which llama.cpp's alpha/r is PEFT's
// alpha/sqrt(r), so the file runs at the scale it was trained with.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "cmf/pipeline/convert.h"

namespace cmf {

struct AdapterRequest {
    fs::path adapter, base;  // PEFT adapter directory; the base checkpoint (its config.json)
    fs::path out_dir;
    std::vector<ConvertType> types;
    std::string name;  // file base name; default: gguf-py's naming convention
};

// adapter.lora.alpha: lora_alpha as FLOAT32, or for rsLoRA the float x for which llama.cpp's
// float division x / r gives PEFT's float32 scale alpha / sqrt(r): exactly when some float does
// (always for powers of two, and for most other ranks), else the nearest (within one ulp).
inline float gguf_lora_alpha(const LoraAdapter& ad, uint32_t rank) {
    if (!ad.rslora) return static_cast<float>(ad.alpha);
    const float want = static_cast<float>(ad.peft_scale(rank));
    const float r = static_cast<float>(rank);
    float best = want * r, x = best;
    for (int i = 0; i < 8; ++i) x = std::nextafter(x, -INFINITY);
    for (int i = 0; i < 17; ++i, x = std::nextafter(x, INFINITY)) {
        if (x / r == want) return x;
        if (std::fabs(static_cast<double>(x / r) - want) < std::fabs(static_cast<double>(best / r) - want)) best = x;
    }
    return best;
}

// gguf-py naming_convention(..., model_type="LoRA"): "Tiny-Text-Lora-F16-LoRA".
inline std::string adapter_file_stem(const ModelNameParts& m, const std::string& type) {
    auto dash = [](std::string s) {
        for (auto& c : s)
            if (c == ' ' || c == '/') c = '-';
        return s;
    };
    std::string s = m.basename ? dash(*m.basename) : m.name ? dash(*m.name) : "ggml-model";
    if (m.size_label) s += "-" + *m.size_label;
    if (m.finetune) s += "-" + dash(*m.finetune);
    if (m.version) s += "-" + dash(*m.version);
    return s + "-" + type + "-LoRA";
}

inline ConversionPlan plan_adapter_conversion(const AdapterRequest& req) {
    ConversionPlan plan;
    plan.config = load_hf_config(req.base);
    const arch::ArchSpec* spec = arch::find_spec(plan.config.architecture);
    if (!spec)
        fail_input("unsupported base architecture '" + plan.config.architecture + "' in " + (req.base / "config.json").string() +
                   " (cmf converts " + arch::registered_architectures() + ")");
    plan.spec = spec;
    auto ad = load_lora_adapter(req.adapter);
    map_lora_targets(*ad, *spec);
    for (const auto& p : ad->pairs)
        if (p.part != PartKind::text)
            fail_input(req.adapter.string() + ": adapter targets the vision tower (" + p.module +
                       "); llama.cpp applies adapters to the language model only. Merge it instead: cmf quantize BASE --lora ADAPTER --mmproj");
    for (const auto& p : ad->pairs)
        if (ad->rslora && p.rank != ad->pairs[0].rank)
            fail_input(req.adapter.string() + ": rsLoRA adapter with ranks " + std::to_string(ad->pairs[0].rank) + " and " +
                       std::to_string(p.rank) + ": one GGUF alpha cannot give both their scales; merge it instead (--lora)");
    plan.checkpoint.dir = req.adapter;
    plan.checkpoint.shards = {ad->file};

    // gguf-py counts an adapter's parameters as the negated size of the layers it changes
    int64_t total = 0;
    for (const auto& p : ad->pairs) {
        auto add = [&](const StTensor* src, const std::string& suffix, uint64_t rows, uint64_t row_len) {
            PlannedTensor t;
            t.part = PartKind::text;
            t.hf_name = src->name;
            t.gguf_name = p.gguf_name + suffix;
            t.segments.push_back({src, 0, rows, nullptr});
            t.rows = rows;
            t.row_len = row_len;
            t.ne = {row_len, rows};
            plan.tensors.push_back(std::move(t));
        };
        add(p.a, ".lora_a", p.rank, p.in);
        add(p.b, ".lora_b", p.out, p.rank);
        total += static_cast<int64_t>(p.rank * p.in + p.out * p.in);
    }
    const std::string label = ad->label();
    const ModelNameParts names = derive_model_name("", label, -total);

    for (const ConvertType ct : req.types) {
        PlannedFile f;
        const std::string type = out_type_name(ct);
        f.label = std::string("LoRA ") + type;
        f.path = req.out_dir / ((req.name.empty() ? adapter_file_stem(names, type) : req.name + "-" + type + "-LoRA") + ".gguf");
        auto& kv = f.layout.kv;
        kv.set("general.architecture", GgufValue::string(std::string(spec->text.gguf_arch)));
        kv.set("general.type", GgufValue::string("adapter"));
        kv.set("adapter.type", GgufValue::string("lora"));
        GeneralInfo g;
        g.architecture = std::string(spec->text.gguf_arch);
        g.type = "adapter";
        g.name = names;
        g.total_params = -total;  // the card's base_model ids are parsed with it (README.md of the adapter)
        add_general_kvs(kv, g, req.adapter, false);
        kv.set("adapter.lora.alpha", GgufValue::f32(gguf_lora_alpha(*ad, ad->pairs[0].rank)));
        kv.set("general.quantization_version", GgufValue::u32(kQuantizationVersion));
        for (size_t i = 0; i < plan.tensors.size(); ++i) {
            const auto& t = plan.tensors[i];
            const std::string hf = arch::apply_renames(ad->pairs[i / 2].module + ".weight", spec->text.renames);
            f.layout.add_tensor(t.gguf_name, t.ne, arch::converter_tensor_type(spec->text, hf, t.gguf_name, 2, t.row_len, ct));
            f.tensor_of.push_back(i);
        }
        f.layout.finalize();
        plan.files.push_back(std::move(f));
    }
    plan.adapters.push_back(std::move(ad));
    return plan;
}

// Adds the adapter's GGUF files to a conversion plan, so one pass writes the merged model and
// the adapter (and, with ConvertRequest::unmerged_too, the base it applies to).
inline void add_adapter_files(ConversionPlan& plan, const AdapterRequest& req) {
    ConversionPlan a = plan_adapter_conversion(req);
    const size_t off = plan.tensors.size();
    for (auto& t : a.tensors) plan.tensors.push_back(std::move(t));
    for (auto& f : a.files) {
        for (auto& i : f.tensor_of) i += off;
        plan.files.push_back(std::move(f));
    }
    for (auto& ad : a.adapters) plan.adapter_sources.push_back(std::move(ad));
}

}  // namespace cmf
