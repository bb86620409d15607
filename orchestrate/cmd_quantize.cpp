// cmf quantize: local checkpoint in, GGUF files out.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "cmf/pipeline/convert.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

static const char* kQuantizeHelp = R"(usage: cmf quantize SRC_DIR --quant TYPES [--out DIR] [options]

Converts a Hugging Face Gemma 3 safetensors checkpoint (Gemma3ForCausalLM or
Gemma3ForConditionalGeneration, legacy or transformers-v5 layout) into one GGUF file per
requested type, byte-for-byte what llama.cpp's convert_hf_to_gguf.py writes.

  SRC_DIR               checkpoint directory: config.json, model*.safetensors (+ index),
                        tokenizer.model or tokenizer.json, tokenizer_config.json
  --quant TYPES         comma-separated: f32, f16, bf16, q8_0 (default: f16)
  --out DIR             output directory, created if missing (default: .)
  --name NAME           file base name (default: the checkpoint directory name);
                        files are NAME-<TYPE>.gguf, mmproj-NAME-<TYPE>.gguf
  --mmproj              also write the vision tower + projector as llama.cpp's mmproj file
  --mmproj-type TYPE    f16 (default), bf16, q8_0 or f32
  --threads N           worker threads (default: all cores)
  --dry-run             print the plan (files, tensors, types, sizes) and write nothing
  --quiet               no progress lines

Example:
  cmf quantize ./medgemma-1.5-4b-it --quant f16,q8_0 --mmproj --out ./gguf
)";

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

int cmd_quantize(const std::vector<std::string>& argv) {
    Args a = parse_args(argv, {"quant", "out", "name", "mmproj-type", "threads"}, {"mmproj", "dry-run", "quiet", "help"}, "quantize");
    if (a.has("help")) {
        std::fputs(kQuantizeHelp, stdout);
        return 0;
    }
    if (a.positional.size() != 1) fail(ErrorKind::usage, "quantize: expected one SRC_DIR (see cmf quantize --help)");
    ConvertRequest req;
    req.src = a.positional[0];
    req.out_dir = a.get("out").value_or(".");
    req.name = a.get("name").value_or("");
    req.mmproj = a.has("mmproj");
    for (const auto& t : split_list(a.get("quant").value_or("f16"))) {
        auto ot = parse_out_type(t);
        if (!ot) fail(ErrorKind::usage, "quantize: unknown type '" + t + "' (supported: f32, f16, bf16, q8_0)");
        bool dup = false;
        for (auto x : req.types) dup |= x == *ot;
        if (!dup) req.types.push_back(*ot);
    }
    if (req.types.empty()) fail(ErrorKind::usage, "quantize: --quant lists no type");
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
    ConversionPlan plan = plan_conversion(req);
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
    fs::create_directories(req.out_dir, ec);
    if (!fs::is_directory(req.out_dir)) fail_io("cannot create output directory " + req.out_dir.string());
    if (::access(req.out_dir.c_str(), W_OK) != 0) fail_io("output directory " + req.out_dir.string() + " is not writable");

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
    ConvertResult r = run_conversion(plan, threads, progress);
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
    std::printf("read %s of weights once, wrote %zu file(s) in %.2f s with %u thread(s)\n",
                human_bytes(static_cast<double>(r.stats.bytes_read)).c_str(), r.files.size(), secs, threads);
    if (!req.mmproj && plan.config.has_vision())
        std::printf("note: this checkpoint has a vision tower; add --mmproj to write it\n");
    return 0;
}

}  // namespace cmf::cli
