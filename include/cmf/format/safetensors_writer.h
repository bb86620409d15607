// Writing safetensors files: for generated test checkpoints, benchmarks and re-laid-out copies.
// Tensors are streamed: the header is computed from names, dtypes and shapes, then each tensor's
// bytes are appended by a callback, so a multi-GB checkpoint never sits in memory.
#pragma once

#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cmf/core/error.h"
#include "cmf/core/temp_file.h"
#include "cmf/format/safetensors.h"

namespace cmf {

struct StTensorSpec {
    std::string name;
    StDtype dtype = StDtype::BF16;
    std::vector<int64_t> shape;
    // Appends exactly nbytes() bytes to the file through `write(ptr, n)`.
    std::function<void(const std::function<void(const void*, size_t)>& write)> fill;

    uint64_t nbytes() const {
        uint64_t n = st_dtype_info(dtype).size;
        for (auto d : shape) n *= static_cast<uint64_t>(d);
        return n;
    }
};

// Writes tensors in the given order; the header lists them sorted by name (nlohmann::json's
// object order), as Python's safetensors does.
inline void write_safetensors(const fs::path& path, const std::vector<StTensorSpec>& tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
    nlohmann::json h = nlohmann::json::object();
    if (!metadata.empty()) h["__metadata__"] = metadata;
    uint64_t off = 0;
    for (const auto& t : tensors) {
        h[t.name] = {{"dtype", st_dtype_info(t.dtype).name}, {"shape", t.shape}, {"data_offsets", {off, off + t.nbytes()}}};
        off += t.nbytes();
    }
    std::string hs = h.dump();
    while ((8 + hs.size()) % 8) hs += ' ';  // keep the data section 8-byte aligned, as safetensors does
    TempFile out(path);  // core/temp_file.h: removed unless complete
    std::string buf;
    auto put = [&](const void* p, size_t n) {
        buf.append(static_cast<const char*>(p), n);
        if (buf.size() >= (1u << 20)) {
            out.write(buf);
            buf.clear();
        }
    };
    uint64_t n = hs.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
    put(len, 8);
    put(hs.data(), hs.size());
    for (const auto& t : tensors) {
        uint64_t written = 0;
        t.fill([&](const void* p, size_t k) {
            put(p, k);
            written += k;
        });
        if (written != t.nbytes()) {
            fail(ErrorKind::internal, "tensor " + t.name + " filled " + std::to_string(written) + " of " + std::to_string(t.nbytes()) + " bytes");
        }
    }
    out.write(buf);
    out.commit();
}

// A spec whose bytes are copied from an existing tensor of another checkpoint.
inline StTensorSpec copy_tensor_spec(const StTensor& src, std::string new_name) {
    StTensorSpec s;
    s.name = std::move(new_name);
    s.dtype = src.dtype;
    s.shape = src.shape;
    s.fill = [src](const std::function<void(const void*, size_t)>& write) {
        FileHandle fh(src.file);
        std::vector<char> buf(1 << 20);
        uint64_t left = src.nbytes, off = src.offset;
        while (left) {
            uint64_t k = std::min<uint64_t>(left, buf.size());
            fh.read_at(buf.data(), k, off);
            write(buf.data(), k);
            off += k;
            left -= k;
        }
    };
    return s;
}

}  // namespace cmf
