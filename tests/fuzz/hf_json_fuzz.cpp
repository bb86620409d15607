// libFuzzer target for every Hugging Face Hub answer cmf parses (include/cmf/hub/hf_json.h)
// and the source-cache manifest (include/cmf/hub/source_cache.h), which comes from a bucket:
// model info, tree pages, the Link header, etags, manifest.json. The first input byte picks the
// parser. Any input must either parse or raise cmf::Error; whatever parses must keep the
// parser's promises (paths that stay inside the snapshot directory, well-formed hashes).
//
// CMF_FUZZ_SEED_DIR=DIR writes one valid answer of each kind into DIR at start-up.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "cmf/hub/hf_json.h"
#include "cmf/hub/source_cache.h"

namespace {

void check_path(const std::string& p) {
    if (p.empty() || p.front() == '/' || p.find("..") == 0 || p.find("/../") != std::string::npos || p.find("//") != std::string::npos)
        std::abort();
}

void seed(const std::string& dir, const std::string& name, char kind, const std::string& body) {
    std::ofstream(dir + "/" + name, std::ios::binary) << kind << body;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* dir = std::getenv("CMF_FUZZ_SEED_DIR");
    if (!dir || !*dir) return 0;
    const std::string sha(64, 'a'), oid(40, '1');
    seed(dir, "model-info", 'm',
         R"({"id":"google/x","sha":")" + oid + R"(","private":false,"gated":"manual","siblings":[{"rfilename":"config.json"},)"
         R"({"rfilename":"w.safetensors","size":10,"blobId":")" + oid + R"(","lfs":{"sha256":")" + sha + R"(","size":10,"pointerSize":134}}]})");
    seed(dir, "tree", 't',
         R"([{"type":"directory","oid":")" + oid + R"(","size":0,"path":"d"},{"type":"file","oid":")" + oid +
             R"(","size":3,"path":"d/a.json"},{"type":"file","oid":")" + oid + R"(","size":10,"path":"w.safetensors","lfs":{"oid":")" +
             sha + R"(","size":10,"pointerSize":134}}])");
    seed(dir, "link", 'l', R"(<https://huggingface.co/api/models/x/tree/main?cursor=abc>; rel="next", <https://h/p>; rel="prev")");
    seed(dir, "etag", 'e', "W/\"" + sha + "\"");
    seed(dir, "manifest", 'f',
         R"({"repo":"google/x","commit":")" + oid + R"(","revision":"main","created":"2026-01-01T00:00:00Z","files":[{"path":"w.safetensors","size":10,"sha256":")" +
             sha + R"(","etag":")" + sha + R"(","stored":true}]})");
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const char kind = static_cast<char>(data[0]);
    const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
    try {
        switch (kind) {
            case 'm': {
                auto m = cmf::hub::parse_model_info(body);
                if (!cmf::hub::is_hex(m.sha, 40)) std::abort();
                for (const auto& f : m.siblings) {
                    check_path(f.path);
                    if (f.sha256 && !cmf::hub::is_hex(*f.sha256, 64)) std::abort();
                }
                break;
            }
            case 't':
                for (const auto& f : cmf::hub::parse_tree_page(body)) {
                    check_path(f.path);
                    const std::string e = f.etag();
                    if (!cmf::hub::is_hex(e, 64) && !cmf::hub::is_hex(e, 40)) std::abort();
                }
                break;
            case 'l':
                if (auto n = cmf::hub::link_next(body); n && n->find('>') != std::string::npos) std::abort();
                break;
            case 'e':
                if (cmf::hub::normalize_etag(body).size() > body.size()) std::abort();
                break;
            default: {
                auto m = cmf::hub::SourceManifest::parse(body, "fuzz");
                for (const auto& f : m.files) check_path(f.path);
                // what we write we can read back
                auto again = cmf::hub::SourceManifest::parse(m.to_json(), "fuzz");
                if (again.files.size() != m.files.size()) std::abort();
            }
        }
    } catch (const cmf::Error&) {
    }
    return 0;
}
