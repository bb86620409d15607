// Plan and run a conversion: checkpoint directory -> one GGUF per requested type (+ mmproj).
//
// The plan is pure: from config, tokenizer and tensor headers it decides every output file's KVs,
// tensor list, types and byte layout before any weight is read (`cmf quantize --dry-run` prints
// it). Execution then streams each source tensor once into all outputs (pipeline/execute.h).
#pragma once

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cmf/arch/gemma3.h"
#include "cmf/arch/general_kv.h"
#include "cmf/format/gguf.h"
#include "cmf/format/safetensors.h"
#include "cmf/pipeline/execute.h"
#include "cmf/quant/imatrix.h"
#include "cmf/quant/recipe.h"
#include "cmf/tokenizer/gguf_vocab.h"

namespace cmf {

// GGML_QNT_VERSION: the quantization format generation every GGUF records.
inline constexpr uint32_t kQuantizationVersion = 2;

// One output variant: a converter type (f32/f16/bf16: convert_hf_to_gguf --outtype) or a
// llama-quantize recipe applied to the lossless conversion of the checkpoint's own dtype
// (BF16->BF16, F16->F16, F32->F32: cmf quantizes from the exact source values, which are what
// that file holds) (q8_0, q4_k_m, ...).
struct Variant {
    std::optional<gemma3::OutType> convert;
    const QuantRecipe* recipe = nullptr;
    std::string label() const;
};

struct ConvertRequest {
    fs::path src;
    fs::path out_dir;
    std::vector<Variant> types;
    TypeOverrides overrides;
    bool mmproj = false;
    gemma3::OutType mmproj_type = gemma3::OutType::F16;
    std::string name;  // output base name; default: the checkpoint directory name
    std::shared_ptr<const ImatrixData> imatrix;  // llama-quantize --imatrix, for the recipe variants
};

struct PlannedTensor {
    const StTensor* src = nullptr;
    gemma3::Part part = gemma3::Part::skip;
    std::string hf_name, gguf_name;
    std::vector<uint64_t> ne;  // GGUF shape, innermost first
    uint64_t rows = 0, row_len = 0;
    TensorTransform transform;  // applied to the widened values (Gemma norm 1 + w)
};

struct PlannedFile {
    fs::path path;
    std::string label;  // "F16", "mmproj F16"
    GgufLayout layout;
    std::vector<size_t> tensor_of;  // for each layout tensor: index into ConversionPlan::tensors
    std::vector<const float*> imatrix_of;  // for each layout tensor: its importance values or null (empty: none)
};

struct ConversionPlan {
    SafetensorsCheckpoint checkpoint;
    HfConfig config;
    std::vector<PlannedTensor> tensors;
    std::vector<PlannedFile> files;
    std::shared_ptr<const ImatrixData> imatrix;  // keeps PlannedFile::imatrix_of valid
};

inline const char* out_type_name(gemma3::OutType t) {
    switch (t) {
        case gemma3::OutType::F32: return "F32";
        case gemma3::OutType::F16: return "F16";
        case gemma3::OutType::BF16: return "BF16";
        case gemma3::OutType::Q8_0: return "Q8_0";
    }
    return "?";
}

inline std::string Variant::label() const { return recipe ? recipe->name : out_type_name(*convert); }

inline std::optional<gemma3::OutType> parse_out_type(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (s == "f32") return gemma3::OutType::F32;
    if (s == "f16") return gemma3::OutType::F16;
    if (s == "bf16") return gemma3::OutType::BF16;
    if (s == "q8_0" || s == "q8") return gemma3::OutType::Q8_0;
    return std::nullopt;
}

// f32, f16, bf16 are converter outputs; every quantized type is a llama-quantize recipe (its
// Q8_0 has the same tensor data as the converter's, in llama-quantize's tensor and KV order).
inline std::optional<Variant> parse_variant(std::string s) {
    Variant v;
    std::string low = s;
    for (auto& c : low) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (low == "f32" || low == "f16" || low == "bf16") {
        v.convert = parse_out_type(low);
        return v;
    }
    if (low == "q8") low = "q8_0";
    if (const QuantRecipe* r = find_recipe(low)) {
        v.recipe = r;
        return v;
    }
    return std::nullopt;
}

inline bool is_supported_architecture(const std::string& a) {
    return a == "Gemma3ForCausalLM" || a == "Gemma3ForConditionalGeneration";
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
        // one slice per expert would be needed for 3-D tensors; Gemma 3 has none
        if (ne.size() > 2 && ne[2] > 1) fail_input(rts[k].name + ": per-expert importance matrices are not supported");
        if (types[k] == GgmlType::F32 || types[k] == GgmlType::F16 || types[k] == GgmlType::BF16) continue;
        out[k] = it->second.data();
    }
    return out;
}

inline ConversionPlan plan_conversion(const ConvertRequest& req) {
    ConversionPlan plan;
    plan.config = load_hf_config(req.src);
    HfConfig& cfg = plan.config;
    if (!is_supported_architecture(cfg.architecture))
        fail_input("unsupported architecture '" + cfg.architecture + "' in " + (req.src / "config.json").string() +
                   " (cmf converts Gemma3ForCausalLM and Gemma3ForConditionalGeneration)");
    gemma3::apply_text_defaults(cfg);
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
    const uint64_t n_vocab = add_gemma3_tokenizer_kvs(vocab_kv, req.src, cfg.text);

    plan.checkpoint = open_safetensors_checkpoint(req.src);
    uint64_t text_params = 0, vision_params = 0;
    for (const auto& st : plan.checkpoint.tensors) {
        gemma3::MappedName m = gemma3::map_tensor(st.name);
        if (m.part == gemma3::Part::skip) continue;
        if (!st_dtype_is_float_source(st.dtype))
            fail_input(st.file.filename().string() + ": tensor '" + st.name + "' has dtype " + st_dtype_info(st.dtype).name +
                       "; cmf converts BF16, F16 and F32 checkpoints");
        if (st.shape.empty() || st.n_elements() == 0) fail_input(st.file.filename().string() + ": tensor '" + st.name + "' is empty");
        if (st.shape.size() > kGgmlMaxDims) fail_input("tensor '" + st.name + "' has more than 4 dimensions");
        PlannedTensor t;
        t.src = &st;
        t.part = m.part;
        t.hf_name = st.name;
        t.gguf_name = m.gguf;
        t.row_len = st.row_length();
        t.rows = st.n_elements() / t.row_len;
        for (auto it = st.shape.rbegin(); it != st.shape.rend(); ++it) t.ne.push_back(static_cast<uint64_t>(*it));
        t.transform = gemma3::tensor_transform(m.part, st.name);
        if (m.gguf == "token_embd.weight") {
            // the converter keeps exactly as many rows as the token list has entries
            if (st.shape.size() != 2) fail_input("tensor '" + st.name + "' should be 2-D");
            if (static_cast<uint64_t>(st.shape[0]) < n_vocab)
                fail_input("tensor '" + st.name + "' has " + std::to_string(st.shape[0]) + " rows but the vocabulary has " +
                           std::to_string(n_vocab) + " tokens");
            t.rows = n_vocab;
            t.ne[1] = n_vocab;
        }
        (m.part == gemma3::Part::text ? text_params : vision_params) += t.rows * t.row_len;
        plan.tensors.push_back(std::move(t));
    }
    bool has_text = false, has_vision = false;
    for (const auto& t : plan.tensors) (t.part == gemma3::Part::text ? has_text : has_vision) = true;
    if (!has_text) fail_input(req.src.string() + ": no Gemma 3 text tensors found");
    if (req.mmproj && !has_vision) fail_input(req.src.string() + ": --mmproj was given but the checkpoint has no vision tower");
    if (req.mmproj && !cfg.has_vision()) fail_input(req.src.string() + ": vision tensors present but config.json has no vision_config");

    // sanity of shapes against the config, so a mismatched config fails with a clear line
    const int64_t hidden = json_int(cfg.text["hidden_size"], "hidden_size");
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

    const uint32_t n_layer = static_cast<uint32_t>(json_int(cfg.text["num_hidden_layers"], "num_hidden_layers"));
    const uint32_t n_head = static_cast<uint32_t>(json_int(cfg.text["num_attention_heads"], "num_attention_heads"));
    const uint32_t n_head_kv = static_cast<uint32_t>(json_int(cfg.text["num_key_value_heads"], "num_key_value_heads"));

    auto make_file = [&](gemma3::Part part, const Variant& var, const fs::path& path, const std::string& label) {
        PlannedFile f;
        f.path = path;
        f.label = label;
        GeneralInfo g;
        const bool text = part == gemma3::Part::text;
        // a quantized variant is llama-quantize run on the lossless conversion; the converter type
        // here only seeds general.file_type, which the recipe overwrites (every 2-D text weight
        // is quantized, so no tensor keeps this type)
        const gemma3::OutType conv = var.recipe ? gemma3::OutType::BF16 : *var.convert;
        g.architecture = text ? "gemma3" : "clip";
        g.type = text ? "model" : "mmproj";
        g.n_params = text ? text_params : vision_params;
        g.name = derive_model_name(name_or_path, dir_name, static_cast<int64_t>(g.n_params));
        add_general_kvs(f.layout.kv, g, req.src, true);
        if (text) gemma3::add_text_hparams(f.layout.kv, cfg, gemma3::file_type_id(conv));
        else gemma3::add_vision_hparams(f.layout.kv, cfg, gemma3::file_type_id(conv));
        f.layout.kv.set("general.quantization_version", GgufValue::u32(kQuantizationVersion));
        if (text)
            for (const auto& [k, v] : vocab_kv.items()) f.layout.kv.set(k, v);
        std::vector<size_t> idx;
        for (size_t i = 0; i < plan.tensors.size(); ++i)
            if (plan.tensors[i].part == part) idx.push_back(i);
        std::vector<GgmlType> types;
        for (size_t i : idx) {
            const auto& t = plan.tensors[i];
            types.push_back(gemma3::converter_tensor_type(t.part, t.hf_name, t.gguf_name, t.ne.size(), t.row_len, conv));
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
    for (const auto& var : req.types)
        make_file(gemma3::Part::text, var, req.out_dir / (base + "-" + var.label() + ".gguf"), var.label());
    if (req.mmproj) {
        Variant mv;
        mv.convert = req.mmproj_type;
        make_file(gemma3::Part::vision, mv, req.out_dir / ("mmproj-" + base + "-" + out_type_name(req.mmproj_type) + ".gguf"),
                  std::string("mmproj ") + out_type_name(req.mmproj_type));
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
        tasks[i].src = t.src;
        tasks[i].rows = t.rows;
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
                 &r.errors[fi][k]});
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
