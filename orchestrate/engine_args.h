// What `cmf eval` and `cmf imatrix` (and the gate's options) read the same way: the text
// (--text FILE, --parse-special, else a built-in one) and the chunking (--ctx, --chunks,
// --batch, --threads).
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "cmf/core/error.h"
#include "cmf/engine/eval_report.h"
#include "orchestrate/args.h"

namespace cmf::cli {

inline int int_option(const Args& a, const std::string& cmd, const char* key, int dflt, int lo) {
    const auto v = a.get(key);
    if (!v) return dflt;
    try {
        size_t n = 0;
        const int i = std::stoi(*v, &n);
        if (n == v->size() && i >= lo) return i;
    } catch (...) {
    }
    fail(ErrorKind::usage, cmd + ": --" + key + " must be an integer >= " + std::to_string(lo) + ", not '" + *v + "'");
}

inline engine::EvalSettings eval_settings(const Args& a, const std::string& cmd) {
    engine::EvalSettings s;
    s.ctx = int_option(a, cmd, "ctx", 512, 4);
    s.chunks = int_option(a, cmd, "chunks", -1, 1);
    s.batch = int_option(a, cmd, "batch", 2048, 1);
    s.threads = int_option(a, cmd, "threads", 0, 1);
    return s;
}

// --text FILE as llama.cpp's tools read -f FILE, or the built-in conversations.
inline engine::EvalText eval_text(const Args& a, const std::string& cmd, const std::vector<engine::texts::Conversation>& builtin, const char* label) {
    if (auto f = a.get("text")) {
        std::ifstream in(*f, std::ios::binary);
        if (!in) fail(ErrorKind::input, cmd + ": cannot read --text " + *f);
        std::ostringstream ss;
        ss << in.rdbuf();
        engine::EvalText t;
        t.raw = ss.str();
        t.parse_special = a.has("parse-special");
        t.label = std::filesystem::path(*f).filename().string();
        return t;
    }
    if (a.has("parse-special")) fail(ErrorKind::usage, cmd + ": --parse-special applies to --text FILE");
    return engine::builtin_text(builtin, label);
}

}  // namespace cmf::cli
