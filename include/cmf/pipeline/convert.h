// Plan and run a conversion: checkpoint directory -> one GGUF per requested type (+ mmproj).
//
// The plan is pure: from config, tokenizer and tensor headers it decides every output file's KVs,
// tensor list, types and byte layout before any weight is read (`cmf quantize --dry-run` prints
// it). Execution then streams each source tensor once into all outputs (pipeline/execute.h).
// Everything a model family contributes comes from its ArchSpec (arch/registry.h); this file
// only runs the rows.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cmf/arch/converter_base.h"
#include "cmf/arch/general_kv.h"
#include "cmf/arch/registry.h"
#include "cmf/format/gguf.h"
#include "cmf/format/safetensors.h"
#include "cmf/pipeline/execute.h"
#include "cmf/pipeline/lora.h"
#include "cmf/quant/imatrix.h"
#include "cmf/quant/recipe.h"
#include "cmf/tokenizer/gguf_vocab.h"

namespace cmf {

using arch::ConvertType;
using arch::PartKind;

// GGML_QNT_VERSION: the quantization format generation every GGUF records.
inline constexpr uint32_t kQuantizationVersion = 2;

// One output variant: a converter type (f32/f16/bf16: convert_hf_to_gguf --outtype) or a
// llama-quantize recipe applied to the lossless conversion of the checkpoint's own dtype
// (BF16->BF16, F16->F16, F32->F32: cmf quantizes from the exact source values, which are what
// that file holds) (q8_0, q4_k_m, ...).
struct Variant {
    std::optional<ConvertType> convert;
    const QuantRecipe* recipe = nullptr;
    std::string label() const;
};

struct ConvertRequest {
    fs::path src;
    fs::path out_dir;
    std::vector<Variant> types;
    TypeOverrides overrides;
    bool mmproj = false;
    ConvertType mmproj_type = ConvertType::F16;
    std::string name;  // output base name; default: the checkpoint directory name
    std::shared_ptr<const ImatrixData> imatrix;  // llama-quantize --imatrix, for the recipe variants
    std::vector<LoraRef> loras;  // --lora: adapters merged into the base weights, in order
    // with loras: also write each type without them (NAME-<TYPE>.gguf; the merged files are
    // NAME-<adapter>-<TYPE>.gguf), from the same pass
    bool unmerged_too = false;
};

struct PlannedTensor {
    PartKind part = PartKind::text;
    std::string hf_name, gguf_name;   // hf_name: the (first) checkpoint tensor, or "<generated>"
    std::vector<TaskSegment> segments;  // where the rows come from, in order
    std::shared_ptr<const std::vector<float>> generated;  // values of a generated tensor
    std::vector<uint64_t> ne;  // GGUF shape, innermost first
    uint64_t rows = 0, row_len = 0;
    TensorTransform transform;  // applied to the widened values (Gemma norm 1 + w, patch permute)
};

struct PlannedFile {
    fs::path path;
    std::string label;  // "F16", "mmproj F16"
    GgufLayout layout;
    std::vector<size_t> tensor_of;  // for each layout tensor: index into ConversionPlan::tensors
    std::vector<const float*> imatrix_of;  // for each layout tensor: its importance values or null (empty: none)
    bool without_lora = false;  // the base weights of a --lora plan (ConvertRequest::unmerged_too)
};

struct ConversionPlan {
    SafetensorsCheckpoint checkpoint;
    HfConfig config;
    const arch::ArchSpec* spec = nullptr;
    std::vector<PlannedTensor> tensors;
    std::vector<PlannedFile> files;
    std::shared_ptr<const ImatrixData> imatrix;  // keeps PlannedFile::imatrix_of valid
    // --lora: the adapters, their merge terms, and the terms of each base tensor (what the
    // segments' `lora` pointers point at)
    std::vector<std::shared_ptr<const LoraAdapter>> adapters;
    std::vector<std::unique_ptr<LoraTerm>> lora_terms;
    std::map<const StTensor*, LoraTerms> lora_of;
    std::vector<std::shared_ptr<const LoraAdapter>> adapter_sources;  // of GGUF adapters added to the pass
};

inline const char* out_type_name(ConvertType t) { return arch::convert_type_name(t); }

// The converter's own Q8_0 is labelled apart from llama-quantize's: for Gemma 3 they hold the
// same data, but llama-quantize keeps some tensors in the source type that the converter
// quantizes (altup*, laurel*, per_layer_model_proj: Gemma 3n and Gemma 4).
inline std::string Variant::label() const {
    if (recipe) return recipe->name;
    return *convert == ConvertType::Q8_0 ? "Q8_0-convert" : out_type_name(*convert);
}

inline std::optional<ConvertType> parse_out_type(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (s == "f32") return ConvertType::F32;
    if (s == "f16") return ConvertType::F16;
    if (s == "bf16") return ConvertType::BF16;
    if (s == "q8_0" || s == "q8") return ConvertType::Q8_0;
    return std::nullopt;
}

// f32, f16, bf16 (and q8_0_convert) are converter outputs; every quantized type is a
// llama-quantize recipe applied to the lossless conversion.
inline std::optional<Variant> parse_variant(std::string s) {
    Variant v;
    std::string low = s;
    for (auto& c : low) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (low == "f32" || low == "f16" || low == "bf16") {
        v.convert = parse_out_type(low);
        return v;
    }
    // convert_hf_to_gguf --outtype q8_0 itself (its tensor order and type choice)
    if (low == "q8_0_convert" || low == "q8_0-convert") {
        v.convert = ConvertType::Q8_0;
        return v;
    }
    if (low == "q8") low = "q8_0";
    if (const QuantRecipe* r = find_recipe(low)) {
        v.recipe = r;
        return v;
    }
    return std::nullopt;
}

// The importance values llama_model_quantize (llama-quant.cpp) hands to ggml_quantize_chunk for
// each tensor: looked up by name only when the tensor changes type; the entry must hold
// ne[0]*ne[2] values, else it is an error, except for token_embd / per_layer_token_embd, which are
// then quantized without one. F32/F16/BF16 targets ignore it, so they get null.
inline std::vector<const float*> imatrix_for_tensors(const ImatrixData& im, const std::vector<RecipeTensor>& rts,
                                                     const std::vector<GgmlType>& types) {
    std::vector<const float*> out(rts.size(), nullptr);
    for (size_t k = 0; k < rts.size(); ++k) {
        if (rts[k].input_type == types[k]) continue;  // copied, not quantized
        auto it = im.values.find(rts[k].name);
        if (it == im.values.end()) continue;  // llama.cpp: "did not find weights", quantized without
        const auto& ne = rts[k].ne;
        const uint64_t want = ne[0] * (ne.size() > 2 ? ne[2] : 1);
        if (it->second.size() != want) {
            if (rts[k].name == "token_embd.weight" || rts[k].name == "per_layer_token_embd.weight") continue;
            fail_input(im.file + ": imatrix size " + std::to_string(it->second.size()) + " is different from tensor size " +
                       std::to_string(want) + " for " + rts[k].name);
        }
        // one slice per expert would be needed for quantized 3-D tensors (the 3-D altup
        // projections are never quantized: llama-quantize keeps them in the source type)
        if (ne.size() > 2 && ne[2] > 1) fail_input(rts[k].name + ": per-expert importance matrices are not supported");
        if (types[k] == GgmlType::F32 || types[k] == GgmlType::F16 || types[k] == GgmlType::BF16) continue;
        out[k] = it->second.data();
    }
    return out;
}

namespace detail {

inline bool same_shape(const StTensor& a, const StTensor& b) { return a.shape == b.shape && a.dtype == b.dtype; }

}  // namespace detail

// Merges one adapter (--lora) into the planned base tensors: each target gets a term on its
// checkpoint rows, applied after the terms of earlier adapters.
inline void attach_lora(ConversionPlan& plan, const LoraRef& ref) {
    auto ad = load_lora_adapter(ref.dir);
    map_lora_targets(*ad, *plan.spec);
    for (const auto& p : ad->pairs) {
        PlannedTensor* target = nullptr;
        for (auto& t : plan.tensors)
            if (t.part == p.part && t.gguf_name == p.gguf_name) target = &t;
        if (!target || !target->segments[0].src)
            fail_input(ref.dir.string() + ": adapter targets " + p.module + " (" + p.gguf_name + "), which the base checkpoint does not have");
        const StTensor* w = target->segments[0].src;
        if (w->shape.size() != 2 || static_cast<uint64_t>(w->shape[0]) != p.out || static_cast<uint64_t>(w->shape[1]) != p.in)
            fail_input(ref.dir.string() + ": " + p.module + " is " + std::to_string(p.out) + "x" + std::to_string(p.in) + " in the adapter but " +
                       w->name + " is " + (w->shape.size() == 2 ? std::to_string(w->shape[0]) + "x" + std::to_string(w->shape[1]) : "not 2-D") +
                       " in the base: is this adapter for another model?");
        auto term = std::make_unique<LoraTerm>();
        term->a = p.a;
        term->b = p.b;
        term->rank = p.rank;
        term->in = p.in;
        term->out = p.out;
        term->scale = static_cast<float>(ref.multiplier * ad->peft_scale(p.rank));
        term->what = ad->label() + ": " + p.module;
        plan.lora_of[w].push_back(term.get());
        plan.lora_terms.push_back(std::move(term));
        target->segments[0].lora = &plan.lora_of[w];
    }
    plan.adapters.push_back(std::move(ad));
}

inline ConversionPlan plan_conversion(const ConvertRequest& req) {
    ConversionPlan plan;
    plan.config = load_hf_config(req.src);
    HfConfig& cfg = plan.config;
    const arch::ArchSpec* spec = arch::find_spec(cfg.architecture);
    if (!spec)
        fail_input("unsupported architecture '" + cfg.architecture + "' in " + (req.src / "config.json").string() +
                   " (cmf converts " + arch::registered_architectures() + ")");
    plan.spec = spec;
    if (spec->defaults) spec->defaults(cfg);
    if (spec->text.check) spec->text.check(cfg);
    if (req.mmproj && !spec->mmproj) fail(ErrorKind::usage, std::string(spec->mmproj_refusal));
    if (req.mmproj && spec->mmproj->check) spec->mmproj->check(cfg);
    // llama-quantize passes an imatrix only when it has entries (quantize.cpp prepare_imatrix),
    // and then the recipe knows it (qs.has_imatrix) and every entry must be finite
    TypeOverrides overrides = req.overrides;
    if (req.imatrix && !req.imatrix->values.empty()) {
        overrides.has_imatrix = true;
        check_imatrix_finite(*req.imatrix);
        plan.imatrix = req.imatrix;
    }

    // tokenizer first: it is cheap, and a missing tokenizer should fail before any heavy work
    GgufKvList vocab_kv;
    const VocabCounts vocab = add_tokenizer_kvs(vocab_kv, spec->tokenizer.load(req.src, cfg.text));

    plan.checkpoint = open_safetensors_checkpoint(req.src);
    std::map<PartKind, uint64_t> params;

    // generated tensors come first (the converter chains generate_extra_tensors before the
    // checkpoint's), then the checkpoint's in its order
    for (const arch::PartSpec* part : {&spec->text, spec->mmproj ? &*spec->mmproj : nullptr}) {
        if (!part) continue;
        for (const auto& g : part->generated) {
            PlannedTensor t;
            t.part = part->kind;
            t.hf_name = "<generated>";
            t.gguf_name = std::string(g.gguf);
            auto values = std::make_shared<const std::vector<float>>(g.values(cfg));
            t.row_len = values->size();
            t.rows = 1;
            t.ne = {t.row_len};
            t.segments.push_back({nullptr, 0, 1, values.get()});
            t.generated = std::move(values);
            params[part->kind] += t.row_len;
            plan.tensors.push_back(std::move(t));
        }
    }

    struct StackState {
        std::vector<const StTensor*> members;
    };
    std::map<std::string, StackState> stacks;
    for (const auto& st : plan.checkpoint.tensors) {
        const arch::PartSpec* part = spec->text.takes(st.name)                   ? &spec->text
                                     : spec->mmproj && spec->mmproj->takes(st.name) ? &*spec->mmproj
                                                                                  : nullptr;
        if (!part) continue;  // a tower this family's converter drops (TextModel.filter_tensors)
        const std::string n = arch::apply_renames(st.name, part->renames);
        if (std::any_of(part->ignore.begin(), part->ignore.end(), [&](std::string_view x) { return arch::contains(n, x); })) continue;
        if (!st_dtype_is_float_source(st.dtype))
            fail_input(st.file.filename().string() + ": tensor '" + st.name + "' has dtype " + st_dtype_info(st.dtype).name +
                       "; cmf converts BF16, F16 and F32 checkpoints");
        if (st.shape.empty() ? !part->scalars_as_1d : st.n_elements() == 0)
            fail_input(st.file.filename().string() + ": tensor '" + st.name + "' is empty");
        if (st.shape.size() > kGgmlMaxDims) fail_input("tensor '" + st.name + "' has more than 4 dimensions");

        PlannedTensor t;
        t.part = part->kind;
        t.hf_name = st.name;
        std::string mapped_from = n;
        int member = -1;
        if (const arch::StackRow* sr = arch::stack_member(*part, n, &member)) {
            StackState& s = stacks[std::string(sr->stem)];
            s.members.resize(sr->count, nullptr);
            if (s.members[member]) fail_input("checkpoint tensor '" + st.name + "' appears twice");
            s.members[member] = &st;
            if (std::any_of(s.members.begin(), s.members.end(), [](const StTensor* m) { return !m; })) continue;
            // all members present: the stacked tensor is planned here, members in index order
            for (const StTensor* m : s.members) {
                if (!detail::same_shape(*m, *s.members[0]))
                    fail_input("checkpoint tensors '" + std::string(sr->stem) + ".*' differ in shape or dtype; they cannot be stacked");
                t.segments.push_back({m, 0, m->n_elements() / m->row_length(), nullptr});
            }
            mapped_from = std::string(sr->stem) + ".weight";
            t.row_len = s.members[0]->row_length();
            for (auto it = s.members[0]->shape.rbegin(); it != s.members[0]->shape.rend(); ++it) t.ne.push_back(static_cast<uint64_t>(*it));
            t.ne.push_back(static_cast<uint64_t>(sr->count));
        } else {
            if (st.shape.empty()) {
                t.row_len = 1;
                t.ne = {1};
            } else {
                t.row_len = st.row_length();
                for (auto it = st.shape.rbegin(); it != st.shape.rend(); ++it) t.ne.push_back(static_cast<uint64_t>(*it));
            }
            t.segments.push_back({&st, 0, st.shape.empty() ? 1 : st.n_elements() / t.row_len, nullptr});
        }
        t.gguf_name = arch::map_part_name(*part, mapped_from);
        if (t.gguf_name.empty())
            fail_input("cannot map checkpoint tensor '" + st.name + "' to a " + std::string(spec->display) +
                       (part->kind == PartKind::text ? " GGUF" : " vision") + " tensor");
        for (const auto& tr : part->transforms)
            if (tr.on(mapped_from)) {
                t.transform = tr.transform;
                break;
            }
        if (t.transform.kind == TensorTransform::Kind::patch_hwc_to_chw) {
            // (D, P*P*3) -> ne [P, P, 3, D]
            const uint64_t p = static_cast<uint64_t>(std::llround(std::sqrt(static_cast<double>(t.row_len / 3))));
            if (t.ne.size() != 2 || p * p * 3 != t.row_len)
                fail_input("tensor '" + st.name + "' is not a patch embedding of P*P*3 columns");
            t.transform.patch = static_cast<uint32_t>(p);
            t.ne = {p, p, 3, t.ne[1]};
        }
        for (const auto& rr : part->rows) {
            if (!rr.on(mapped_from)) continue;
            if (t.ne.size() != 2) fail_input("tensor '" + st.name + "' should be 2-D");
            const uint64_t have = t.segments[0].rows;
            switch (rr.rule) {
                case arch::RowsRow::Rule::tokens_exact:
                    if (have < vocab.tokens)
                        fail_input("tensor '" + st.name + "' has " + std::to_string(have) + " rows but the vocabulary has " +
                                   std::to_string(vocab.tokens) + " tokens");
                    t.segments[0].rows = vocab.tokens;
                    break;
                case arch::RowsRow::Rule::pad_to_vocab: {
                    const int64_t vs = json_int(arch::get_or(cfg.text, "vocab_size", 262400), "vocab_size");
                    if (vs > 0 && static_cast<uint64_t>(vs) > have)
                        t.segments.push_back({nullptr, 0, static_cast<uint64_t>(vs) - have, nullptr});
                    break;
                }
                case arch::RowsRow::Rule::cut_to_tokenizer_json:
                    if (vocab.tokenizer_json_rows && have > vocab.tokenizer_json_rows) t.segments[0].rows = vocab.tokenizer_json_rows;
                    break;
            }
            break;
        }
        t.rows = 0;
        for (const auto& sg : t.segments) t.rows += sg.rows;
        if (t.ne.size() == 2) t.ne[1] = t.rows;
        params[part->kind] += t.rows * t.row_len;
        plan.tensors.push_back(std::move(t));
    }
    for (const auto& [stem, s] : stacks)
        if (std::any_of(s.members.begin(), s.members.end(), [](const StTensor* m) { return !m; }))
            fail_input(req.src.string() + ": checkpoint tensors '" + stem + ".*' are incomplete (cannot stack them)");
    bool has_text = false, has_mmproj = false;
    for (const auto& t : plan.tensors) (t.part == PartKind::text ? has_text : has_mmproj) = true;
    if (!has_text) fail_input(req.src.string() + ": no " + std::string(spec->display) + " text tensors found");
    if (req.mmproj && !has_mmproj) fail_input(req.src.string() + ": --mmproj was given but the checkpoint has no vision tower");
    if (req.mmproj && !cfg.has_vision()) fail_input(req.src.string() + ": vision tensors present but config.json has no vision_config");

    for (const auto& ref : req.loras) attach_lora(plan, ref);

    // sanity of shapes against the config, so a mismatched config fails with a clear line
    const int64_t hidden = json_int(arch::require(cfg.text, "hidden_size"), "hidden_size");
    for (const auto& t : plan.tensors)
        if (t.gguf_name == "token_embd.weight" && static_cast<int64_t>(t.ne[0]) != hidden)
            fail_input("config.json hidden_size " + std::to_string(hidden) + " does not match " + t.hf_name + " width " +
                       std::to_string(t.ne[0]));

    const std::string dir_name = fs::absolute(req.src).lexically_normal().filename().string().empty()
                                     ? fs::absolute(req.src).lexically_normal().parent_path().filename().string()
                                     : fs::absolute(req.src).lexically_normal().filename().string();
    const std::string base = req.name.empty() ? dir_name : req.name;
    std::string name_or_path;
    if (auto it = cfg.raw.find("_name_or_path"); it != cfg.raw.end() && it->is_string()) name_or_path = it->get<std::string>();

    const uint32_t n_layer = static_cast<uint32_t>(json_int(arch::require(cfg.text, "num_hidden_layers"), "num_hidden_layers"));
    const uint32_t n_head = static_cast<uint32_t>(json_int(arch::require(cfg.text, "num_attention_heads"), "num_attention_heads"));
    const uint32_t n_head_kv = static_cast<uint32_t>(json_int(arch::require(cfg.text, "num_key_value_heads"), "num_key_value_heads"));
    const json preprocessor = spec->mmproj && req.mmproj ? arch::load_preprocessor_config(req.src) : json::object();

    // the checkpoint's dtype: that of its first 2-D text tensor (llama.cpp's --outtype for a
    // lossless conversion is one type for the whole file)
    ConvertType lossless = ConvertType::BF16;
    for (const auto& t : plan.tensors)
        if (t.part == PartKind::text && t.ne.size() >= 2 && t.segments[0].src) {
            const StDtype d = t.segments[0].src->dtype;
            lossless = d == StDtype::F16 ? ConvertType::F16 : d == StDtype::F32 ? ConvertType::F32 : ConvertType::BF16;
            break;
        }

    auto make_file = [&](PartKind kind, const Variant& var, const fs::path& path, const std::string& label) {
        const arch::PartSpec& part = spec->part(kind);
        PlannedFile f;
        f.path = path;
        f.label = label;
        GeneralInfo g;
        const bool text = kind == PartKind::text;
        // a quantized variant is llama-quantize run on the lossless conversion of the checkpoint's
        // dtype (BF16 -> BF16, F16 -> F16, F32 -> F32): the type of the tensors the recipe keeps
        // (Gemma 3n/4: altup*, laurel*, per_layer_model_proj) and the seed of general.file_type,
        // which the recipe overwrites
        const ConvertType conv = var.recipe ? lossless : *var.convert;
        g.architecture = std::string(part.gguf_arch);
        g.type = std::string(part.gguf_type);
        g.n_params = params[kind];
        g.name = derive_model_name(name_or_path, dir_name, static_cast<int64_t>(g.n_params));
        add_general_kvs(f.layout.kv, g, req.src, true);
        arch::KvOut out{f.layout.kv, std::string(part.gguf_arch)};
        const arch::KvCtx ctx{cfg, arch::file_type_id(conv), preprocessor};
        for (const auto& row : part.kv) row(out, ctx);
        f.layout.kv.set("general.quantization_version", GgufValue::u32(kQuantizationVersion));
        if (text)
            for (const auto& [k, v] : vocab_kv.items()) f.layout.kv.set(k, v);
        std::vector<size_t> idx;
        for (size_t i = 0; i < plan.tensors.size(); ++i)
            if (plan.tensors[i].part == kind) idx.push_back(i);
        std::vector<GgmlType> types;
        for (size_t i : idx) {
            const auto& t = plan.tensors[i];
            types.push_back(arch::converter_tensor_type(part, arch::apply_renames(t.hf_name, part.renames), t.gguf_name,
                                                        t.ne.size(), t.row_len, conv));
        }
        if (var.recipe) {
            // llama-quantize: its own tensor order, its type choice, and the two version KVs
            // moved to the end (gguf_set_val_u32 re-adds an existing key last)
            std::vector<size_t> order(idx.size());
            for (size_t k = 0; k < order.size(); ++k) order[k] = k;
            std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
                return llama_quantize_order(plan.tensors[idx[a]].gguf_name, plan.tensors[idx[b]].gguf_name);
            });
            std::vector<size_t> idx2;
            std::vector<RecipeTensor> rts;
            for (size_t k : order) {
                idx2.push_back(idx[k]);
                rts.push_back({plan.tensors[idx[k]].gguf_name, plan.tensors[idx[k]].ne, types[k]});
            }
            idx = idx2;
            types = choose_tensor_types(rts, *var.recipe, n_layer, n_head, n_head_kv, overrides);
            f.layout.kv.move_to_end("general.quantization_version");
            f.layout.kv.set("general.file_type", GgufValue::u32(var.recipe->ftype));
            f.layout.kv.move_to_end("general.file_type");
            // overrides change the recipe, so the file says which were applied (llama-quantize
            // itself records only the imatrix); absent when none were given
            if (!req.overrides.tensor_types.empty()) {
                std::vector<std::string> rules;
                for (const auto& [p, t] : req.overrides.tensor_types) rules.push_back(p + "=" + type_display_name(t));
                f.layout.kv.set("quantize.tensor_type_overrides", GgufValue::string_array(rules));
            }
            if (req.overrides.token_embedding_type)
                f.layout.kv.set("quantize.token_embedding_type", GgufValue::string(type_display_name(*req.overrides.token_embedding_type)));
            if (req.overrides.output_tensor_type)
                f.layout.kv.set("quantize.output_tensor_type", GgufValue::string(type_display_name(*req.overrides.output_tensor_type)));
            if (plan.imatrix) {
                add_imatrix_kvs(f.layout.kv, *plan.imatrix);
                f.imatrix_of = imatrix_for_tensors(*plan.imatrix, rts, types);
            }
        }
        for (size_t k = 0; k < idx.size(); ++k) {
            const auto& t = plan.tensors[idx[k]];
            f.layout.add_tensor(t.gguf_name, t.ne, types[k]);
            f.tensor_of.push_back(idx[k]);
        }
        f.layout.finalize();
        plan.files.push_back(std::move(f));
    };
    // merged files are named after the base and the adapters: never mistaken for (or written over)
    // the base model's own files
    std::string merged = base;
    if (req.name.empty())
        for (const auto& ad : plan.adapters) merged += "-" + ad->label();
    for (const auto& var : req.types)
        make_file(PartKind::text, var, req.out_dir / (merged + "-" + var.label() + ".gguf"), var.label());
    if (req.mmproj) {
        Variant mv;
        mv.convert = req.mmproj_type;
        // named after the adapters too when one of them changed the vision tower
        bool vision_merged = false;
        for (const auto& ad : plan.adapters)
            for (const auto& p : ad->pairs) vision_merged |= p.part == PartKind::mmproj;
        make_file(PartKind::mmproj, mv, req.out_dir / ("mmproj-" + (vision_merged ? merged : base) + "-" + out_type_name(req.mmproj_type) + ".gguf"),
                  std::string("mmproj ") + out_type_name(req.mmproj_type));
    }
    if (req.unmerged_too && !plan.adapters.empty()) {
        // llama.cpp's mmproj holds no adapter (it applies to the language model); the base
        // files share the pass and the mmproj
        for (const auto& ad : plan.adapters)
            for (const auto& p : ad->pairs)
                if (p.part != PartKind::text)
                    fail_input(ad->dir.string() + ": adapter targets the vision tower (" + p.module +
                               "), which a GGUF adapter on the base model cannot carry");
        for (const auto& var : req.types) {
            make_file(PartKind::text, var, req.out_dir / (base + "-" + var.label() + ".gguf"), var.label() + " base");
            plan.files.back().without_lora = true;
        }
    }
    return plan;
}

struct ConvertResult {
    std::vector<fs::path> files;
    ExecuteStats stats;
    // per file (plan order), per layout tensor: error of the written values against the source
    std::vector<std::vector<ErrorStat>> errors;
    // write_conversion(): every file complete under its temporary name, not yet in place
    std::vector<std::unique_ptr<GgufOutput>> pending;
};

// The exact bytes the plan's files take on disk.
inline uint64_t planned_output_bytes(const ConversionPlan& plan) {
    uint64_t n = 0;
    for (const auto& f : plan.files) n += f.layout.file_size;
    return n;
}

// Writes every planned file under its temporary name and leaves them in r.pending: the caller
// adds its own files (quality reports) and renames them all together with commit_all().
// On any error (or an interrupt) the temporaries are removed.
inline ConvertResult write_conversion(const ConversionPlan& plan, unsigned threads,
                                      const std::function<void(uint64_t, uint64_t)>& progress = {}) {
    // output buffers: 128 MiB in all (8 segments of 4 MiB per file for up to four files), at
    // least 2 per file when many variants are written at once (more spill through the cache)
    const size_t per_file = std::clamp<size_t>(32 / std::max<size_t>(1, plan.files.size()), 2, DirectWriter::kMaxSegments);
    std::vector<std::unique_ptr<GgufOutput>> outs;
    for (const auto& f : plan.files) outs.push_back(std::make_unique<GgufOutput>(f.path, f.layout, per_file));
    std::vector<TensorTask> tasks(plan.tensors.size());
    for (size_t i = 0; i < plan.tensors.size(); ++i) {
        const auto& t = plan.tensors[i];
        tasks[i].segments = t.segments;
        tasks[i].row_len = t.row_len;
        tasks[i].transform = t.transform;
    }
    ConvertResult r;
    r.errors.resize(plan.files.size());
    for (size_t fi = 0; fi < plan.files.size(); ++fi) {
        const auto& f = plan.files[fi];
        r.errors[fi].resize(f.tensor_of.size());
        for (size_t k = 0; k < f.tensor_of.size(); ++k) {
            const auto& info = f.layout.tensors[k];
            tasks[f.tensor_of[k]].sinks.push_back(
                {outs[fi].get(), f.layout.data_start + info.offset, info.type, f.imatrix_of.empty() ? nullptr : f.imatrix_of[k],
                 &r.errors[fi][k], f.without_lora});
        }
    }
    // tensors no output wants (e.g. the vision tower without --mmproj) are not read
    std::vector<TensorTask> wanted;
    for (auto& t : tasks)
        if (!t.sinks.empty()) wanted.push_back(std::move(t));
    r.stats = execute_tasks(wanted, threads, progress);
    for (auto& o : outs) {
        o->finish();
        r.files.push_back(o->path());
    }
    r.pending = std::move(outs);
    return r;
}

// Writes every planned file. Outputs appear only when all of them are complete (commit_all).
inline ConvertResult run_conversion(const ConversionPlan& plan, unsigned threads,
                                    const std::function<void(uint64_t, uint64_t)>& progress = {}) {
    ConvertResult r = write_conversion(plan, threads, progress);
    std::vector<TempFile*> temps;
    for (auto& o : r.pending) temps.push_back(&o->temp());
    commit_all(temps);
    r.pending.clear();
    return r;
}

}  // namespace cmf
