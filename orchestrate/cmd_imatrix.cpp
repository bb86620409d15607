// cmf imatrix: an importance matrix computed with the engine, as llama-imatrix computes and
// writes it (orchestrate/engine/llama_eval.cpp, engine/imatrix_file.h).
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cmf/core/error.h"
#include "cmf/core/temp_file.h"
#include "cmf/engine/engine.h"
#include "cmf/engine/eval_report.h"
#include "cmf/engine/imatrix_file.h"
#include "orchestrate/args.h"
#include "orchestrate/engine_args.h"
#include "orchestrate/commands.h"
#include "orchestrate/lossless.h"

namespace cmf::cli {

static const char* kImatrixHelp = R"(usage: cmf imatrix MODEL.gguf|CHECKPOINT_DIR [--text FILE] [-o imatrix.gguf] [--ctx N] [--chunks N]

Computes an importance matrix with llama.cpp, as `llama-imatrix` does (the sums of squared
activations entering every block weight, over chunks of --ctx tokens), and writes it in
llama-imatrix's GGUF format: `cmf quantize --imatrix FILE` and llama-quantize both take it.
A checkpoint directory is first converted to a lossless F16 GGUF in a temporary file.

The text: without --text, cmf's built-in calibration text (medical document extraction and
general instructions, different documents from `cmf eval`'s, rendered through the model's chat
template). --text FILE is tokenized as llama-imatrix tokenizes -f FILE (special tokens as plain
text unless --parse-special), so the result equals llama-imatrix's on that file.

  -o, --output FILE   where to write it (default imatrix.gguf)
  --text FILE         calibration text instead of the built-in one
  --parse-special     tokenize --text with its control tokens parsed
  --ctx N             tokens per chunk (default 512)
  --chunks N          at most N chunks (default: all)
  --batch N           llama-imatrix's -b (default 2048)
  --process-output    also collect output.weight (llama-imatrix --process-output)
  --threads N         engine threads (default: physical cores)
  --print-text        print the calibration text as the model's chat template renders it (for
                      llama-imatrix --parse-special -f), and stop

Example:
  cmf imatrix gguf/medgemma-1.5-4b-it-F16.gguf -o medgemma.imatrix.gguf
  cmf quantize ./medgemma-1.5-4b-it --quant q4_k_m --imatrix medgemma.imatrix.gguf
)";

int cmd_imatrix(const std::vector<std::string>& argv_in) {
    std::vector<std::string> argv = argv_in;
    for (auto& s : argv)
        if (s == "-o") s = "--output";
    const Args a = parse_args(argv, {"output", "text", "ctx", "chunks", "batch", "threads"}, {"parse-special", "process-output", "print-text", "help"}, "imatrix");
    if (a.has("help")) {
        std::fputs(kImatrixHelp, stdout);
        return 0;
    }
    if (a.positional.size() != 1) fail(ErrorKind::usage, "imatrix: expected one MODEL.gguf or CHECKPOINT_DIR (see cmf imatrix --help)");
    const fs::path src = a.positional[0];
    if (!fs::exists(src)) fail(ErrorKind::input, "imatrix: " + src.string() + ": no such file or directory");
    const fs::path out = a.get("output").value_or("imatrix.gguf");
    const engine::EvalSettings s = eval_settings(a, "imatrix");
    const engine::EvalText text = eval_text(a, "imatrix", engine::texts::calibration(), "built-in calibration");
    // llama-imatrix records the -f argument as given
    const std::vector<std::string> datasets{a.get("text").value_or(engine::kBuiltinCalibrationDataset)};
    engine::require();
    std::error_code ec;
    fs::create_directories(out.parent_path().empty() ? fs::path(".") : out.parent_path(), ec);
    const LosslessModel model = lossless_model(src, out.parent_path().empty() ? fs::path(".") : out.parent_path());
    if (a.has("print-text")) {
        std::fputs(engine::render_text(model.path(), text).c_str(), stdout);
        return 0;
    }
    const engine::Imatrix m = engine::collect_imatrix(model.path(), text, s, a.has("process-output"));
    if (m.entries.empty()) fail_input(src.string() + ": no weight took part in a matrix multiplication of 16 rows or more");
    engine::write_imatrix_gguf(out, m, datasets);
    std::printf("%s: %zu weights, %u chunks of %u tokens (%s text)\n", out.string().c_str(), m.entries.size(), m.chunk_count, m.chunk_size,
                text.label.c_str());
    return 0;
}

}  // namespace cmf::cli
