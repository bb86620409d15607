// libFuzzer target for every GCS JSON API reply cmf parses (cmf/cloud/gcs.h): the object
// resource (stat, upload results), an objects.list page, Google's error body, and the 308
// `Range` header of a resumable session. The first input byte picks the parser.
//
// Any input must either parse or raise cmf::Error; a crash, a sanitizer report or another
// exception type is a bug. A parsed list page keeps its promises (every item has a name).
//
// CMF_FUZZ_SEED_DIR=DIR writes real-shaped replies into DIR at start-up (tests/fuzz.cmake).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "cmf/cloud/gcs.h"

namespace {

void seed(const std::string& dir, const std::string& name, char selector, const std::string& body) {
    std::ofstream(dir + "/" + name, std::ios::binary) << selector << body;
}

const char* kObject =
    R"({"kind":"storage#object","id":"b/o/1700000000000001","name":"models/x.gguf","bucket":"b",)"
    R"("generation":"1700000000000001","metageneration":"1","contentType":"application/octet-stream",)"
    R"("size":"8600000000","md5Hash":"1B2M2Y8AsgTpgAmY7PhCfg==","crc32c":"AAAAAA==","etag":"CAE=",)"
    R"("updated":"2026-01-01T00:00:00.000Z","metadata":{"variant":"q8_0"}})";

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    if (const char* dir = std::getenv("CMF_FUZZ_SEED_DIR")) {
        seed(dir, "object", 0, kObject);
        seed(dir, "list", 1,
             std::string(R"({"kind":"storage#objects","prefixes":["a/","b/"],"nextPageToken":"tok","items":[)") + kObject +
                 "]}");
        seed(dir, "error", 2,
             R"({"error":{"code":412,"message":"At least one of the pre-conditions you specified did not hold.",)"
             R"("errors":[{"domain":"global","reason":"conditionNotMet","message":"x"}]}})");
        seed(dir, "range", 3, "bytes=0-262143");
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
    try {
        switch (data[0] % 4) {
            case 0: {
                cmf::cloud::ObjectInfo o = cmf::cloud::parse_object_resource(body);
                if (o.name.empty()) std::abort();
                break;
            }
            case 1: {
                std::string next;
                cmf::cloud::ListResult r = cmf::cloud::parse_list_page(body, next);
                for (const auto& i : r.items)
                    if (i.name.empty()) std::abort();
                break;
            }
            case 2: {
                std::string m = cmf::cloud::gcs_error_message(body);
                if (m.size() > 300 || m.find('\n') != std::string::npos) std::abort();
                break;
            }
            case 3: {
                auto n = cmf::cloud::persisted_from_range(std::string(body));
                (void)n;
                break;
            }
        }
    } catch (const cmf::Error&) {
    }
    return 0;
}
