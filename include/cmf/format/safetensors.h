// safetensors: reading Hugging Face checkpoints, single file or sharded, without loading them.
//
// File layout (huggingface/safetensors docs):
//   1. u64 little-endian N: length of the JSON header
//   2. N bytes of UTF-8 JSON: { "__metadata__": {str: str}?, NAME: {"dtype": "BF16",
//      "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ... }
//   3. the data section; tensor bytes are [8 + N + begin, 8 + N + end), row-major, little-endian
//
// A sharded checkpoint adds `model.safetensors.index.json` whose "weight_map" names the shard of
// every tensor. llama.cpp's converter visits shards in sorted file-name order and, inside each
// shard, tensors sorted by name (the safetensors library's order); cmf keeps that order because
// the converter writes GGUF tensors in it.
//
// Every length, offset and shape is checked before it is trusted: a hostile header cannot make
// us allocate more than its own (capped) size or read outside the file.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cmf/core/error.h"

namespace cmf {

namespace fs = std::filesystem;

// Headers of real checkpoints are well under 1 MB; 100 MB is the safetensors library's own cap.
inline constexpr uint64_t kSafetensorsMaxHeader = 100ull * 1024 * 1024;

enum class StDtype { BF16, F16, F32, F64, I8, U8, I16, U16, I32, U32, I64, U64, BOOL, F8_E4M3, F8_E5M2 };

struct StDtypeInfo {
    StDtype dtype;
    const char* name;
    uint32_t size;
};

inline constexpr StDtypeInfo kStDtypes[] = {
    {StDtype::BF16, "BF16", 2}, {StDtype::F16, "F16", 2},   {StDtype::F32, "F32", 4},
    {StDtype::F64, "F64", 8},   {StDtype::I8, "I8", 1},     {StDtype::U8, "U8", 1},
    {StDtype::I16, "I16", 2},   {StDtype::U16, "U16", 2},   {StDtype::I32, "I32", 4},
    {StDtype::U32, "U32", 4},   {StDtype::I64, "I64", 8},   {StDtype::U64, "U64", 8},
    {StDtype::BOOL, "BOOL", 1}, {StDtype::F8_E4M3, "F8_E4M3", 1}, {StDtype::F8_E5M2, "F8_E5M2", 1},
};

inline const StDtypeInfo& st_dtype_info(StDtype d) {
    for (const auto& i : kStDtypes)
        if (i.dtype == d) return i;
    return kStDtypes[0];
}

// cmf converts from these; the rest parse (so a header can be validated) but cannot be converted.
inline bool st_dtype_is_float_source(StDtype d) {
    return d == StDtype::BF16 || d == StDtype::F16 || d == StDtype::F32;
}

struct StTensor {
    std::string name;
    StDtype dtype = StDtype::F32;
    std::vector<int64_t> shape;  // outermost first, as in PyTorch
    fs::path file;
    uint64_t offset = 0;  // absolute file offset of the first byte
    uint64_t nbytes = 0;

    uint64_t n_elements() const {
        uint64_t n = 1;
        for (auto d : shape) n *= static_cast<uint64_t>(d);
        return n;
    }
    // Elements per innermost row (1 for a scalar).
    uint64_t row_length() const { return shape.empty() ? 1 : static_cast<uint64_t>(shape.back()); }
};

// Parses one header (the JSON text) for a file whose data section has `data_size` bytes.
// Tensors come back sorted by name.
inline std::vector<StTensor> parse_safetensors_header(const std::string& json_text, uint64_t data_start,
                                                      uint64_t data_size, const fs::path& file) {
    const std::string where = file.filename().string();
    nlohmann::json h;
    try {
        h = nlohmann::json::parse(json_text);
    } catch (const std::exception&) {
        fail_input(where + ": safetensors header is not valid JSON");
    }
    if (!h.is_object()) fail_input(where + ": safetensors header is not a JSON object");

    std::vector<StTensor> out;
    for (auto it = h.begin(); it != h.end(); ++it) {
        if (it.key() == "__metadata__") continue;
        const auto& v = it.value();
        const std::string tn = where + ": tensor '" + it.key() + "'";
        if (!v.is_object()) fail_input(tn + " has no dtype/shape/data_offsets object");
        auto dt = v.find("dtype");
        auto sh = v.find("shape");
        auto of = v.find("data_offsets");
        if (dt == v.end() || !dt->is_string()) fail_input(tn + " has no dtype");
        if (sh == v.end() || !sh->is_array()) fail_input(tn + " has no shape");
        if (of == v.end() || !of->is_array() || of->size() != 2) fail_input(tn + " has no [begin, end] data_offsets");

        StTensor t;
        t.name = it.key();
        t.file = file;
        const std::string dts = dt->get<std::string>();
        const StDtypeInfo* info = nullptr;
        for (const auto& i : kStDtypes)
            if (dts == i.name) info = &i;
        if (!info) fail_input(tn + " has unknown dtype '" + dts + "'");
        t.dtype = info->dtype;

        // element count with overflow checks: every dim must be a non-negative integer
        unsigned __int128 n = 1;
        for (const auto& d : *sh) {
            if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
                fail_input(tn + " has a shape entry that is not a non-negative integer");
            uint64_t dv = d.get<uint64_t>();
            if (dv > (1ull << 48)) fail_input(tn + " has an absurd dimension " + std::to_string(dv));
            t.shape.push_back(static_cast<int64_t>(dv));
            n *= dv;
            if (n > (static_cast<unsigned __int128>(1) << 62)) fail_input(tn + " has too many elements");
        }
        for (const auto& o : *of)
            if (!o.is_number_unsigned() && !(o.is_number_integer() && o.get<int64_t>() >= 0))
                fail_input(tn + " has data_offsets that are not non-negative integers");
        const uint64_t begin = (*of)[0].get<uint64_t>();
        const uint64_t end = (*of)[1].get<uint64_t>();
        if (begin > end) fail_input(tn + " has data_offsets with begin > end");
        if (end > data_size)
            fail_input(tn + " data_offsets end " + std::to_string(end) + " is past the end of the file (data section " +
                       std::to_string(data_size) + " bytes): truncated file?");
        const unsigned __int128 want = n * info->size;
        if (want != end - begin)
            fail_input(tn + " is " + std::to_string(end - begin) + " bytes but shape x " + dts + " needs " +
                       std::to_string(static_cast<uint64_t>(want)));
        t.offset = data_start + begin;
        t.nbytes = end - begin;
        out.push_back(std::move(t));
    }
    std::sort(out.begin(), out.end(), [](const StTensor& a, const StTensor& b) { return a.name < b.name; });

    // tensors must not share bytes
    std::vector<const StTensor*> by_off;
    for (const auto& t : out)
        if (t.nbytes) by_off.push_back(&t);
    std::sort(by_off.begin(), by_off.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_off.size(); ++i)
        if (by_off[i]->offset < by_off[i - 1]->offset + by_off[i - 1]->nbytes)
            fail_input(where + ": tensors '" + by_off[i - 1]->name + "' and '" + by_off[i]->name +
                       "' overlap in the data section");
    return out;
}

// An open file descriptor shared by the readers of one shard.
class FileHandle {
public:
    explicit FileHandle(const fs::path& p) : path_(p) {
        fd_ = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) fail_io("cannot open " + p.string() + ": " + std::strerror(errno));
    }
    ~FileHandle() {
        if (fd_ >= 0) ::close(fd_);
    }
    FileHandle(const FileHandle&) = delete;
    FileHandle& operator=(const FileHandle&) = delete;

    uint64_t size() const {
        struct stat st {};
        if (::fstat(fd_, &st) != 0) fail_io("cannot stat " + path_.string());
        return static_cast<uint64_t>(st.st_size);
    }
    // Reads exactly n bytes at offset or throws (a short read means the file shrank or is truncated).
    void read_at(void* dst, uint64_t n, uint64_t offset) const {
        auto* p = static_cast<char*>(dst);
        while (n > 0) {
            ssize_t r = ::pread(fd_, p, n, static_cast<off_t>(offset));
            if (r < 0) {
                if (errno == EINTR) continue;
                fail_io("read error in " + path_.string() + ": " + std::strerror(errno));
            }
            if (r == 0) fail_input(path_.filename().string() + ": unexpected end of file (truncated?)");
            p += r;
            n -= static_cast<uint64_t>(r);
            offset += static_cast<uint64_t>(r);
        }
    }
    // Tells the kernel we read this range once, front to back (bounded page-cache pressure).
    void advise_sequential(uint64_t offset, uint64_t len) const {
        ::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(len), POSIX_FADV_SEQUENTIAL);
    }
    void drop_cache(uint64_t offset, uint64_t len) const {
        ::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(len), POSIX_FADV_DONTNEED);
    }
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
    int fd_ = -1;
};

// Reads and validates the header of one .safetensors file.
inline std::vector<StTensor> read_safetensors_file(const fs::path& p) {
    FileHandle f(p);
    const uint64_t size = f.size();
    const std::string where = p.filename().string();
    if (size < 8) fail_input(where + ": file is " + std::to_string(size) + " bytes, too short for a safetensors header");
    unsigned char lenb[8];
    f.read_at(lenb, 8, 0);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | lenb[i];
    if (n > kSafetensorsMaxHeader)
        fail_input(where + ": safetensors header length " + std::to_string(n) + " is over the 100 MB limit");
    if (n > size - 8)
        fail_input(where + ": safetensors header length " + std::to_string(n) + " runs past the end of the file (" +
                   std::to_string(size) + " bytes): truncated file?");
    std::string text(n, '\0');
    f.read_at(text.data(), n, 8);
    return parse_safetensors_header(text, 8 + n, size - 8 - n, p);
}

// All tensors of a checkpoint directory in llama.cpp converter order.
struct SafetensorsCheckpoint {
    fs::path dir;
    std::vector<fs::path> shards;  // sorted by file name
    std::vector<StTensor> tensors;

    const StTensor* find(const std::string& name) const {
        for (const auto& t : tensors)
            if (t.name == name) return &t;
        return nullptr;
    }
};

inline SafetensorsCheckpoint open_safetensors_checkpoint(const fs::path& dir) {
    SafetensorsCheckpoint ck;
    ck.dir = dir;
    const fs::path index = dir / "model.safetensors.index.json";
    std::map<std::string, std::string> weight_map;
    if (fs::is_regular_file(index)) {
        nlohmann::json j;
        try {
            std::ifstream in(index);
            j = nlohmann::json::parse(in);
        } catch (const std::exception&) {
            fail_input(index.string() + ": not valid JSON");
        }
        if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
            fail_input(index.string() + ": has no \"weight_map\" object");
        std::map<std::string, int> parts;
        for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
            if (!it.value().is_string()) fail_input(index.string() + ": weight_map value for '" + it.key() + "' is not a file name");
            const std::string part = it.value().get<std::string>();
            if (part.find('/') != std::string::npos || part == ".." || part.empty())
                fail_input(index.string() + ": weight_map names a file outside the checkpoint: '" + part + "'");
            weight_map[it.key()] = part;
            parts[part] = 1;
        }
        for (const auto& [p, _] : parts) ck.shards.push_back(dir / p);
    } else {
        // llama.cpp globs model*.safetensors (model.safetensors or model-0000N-of-0000M.safetensors)
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(dir, ec)) {
            const std::string fn = e.path().filename().string();
            if (fn.rfind("model", 0) == 0 && fn.size() > 12 && fn.substr(fn.size() - 12) == ".safetensors")
                ck.shards.push_back(e.path());
        }
        std::sort(ck.shards.begin(), ck.shards.end());
    }
    if (ck.shards.empty())
        fail_input(dir.string() + ": no model*.safetensors files (is this a Hugging Face checkpoint directory?)");

    std::map<std::string, std::string> seen;
    for (const auto& shard : ck.shards) {
        if (!fs::is_regular_file(shard))
            fail_input(dir.string() + ": shard " + shard.filename().string() + " named in the index is missing");
        for (auto& t : read_safetensors_file(shard)) {
            if (seen.count(t.name))
                fail_input(dir.string() + ": tensor '" + t.name + "' appears in both " + seen[t.name] + " and " +
                           shard.filename().string());
            seen[t.name] = shard.filename().string();
            ck.tensors.push_back(std::move(t));
        }
    }
    if (!weight_map.empty()) {
        for (const auto& [name, part] : weight_map) {
            auto it = seen.find(name);
            if (it == seen.end()) fail_input(dir.string() + ": tensor '" + name + "' is in the index but not in " + part);
            if (it->second != part)
                fail_input(dir.string() + ": index puts '" + name + "' in " + part + " but it is in " + it->second);
        }
        if (seen.size() != weight_map.size())
            for (const auto& [name, part] : seen)
                if (!weight_map.count(name)) fail_input(dir.string() + ": tensor '" + name + "' in " + part + " is not in the index");
    }
    return ck;
}

}  // namespace cmf
