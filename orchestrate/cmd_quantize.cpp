// cmf quantize: local checkpoint in, GGUF files out.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "cmf/core/temp_file.h"
#include "cmf/pipeline/adapter_gguf.h"
#include "cmf/pipeline/convert.h"
#include "cmf/pipeline/ollama_layout.h"
#include "cmf/pipeline/quality_report.h"
#include "cmf/engine/imatrix_file.h"
#include "orchestrate/args.h"
#include "orchestrate/engine_args.h"
#include "orchestrate/lossless.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

static const char* kQuantizeHelp = R"(usage: cmf quantize SRC_DIR --quant TYPES [--out DIR] [--lora ADAPTER[:SCALE]]... [options]
       cmf quantize ADAPTER_DIR --base BASE_DIR --quant f32|f16|bf16|q8_0 [--out DIR]

Converts a Hugging Face safetensors checkpoint (config.json architectures[0] one of
@ARCHS@) into one GGUF file per requested type,
byte-for-byte what llama.cpp's convert_hf_to_gguf.py and llama-quantize write.

  SRC_DIR               checkpoint directory: config.json, model*.safetensors (+ index),
                        tokenizer.model or tokenizer.json, tokenizer_config.json
  --quant TYPES         comma-separated, all written in one pass (default: f16):
                        f32, f16, bf16 (convert_hf_to_gguf --outtype), and the
                        llama-quantize recipes q8_0, q6_k, q5_k_m, q5_k_s, q4_k_m, q4_k_s,
                        q3_k_l, q3_k_m, q3_k_s, q2_k, q5_1, q5_0, q4_1, q4_0 applied to the
                        lossless conversion; aliases q4s, q4, q8; q8_0_convert is
                        convert_hf_to_gguf --outtype q8_0 itself (NAME-Q8_0-convert.gguf:
                        for Gemma 3n/4 it also quantizes the altup, laurel and
                        per_layer_model_proj tensors that llama-quantize keeps)
  --tensor-type RE=TYPE  tensors whose name matches RE get TYPE (llama-quantize's option;
                        repeatable, first match wins)
  --keep-layers L=TYPE  whole blocks to TYPE, e.g. 0-3,30-33=q8_0 (repeatable)
  --token-embedding-type TYPE, --output-tensor-type TYPE
  --imatrix FILE        importance matrix from llama-imatrix (GGUF or legacy .dat) for the
                        quantized types, used and recorded exactly as llama-quantize does;
                        `auto`: computed here first with llama.cpp (the engine) from the F16
                        of this checkpoint on cmf's built-in calibration text (medical document
                        extraction + general instructions, chat-formatted), as llama-imatrix
                        computes it, and kept as OUT/NAME.imatrix.gguf
  --imatrix-text FILE   with --imatrix auto: calibrate on this text instead (read as
                        llama-imatrix -f reads it)
  --out DIR             output directory, created if missing (default: .)
  --name NAME           file base name (default: the checkpoint directory name);
                        files are NAME-<TYPE>.gguf, mmproj-NAME-<TYPE>.gguf
  --lora DIR[:SCALE]    merge a PEFT LoRA adapter (adapter_config.json +
                        adapter_model.safetensors) into the weights as they stream, the
                        arithmetic of PEFT merge_and_unload(); SCALE multiplies PEFT's
                        alpha/r (alpha/sqrt(r) for rsLoRA); repeatable, applied in order
  --lora-gguf TYPE      with --lora: also write each adapter as a GGUF adapter of TYPE
                        (f32, f16, bf16, q8_0), in the same pass
  --with-base           with --lora: also write every type without the adapters
                        (NAME-<TYPE>.gguf; merged files are NAME-<ADAPTER>-<TYPE>.gguf)
  --base DIR            SRC_DIR is a LoRA adapter: write llama.cpp's GGUF adapter for the
                        base checkpoint DIR (only its config.json is read), one file per
                        type (f32, f16, bf16, q8_0), named as convert_lora_to_gguf.py names
                        it (NAME-<TYPE>-LoRA.gguf); rsLoRA adapters get the alpha that makes
                        llama.cpp run them at PEFT's scale
  --mmproj              also write the vision tower + projector as llama.cpp's mmproj file
  --mmproj-type TYPE    f16 (default), bf16, q8_0 or f32
  --layout L            llama.cpp (default: text GGUF, + mmproj with --mmproj) or ollama:
                        Ollama's single file with the vision tower and projector inside
                        (unquantized), written as ollama-NAME-<TYPE>.gguf
  --threads N           worker threads (default: all cores)
  --dry-run             print the plan (files, tensors, types, sizes) and write nothing
  --quiet               no progress lines

Outputs are all-or-nothing: written as hidden .cmf-tmp-* files and renamed together once every
one is complete. Free space is checked first against their exact size. Ctrl-C / SIGTERM remove
the temporaries (exit 130 / 143); temporaries of killed runs are removed by the next run here.

Environment (same bytes either way):
  CMF_SIMD=LEVEL        quantizer kernels: scalar, sse42, avx2, avx512 or auto (default:
                        the best the CPU has; `cmf --version` names it)
  CMF_DIRECT_IO=0       write outputs through the page cache instead of O_DIRECT

Example:
  cmf quantize ./medgemma-1.5-4b-it --quant f16,q8_0 --mmproj --out ./gguf
)";

// "gemma-3-4b-it-Q4_K_M.gguf and 2 more": what the interrupt line says is being written
static std::string describe_outputs(const ConversionPlan& plan) {
    if (plan.files.empty()) return "nothing";
    std::string s = plan.files[0].path.filename().string();
    if (plan.files.size() > 1) s += " and " + std::to_string(plan.files.size() - 1) + " more";
    return s;
}

static std::string human_bytes(double b) {
    const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        ++i;
    }
    char s[32];
    std::snprintf(s, sizeof s, i ? "%.2f %s" : "%.0f %s", b, u[i]);
    return s;
}

// The factory's short variant names (the old build scripts' q4s / q4 / q8).
static std::string variant_alias(const std::string& v) {
    if (v == "q4s") return "q4_k_s";
    if (v == "q4") return "q4_k_m";
    if (v == "q8") return "q8_0";
    return v;
}

static std::string supported_types() {
    std::string s = "f32, f16, bf16";
    for (const auto& r : kQuantRecipes) {
        std::string n = r.name;
        for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        s += ", " + n;
    }
    return s + "; aliases q4s, q4, q8";
}

static GgmlType parse_type_arg(const std::string& opt, const std::string& v) {
    auto t = parse_ggml_type(v);
    if (!t || !quantize_supported(*t)) fail(ErrorKind::usage, "quantize: " + opt + ": unknown or unsupported tensor type '" + v + "'");
    return *t;
}

// --tensor-type REGEX=TYPE (llama-quantize's meaning), --keep-layers 0,1,30-33=TYPE (whole
// blocks, a shorthand for ^blk\.(0|1|30|...)\. patterns), embedding and output types.
static TypeOverrides parse_overrides(const Args& a) {
    TypeOverrides ov;
    for (const auto& kl : a.all("keep-layers")) {
        auto eq = kl.rfind('=');
        if (eq == std::string::npos) fail(ErrorKind::usage, "quantize: --keep-layers wants LIST=TYPE, e.g. 0-3,30-33=q8_0");
        const GgmlType t = parse_type_arg("--keep-layers", kl.substr(eq + 1));
        std::string alt;
        for (const auto& item : split_list(kl.substr(0, eq))) {
            auto dash = item.find('-');
            long lo, hi;
            try {
                lo = std::stol(item.substr(0, dash));
                hi = dash == std::string::npos ? lo : std::stol(item.substr(dash + 1));
            } catch (...) {
                fail(ErrorKind::usage, "quantize: --keep-layers: '" + item + "' is not a layer number or range");
            }
            if (lo < 0 || hi < lo || hi > 10000) fail(ErrorKind::usage, "quantize: --keep-layers: bad range '" + item + "'");
            for (long l = lo; l <= hi; ++l) alt += (alt.empty() ? "" : "|") + std::to_string(l);
        }
        if (alt.empty()) fail(ErrorKind::usage, "quantize: --keep-layers lists no layer");
        ov.tensor_types.emplace_back("^blk\\.(" + alt + ")\\.", t);
    }
    for (const auto& tt : a.all("tensor-type")) {
        auto eq = tt.rfind('=');
        if (eq == std::string::npos || eq == 0) fail(ErrorKind::usage, "quantize: --tensor-type wants REGEX=TYPE, e.g. attn_v=q8_0");
        // llama-quantize lowercases the pattern (tools/quantize/quantize.cpp parse_tensor_type)
        std::string re = tt.substr(0, eq);
        for (auto& c : re) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        ov.tensor_types.emplace_back(re, parse_type_arg("--tensor-type", tt.substr(eq + 1)));
    }
    if (auto t = a.get("token-embedding-type")) ov.token_embedding_type = parse_type_arg("--token-embedding-type", *t);
    if (auto t = a.get("output-tensor-type")) ov.output_tensor_type = parse_type_arg("--output-tensor-type", *t);
    return ov;
}

// --imatrix auto: the lossless F16 of the checkpoint (with the --lora adapters merged) in a
// temporary file, an importance matrix on the built-in calibration text (or --imatrix-text
// FILE) computed with the engine as llama-imatrix computes it, written beside the outputs as
// NAME.imatrix.gguf; its path is what the quantized files record (quantize.imatrix.file).
static fs::path auto_imatrix(const ConvertRequest& req, const Args& a) {
    engine::require();
    std::error_code ec;
    fs::create_directories(req.out_dir, ec);
    const std::string name = req.name.empty() ? fs::path(req.src).filename().string() : req.name;
    const fs::path out = req.out_dir / (name + ".imatrix.gguf");
    Args ta;
    if (auto t = a.get("imatrix-text")) ta.values["text"] = {*t};
    const engine::EvalText text = eval_text(ta, "quantize", engine::texts::calibration(), "built-in calibration");
    const std::vector<std::string> datasets{a.get("imatrix-text").value_or(engine::kBuiltinCalibrationDataset)};
    std::fprintf(stderr, "cmf: computing an importance matrix on the %s text (F16 of %s, llama.cpp)\n", text.label.c_str(), req.src.string().c_str());
    const LosslessModel model = lossless_model(req.src, req.out_dir, req.loras);
    const engine::Imatrix m = engine::collect_imatrix(model.path(), text, engine::EvalSettings{});
    engine::write_imatrix_gguf(out, m, datasets);
    std::fprintf(stderr, "cmf: %s: %zu weights, %u chunks of %u tokens\n", out.string().c_str(), m.entries.size(), m.chunk_count, m.chunk_size);
    return out;
}

int cmd_quantize(const std::vector<std::string>& argv) {
    Args a = parse_args(argv, {"quant", "out", "name", "mmproj-type", "threads", "tensor-type", "keep-layers", "token-embedding-type",
                               "output-tensor-type", "imatrix", "imatrix-text", "layout", "lora", "base", "lora-gguf"},
                        {"mmproj", "dry-run", "quiet", "help", "with-base"}, "quantize");
    if (a.has("help")) {
        std::string help = kQuantizeHelp;
        help.replace(help.find("@ARCHS@"), 7, arch::registered_architectures());
        std::fputs(help.c_str(), stdout);
        return 0;
    }
    if (a.positional.size() != 1) fail(ErrorKind::usage, "quantize: expected one SRC_DIR (see cmf quantize --help)");
    const bool adapter_mode = a.has("base");
    if (!adapter_mode && fs::is_regular_file(fs::path(a.positional[0]) / "adapter_config.json"))
        fail(ErrorKind::usage, "quantize: " + a.positional[0] + " is a LoRA adapter: add --base BASE_DIR to write it as a GGUF adapter, "
             "or merge it with cmf quantize BASE_DIR --lora " + a.positional[0]);
    if (adapter_mode)
        for (const char* o : {"lora", "lora-gguf", "with-base", "mmproj", "mmproj-type", "layout", "tensor-type", "keep-layers", "token-embedding-type", "output-tensor-type", "imatrix"})
            if (a.has(o)) fail(ErrorKind::usage, std::string("quantize: --") + o + " does not apply to a LoRA adapter (--base)");
    ConvertRequest req;
    req.src = a.positional[0];
    req.out_dir = a.get("out").value_or(".");
    req.name = a.get("name").value_or("");
    req.mmproj = a.has("mmproj");
    // --layout ollama (issue 5): the llama.cpp plan plus apply_ollama_layout() below
    const std::string layout = a.get("layout").value_or("llama.cpp");
    if (layout != "llama.cpp" && layout != "ollama") fail(ErrorKind::usage, "quantize: --layout must be llama.cpp or ollama");
    const bool ollama_layout = layout == "ollama";
    if (ollama_layout && req.mmproj) fail(ErrorKind::usage, "quantize: --layout ollama puts the vision tower in the model file; drop --mmproj");
    std::vector<ConvertType> adapter_types;
    for (const auto& t : split_list(a.get("quant").value_or("f16"))) {
        if (adapter_mode) {
            auto ot = parse_out_type(t);
            if (!ot) fail(ErrorKind::usage, "quantize: a LoRA adapter is written as f32, f16, bf16 or q8_0, not '" + t + "'");
            if (std::find(adapter_types.begin(), adapter_types.end(), *ot) == adapter_types.end()) adapter_types.push_back(*ot);
            continue;
        }
        auto v = parse_variant(variant_alias(t));
        if (!v) fail(ErrorKind::usage, "quantize: unknown type '" + t + "' (supported: " + supported_types() + ")");
        bool dup = false;
        for (const auto& x : req.types) dup |= x.label() == v->label();
        if (!dup) req.types.push_back(*v);
    }
    req.overrides = parse_overrides(a);
    const bool imatrix_auto = a.get("imatrix") == std::optional<std::string>("auto");
    if (a.has("imatrix-text") && !imatrix_auto) fail(ErrorKind::usage, "quantize: --imatrix-text goes with --imatrix auto");
    if (auto im = a.get("imatrix"); im && !imatrix_auto) req.imatrix = std::make_shared<const ImatrixData>(load_imatrix(*im));
    if (req.types.empty() && adapter_types.empty()) fail(ErrorKind::usage, "quantize: --quant lists no type");
    for (const auto& l : a.all("lora")) req.loras.push_back(parse_lora_ref(l));
    req.unmerged_too = a.has("with-base");
    std::optional<ConvertType> lora_gguf;
    if (auto t = a.get("lora-gguf")) {
        lora_gguf = parse_out_type(*t);
        if (!lora_gguf) fail(ErrorKind::usage, "quantize: --lora-gguf wants f32, f16, bf16 or q8_0, not '" + *t + "'");
    }
    if ((lora_gguf || req.unmerged_too) && req.loras.empty()) fail(ErrorKind::usage, "quantize: --lora-gguf and --with-base go with --lora");
    if (auto mt = a.get("mmproj-type")) {
        auto ot = parse_out_type(*mt);
        if (!ot) fail(ErrorKind::usage, "quantize: unknown --mmproj-type '" + *mt + "'");
        req.mmproj_type = *ot;
    }
    unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    if (auto t = a.get("threads")) {
        try {
            threads = static_cast<unsigned>(std::stoul(*t));
        } catch (...) {
            threads = 0;
        }
        if (threads == 0 || threads > 1024) fail(ErrorKind::usage, "quantize: --threads must be a number from 1 to 1024");
    }
    if (!req.name.empty() && req.name.find('/') != std::string::npos) fail(ErrorKind::usage, "quantize: --name must not contain '/'");

    const auto t0 = std::chrono::steady_clock::now();
    if (imatrix_auto && std::any_of(req.types.begin(), req.types.end(), [](const Variant& v) { return v.recipe != nullptr; }))
        req.imatrix = std::make_shared<const ImatrixData>(load_imatrix(auto_imatrix(req, a)));
    ConversionPlan plan;
    if (adapter_mode) {
        AdapterRequest ar;
        ar.adapter = req.src;
        ar.base = *a.get("base");
        ar.out_dir = req.out_dir;
        ar.types = adapter_types;
        ar.name = req.name;
        plan = plan_adapter_conversion(ar);
    } else {
        plan = plan_conversion(req);
        if (lora_gguf)
            for (const auto& ref : req.loras) {
                AdapterRequest ar;
                ar.adapter = ref.dir;
                ar.base = req.src;
                ar.out_dir = req.out_dir;
                ar.types = {*lora_gguf};
                add_adapter_files(plan, ar);
            }
    }
    for (const auto& ad : plan.adapters)
        if (!adapter_mode)
            std::fprintf(stderr, "cmf: merging %s (r %u, alpha %g%s, %zu targets)\n", ad->label().c_str(), ad->r, ad->alpha,
                         ad->rslora ? ", rsLoRA" : "", ad->pairs.size());
    if (ollama_layout) apply_ollama_layout(plan);
    if (a.has("dry-run")) {
        for (const auto& f : plan.files) {
            std::printf("%s  (%zu tensors, %s)\n", f.path.string().c_str(), f.layout.tensors.size(),
                        human_bytes(static_cast<double>(f.layout.file_size)).c_str());
            for (const auto& t : f.layout.tensors) {
                std::string shape;
                for (auto d : t.ne) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
                std::printf("  %-40s [%s] %s\n", t.name.c_str(), shape.c_str(), type_display_name(t.type).c_str());
            }
        }
        return 0;
    }
    std::error_code ec;
    if (fs::is_directory(req.out_dir, ec)) {
        const SweptTemporaries swept = sweep_stale_temporaries(req.out_dir);
        if (!swept.files.empty()) std::fprintf(stderr, "cmf: %s\n", describe_sweep(swept, req.out_dir).c_str());
    }
    // the directories this run creates, removed again if it is refused below
    std::vector<fs::path> created;
    for (fs::path p = fs::absolute(req.out_dir, ec); !p.empty() && !fs::exists(p, ec) && p.has_relative_path(); p = p.parent_path())
        created.push_back(p);
    fs::create_directories(req.out_dir, ec);
    if (!fs::is_directory(req.out_dir)) fail_io("cannot create output directory " + req.out_dir.string());
    if (::access(req.out_dir.c_str(), W_OK) != 0) fail_io("output directory " + req.out_dir.string() + " is not writable");
    // the plan knows every output's exact size: refuse now, leaving the directory as it was,
    // rather than fail on the last file
    try {
        require_free_space(req.out_dir, planned_output_bytes(plan), "quantizing " + describe_outputs(plan));
    } catch (const Error&) {
        for (const auto& p : created) fs::remove(p, ec);  // empty: nothing was written
        throw;
    }
    set_interrupt_context("quantizing " + describe_outputs(plan));

    const bool tty = ::isatty(2) && !a.has("quiet");
    auto last = std::chrono::steady_clock::now();
    auto progress = [&](uint64_t done, uint64_t total) {
        if (a.has("quiet")) return;
        auto now = std::chrono::steady_clock::now();
        if (!tty && now - last < std::chrono::seconds(5) && done < total) return;
        last = now;
        std::fprintf(stderr, tty ? "\r  reading %s / %s (%3.0f%%)" : "  reading %s / %s (%3.0f%%)\n", human_bytes(static_cast<double>(done)).c_str(),
                     human_bytes(static_cast<double>(total)).c_str(), total ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 100.0);
    };
    ConvertResult r = write_conversion(plan, threads, progress);
    if (tty) std::fputs("\r\033[K", stderr);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%-48s %8s %12s %7s\n", "file", "tensors", "size", "bpw");
    for (const auto& f : plan.files) {
        uint64_t elems = 0, bytes = 0;
        for (const auto& t : f.layout.tensors) {
            elems += t.n_elements();
            bytes += t.nbytes;
        }
        std::printf("%-48s %8zu %12s %7.2f\n", f.path.filename().string().c_str(), f.layout.tensors.size(),
                    human_bytes(static_cast<double>(f.layout.file_size)).c_str(),
                    elems ? 8.0 * static_cast<double>(bytes) / static_cast<double>(elems) : 0.0);
    }
    // quality reports: JSON next to each file, renamed into place with the GGUF files, all or
    // none; the gist on the console
    std::vector<std::unique_ptr<TempFile>> reports;
    std::vector<TempFile*> outputs;
    for (auto& o : r.pending) outputs.push_back(&o->temp());
    for (size_t fi = 0; fi < plan.files.size(); ++fi) {
        fs::path qp = plan.files[fi].path;
        qp.replace_extension(".quality.json");
        reports.push_back(std::make_unique<TempFile>(qp));
        reports.back()->write(quality_report_json(plan, plan.files[fi], r.errors[fi]).dump(1) + "\n");
        outputs.push_back(reports.back().get());
    }
    commit_all(outputs);
    for (size_t fi = 0; fi < plan.files.size(); ++fi) {
        const auto& f = plan.files[fi];
        const QualitySummary q = summarize_quality(plan, f, r.errors[fi]);
        if (q.overall_relative_rms == 0) continue;  // lossless
        std::printf("%s: relative RMS error %.3e, max abs %.3e; worst:", f.path.filename().string().c_str(), q.overall_relative_rms, q.max_abs);
        for (size_t i = 0; i < q.worst.size(); ++i) std::printf("%s %s %.2e", i ? "," : "", q.worst[i].first.c_str(), q.worst[i].second);
        std::printf("\n");
    }
    std::printf("read %s of weights once, wrote %zu file(s) in %.2f s with %u thread(s)\n",
                human_bytes(static_cast<double>(r.stats.bytes_read)).c_str(), r.files.size(), secs, threads);
    const bool has_tower = std::any_of(plan.tensors.begin(), plan.tensors.end(), [](const PlannedTensor& t) { return t.part == PartKind::mmproj; });
    if (!req.mmproj && !ollama_layout && has_tower) std::printf("note: this checkpoint has a vision tower; add --mmproj to write it\n");
    return 0;
}

}  // namespace cmf::cli
