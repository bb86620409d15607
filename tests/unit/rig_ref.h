// The reference rig (../shared/tools/llama-ref/setup.sh RIG_DIR): llama.cpp v0.5.0's own
// convert_hf_to_gguf.py and convert_lora_to_gguf.py run by Debian's python3 + torch, and
// tests/rig/peft_merge.py (PEFT's merge_and_unload() arithmetic in torch). Tests skip with a
// visible message without the rig ($REF_RIG, else ../rig beside the project) or without torch.
#pragma once

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "test_support.h"

namespace cmf::test::rig {

inline std::optional<fs::path> rig_dir() {
    if (const char* e = std::getenv("REF_RIG"); e && *e && fs::is_directory(fs::path(e) / "llama.cpp")) return fs::path(e);
    const fs::path p = fs::path(CMF_SOURCE_DIR).parent_path() / "rig";
    if (fs::is_regular_file(p / "llama.cpp" / "convert_hf_to_gguf.py")) return p;
    return std::nullopt;
}

// Why the rig cannot run here, or "" when it can.
inline std::string rig_missing() {
    if (!rig_dir()) return "no reference rig (set REF_RIG, see ../shared/tools/llama-ref/setup.sh)";
    if (!shared_dir() || !fs::is_regular_file(*shared_dir() / "tools/llama-ref/run_convert.py")) return "../shared/tools/llama-ref is not present";
    if (run("/usr/bin/python3 -c 'import torch' 2>&1").exit_code != 0) return "/usr/bin/python3 has no torch (Debian python3-torch)";
    return "";
}

#define REQUIRE_RIG()                                                                             \
    do {                                                                                          \
        const std::string why_ = ::cmf::test::rig::rig_missing();                                 \
        if (!why_.empty()) GTEST_SKIP() << "SKIPPED: " << why_;                                   \
    } while (0)

inline std::string tail(const std::string& s) { return s.substr(s.size() > 3000 ? s.size() - 3000 : 0); }

inline std::string env(bool gemma4) {
    std::string e = "REF_RIG=" + shell_quote(rig_dir()->string()) + " ";
    if (gemma4) e += "RIG_PYSTUB=" + shell_quote((*shared_dir() / "tools/llama-ref/pystub-gemma4").string()) + " ";
    return e;
}

// convert_hf_to_gguf.py CK --outtype T [--mmproj] --outfile OUT
inline RunResult convert(const fs::path& ck, const std::string& outtype, const fs::path& out, bool gemma4, bool mmproj = false) {
    return run(env(gemma4) + "/usr/bin/python3 " + shell_quote((*shared_dir() / "tools/llama-ref/run_convert.py").string()) + " " +
               shell_quote(ck.string()) + " --outtype " + outtype + (mmproj ? " --mmproj" : "") + " --outfile " + shell_quote(out.string()));
}

// convert_lora_to_gguf.py ADAPTER --base BASE --outtype T --outfile OUT
inline RunResult convert_lora(const fs::path& adapter, const fs::path& base, const std::string& outtype, const fs::path& out,
                              bool gemma4 = false) {
    return run(env(gemma4) + "/usr/bin/python3 " + shell_quote((*shared_dir() / "tools/llama-ref/run_convert_lora.py").string()) + " " +
               shell_quote(adapter.string()) + " --base " + shell_quote(base.string()) + " --outtype " + outtype + " --outfile " +
               shell_quote(out.string()));
}

// tests/rig/peft_merge.py BASE OUT ADAPTER[:SCALE]...
inline RunResult peft_merge(const fs::path& base, const fs::path& out, const std::vector<std::string>& adapters) {
    std::string c = "/usr/bin/python3 " + shell_quote((fs::path(CMF_SOURCE_DIR) / "tests/rig/peft_merge.py").string()) + " " +
                    shell_quote(base.string()) + " " + shell_quote(out.string());
    for (const auto& a : adapters) c += " " + shell_quote(a);
    return run(c);
}

}  // namespace cmf::test::rig
