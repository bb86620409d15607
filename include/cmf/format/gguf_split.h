// GGUF split sets: one GGUF cut into NAME-00001-of-0000M.gguf ... parts that llama.cpp loads
// from the first part, byte for byte what `llama-gguf-split --split` (llama.cpp v0.5.0,
// tools/gguf-split/gguf-split.cpp) writes. Hugging Face refuses files over its per-file limit;
// split sets are how llama.cpp models above it are published.
//
// A part is an ordinary GGUF v3 file (format/gguf.h):
//   1. KVs: part 0 holds every KV of the input in input order; every part then ends with
//        split.no (u16, 0-based), split.tensors.count (i32, tensors in the whole set),
//        split.count (u16, number of parts)
//      in that order: gguf-split sets split.no, a split.count placeholder 0 and
//      split.tensors.count, and its final gguf_set_val_u16(split.count) removes the key and
//      appends it again (ggml gguf.cpp: every gguf_set_val_* is gguf_remove_key + emplace_back).
//   2. tensor infos of this part's tensors, in input order, offsets relative to the part's own
//      data section; n_dims is ggml_n_dims(), i.e. trailing dimensions of 1 are dropped.
//   3. metadata padded to 32 bytes and every tensor padded to 32 bytes, last one included
//      (GGUF_DEFAULT_ALIGNMENT: set by gguf_init_empty(); copying general.alignment does not change it).
// Assignment, in input order (split_strategy's constructor):
//   --split-max-size N    size = sum of GGML_PAD(nbytes, 32) of the part's tensors, metadata not
//                         counted; a tensor that would take the size above N starts a new part.
//                         A tensor larger than N alone: gguf-split fails if it is the first
//                         tensor of the set ("one of splits have 0 tensors"), else it gets a
//                         part of its own, over the limit.
//   --split-max-tensors N a new part starts at every tensor index i > 0 with i % N == 0.
//   --no-tensor-first-split  part 0 holds the KVs and no tensor; assignment starts at part 1.
// One resulting part is still written as NAME-00001-of-00001.gguf with the split KVs.
// Names: llama_split_path(), "%s-%05d-of-%05d.gguf" with the 1-based part number; the loader
// (llama-model-loader.cpp) derives the other names from the first one and split.count.
// Where cmf refuses what gguf-split would write anyway: an input that already has split.* keys,
// general.alignment other than 32, a zero dimension, more than 65535 parts (split.count is u16).
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/core/temp_file.h"
#include "cmf/format/gguf.h"
#include "cmf/format/safetensors.h"  // FileHandle

namespace cmf {

namespace fs = std::filesystem;

// LLM_KV_SPLIT_* (llama-arch.cpp, common.h)
inline constexpr const char* kGgufSplitNoKey = "split.no";
inline constexpr const char* kGgufSplitCountKey = "split.count";
inline constexpr const char* kGgufSplitTensorsCountKey = "split.tensors.count";
// split.no and split.count are u16 in the file and in the loader (llama-model-loader.cpp)
inline constexpr uint64_t kGgufSplitMaxParts = 65535;
// gguf-split's --split-max-size units are decimal (split_str_to_n_bytes: M = 1000*1000)
inline constexpr uint64_t kGgufSplitMegabyte = 1000ull * 1000;
inline constexpr uint64_t kGgufSplitGigabyte = 1000ull * 1000 * 1000;
// tensor bytes moved from the input to a part per read: memory stays bounded by this plus the
// output's DirectWriter segments, whatever the tensor size
inline constexpr uint64_t kGgufSplitCopyChunk = 4ull << 20;

// How to cut: exactly one of max_bytes / max_tensors is non-zero.
struct GgufSplitLimit {
    uint64_t max_bytes = 0;             // --split-max-size, in bytes
    uint64_t max_tensors = 0;           // --split-max-tensors
    bool no_tensors_in_first = false;   // --no-tensor-first-split
};

struct GgufSplitPart {
    fs::path path;
    std::vector<size_t> tensors;  // indices into the input's tensor list
    uint64_t data_bytes = 0;      // what the size rule counts: tensors padded to 32 bytes
    uint64_t file_size = 0;
};

// "%s-%05d-of-%05d.gguf" (llama_split_path), split_no 0-based.
inline std::string gguf_split_path(const std::string& prefix, uint64_t split_no, uint64_t split_count) {
    char tail[48];
    std::snprintf(tail, sizeof tail, "-%05llu-of-%05llu.gguf", static_cast<unsigned long long>(split_no + 1),
                  static_cast<unsigned long long>(split_count));
    return prefix + tail;
}

// "N", "NM" or "NG" -> bytes. gguf-split takes only M and G (decimal); a bare number is bytes
// here (tests and small models). gguf-split reads N with sscanf("%d") and would take "1.5G" as
// 1G; we refuse anything but digits.
inline uint64_t parse_gguf_split_size(const std::string& s) {
    std::string digits = s;
    uint64_t unit = 1;
    if (!digits.empty() && (digits.back() == 'M' || digits.back() == 'G')) {
        unit = digits.back() == 'M' ? kGgufSplitMegabyte : kGgufSplitGigabyte;
        digits.pop_back();
    }
    const bool ok = !digits.empty() && digits.size() <= 12 &&
                    digits.find_first_not_of("0123456789") == std::string::npos;
    if (!ok) fail(ErrorKind::usage, "bad split size '" + s + "': expected N, NM or NG (decimal megabytes / gigabytes), e.g. 45G");
    const uint64_t n = std::stoull(digits) * unit;
    if (n == 0) fail(ErrorKind::usage, "bad split size '" + s + "': must be positive");
    return n;
}

// The parts' tensor indices for tensors of these sizes (unpadded nbytes, input order): gguf-split's
// split_strategy rule, see the top of this header. `names` only words the error.
inline std::vector<std::vector<size_t>> gguf_split_assign(const std::vector<uint64_t>& nbytes, const GgufSplitLimit& limit,
                                                          const std::vector<std::string>& names = {}) {
    if ((limit.max_bytes == 0) == (limit.max_tensors == 0))
        fail(ErrorKind::usage, "split: give exactly one of a maximum size and a maximum tensor count");
    std::vector<std::vector<size_t>> parts(1);
    if (limit.no_tensors_in_first) parts.emplace_back();
    uint64_t current = 0;
    for (size_t i = 0; i < nbytes.size(); ++i) {
        const uint64_t n = gguf_pad(nbytes[i], kGgufDefaultAlignment);
        bool cut;
        if (limit.max_bytes) {
            cut = current + n > limit.max_bytes;
            current = cut ? n : current + n;
        } else {
            cut = i > 0 && i % limit.max_tensors == 0;
        }
        if (cut) {
            if (parts.back().empty()) {
                // only the set's first tensor gets here: any later one closes a non-empty part
                const std::string name = i < names.size() ? "'" + names[i] + "' " : "";
                fail(ErrorKind::usage, "the first tensor " + name + "(" + std::to_string(n) + " bytes with padding) is larger than the split size " +
                                           std::to_string(limit.max_bytes) + " bytes; llama-gguf-split fails on this too (\"one of splits " +
                                           "have 0 tensors\"): use a larger size");
            }
            parts.emplace_back();
        }
        parts.back().push_back(i);
    }
    if (parts.size() > kGgufSplitMaxParts)
        fail(ErrorKind::usage, "split into " + std::to_string(parts.size()) + " parts: split.count is a u16, at most " +
                   std::to_string(kGgufSplitMaxParts) + "; use a larger limit");
    return parts;
}

namespace gguf_split_detail {

// ggml_n_dims(): the dimensions up to the last one > 1 (at least one). The parts are written from
// ggml tensors, so an input's trailing dimensions of 1 are not written back.
inline std::vector<uint64_t> ggml_dims(const std::vector<uint64_t>& ne) {
    size_t n = 1;
    for (size_t i = ne.size(); i-- > 1;)
        if (ne[i] > 1) {
            n = i + 1;
            break;
        }
    return std::vector<uint64_t>(ne.begin(), ne.begin() + static_cast<std::ptrdiff_t>(n));
}

inline GgufLayout part_layout(const GgufContents& in, const std::vector<size_t>& tensors, uint64_t split_no, uint64_t split_count) {
    GgufLayout l;
    if (split_no == 0)
        for (const auto& [key, v] : in.kv.items()) l.kv.set(key, v);
    l.kv.set(kGgufSplitNoKey, GgufValue::scalar(GgufType::UINT16, static_cast<uint16_t>(split_no)));
    l.kv.set(kGgufSplitTensorsCountKey, GgufValue::i32(static_cast<int32_t>(in.tensors.size())));
    l.kv.set(kGgufSplitCountKey, GgufValue::scalar(GgufType::UINT16, static_cast<uint16_t>(split_count)));
    for (size_t i : tensors) {
        const GgufTensorInfo& t = in.tensors[i];
        l.add_tensor(t.name, ggml_dims(t.ne), t.type);
        if (l.tensors.back().nbytes != t.nbytes) fail(ErrorKind::internal, "split: size of tensor " + t.name + " changed");
    }
    l.finalize();
    return l;
}

// What gguf-split would not split correctly, or cmf would not: one line each.
inline void check_splittable(const GgufContents& in, const fs::path& path) {
    const std::string where = path.string();
    for (const char* key : {kGgufSplitCountKey, kGgufSplitNoKey, kGgufSplitTensorsCountKey})
        if (const GgufValue* v = in.kv.get(key)) {
            const auto n = v->as_int();
            fail_input(where + ": already part of a split set (" + key + " = " + (n ? std::to_string(*n) : "?") +
                       "); merge it first (llama-gguf-split --merge) or split the original file");
        }
    // gguf-split's parts are laid out with alignment 32 whatever general.alignment says, and part 0
    // copies the key: any other value would give a part 0 its own readers misread
    if (in.alignment != kGgufDefaultAlignment)
        fail_input(where + ": general.alignment is " + std::to_string(in.alignment) + "; llama-gguf-split writes parts aligned to " +
                   std::to_string(kGgufDefaultAlignment) + " only");
    if (in.tensors.size() > static_cast<uint64_t>(INT32_MAX)) fail_input(where + ": too many tensors for split.tensors.count (i32)");
    for (const auto& t : in.tensors)
        for (auto d : t.ne)
            if (d == 0) fail_input(where + ": tensor '" + t.name + "' has an empty dimension");
}

}  // namespace gguf_split_detail

// The parts for `in` (read_gguf) under `limit`, named from `out_prefix`; nothing is written.
inline std::vector<GgufSplitPart> plan_gguf_split(const GgufContents& in, const fs::path& in_path, const std::string& out_prefix,
                                                  const GgufSplitLimit& limit) {
    gguf_split_detail::check_splittable(in, in_path);
    std::vector<uint64_t> nbytes;
    std::vector<std::string> names;
    for (const auto& t : in.tensors) {
        nbytes.push_back(t.nbytes);
        names.push_back(t.name);
    }
    const auto assigned = gguf_split_assign(nbytes, limit, names);
    std::vector<GgufSplitPart> parts;
    for (size_t k = 0; k < assigned.size(); ++k) {
        GgufSplitPart p;
        p.path = gguf_split_path(out_prefix, k, assigned.size());
        p.tensors = assigned[k];
        for (size_t i : p.tensors) p.data_bytes += gguf_pad(in.tensors[i].nbytes, kGgufDefaultAlignment);
        p.file_size = gguf_split_detail::part_layout(in, p.tensors, k, assigned.size()).file_size;
        parts.push_back(std::move(p));
    }
    return parts;
}

// Splits the GGUF at `in_path` into parts named from `out_prefix` (a path without the
// "-00001-of-0000M.gguf" tail; its directory must exist). Every part is written as a temporary
// in that directory and all are renamed into place at the end (core/temp_file.h): on any error
// no part, partial or whole, is left. Tensor bytes are copied in kGgufSplitCopyChunk pieces.
// Returns the parts written.
inline std::vector<GgufSplitPart> split_gguf(const fs::path& in_path, const std::string& out_prefix, const GgufSplitLimit& limit) {
    const GgufContents in = read_gguf(in_path);
    std::vector<GgufSplitPart> parts = plan_gguf_split(in, in_path, out_prefix, limit);

    fs::path dir = fs::path(out_prefix).parent_path();
    if (dir.empty()) dir = ".";
    if (!fs::is_directory(dir)) fail_io("output directory " + dir.string() + " does not exist");
    uint64_t total = 0;
    for (const auto& p : parts) total += p.file_size;
    require_free_space(dir, total, std::to_string(parts.size()) + " split parts");

    FileHandle src(in_path);
    if (src.size() != in.file_size) fail_io(in_path.string() + ": changed while being split");
    // each part's temporary stays open until the common rename: one descriptor per part
    struct rlimit fds {};
    if (::getrlimit(RLIMIT_NOFILE, &fds) == 0 && fds.rlim_cur != RLIM_INFINITY && parts.size() + 64 > fds.rlim_cur)
        fail(ErrorKind::usage, "split into " + std::to_string(parts.size()) + " parts needs as many open files, more than this process may open (" +
                   std::to_string(fds.rlim_cur) + ", ulimit -n); use a larger limit");

    std::vector<std::unique_ptr<GgufOutput>> outs;
    std::vector<char> buf(kGgufSplitCopyChunk);
    for (size_t k = 0; k < parts.size(); ++k) {
        const GgufLayout l = gguf_split_detail::part_layout(in, parts[k].tensors, k, parts.size());
        auto out = std::make_unique<GgufOutput>(parts[k].path, l);
        for (size_t j = 0; j < parts[k].tensors.size(); ++j) {
            const GgufTensorInfo& t = in.tensors[parts[k].tensors[j]];
            const uint64_t from = in.data_start + t.offset, to = l.data_start + l.tensors[j].offset;
            src.advise_sequential(from, t.nbytes);
            for (uint64_t done = 0; done < t.nbytes;) {
                const uint64_t n = std::min<uint64_t>(kGgufSplitCopyChunk, t.nbytes - done);
                src.read_at(buf.data(), n, from + done);
                out->write_at(buf.data(), n, to + done);
                done += n;
            }
            src.drop_cache(from, t.nbytes);
        }
        out->finish();  // releases the writer's buffers before the next part
        outs.push_back(std::move(out));
    }
    std::vector<TempFile*> temps;
    for (auto& o : outs) temps.push_back(&o->temp());
    commit_all(temps);
    return parts;
}

}  // namespace cmf
