// libFuzzer target for the .env reader (cmf config/build read a user's file) and the config
// resolution that follows it.
//
// Any input must either parse or raise cmf::Error whose message starts with "FILE:LINE: " (or
// "FILE: " for the whole-file size limit); a crash, a sanitizer report or another exception is
// a bug. A file that parses must keep the parser's promises: keys are [A-Za-z_][A-Za-z0-9_]*,
// unique, line numbers increase, no value holds a newline it could not have been given
// (only "\n" escapes in double quotes make one) and re-rendering the entries in single quotes
// (when possible) parses back to the same entries.
//
// CMF_FUZZ_SEED_DIR=DIR writes a few valid .env files into DIR at start-up.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>

#include "cmf/factory/config.h"
#include "cmf/factory/dotenv.h"

namespace {

void check_error(const cmf::Error& e) {
    const std::string m = e.what();
    if (m.rfind("f.env:", 0) != 0) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* dir = std::getenv("CMF_FUZZ_SEED_DIR");
    if (!dir || !*dir) return 0;
    std::ofstream(std::string(dir) + "/env-full") << "# factory\nexport HF_TOKEN='hf_x'\nGCS_BUCKET=my-bucket # c\nGCE_ZONE=\"us-central1-a\"\n"
                                                     "GCE_DISK_SIZE=100GB\nGCE_MAX_RUN=3600s\nOLLAMA_REGISTRY_NS=coheara\n";
    std::ofstream(std::string(dir) + "/env-escapes") << "A=\"x\\ty\\\"z\\\\\"\r\nB=''\nC=\n";
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    std::vector<cmf::factory::DotenvEntry> entries;
    try {
        entries = cmf::factory::parse_dotenv(text, "f.env");
    } catch (const cmf::Error& e) {
        check_error(e);
        return 0;
    }
    std::set<std::string> keys;
    size_t last = 0;
    std::string again;
    bool renderable = true;
    for (const auto& e : entries) {
        if (e.key.empty() || !keys.insert(e.key).second || e.line <= last) std::abort();
        last = e.line;
        for (size_t i = 0; i < e.key.size(); ++i) {
            const char c = e.key[i];
            const bool ok = c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9');
            if (!ok) std::abort();
        }
        if (e.value.find('\'') != std::string::npos || e.value.find('\n') != std::string::npos) renderable = false;
        again += e.key + "='" + e.value + "'\n";
    }
    if (renderable) {
        auto back = cmf::factory::parse_dotenv(again, "f.env");  // must not throw
        if (back.size() != entries.size()) std::abort();
        for (size_t i = 0; i < back.size(); ++i)
            if (back[i].key != entries[i].key || back[i].value != entries[i].value) std::abort();
    }
    // resolution: either a config or a usage error naming the origin; never anything else
    try {
        cmf::factory::resolve_config({}, [](const std::string&) { return std::nullopt; }, entries, std::string("f.env"));
    } catch (const cmf::Error& e) {
        if (e.kind() != cmf::ErrorKind::usage) std::abort();
    }
    return 0;
}
