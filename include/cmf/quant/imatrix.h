// Importance matrices (`llama-imatrix` output) as llama-quantize v0.5.0 reads and uses them.
//
// Two file formats exist (llama.cpp common/imatrix-loader.cpp, tools/imatrix/imatrix.cpp):
//
//   GGUF    KVs imatrix.datasets (string array), imatrix.chunk_count and imatrix.chunk_size (u32);
//           per weight NAME two F32 tensors: NAME.in_sum2 {ne0, n_mat} (sums of squared
//           activations) and NAME.counts {1, n_mat} (how many rows each sum holds).
//           Value = in_sum2 / lround(counts) per matrix (expert); 1 where the count is <= 0.
//   legacy  i32 n_entries (>= 1), then per entry: i32 len, len bytes of name, i32 ncall,
//           i32 nval (>= 1), nval f32 (already averaged, times ncall); then optionally
//           i32 chunk count, i32 len, len bytes of dataset name.
//           Value = stored / ncall when ncall > 0, else the stored value.
//
// llama.cpp tries GGUF first and falls back to the legacy reader when the file does not parse as
// GGUF; we decide by the "GGUF" magic instead, so a damaged GGUF file reports its GGUF error. A
// legacy file cannot start with that magic in practice (it would claim 1.18e9 entries).
//
// Where llama.cpp silently accepts damaged input (short trailer, count of zero matrices, sums
// not a multiple of the matrix count, NaN counts) we fail with one line instead: every length is
// checked against the file size before anything is allocated or read.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/format/gguf.h"
#include "cmf/format/safetensors.h"

namespace cmf {

namespace fs = std::filesystem;

struct ImatrixData {
    std::map<std::string, std::vector<float>> values;  // weight name -> per-column importance
    std::vector<std::string> datasets;
    int chunks = 0;    // imatrix.chunk_count / the legacy trailer's chunk count (int32, may be <= 0)
    std::string file;  // the path as the user gave it: llama-quantize stores this string
};

namespace imatrix_detail {

// C-string view of a byte string: llama.cpp passes names and datasets through const char*, so
// anything after an embedded NUL is dropped.
inline std::string until_nul(const std::string& s) { return s.substr(0, s.find('\0')); }

inline bool has_suffix(const std::string& s, const std::string& suf) {
    return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

inline ImatrixData load_gguf(const fs::path& path) {
    const std::string where = path.string();
    const GgufContents g = read_gguf(path);
    ImatrixData d;
    d.file = path.string();
    if (g.tensors.empty()) fail_input(where + ": imatrix file holds no tensors");

    const GgufValue* ds = g.kv.get("imatrix.datasets");
    const GgufValue* cc = g.kv.get("imatrix.chunk_count");
    const GgufValue* cs = g.kv.get("imatrix.chunk_size");
    // quantize.cpp load_imatrix: a GGUF imatrix without all three keys is refused
    if (!ds || !cc || !cs)
        fail_input(where + ": missing imatrix metadata (imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size)");
    // a datasets key of another type is ignored by llama.cpp, not an error
    if (ds->type == GgufType::ARRAY && ds->elem == GgufType::STRING)
        for (const auto& s : ds->strs) d.datasets.push_back(until_nul(s));
    // llama.cpp reads both with gguf_get_val_u32, which aborts on any other type
    if (cc->type != GgufType::UINT32) fail_input(where + ": imatrix.chunk_count is " + gguf_type_name(cc->type) + ", expected UINT32");
    if (cs->type != GgufType::UINT32) fail_input(where + ": imatrix.chunk_size is " + gguf_type_name(cs->type) + ", expected UINT32");
    d.chunks = static_cast<int32_t>(cc->as<uint32_t>());

    // pair NAME.in_sum2 with NAME.counts; other tensors are ignored, as in llama.cpp
    std::map<std::string, std::pair<const GgufTensorInfo*, const GgufTensorInfo*>> pairs;
    std::set<std::string> seen;
    for (const auto& t : g.tensors) {
        if (!seen.insert(t.name).second) fail_input(where + ": duplicate tensor '" + t.name + "'");
        if (t.name.empty()) continue;
        if (has_suffix(t.name, ".in_sum2")) pairs[t.name.substr(0, t.name.size() - 8)].first = &t;
        else if (has_suffix(t.name, ".counts")) pairs[t.name.substr(0, t.name.size() - 7)].second = &t;
    }

    FileHandle f(path);
    auto read_f32 = [&](const GgufTensorInfo& t) {
        // read_gguf has checked offset + nbytes against the file size
        std::vector<float> v(t.n_elements());
        if (!v.empty()) f.read_at(v.data(), t.nbytes, g.data_start + t.offset);
        return v;
    };
    for (const auto& [name, p] : pairs) {
        if (!p.first || !p.second) fail_input(where + ": mismatched sums and counts for '" + name + "'");
        if (p.first->type != GgmlType::F32 || p.second->type != GgmlType::F32)
            fail_input(where + ": sums and counts for '" + name + "' must be F32");
        const uint64_t nval = p.first->n_elements(), ncounts = p.second->n_elements();
        if (ncounts == 0) fail_input(where + ": '" + name + ".counts' is empty");
        if (nval == 0 || nval % ncounts != 0)
            fail_input(where + ": '" + name + ".in_sum2' has " + std::to_string(nval) + " values, not a positive multiple of " +
                       std::to_string(ncounts) + " counts");
        const std::vector<float> sums = read_f32(*p.first);
        const std::vector<float> counts = read_f32(*p.second);
        const uint64_t ne0 = nval / ncounts;
        std::vector<float> e(nval);
        for (uint64_t j = 0; j < ncounts; ++j) {
            // llama.cpp: counts[j] = lround(f32), then (float) of that int64; lround is
            // undefined for NaN and values past int64, so such counts are refused
            if (!std::isfinite(counts[j]) || std::fabs(counts[j]) > 9.0e18f)
                fail_input(where + ": '" + name + ".counts' holds an invalid count");
            const float count = static_cast<float>(std::lround(counts[j]));
            for (uint64_t i = 0; i < ne0; ++i) e[j * ne0 + i] = count > 0.0f ? sums[j * ne0 + i] / count : 1.0f;
        }
        d.values[name] = std::move(e);
    }
    return d;
}

// Little-endian reader over the whole legacy file (it holds nothing but the matrix, so reading
// it at once costs what the values cost anyway; the size is checked before every step).
class LegacyReader {
public:
    LegacyReader(std::string bytes, std::string where) : b_(std::move(bytes)), where_(std::move(where)) {}
    uint64_t remaining() const { return b_.size() - pos_; }
    int32_t i32(const char* what) {
        if (remaining() < 4) fail_input(where_ + ": truncated imatrix: no room for " + what + " at offset " + std::to_string(pos_));
        int32_t v;
        std::memcpy(&v, b_.data() + pos_, 4);
        pos_ += 4;
        return v;
    }
    std::string bytes(uint64_t n, const char* what) {
        if (n > remaining())
            fail_input(where_ + ": truncated imatrix: " + what + " of " + std::to_string(n) + " bytes at offset " + std::to_string(pos_) +
                       " runs past the end of the file");
        std::string s = b_.substr(pos_, n);
        pos_ += n;
        return s;
    }

private:
    std::string b_;
    std::string where_;
    uint64_t pos_ = 0;
};

inline ImatrixData load_legacy(const fs::path& path, std::string bytes) {
    const std::string where = path.string();
    ImatrixData d;
    d.file = path.string();
    LegacyReader r(std::move(bytes), where);
    const int32_t n_entries = r.i32("the entry count");
    if (n_entries < 1) fail_input(where + ": not an imatrix file (no entries; legacy .dat or GGUF expected)");
    // each entry takes at least 16 bytes: name length, ncall, nval and one value
    if (static_cast<uint64_t>(n_entries) > r.remaining() / 16)
        fail_input(where + ": imatrix entry count " + std::to_string(n_entries) + " is impossible for the file size");
    for (int32_t i = 0; i < n_entries; ++i) {
        const std::string at = " of entry " + std::to_string(i + 1);
        const int32_t len = r.i32("a name length");
        if (len < 0) fail_input(where + ": entry " + std::to_string(i + 1) + " has a negative name length");
        std::string name = until_nul(r.bytes(static_cast<uint64_t>(len), "a name"));
        const int32_t ncall = r.i32("a call count");
        const int32_t nval = r.i32("a value count");
        if (nval < 1) fail_input(where + ": entry '" + name + "' has " + std::to_string(nval) + " values");
        const std::string raw = r.bytes(static_cast<uint64_t>(nval) * 4, "the values");
        std::vector<float> e(static_cast<size_t>(nval));
        std::memcpy(e.data(), raw.data(), raw.size());
        // quantize.cpp: `sums[i] / ncall` with ncall an int64_t, i.e. a float division by
        // (float)ncall; a non-positive ncall leaves the values as stored
        if (ncall > 0)
            for (auto& v : e) v = v / static_cast<float>(static_cast<int64_t>(ncall));
        d.values[std::move(name)] = std::move(e);  // a repeated name replaces the earlier entry, as in llama.cpp
    }
    // optional trailer: chunk count, then the dataset name (bytes after it are ignored, as in llama.cpp)
    if (r.remaining() > 0) {
        d.chunks = r.i32("the chunk count");
        if (r.remaining() > 0) {
            const int32_t len = r.i32("the dataset name length");
            if (len > 0) d.datasets.push_back(until_nul(r.bytes(static_cast<uint64_t>(len), "the dataset name")));
        }
    }
    return d;
}

}  // namespace imatrix_detail

// Reads an importance matrix in either format. Throws cmf::Error (input) with one line naming
// the problem for anything malformed, (io) when the file cannot be read.
inline ImatrixData load_imatrix(const fs::path& path) {
    FileHandle f(path);
    const uint64_t size = f.size();
    if (size < 4) fail_input(path.string() + ": too short to be an imatrix file (" + std::to_string(size) + " bytes)");
    uint32_t magic = 0;
    f.read_at(&magic, 4, 0);
    if (magic == kGgufMagic) return imatrix_detail::load_gguf(path);
    // a legacy file holds no more than its values; 4 GiB would be a matrix for a model far
    // larger than any that fits in memory here, so refuse before allocating
    if (size > (uint64_t{1} << 32)) fail_input(path.string() + ": legacy imatrix file is implausibly large (" + std::to_string(size) + " bytes)");
    std::string bytes(size, '\0');
    f.read_at(bytes.data(), size, 0);
    return imatrix_detail::load_legacy(path, std::move(bytes));
}

// llama_model_quantize refuses an imatrix with NaN or infinity in any entry, used or not.
inline void check_imatrix_finite(const ImatrixData& d) {
    for (const auto& [name, v] : d.values)
        for (float x : v)
            if (!std::isfinite(x))
                fail_input(d.file + ": imatrix entry '" + name + "' contains a non-finite value (" + std::to_string(x) + ")");
}

// The KVs llama-quantize (tools/quantize/quantize.cpp) adds through kv overrides when it was
// given a non-empty imatrix, applied after general.file_type in this order:
//   quantize.imatrix.file            STRING  the --imatrix argument
//   quantize.imatrix.dataset         STRING  datasets[0], only if there is a dataset
//   quantize.imatrix.entries_count   UINT32  number of entries
//   quantize.imatrix.chunks_count    UINT32  chunk count, only if > 0
// Strings go through a 128-byte override buffer (strncpy 127 + NUL): at most 127 bytes, cut at
// a NUL. INT overrides are written as u32 of |value| (llama-quant.cpp, PR 14182).
inline void add_imatrix_kvs(GgufKvList& kv, const ImatrixData& d) {
    if (d.values.empty()) return;  // quantize.cpp sets no imatrix (and no KVs) when it is empty
    auto put = [&](const std::string& key, GgufValue v) {
        // gguf_set_val_* removes an existing key and appends: the key ends up last
        kv.set(key, std::move(v));
        kv.move_to_end(key);
    };
    auto clip = [](const std::string& s) { return imatrix_detail::until_nul(s).substr(0, 127); };
    put("quantize.imatrix.file", GgufValue::string(clip(d.file)));
    if (!d.datasets.empty()) put("quantize.imatrix.dataset", GgufValue::string(clip(d.datasets[0])));
    put("quantize.imatrix.entries_count", GgufValue::u32(static_cast<uint32_t>(d.values.size())));
    if (d.chunks > 0) put("quantize.imatrix.chunks_count", GgufValue::u32(static_cast<uint32_t>(d.chunks)));
}

}  // namespace cmf
