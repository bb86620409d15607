// An importance matrix collected by the engine, written as llama-imatrix writes its GGUF
// (tools/imatrix/imatrix.cpp save_imatrix, gguf_write_to_file): KVs general.type = "imatrix",
// imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size in that order; per weight, in name
// order, "<name>.in_sum2" F32 {ne0, n_mat} and "<name>.counts" F32 {1, n_mat}, each with ggml's
// dimension count (trailing dimensions of 1 dropped: a dense weight's are {ne0} and {1});
// alignment 32. quant/imatrix.h reads it back for quantizing.
#pragma once

#include <string>
#include <vector>

#include "cmf/engine/engine.h"
#include "cmf/format/gguf.h"

namespace cmf::engine {

// ggml_n_dims: the shape without trailing 1s (at least one dimension).
inline std::vector<uint64_t> ggml_shape(std::vector<uint64_t> ne) {
    while (ne.size() > 1 && ne.back() == 1) ne.pop_back();
    return ne;
}

inline GgufLayout imatrix_layout(const Imatrix& m, const std::vector<std::string>& datasets) {
    GgufLayout l;
    l.kv.set("general.type", GgufValue::string("imatrix"));
    l.kv.set("imatrix.datasets", GgufValue::string_array(datasets));
    l.kv.set("imatrix.chunk_count", GgufValue::u32(m.chunk_count));
    l.kv.set("imatrix.chunk_size", GgufValue::u32(m.chunk_size));
    for (const auto& [name, e] : m.entries) {
        const uint64_t nmat = e.counts.size(), nval = e.in_sum2.size();
        if (nval == 0 || nmat == 0) continue;
        l.add_tensor(name + ".in_sum2", ggml_shape({nval / nmat, nmat}), GgmlType::F32);
        l.add_tensor(name + ".counts", ggml_shape({1, nmat}), GgmlType::F32);
    }
    l.finalize();
    return l;
}

// Written through a temporary file and renamed: a failed or interrupted write leaves nothing.
inline void write_imatrix_gguf(const fs::path& out, const Imatrix& m, const std::vector<std::string>& datasets) {
    const GgufLayout l = imatrix_layout(m, datasets);
    GgufOutput o(out, l);
    size_t t = 0;
    for (const auto& [name, e] : m.entries) {
        if (e.in_sum2.empty() || e.counts.empty()) continue;
        o.write_at(e.in_sum2.data(), e.in_sum2.size() * sizeof(float), l.data_start + l.tensors[t++].offset);
        std::vector<float> counts(e.counts.begin(), e.counts.end());
        o.write_at(counts.data(), counts.size() * sizeof(float), l.data_start + l.tensors[t++].offset);
    }
    o.commit();
}

}  // namespace cmf::engine
