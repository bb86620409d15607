// cmf split: cut a GGUF into the split set llama.cpp loads from its first part (format/gguf_split.h).
#include <cstdio>

#include "cmf/format/gguf_split.h"
#include "orchestrate/args.h"
#include "orchestrate/commands.h"

namespace cmf::cli {

static const char* kSplitHelp = R"(usage: cmf split IN.gguf [OUT_PREFIX] (--max-size N[M|G] | --max-tensors N) [--no-tensor-first-split]

Writes OUT_PREFIX-00001-of-0000M.gguf ...: the files `llama-gguf-split --split` writes, byte for
byte. llama.cpp loads the set from its first file. OUT_PREFIX defaults to IN without ".gguf"; an
existing directory means DIR/<IN without .gguf>. The parts appear together at the end, or not at all.

  --max-size N[M|G]         tensor bytes per part (M = 10^6, G = 10^9 bytes, no unit = bytes); the
                            metadata is not counted, so part 1 is larger by its KVs. A tensor
                            larger than N gets a part of its own (not allowed for the first one).
  --max-tensors N           at most N tensors per part
  --no-tensor-first-split   part 1 holds only the metadata

Example (Hugging Face refuses files over 50 GB):
  cmf split gguf/medgemma-27b-it-BF16.gguf --max-size 45G
)";

int cmd_split(const std::vector<std::string>& argv) {
    Args a = parse_args(argv, {"max-size", "max-tensors"}, {"no-tensor-first-split", "help"}, "split");
    if (a.has("help")) {
        std::fputs(kSplitHelp, stdout);
        return 0;
    }
    if (a.positional.empty() || a.positional.size() > 2) fail(ErrorKind::usage, "split: expected IN.gguf [OUT_PREFIX] (see cmf split --help)");
    if (a.has("max-size") == a.has("max-tensors")) fail(ErrorKind::usage, "split: give exactly one of --max-size and --max-tensors");
    GgufSplitLimit limit;
    if (auto s = a.get("max-size")) limit.max_bytes = parse_gguf_split_size(*s);
    if (auto s = a.get("max-tensors")) {
        const auto& v = *s;
        if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos || std::stoull(v) == 0)
            fail(ErrorKind::usage, "split: --max-tensors needs a positive whole number, got '" + v + "'");
        limit.max_tensors = std::stoull(v);
    }
    limit.no_tensors_in_first = a.has("no-tensor-first-split");

    const fs::path in = a.positional[0];
    std::string stem = in.filename().string();
    if (stem.ends_with(".gguf")) stem.resize(stem.size() - 5);
    std::string prefix = (in.parent_path() / stem).string();
    if (a.positional.size() == 2) {
        prefix = a.positional[1];
        if (fs::is_directory(prefix)) prefix = (fs::path(prefix) / stem).string();
    }
    for (const auto& p : split_gguf(in, prefix, limit)) {
        std::printf("%s  %zu tensor%s  %s%s\n", p.path.string().c_str(), p.tensors.size(), p.tensors.size() == 1 ? "" : "s",
                    format_bytes(p.file_size).c_str(),
                    limit.max_bytes && p.data_bytes > limit.max_bytes ? "  (one tensor larger than --max-size)" : "");
    }
    return 0;
}

}  // namespace cmf::cli
