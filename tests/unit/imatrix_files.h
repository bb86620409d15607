// Writing importance-matrix files for tests: llama-imatrix's GGUF format
// (tools/imatrix/imatrix.cpp save_imatrix).
#pragma once

#include <cstring>
#include <string>
#include <vector>

#include "cmf/format/gguf.h"

namespace cmf::test {

struct GgufEntry {
    std::string name;
    std::vector<float> sums;    // ne0 * counts.size()
    std::vector<float> counts;  // one per matrix (expert)
};

struct GgufImatrixSpec {
    std::vector<GgufEntry> entries;
    std::vector<std::string> datasets{"calibration.txt"};
    uint32_t chunk_count = 17;
    uint32_t chunk_size = 512;
    bool with_metadata = true;
};

inline std::string gguf_imatrix_bytes(const GgufImatrixSpec& s) {
    GgufLayout l;
    l.kv.set("general.type", GgufValue::string("imatrix"));
    if (s.with_metadata) {
        l.kv.set("imatrix.datasets", GgufValue::string_array(s.datasets));
        l.kv.set("imatrix.chunk_count", GgufValue::u32(s.chunk_count));
        l.kv.set("imatrix.chunk_size", GgufValue::u32(s.chunk_size));
    }
    for (const auto& e : s.entries) {
        const uint64_t nmat = e.counts.size();
        l.add_tensor(e.name + ".in_sum2", {e.sums.size() / nmat, nmat}, GgmlType::F32);
        l.add_tensor(e.name + ".counts", {1, nmat}, GgmlType::F32);
    }
    l.finalize();
    std::string out = l.header;
    out.resize(l.file_size, '\0');
    size_t ti = 0;
    for (const auto& e : s.entries) {
        std::memcpy(out.data() + l.data_start + l.tensors[ti++].offset, e.sums.data(), e.sums.size() * 4);
        std::memcpy(out.data() + l.data_start + l.tensors[ti++].offset, e.counts.data(), e.counts.size() * 4);
    }
    return out;
}

}  // namespace cmf::test
